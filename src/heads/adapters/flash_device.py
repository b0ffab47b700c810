"""Flashing through ``flashrom``, on a real chip or on a block device that stands for one.

One path for both (docs/qemu-platform.md §Flashing from the guest): :func:`flash_with_flashrom`
erases and writes with ``flashrom -p PROGRAMMER -w NEW --noverify``, then has flashrom read the
whole chip back and compare it (``-v NEW``); each step is timed.  On a board the programmer is
``internal``.

The QEMU machine has no SPI chip: its flash image is an NVMe disk.  :func:`flash_block_device`
copies the disk into a file, points flashrom's ``dummy`` programmer at that file (an emulated
W25Q128FV for a 16 MiB image, a chip of the image's size otherwise), runs the same path, and
only after flashrom verified copies the file back onto the disk and syncs it.  A failed write
or verification leaves the disk as it was and raises :class:`~heads.errors.FlashError`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters._run import run
from heads.errors import FlashError, ToolError

__all__ = [
    "FlashTimes",
    "dummy_programmer",
    "flash_block_device",
    "flash_with_flashrom",
    "read_device",
]

_TIMEOUT_S: Final = 900.0  # a 32 MiB chip on a slow SPI programmer takes minutes
_W25Q128FV_SIZE: Final = 16 * 1024 * 1024
_MAX_DEVICE_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FlashTimes:
    """Seconds spent on each step (``read`` and ``copy_back``: the block-device copy only)."""

    write_s: float
    verify_s: float
    read_s: float = 0.0
    copy_back_s: float = 0.0


def dummy_programmer(chip_file: Path, size: int) -> str:
    """flashrom's file-backed chip over ``chip_file`` (which must hold ``size`` bytes)."""
    if size == _W25Q128FV_SIZE:
        return f"dummy:emulate=W25Q128FV,image={chip_file}"
    return f"dummy:emulate=VARIABLE_SIZE,size={size},image={chip_file}"


def _flashrom(programmer: str, *args: str, desc: str) -> float:
    started = time.monotonic()
    try:
        result = run(
            ["flashrom", "-p", programmer, *args], desc=desc, timeout_s=_TIMEOUT_S, check=False
        )
    except ToolError as exc:
        raise FlashError(exc.message, hint="install flashrom", details=exc.details) from exc
    if result.returncode != 0:
        out = result.stdout.decode("utf-8", "replace").strip().splitlines()[-6:]
        err = result.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
        raise FlashError(
            f"{desc}: flashrom exited with status {result.returncode}", details=(*out, *err)
        )
    return time.monotonic() - started


def flash_with_flashrom(programmer: str, image: bytes, *, workdir: Path) -> FlashTimes:
    """Write ``image`` to the chip, then have flashrom read it back and compare.

    Raises:
        FlashError: the write failed (the chip may hold part of the new image) or the chip
            read back differs from ``image``.
    """
    new = workdir / "new.rom"
    with new.open("wb") as f:
        f.write(image)
    try:
        write_s = _flashrom(programmer, "--noverify", "-w", str(new), desc="write the flash chip")
        try:
            verify_s = _flashrom(programmer, "-v", str(new), desc="verify the flash chip")
        except FlashError as exc:
            raise FlashError(
                "the flash chip read back differs from the image written: "
                "it may hold a mix of the old and the new image",
                details=exc.details,
                hint="flash again before powering off",
            ) from None
    finally:
        new.unlink(missing_ok=True)
    return FlashTimes(write_s=write_s, verify_s=verify_s)


def read_device(device: Path) -> bytes:
    """The whole of a block device (or a file standing for one).

    Raises:
        FlashError: unreadable, or larger than any flash image.
    """
    try:
        with device.open("rb") as f:
            data = f.read(_MAX_DEVICE_BYTES + 1)
    except OSError as exc:
        raise FlashError(f"cannot read the flash device {device}: {exc.strerror}") from None
    if len(data) > _MAX_DEVICE_BYTES:
        raise FlashError(f"{device} is larger than {_MAX_DEVICE_BYTES} bytes: not a flash image")
    return data


def flash_block_device(device: Path, image: bytes, *, workdir: Path) -> FlashTimes:
    """Flash ``image`` onto the disk ``device`` through flashrom's dummy programmer.

    ``workdir`` should be a tmpfs: it holds the chip file and the new image.

    Raises:
        FlashError: the image's size is not the device's, or flashrom failed; the device is
            then unchanged.  Also when the copy back fails: the device may then be half
            written, which the message says.
    """
    started = time.monotonic()
    current = read_device(device)
    read_s = time.monotonic() - started
    if len(current) != len(image):
        raise FlashError(
            f"the image is {len(image)} bytes but the flash device {device} holds "
            f"{len(current)}: refusing to flash"
        )
    chip = workdir / "chip.rom"
    with chip.open("wb") as f:
        f.write(current)
    try:
        times = flash_with_flashrom(dummy_programmer(chip, len(current)), image, workdir=workdir)
        written = chip.read_bytes()
        started = time.monotonic()
        try:
            fd = os.open(device, os.O_WRONLY)
            try:
                view = memoryview(written)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise FlashError(
                f"copying the flashed image onto {device} failed ({exc.strerror}): "
                "the device may hold a mix of the old and the new image",
                hint="flash again before powering off",
            ) from None
    finally:
        chip.unlink(missing_ok=True)
    return FlashTimes(times.write_s, times.verify_s, read_s, time.monotonic() - started)
