"""A disk that stands for the flash chip, flashed through flashrom's dummy programmer.

The QEMU machine has no SPI chip: its flash image is an NVMe disk (docs/qemu-platform.md
§Flashing from the guest).  :class:`DeviceChip` copies the disk into a file, gives the
programmer string for flashrom's ``dummy`` programmer over that file (an emulated W25Q128FV for
a 16 MiB image, a chip of the image's size otherwise), and when the flash completed copies the
file back onto the disk and syncs it.  The flash itself (read, write, read back, compare) is
:func:`heads.flows.firmware.flash`, the same code that drives ``flashrom -p internal`` on a
board.  When the flash fails the disk is left as it was.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import Final

from heads.errors import FlashError

__all__ = ["DeviceChip", "dummy_programmer", "read_device"]

_W25Q128FV_SIZE: Final = 16 * 1024 * 1024
_MAX_DEVICE_BYTES: Final = 64 * 1024 * 1024


def dummy_programmer(chip_file: Path, size: int) -> str:
    """flashrom's file-backed chip over ``chip_file`` (which must hold ``size`` bytes)."""
    if size == _W25Q128FV_SIZE:
        return f"dummy:emulate=W25Q128FV,image={chip_file}"
    return f"dummy:emulate=VARIABLE_SIZE,size={size},image={chip_file}"


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


def _write_through(device: Path, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class DeviceChip:
    """``with DeviceChip(device, workdir) as chip: flash(chip.programmer, image)``.

    ``workdir`` should be a tmpfs: it holds the chip file while the block runs.  On a normal
    exit the chip file is written back onto the device (when it changed) and synced; after an
    exception it is not.

    Attributes:
        programmer: the ``-p`` string for flashrom.
        read_s: seconds to copy the device into the chip file.
        copy_back_s: seconds to write it back and sync (0 when nothing changed).
    """

    def __init__(self, device: Path, workdir: Path) -> None:
        self.device = device
        self.chip = workdir / "chip.rom"
        self.programmer = ""
        self.read_s = 0.0
        self.copy_back_s = 0.0
        self._before = b""

    def __enter__(self) -> DeviceChip:
        started = time.monotonic()
        self._before = read_device(self.device)
        with self.chip.open("wb") as f:
            f.write(self._before)
        self.read_s = time.monotonic() - started
        self.programmer = dummy_programmer(self.chip, len(self._before))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                return
            after = self.chip.read_bytes()
            if after == self._before:
                return
            started = time.monotonic()
            try:
                _write_through(self.device, after)
            except OSError as err:
                raise FlashError(
                    f"copying the flashed image onto {self.device} failed ({err.strerror}): "
                    "the device may hold a mix of the old and the new image",
                    hint="flash again before powering off",
                ) from None
            self.copy_back_s = time.monotonic() - started
        finally:
            self.chip.unlink(missing_ok=True)
