"""The /boot hashing engine: a symlink-safe tree scan and parallel SHA-256 of files.

* Parallel: one thread per core; ``hashlib``'s OpenSSL SHA-256 releases the GIL for every
  ``update`` of more than 2 KiB, so the threads hash on all cores at once.
* Bounded memory: each worker owns one 1 MiB buffer; nothing reads a whole file.
* Never leaves the tree: a path is opened one component at a time from a descriptor of the
  root, each with ``O_NOFOLLOW``, so a symlink anywhere in a manifest name fails (ELOOP or
  ENOTDIR) instead of reading what it points at.  ``O_NONBLOCK`` plus an ``fstat`` check keeps
  a FIFO planted under a hashed name from hanging the boot, and ``O_NOCTTY`` keeps a terminal
  device node from becoming the controlling terminal: nothing but a regular file is read.
* Small files (the ``kexec*`` files, boot-loader configurations) are read with
  :func:`read_beneath`, which stops after its cap: a sparse multi-GiB file under such a name
  costs one ``fstat``, not gigabytes of memory.
* Progress: an optional callback ``(done_bytes, total_bytes)``, called under a lock.

Port of ``find ./ ... | xargs -0 sha256sum`` and ``sha256sum -c`` (docs/heads-compat.md
§kexec_hashes.txt).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

from heads.core.frozen_record import FrozenRecord
from heads.core.manifest import EntryKind, is_excluded
from heads.errors import HeadsError

__all__ = [
    "HashResults",
    "TreeScan",
    "hash_files",
    "open_beneath",
    "read_beneath",
    "read_file_beneath",
    "scan_tree",
]

_CHUNK: Final = 1 << 20
MAX_TREE_ENTRIES: Final = 200_000
Progress = Callable[[int, int], None]
_Hashed = tuple[bytes, bytes | None, str | None]  # path, digest, why it could not be read


class TreeScan(FrozenRecord):
    """Every path under a root (root excluded, ``./kexec*`` excluded), as ``lstat`` sees it."""

    kinds: Mapping[bytes, EntryKind]
    sizes: Mapping[bytes, int]
    # Directories that could not be listed (e.g. lost+found without permission): their
    # contents are unknown, so a caller must not claim the tree is complete.
    unlisted: Mapping[bytes, str]

    def __init__(
        self,
        kinds: Mapping[bytes, EntryKind],
        sizes: Mapping[bytes, int],
        unlisted: Mapping[bytes, str] | None = None,
    ) -> None:
        super().__init__(kinds, sizes, {} if unlisted is None else unlisted)

    def files(self) -> list[bytes]:
        return [p for p, k in self.kinds.items() if k is EntryKind.FILE]


class HashResults(FrozenRecord):
    digests: Mapping[bytes, bytes]
    errors: Mapping[bytes, str]


def _kind(mode: int) -> EntryKind:
    if stat.S_ISREG(mode):
        return EntryKind.FILE
    if stat.S_ISDIR(mode):
        return EntryKind.DIR
    if stat.S_ISLNK(mode):
        return EntryKind.SYMLINK
    return EntryKind.OTHER


def scan_tree(root: Path, *, max_entries: int = MAX_TREE_ENTRIES) -> TreeScan:
    """Walk ``root`` without following symlinks (the ``find ./ ! -path './kexec*'`` set).

    A subdirectory that cannot be listed is recorded in ``unlisted``, not raised, so a
    verifier can still report everything else.

    Raises:
        HeadsError: the root is not a readable directory, or the tree has more than
            ``max_entries`` entries.
    """
    kinds: dict[bytes, EntryKind] = {}
    sizes: dict[bytes, int] = {}
    unlisted: dict[bytes, str] = {}
    base = os.fsencode(root)
    pending: list[bytes] = [b""]
    while pending:
        rel_dir = pending.pop()
        full = base + b"/" + rel_dir if rel_dir else base
        try:
            with os.scandir(full) as it:
                entries = list(it)
        except OSError as exc:
            if not rel_dir:
                raise HeadsError(f"cannot list {os.fsdecode(full)}: {exc.strerror}") from None
            unlisted[rel_dir] = exc.strerror or str(exc)
            continue
        for entry in entries:
            rel = rel_dir + b"/" + entry.name if rel_dir else entry.name
            if is_excluded(rel):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise HeadsError(f"cannot stat {os.fsdecode(entry.path)}: {exc.strerror}") from None
            kind = _kind(st.st_mode)
            kinds[rel] = kind
            sizes[rel] = st.st_size if kind is EntryKind.FILE else 0
            if len(kinds) > max_entries:
                raise HeadsError(
                    f"{root} holds more than {max_entries} entries; refusing to scan it",
                    hint="is this really a /boot partition?",
                )
            if kind is EntryKind.DIR:
                pending.append(rel)
    return TreeScan(kinds, sizes, unlisted)


def open_beneath(root_fd: int, rel: bytes) -> int:
    """Open regular file ``rel`` under the directory ``root_fd``, following no symlink.

    Raises:
        OSError: ELOOP/ENOTDIR for a symlink on the way, ENOENT, EACCES, or EINVAL when the
            final component is not a regular file (a FIFO or device is opened non-blocking,
            seen by ``fstat`` and closed unread).
    """
    parts = rel.split(b"/")
    if any(p in {b"", b".", b".."} for p in parts):
        raise OSError(errno.EINVAL, "not a plain relative path")
    dir_fd = root_fd
    opened: list[int] = []
    try:
        for part in parts[:-1]:
            dir_fd = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
            )
            opened.append(dir_fd)
        fd = os.open(
            parts[-1],
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            dir_fd=dir_fd,
        )
    finally:
        for d in opened:
            os.close(d)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def read_beneath(root_fd: int, rel: bytes, limit: int) -> bytes:
    """The bytes of regular file ``rel`` under ``root_fd`` (see :func:`open_beneath`), at most
    ``limit`` of them.

    At most ``limit + 1`` bytes are ever read, whatever the file's size: the caller's cap
    bounds the memory, not the file.

    Raises:
        OSError: as :func:`open_beneath`; EFBIG (strerror "larger than N bytes") when the file
            holds more than ``limit`` bytes; EIO and others from ``read``.
    """
    fd = open_beneath(root_fd, rel)
    try:
        too_large = OSError(errno.EFBIG, f"larger than {limit} bytes")
        if os.fstat(fd).st_size > limit:
            raise too_large
        data = bytearray()
        while len(data) <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
        if len(data) > limit:  # it grew after the fstat
            raise too_large
        return bytes(data)
    finally:
        os.close(fd)


def read_file_beneath(root: Path, rel: bytes, limit: int) -> bytes:
    """:func:`read_beneath` from the directory ``root`` (itself opened as given).

    Raises:
        OSError: ``root`` cannot be opened as a directory, or as :func:`read_beneath`.
    """
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return read_beneath(root_fd, rel, limit)
    finally:
        os.close(root_fd)


def _in_threads(work: Callable[[bytes], _Hashed], items: list[bytes], count: int) -> list[_Hashed]:
    """``[work(i) for i in items]`` on ``count`` threads, in order; the first error re-raised.

    Plain threads rather than concurrent.futures, whose import (it loads logging) cost
    `heads boot verify` more than starting the threads (docs/architecture.md §Command start-up).
    """
    results: list[_Hashed | None] = [None] * len(items)
    failures: list[BaseException] = []
    lock = threading.Lock()
    todo: Iterator[tuple[int, bytes]] = enumerate(items)

    def worker() -> None:
        while not failures:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            try:
                results[item[0]] = work(item[1])
            except BaseException as exc:  # handed to the caller below
                failures.append(exc)

    threads = [threading.Thread(target=worker, name=f"sha256-{n}") for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return [r for r in results if r is not None]


def hash_files(
    root: Path,
    paths: Iterable[bytes],
    *,
    sizes: Mapping[bytes, int] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> HashResults:
    """SHA-256 of each ``root/path`` in parallel; failures are reported per path, not raised.

    Args:
        root: the tree (e.g. the mounted /boot).
        paths: relative paths (bytes, no ``./``).
        sizes: expected sizes, for ordering (largest first) and the progress total.
        workers: threads (default: one per CPU).
        progress: called with (bytes done, bytes expected) as hashing advances.

    Raises:
        HeadsError: ``root`` cannot be opened.
    """
    todo = list(dict.fromkeys(paths))
    known = sizes or {}
    todo.sort(key=lambda p: known.get(p, 0), reverse=True)
    total = sum(known.get(p, 0) for p in todo)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise HeadsError(f"cannot open {root}: {exc.strerror}") from None
    lock = threading.Lock()
    done = 0
    local = threading.local()

    def advance(n: int) -> None:
        nonlocal done
        if progress is None:
            return
        with lock:
            done += n
            progress(done, max(total, done))

    def one(rel: bytes) -> tuple[bytes, bytes | None, str | None]:
        buf: bytearray | None = getattr(local, "buf", None)
        if buf is None:
            buf = bytearray(_CHUNK)
            local.buf = buf
        view = memoryview(buf)
        try:
            fd = open_beneath(root_fd, rel)
        except OSError as exc:
            reason = {
                errno.ELOOP: "a symbolic link is in the way",
                errno.ENOTDIR: "a symbolic link or file is in the way",
                errno.EINVAL: "not a regular file",
            }.get(exc.errno or 0, exc.strerror or str(exc))
            return rel, None, reason
        try:
            h = hashlib.sha256()
            while True:
                n = os.readv(fd, [view])
                if n == 0:
                    break
                h.update(view[:n])
                advance(n)
            return rel, h.digest(), None
        except OSError as exc:
            return rel, None, exc.strerror or str(exc)
        finally:
            os.close(fd)

    digests: dict[bytes, bytes] = {}
    errors: dict[bytes, str] = {}
    try:
        count = workers or os.cpu_count() or 1
        if len(todo) <= 1 or count == 1:
            results = map(one, todo)
            collected = list(results)
        else:
            collected = _in_threads(one, todo, min(count, len(todo)))
    finally:
        os.close(root_fd)
    for rel, digest, err in collected:
        if digest is not None:
            digests[rel] = digest
        else:
            errors[rel] = err or "unreadable"
    return HashResults(digests, errors)
