"""Flashing a disk that stands for the flash chip, through flashrom's dummy programmer.

The "device" here is a regular file, as the guest's NVMe disk is a block device: the same
copy, flashrom write, flashrom read-back and compare, copy back and fsync.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_tools
from heads.adapters.flash_device import DeviceChip
from heads.core.cbfs import CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.qemu_flash import CONFIG_USER, build_flash, payload_of, user_files_of
from heads.errors import FormatError, UsageError, VerificationError
from heads.flows.firmware import flash
from heads.runtime.flash_update import find_flash_device, flash_config_user

pytestmark = [pytest.mark.flashrom]

MIB = 1024 * 1024
KERNEL = bytes(range(256)) * 2048
INITRAMFS = b"initramfs" * 40000
CMDLINE = "console=ttyS0"
USER = [CbfsFile(CONFIG_USER, b'export CONFIG_TOTP_LABEL="before"\n')]


def _device(tmp_path: Path, size: int) -> Path:
    device = tmp_path / "nvme1n1"
    device.write_bytes(build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE, size=size).to_bytes())
    return device


@pytest.mark.parametrize("size", [16 * MIB, 4 * MIB])
def test_config_user_flashed_and_read_back(tmp_path: Path, size: int) -> None:
    require_tools("flashrom")
    device = _device(tmp_path, size)
    said: list[str] = []
    report = flash_config_user(device, b"export CONFIG_X=new\n", say=said.append, workdir=tmp_path)
    image = FlashImage.from_bytes(device.read_bytes(), expected_size=size)
    assert {f.name: f.data for f in user_files_of(image)} == {CONFIG_USER: b"export CONFIG_X=new\n"}
    assert payload_of(image) == (KERNEL, INITRAMFS, CMDLINE)
    assert report.write_s > 0
    assert report.verify_s > 0
    assert "read back and verified" in said[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nvme1n1"]  # nothing left behind


def test_image_of_another_size_is_refused_and_the_device_kept(tmp_path: Path) -> None:
    require_tools("flashrom")
    device = _device(tmp_path, 4 * MIB)
    before = device.read_bytes()
    other = build_flash(KERNEL, INITRAMFS, USER, cmdline=CMDLINE, size=8 * MIB)
    with (
        pytest.raises(UsageError, match="but the chip holds"),
        DeviceChip(device, tmp_path) as chip,
    ):
        flash(chip.programmer, other)
    assert device.read_bytes() == before
    assert not (tmp_path / "chip.rom").exists()


def test_a_chip_that_drops_writes_fails_verification_and_the_device_is_kept(
    tmp_path: Path,
) -> None:
    require_tools("flashrom")
    device = _device(tmp_path, 16 * MIB)
    before = device.read_bytes()
    new = FlashImage.from_bytes(before).with_file(CbfsFile(CONFIG_USER, b"x\n"), replace=True)
    # The emulated chip ignores every page-program command (flashrom's spi_ignorelist): the
    # write "succeeds", and only the read-back finds the old bytes.
    with pytest.raises(VerificationError, match="differs"), DeviceChip(device, tmp_path) as chip:
        flash(chip.programmer + ",spi_ignorelist=02", new)
    assert device.read_bytes() == before


def test_a_device_without_a_firmware_image_is_a_format_error(tmp_path: Path) -> None:
    device = tmp_path / "nvme1n1"
    device.write_bytes(b"\0" * MIB)
    with pytest.raises(FormatError, match="nvme1n1"):
        flash_config_user(device, b"x", say=lambda _m: None, workdir=tmp_path)


def test_flash_device_found_by_its_serial(tmp_path: Path) -> None:
    for name, serial in (("nvme0n1", "heads-disk0"), ("nvme1n1", "heads-flash")):
        (tmp_path / name / "device").mkdir(parents=True)
        (tmp_path / name / "device" / "serial").write_text(f"{serial}  \n")
    (tmp_path / "loop0").mkdir()
    assert find_flash_device(tmp_path) == Path("/dev/nvme1n1")
    (tmp_path / "nvme1n1" / "device" / "serial").write_text("other\n")
    assert find_flash_device(tmp_path) is None
