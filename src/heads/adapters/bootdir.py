"""A boot directory on disk, as :class:`heads.core.bootcfg.tree.BootFiles`.

Never leaves the tree: the listing comes from :func:`heads.adapters.hashing.scan_tree`
(``lstat``, no symlink followed) and every read opens the path one component at a time with
``O_NOFOLLOW`` from a descriptor of the root (:func:`~heads.adapters.hashing.open_beneath`).
A symlink is therefore neither listed as a file nor read: an entry whose kernel is a symlink
is reported missing, consistent with ``kexec_hashes.txt``, which does not hash symlinks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from heads.adapters.hashing import open_beneath, scan_tree
from heads.core.bootcfg.tree import MAX_CONFIG_BYTES
from heads.core.manifest import EntryKind
from heads.errors import FormatError, HeadsError, UsageError

__all__ = ["BootDir"]

_CHUNK = 1 << 20


class BootDir:
    """Read-only view of ``root`` (the mounted /boot, an ISO or a USB stick).

    The tree is listed once, at construction (runs ``lstat`` on every entry).

    Raises:
        UsageError: ``root`` is not a directory.
        HeadsError: the tree cannot be listed or is implausibly large.
    """

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise UsageError(f"{root} is not a directory")
        self.root = root
        scan = scan_tree(root)
        self._files: dict[str, int] = {}
        self._dirs: set[str] = {"/"}
        for rel, kind in scan.kinds.items():
            name = "/" + os.fsdecode(rel)
            if kind is EntryKind.FILE:
                self._files[name] = scan.sizes[rel]
            elif kind is EntryKind.DIR:
                self._dirs.add(name)
        # scan_tree leaves out ./kexec* (Heads' own files); configurations never live there.

    def _open(self, path: str) -> int | None:
        if path not in self._files:
            return None
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return open_beneath(root_fd, os.fsencode(path.lstrip("/")))
        except OSError:
            return None
        finally:
            os.close(root_fd)

    def read(self, path: str, limit: int = MAX_CONFIG_BYTES) -> bytes | None:
        fd = self._open(path)
        if fd is None:
            return None
        try:
            chunks: list[bytes] = []
            total = 0
            while chunk := os.read(fd, min(_CHUNK, limit + 1 - total) or 1):
                total += len(chunk)
                if total > limit:
                    raise FormatError(f"file is larger than {limit} bytes", source=path)
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise HeadsError(f"cannot read {self.root}{path}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def is_file(self, path: str) -> bool:
        return path in self._files

    def is_dir(self, path: str) -> bool:
        return path in self._dirs

    def size(self, path: str) -> int | None:
        return self._files.get(path)

    def walk(self) -> Iterator[str]:
        return iter(sorted(self._files))

    def sha256(self, path: str) -> bytes | None:
        """SHA-256 of regular file ``path`` (streamed), ``None`` if it is not one.

        Raises:
            HeadsError: the file exists but cannot be read.
        """
        fd = self._open(path)
        if fd is None:
            return None
        digest = hashlib.sha256()
        try:
            while chunk := os.read(fd, _CHUNK):
                digest.update(chunk)
        except OSError as exc:
            raise HeadsError(f"cannot read {self.root}{path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        return digest.digest()
