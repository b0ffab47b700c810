"""USB drives in the running payload: find them and mount them for a moment.

Owners bring files to the machine on a USB drive (an update package, a public key) and take
the owner key's backup away on one.  The runtime finds USB mass-storage disks through sysfs
(a ``/usb`` hop in the device path) and mounts the filesystem busybox recognises, read-only
unless writing is the point, and always unmounts, even when the caller fails.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters._run import run

__all__ = ["UsbDisk", "mounted", "usb_disks"]

_SYS_BLOCK: Final = Path("/sys/block")
_NUMBER: Final = re.compile(r"([0-9]+)")


@dataclass(frozen=True, slots=True)
class UsbDisk:
    """One USB mass-storage disk.

    Attributes:
        device: ``/dev/sdX``.
        partitions: ``/dev/sdXN``, in order (empty: the filesystem is on the whole disk).
        size: in bytes.
    """

    device: Path
    partitions: tuple[Path, ...]
    size: int

    @property
    def filesystem_device(self) -> Path:
        """Where the filesystem is: the first partition, or the disk itself."""
        return self.partitions[0] if self.partitions else self.device


def usb_disks(sys_block: Path = _SYS_BLOCK) -> list[UsbDisk]:
    """The USB disks the kernel sees, in the order of the ports they are plugged into.

    ``sdX`` names follow the order in which the kernel finished probing the drives, which
    changes from boot to boot when two drives are plugged in; the sysfs path names the
    controller and port (``usb2/2-1`` before ``usb2/2-2``), so a menu built from this list
    numbers the same drive the same way at every boot.
    """
    found: list[tuple[tuple[str | int, ...], UsbDisk]] = []
    try:
        names = [p.name for p in sys_block.iterdir() if p.name.startswith("sd")]
    except OSError:
        return []
    for name in names:
        node = sys_block / name
        try:
            where = str(node.resolve())
            if "/usb" not in where:
                continue
            sectors = int((node / "size").read_text().strip() or "0")
            parts = sorted(
                (p.name for p in node.iterdir() if p.name.startswith(name) and p.name != name),
                key=_natural,
            )
        except (OSError, ValueError):
            continue
        disk = UsbDisk(Path("/dev") / name, tuple(Path("/dev") / p for p in parts), sectors * 512)
        found.append((_natural(where), disk))
    return [disk for _, disk in sorted(found, key=lambda pair: pair[0])]


def _natural(text: str) -> tuple[str | int, ...]:
    """``text`` as a sort key in which digit runs compare as numbers (port 2-10 after 2-9)."""
    # split() with a group alternates text and digit runs, so position i holds the same kind
    # in every key and the tuples compare without mixing str and int.
    return tuple(int(piece) if i % 2 else piece for i, piece in enumerate(_NUMBER.split(text)))


@contextmanager
def mounted(device: Path, *, writable: bool = False, fstype: str | None = None) -> Iterator[Path]:
    """``device``'s filesystem mounted on a fresh directory; unmounted on the way out.

    ``fstype="vfat"`` mounts it as FAT with ``quiet``: FAT has no permission bits, and
    ``quiet`` makes the chmod of an atomic write succeed instead of failing with EPERM.

    Raises:
        ToolError: mount failed (no filesystem busybox knows, a damaged one...).
    """
    with tempfile.TemporaryDirectory(prefix="heads-usb-") as where:
        options = "rw" if writable else "ro,nosuid,nodev,noexec"
        typed: list[str] = []
        if fstype is not None:
            typed = ["-t", fstype]
            options += ",quiet" if fstype == "vfat" else ""
        run(["mount", *typed, "-o", options, str(device), where], desc=f"mount {device}")
        try:
            yield Path(where)
        finally:
            if writable:
                run(["sync"], desc="sync", check=False)
            run(["umount", where], desc=f"unmount {device}", check=False)
