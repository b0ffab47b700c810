"""The QEMU platform's flash image: layout, payload and user files (docs/qemu-platform.md §Flash).

The machine's firmware is one flash image, laid out like a real chip: an FMAP names a
``COREBOOT`` region, and the CBFS there holds

* the payload: ``payload/kernel`` (the bzImage with its EFI stub), ``payload/initrd`` (the
  compressed cpio), stored as they are (both are compressed already), and
  ``payload/cmdline``, the kernel command line;
* ``board``, naming the machine (a flash refuses another board's image);
* the owner's user files, ``heads/initrd/*`` (``.gnupg/pubring.kbx``, ``etc/config.user``...),
  which the runtime measures into PCR 7.

The payload names stay outside ``heads/``: keeping the owner's settings across a flash copies
``heads/initrd/*`` from the old image, and a payload must never travel that way.

Like coreboot, the host reads the payload and the user files out of this image at each boot;
it hands the user files to the guest as a small separate CBFS (:func:`user_file_rom`) because
the guest reads fw_cfg a byte at a time, and a few KiB is all it needs for PCR 7.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from heads.core.cbfs import TYPE_RAW, CbfsFile, build_cbfs
from heads.core.flash_image import FlashImage, FlashLayout, new_flash_image
from heads.core.fmap import FmapArea
from heads.core.platform import (
    BOARD_FILE,
    PAYLOAD_CMDLINE,
    PAYLOAD_INITRD,
    PAYLOAD_KERNEL,
    USER_FILE_PREFIX,
)
from heads.errors import FormatError

__all__ = [
    "CONFIG_USER",
    "DEFAULT_FLASH_SIZE",
    "FLASH_DEVICE_SERIAL",
    "FW_CFG_FLASH_CONFIG_USER",
    "QEMU_BOARD",
    "build_flash",
    "fitting_flash_size",
    "payload_of",
    "qemu_layout",
    "user_file_rom",
    "user_files_of",
]

_MIB: Final = 1024 * 1024
#: A 128 Mbit SPI chip, the most common size on the boards Heads supports.
DEFAULT_FLASH_SIZE: Final = 16 * _MIB
#: The largest chip :func:`fitting_flash_size` picks (a 512 Mbit part).
_MAX_FLASH_SIZE: Final = 64 * _MIB
#: What the image's ``board`` file says on this platform.
QEMU_BOARD: Final = "qemu-q35"
_FMAP_SIZE: Final = 0x200
# A file header, its name and the 64-byte alignment cost at most this much per file.
_PER_FILE_OVERHEAD: Final = 0x100
#: fw_cfg's user-file image: the smallest power of two from 16 KiB that holds the files.
_ROM_MIN_SIZE: Final = 0x4000


def qemu_layout(size: int = DEFAULT_FLASH_SIZE) -> FlashLayout:
    """The machine's chip: ``BIOS`` spans it, with the ``FMAP`` first and the CBFS after it.

    There is no descriptor or ME region: QEMU's q35 has no such firmware to keep.

    Raises:
        ValueError: ``size`` is not a power of two between 1 and 64 MiB.
    """
    if size < _MIB or size > _MAX_FLASH_SIZE or size & (size - 1):
        raise ValueError(f"a flash chip of {size} bytes is not a power of two of 1-64 MiB")
    return FlashLayout(
        size,
        (
            FmapArea("BIOS", 0, size),
            FmapArea("FMAP", 0, _FMAP_SIZE),
            FmapArea("COREBOOT", _FMAP_SIZE, size - _FMAP_SIZE),
        ),
    )


def fitting_flash_size(payload_bytes: int, *, preferred: int = DEFAULT_FLASH_SIZE) -> int:
    """``preferred`` if a payload of ``payload_bytes`` fits it, else the next chip size that
    does (the caller says so: a real board has one chip size).

    Raises:
        ValueError: not even the largest chip holds it.
    """
    size = preferred
    while size <= _MAX_FLASH_SIZE:
        if payload_bytes + 8 * _PER_FILE_OVERHEAD + 0x10000 <= size - _FMAP_SIZE:
            return size
        size *= 2
    raise ValueError(f"a payload of {payload_bytes} bytes fits no chip of up to 64 MiB")


def build_flash(
    kernel: bytes,
    initramfs: bytes,
    user_files: Sequence[CbfsFile],
    *,
    cmdline: str,
    size: int = DEFAULT_FLASH_SIZE,
) -> FlashImage:
    """A fresh image of ``size`` bytes: the board, the payload and its command line first, then
    the user files, in order.

    Raises:
        ValueError: bad size, a bad or repeated name, or the files do not fit (the message
            gives the sizes).
    """
    image = new_flash_image(qemu_layout(size), source="QEMU flash image")
    files = [
        CbfsFile(BOARD_FILE, QEMU_BOARD.encode() + b"\n"),
        CbfsFile(PAYLOAD_KERNEL, kernel),
        CbfsFile(PAYLOAD_INITRD, initramfs),
        CbfsFile(PAYLOAD_CMDLINE, cmdline.encode()),
    ]
    try:
        return image.with_files([*files, *user_files])
    except ValueError as exc:
        need = sum(len(f.data) for f in (*files, *user_files))
        raise ValueError(
            f"{need} bytes of payload and user files do not fit a {size // _MIB} MiB chip ({exc})"
        ) from None


def payload_of(image: FlashImage) -> tuple[bytes, bytes, str]:
    """The payload's kernel, initramfs and command line, as coreboot would load them.

    Raises:
        FormatError: a file is missing or not a plain raw file, or the command line is not
            one line of printable ASCII.
    """
    parts: list[bytes] = []
    for name in (PAYLOAD_KERNEL, PAYLOAD_INITRD, PAYLOAD_CMDLINE):
        f = image.file(name)
        if f is None or f.type != TYPE_RAW or f.compression:
            raise FormatError(f"no raw uncompressed CBFS file {name}", source=image.source)
        parts.append(f.data)
    cmdline = parts[2].decode("ascii", "replace")
    if not cmdline.isprintable() or len(cmdline) > 4096:
        raise FormatError(
            f"{PAYLOAD_CMDLINE} is not one line of printable ASCII", source=image.source
        )
    return parts[0], parts[1], cmdline


def user_files_of(image: FlashImage) -> list[CbfsFile]:
    """The ``heads/initrd/*`` files, in image order (the order PCR 7 measures them in)."""
    prefix = USER_FILE_PREFIX + "/"
    return [f for f in image.files() if f.type == TYPE_RAW and f.name.startswith(prefix)]


def user_file_rom(files: Sequence[CbfsFile]) -> bytes:
    """A small flat CBFS with ``files`` for fw_cfg, sized to a power of two from 16 KiB.

    Raises:
        ValueError: a bad or repeated name.
    """
    need = sum(len(f.name) + len(f.data) + _PER_FILE_OVERHEAD for f in files) + 256
    size = _ROM_MIN_SIZE
    while size < need:
        size *= 2
    return build_cbfs(files, size=size)


#: The NVMe serial number of the disk that stands for the flash chip; the guest finds the
#: device by it (docs/guest-host-contract.md §Flash device).
FLASH_DEVICE_SERIAL: Final = "heads-flash"
#: fw_cfg file asking the runtime to flash the image with this ``config.user`` (scripted
#: boots only: the owner's menus will ask the same flow).
FW_CFG_FLASH_CONFIG_USER: Final = "opt/heads/flash/config.user"
CONFIG_USER: Final = USER_FILE_PREFIX + "/etc/config.user"
