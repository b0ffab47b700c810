"""Crash-safe file writes: temporary file, fsync, rename, directory fsync.

After a power cut or a SIGKILL the target holds either its old bytes or the new ones, never a
mix (rename(2) replaces a directory entry atomically; the fsyncs order the data before the
name, and the name on disk before we report success).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["copy_atomic", "fsync_dir", "replace_file", "write_atomic"]


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (renames, creations, removals) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically.

    The temporary file sits in the same directory (rename is atomic only within a filesystem)
    and is named ``.<name>.tmp-<pid>``; it is removed if anything fails.

    Raises:
        OSError: the write, fsync or rename failed (the target is unchanged).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync_dir:
        fsync_dir(path.parent)


def replace_file(src: Path, dst: Path, *, sync_dir: bool = True) -> None:
    """Move a file already fsynced in the same filesystem over ``dst`` (rename(2))."""
    src.replace(dst)
    if sync_dir:
        fsync_dir(dst.parent)


def copy_atomic(src: Path, dst: Path, *, sync_dir: bool = True) -> None:
    """Replace ``dst`` with a copy of ``src`` atomically, streamed (for files too large to
    hold in memory, such as a kernel package).

    Raises:
        OSError: reading, writing or the rename failed (the target is unchanged).
    """
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        with src.open("rb") as inp, tmp.open("wb") as out:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync_dir:
        fsync_dir(dst.parent)
