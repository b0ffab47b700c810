"""Read-only access to a boot directory, as the parsers see it.

The core stays free of I/O: parsers take a :class:`BootFiles` object.  ``heads.adapters.bootdir``
implements it over a real directory (never leaving the tree); :class:`MemoryTree` implements it
over a mapping of path -> bytes (tests, and files already read into memory).

Paths are absolute *inside* the tree: ``/grub/grub.cfg`` is ``<bootdir>/grub/grub.cfg``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from heads.errors import FormatError

__all__ = ["MAX_CONFIG_BYTES", "BootFiles", "MemoryTree", "normalize_path"]

# The largest boot-loader configuration we read.  Real grub.cfg files are tens of KiB; the
# Debian installer's (90 locales) is about 20 KiB.
MAX_CONFIG_BYTES: Final = 1024 * 1024


class BootFiles(Protocol):
    """What the parsers may ask of a boot directory."""

    def read(self, path: str, limit: int = MAX_CONFIG_BYTES) -> bytes | None:
        """The bytes of regular file ``path``, ``None`` if there is none.

        Raises:
            FormatError: the file is larger than ``limit`` bytes.
        """
        ...

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is a regular file in the tree."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a directory in the tree."""
        ...

    def size(self, path: str) -> int | None:
        """The size of regular file ``path`` in bytes, ``None`` if there is none."""
        ...

    def walk(self) -> Iterator[str]:
        """Every regular file in the tree, sorted by path."""
        ...


def normalize_path(path: str, base: str = "/") -> str | None:
    """``path`` made absolute against directory ``base`` and normalised.

    Returns ``None`` when the path climbs out of the tree with ``..``.
    """
    joined = path if path.startswith("/") else posixpath.join(base, path)
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


class MemoryTree:
    """A :class:`BootFiles` over a mapping of path -> bytes (directories are implied)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._files: dict[str, bytes] = {}
        self._dirs: set[str] = {"/"}
        for name, data in files.items():
            norm = normalize_path(name)
            if norm is None or norm == "/":
                raise ValueError(f"bad path {name!r}")
            self._files[norm] = data
            parent = posixpath.dirname(norm)
            while parent not in self._dirs:
                self._dirs.add(parent)
                parent = posixpath.dirname(parent)

    def read(self, path: str, limit: int = MAX_CONFIG_BYTES) -> bytes | None:
        data = self._files.get(path)
        if data is not None and len(data) > limit:
            raise FormatError(f"file is larger than {limit} bytes ({len(data)})", source=path)
        return data

    def is_file(self, path: str) -> bool:
        return path in self._files

    def is_dir(self, path: str) -> bool:
        return path in self._dirs

    def size(self, path: str) -> int | None:
        data = self._files.get(path)
        return None if data is None else len(data)

    def walk(self) -> Iterator[str]:
        return iter(sorted(self._files))
