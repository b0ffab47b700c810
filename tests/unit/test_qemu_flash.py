"""The QEMU platform's flash image: layout, payload and user files, read back by cbfstool."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_tools
from heads.adapters._run import run
from heads.core.cbfs import CbfsFile, parse_cbfs
from heads.core.flash_image import FlashImage
from heads.core.platform import BOARD_FILE, PAYLOAD_CMDLINE, PAYLOAD_INITRD, PAYLOAD_KERNEL
from heads.core.qemu_flash import (
    CONFIG_USER,
    DEFAULT_FLASH_SIZE,
    build_flash,
    fitting_flash_size,
    payload_of,
    qemu_layout,
    user_file_rom,
    user_files_of,
)
from heads.errors import FormatError

MIB = 1024 * 1024
KERNEL = bytes(range(256)) * 4096  # 1 MiB, not all one byte
INITRAMFS = b"\x28\xb5\x2f\xfd" + b"initramfs" * 50000
CMDLINE = "console=ttyS0 quiet"
USER = [
    CbfsFile("heads/initrd/.gnupg/pubring.kbx", b"keyring bytes"),
    CbfsFile(CONFIG_USER, b'export CONFIG_TOTP_LABEL="x"\n'),
]


def test_payload_and_user_files_round_trip() -> None:
    image = build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE)
    assert image.size == DEFAULT_FLASH_SIZE == 16 * MIB
    again = FlashImage.from_bytes(image.to_bytes(), expected_size=16 * MIB)
    assert payload_of(again) == (KERNEL, INITRAMFS, CMDLINE)
    assert [(f.name, f.data) for f in user_files_of(again)] == [(f.name, f.data) for f in USER]
    # The fw_cfg image holds the user files only, in the same order, and stays small.
    rom = user_file_rom(user_files_of(again))
    assert len(rom) == 0x4000
    assert [(f.name, f.data) for f in parse_cbfs(rom)] == [(f.name, f.data) for f in USER]


def test_cbfstool_reads_the_image_and_extracts_the_payload(tmp_path: Path) -> None:
    require_tools("cbfstool")
    rom = tmp_path / "flash.rom"
    rom.write_bytes(build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE, size=4 * MIB).to_bytes())
    listing = run(["cbfstool", rom, "print", "-k"], desc="cbfstool print").stdout.decode()
    names = [line.split("\t")[0] for line in listing.splitlines()[1:]]
    assert names[:6] == [
        BOARD_FILE,
        PAYLOAD_KERNEL,
        PAYLOAD_INITRD,
        PAYLOAD_CMDLINE,
        *(f.name for f in USER),
    ]
    out = tmp_path / "kernel"
    run(["cbfstool", rom, "extract", "-n", PAYLOAD_KERNEL, "-f", out], desc="cbfstool extract")
    assert out.read_bytes() == KERNEL
    layout = run(["cbfstool", rom, "layout", "-w"], desc="cbfstool layout").stdout.decode()
    assert "'COREBOOT' (CBFS, size 4193792, offset 512)" in layout


def test_changing_config_user_keeps_the_payload() -> None:
    image = build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE, size=4 * MIB)
    changed = image.with_file(CbfsFile(CONFIG_USER, b"new\n"), replace=True)
    assert payload_of(changed) == (KERNEL, INITRAMFS, CMDLINE)
    assert {f.name: f.data for f in user_files_of(changed)}[CONFIG_USER] == b"new\n"
    assert changed.size == image.size


def test_payload_too_large_for_the_chip_says_so() -> None:
    with pytest.raises(ValueError, match="do not fit a 1 MiB chip"):
        build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE, size=MIB)


def test_fitting_size_prefers_16_mib() -> None:
    assert fitting_flash_size(11 * MIB) == 16 * MIB
    assert fitting_flash_size(29 * MIB) == 32 * MIB
    with pytest.raises(ValueError, match="fits no chip"):
        fitting_flash_size(64 * MIB)


@pytest.mark.parametrize("size", [0, 3 * MIB, 128 * MIB])
def test_layout_refuses_sizes_no_chip_has(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        qemu_layout(size)


def test_image_without_the_payload_is_a_format_error() -> None:
    image = build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE, size=4 * MIB).without_file(
        PAYLOAD_INITRD
    )
    with pytest.raises(FormatError, match="payload/initrd"):
        payload_of(image)


def test_wrong_size_image_is_refused() -> None:
    data = build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE, size=4 * MIB).to_bytes()
    with pytest.raises(FormatError, match="flash chip holds"):
        FlashImage.from_bytes(data, source="flash.rom", expected_size=16 * MIB)
