"""ISO images on a USB drive: their boot entries, their detached signatures, and booting one
from a copy in memory (docs/runtime-menus.md §USB boot).

Port of Heads' ``kexec-iso-init.sh``.  An ISO file on the drive is loop-mounted read-only to
list the entries of its ``loopback.cfg`` / ``grub.cfg`` (with GRUB's ``iso_path`` set).  Its
signature is the detached OpenPGP signature beside it, ``X.iso.sig`` else ``X.iso.asc``.

Booting reads the ISO once into memory (it must fit), verifies the signature over that copy
with gpgv and the firmware keyring, loop-mounts the copy and hashes the entry's files from it:
those digests are what the runtime's kexec then checks byte for byte, so the drive is read
once and the bytes verified are the bytes booted.  The kernel learns where the ISO is as
Heads tells it (``iso-scan/filename= findiso= img_loop=``); the file name goes into the
command line, so only plain names are accepted (a name is not covered by the signature).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters._run import run
from heads.core.bootcfg.entry import BootEntry
from heads.core.bootcfg.grub import GrubContext
from heads.core.kexec_plan import CmdlineRules, VerifiedDigests
from heads.errors import UsageError

__all__ = [
    "SIGNATURE_SUFFIXES",
    "IsoImage",
    "MountIso",
    "in_memory",
    "iso_entries",
    "iso_mounted",
    "iso_rules",
    "iso_signature",
    "plain_iso_name",
    "verified_iso_digests",
]

#: Beside ``X.iso``: ``X.iso.sig``, else ``X.iso.asc`` (kexec-iso-init.sh's order).
SIGNATURE_SUFFIXES: Final = (".sig", ".asc")
_MAX_SIGNATURE: Final = 64 * 1024
#: What may reach the kernel command line as the ISO's path.
_PLAIN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(?:/[A-Za-z0-9][A-Za-z0-9._+-]*)*")
#: Memory left to the booted kernel's files and the runtime once the ISO is copied in.
_MEMORY_MARGIN: Final = 96 * 2**20
_CHUNK: Final = 1 << 20

MountIso = Callable[[Path], AbstractContextManager[Path]]


@dataclass(frozen=True, slots=True)
class IsoImage:
    """One ISO file of a drive: its path on the drive, its entries, its detached signature."""

    rel: str
    entries: tuple[BootEntry, ...]
    signature: bytes | None


def plain_iso_name(rel: str) -> bool:
    """Whether ``rel`` can go into a kernel command line as it is."""
    return _PLAIN.fullmatch(rel) is not None and ".." not in rel.split("/")


def iso_signature(drive: Path, rel: str) -> bytes | None:
    """The detached signature beside ``drive/rel`` (a regular file, at most 64 KiB), if any."""
    for suffix in SIGNATURE_SUFFIXES:
        path = drive / (rel + suffix)
        if path.is_symlink() or not path.is_file():
            continue
        # A larger file is no signature gpgv accepts: what is read of it makes the boot fail.
        with path.open("rb") as f:
            return f.read(_MAX_SIGNATURE + 1)
    return None


@contextmanager
def iso_mounted(iso: Path) -> Iterator[Path]:
    """``iso`` loop-mounted read-only on a fresh directory; unmounted on the way out.

    Raises:
        ToolError: mount failed (not an ISO 9660 image, no loop device...).
    """
    with tempfile.TemporaryDirectory(prefix="heads-iso-") as where:
        run(
            ["mount", "-t", "iso9660", "-o", "loop,ro,nosuid,nodev,noexec", str(iso), where],
            desc=f"loop-mount {iso}",
        )
        try:
            yield Path(where)
        finally:
            run(["umount", where], desc=f"unmount {iso}", check=False)


def iso_entries(root: Path, rel: str) -> tuple[BootEntry, ...]:
    """The boot entries of the ISO mounted at ``root`` (``rel``: its path on the drive)."""
    from heads.flows.boot_entries import list_entries  # noqa: PLC0415

    return list_entries(root, media=True, ctx=GrubContext(iso_path="/" + rel)).entries


def iso_rules(rel: str) -> CmdlineRules:
    """Where the ISO is, for the live system's init (the parameters Heads adds)."""
    return CmdlineRules(add=f"iso-scan/filename=/{rel} findiso=/{rel} img_loop=/{rel}")


def _available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        text = meminfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    m = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


@contextmanager
def in_memory(iso: Path, *, into: Path | None = None) -> Iterator[Path]:
    """A copy of ``iso`` in the runtime's RAM-backed /tmp (``into``: elsewhere), removed on
    the way out.

    Raises:
        UsageError: the ISO does not fit in memory.
        OSError: it cannot be read.
    """
    size = iso.stat().st_size
    available = _available_memory()
    if available is not None and size + _MEMORY_MARGIN > available:
        raise UsageError(
            f"the ISO ({size // 2**20} MiB) does not fit in memory ({available // 2**20} MiB "
            "free): it is verified and booted from a copy in memory"
        )
    fd, name = tempfile.mkstemp(prefix="heads-iso-", suffix=".iso", dir=into)
    copy = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, iso.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def verified_iso_digests(root: Path, entry: BootEntry, basis: str) -> VerifiedDigests:
    """SHA-256 of ``entry``'s files as the mounted, verified ISO copy holds them.

    Raises:
        OSError: a file cannot be read.
    """
    digests: dict[str, bytes] = {}
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        from heads.adapters.hashing import open_beneath  # noqa: PLC0415

        for path in entry.files:
            fd = open_beneath(root_fd, os.fsencode(path.lstrip("/")))
            digest = hashlib.sha256()
            try:
                while chunk := os.read(fd, _CHUNK):
                    digest.update(chunk)
            finally:
                os.close(fd)
            digests[path] = digest.digest()
    finally:
        os.close(root_fd)
    return VerifiedDigests(digests, basis)
