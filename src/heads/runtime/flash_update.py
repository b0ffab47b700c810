"""Flashing the firmware image from the running payload (docs/qemu-platform.md §Flashing).

The runtime reads the current image from the flash device, changes it, and flashes it with
:func:`heads.flows.firmware.flash` (flashrom writes, reads the chip back, and the two are
compared) over the device (:class:`heads.adapters.flash_device.DeviceChip`), so the next boot
loads what was written.
Today one change is scripted: a new ``config.user`` handed in through fw_cfg
(:data:`~heads.core.qemu_flash.FW_CFG_FLASH_CONFIG_USER`), which the QEMU tests and the demo use;
it runs only after the integrity gate passed (the TOTP was shown and /boot verified), and the
machine powers off afterwards, as Heads reboots after "Flash/Update the BIOS".
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from heads.adapters.flash_device import DeviceChip, read_device
from heads.core.cbfs import CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.platform import USER_FILE_PREFIX
from heads.core.qemu_flash import CONFIG_USER, FLASH_DEVICE_SERIAL, FW_CFG_FLASH_CONFIG_USER
from heads.errors import FlashError
from heads.flows.firmware import FlashReport, flash

__all__ = ["find_flash_device", "flash_config_user", "flash_user_files", "scripted_config_user"]

_SYS_BLOCK: Final = Path("/sys/block")
_FW_CFG: Final = Path("/sys/firmware/qemu_fw_cfg/by_name")
_MAX_CONFIG_BYTES: Final = 64 * 1024


def find_flash_device(sys_block: Path = _SYS_BLOCK) -> Path | None:
    """The NVMe disk whose serial is :data:`FLASH_DEVICE_SERIAL` (``/dev/nvmeXnY``).

    ``device/serial`` is the controller's serial, or with NVMe multipath the subsystem's.
    """
    try:
        names = sorted(p.name for p in sys_block.iterdir() if p.name.startswith("nvme"))
    except OSError:
        return None
    for name in names:
        try:
            serial = (sys_block / name / "device" / "serial").read_text().strip()
        except OSError:
            continue
        if serial == FLASH_DEVICE_SERIAL:
            return Path("/dev") / name
    return None


def scripted_config_user(fw_cfg: Path = _FW_CFG) -> bytes | None:
    """The ``config.user`` a scripted boot asks to flash, if any."""
    try:
        with (fw_cfg / FW_CFG_FLASH_CONFIG_USER / "raw").open("rb") as f:
            data = f.read(_MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_CONFIG_BYTES:
        raise FlashError(f"the scripted config.user is larger than {_MAX_CONFIG_BYTES} bytes")
    return data


def flash_config_user(
    device: Path, config_user: bytes, *, say: Callable[[str], None], workdir: Path | None = None
) -> FlashReport:
    """Replace ``heads/initrd/etc/config.user`` in the image on ``device`` and flash it.

    Raises: as :func:`flash_user_files`.
    """
    return flash_user_files(device, {CONFIG_USER: config_user}, say=say, workdir=workdir)


def flash_user_files(
    device: Path,
    changes: Mapping[str, bytes | None],
    *,
    say: Callable[[str], None],
    workdir: Path | None = None,
) -> FlashReport:
    """Add, replace (bytes) or remove (None) user files in the image on ``device``; flash it.

    Every name must be a ``heads/initrd/...`` user file: the payload itself is never touched
    this way.  The whole new image is built in memory first, so a bad change flashes nothing.

    Raises:
        ValueError: a name outside ``heads/initrd/``, or the CBFS is full.
        FormatError: the device does not hold a valid firmware image.
        FlashError: flashrom failed (the device is unchanged), or the copy back failed (the
            message says the device may be half written).
        VerificationError: the chip read back differs (the device is unchanged).
    """
    current = FlashImage.from_bytes(read_device(device), source=str(device))
    new = current
    for name, data in changes.items():
        if not name.startswith(USER_FILE_PREFIX + "/"):
            raise ValueError(f"{name!r} is not a user file ({USER_FILE_PREFIX}/...)")
        if data is None:
            if new.file(name) is not None:
                new = new.without_file(name)
        else:
            new = new.with_file(CbfsFile(name, data), replace=True)
    say(f"flash: {device} ({current.size} bytes): changing {', '.join(sorted(changes))}")
    with (
        tempfile.TemporaryDirectory(prefix="heads-flash-", dir=workdir) as tmp,
        DeviceChip(device, Path(tmp)) as chip,
    ):
        report = flash(chip.programmer, new)
    say(
        f"flash: written in {report.write_s:.2f} s, read back and verified in "
        f"{report.verify_s:.2f} s (device read {chip.read_s:.2f} s, copied back and synced "
        f"{chip.copy_back_s:.2f} s)"
    )
    return report
