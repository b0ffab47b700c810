"""Flashing through flashrom's dummy programmer, update packages, keys in the image: all real."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from conftest import Owner, require_tools
from heads.adapters.gpg import GpgSigner
from heads.core.cbfs import COMPRESS_LZMA, CbfsFile, make_file
from heads.core.flash_image import FlashImage, new_flash_image, standard_layout
from heads.core.rom_update import BOARD_FILE
from heads.errors import (
    ExitCode,
    FlashError,
    HashMismatchError,
    SignatureError,
    UsageError,
    VerificationError,
)
from heads.flows.firmware import (
    CONFIG_FILE,
    PUBRING_FILE,
    TRUSTDB_FILE,
    flash,
    image_config,
    image_keys,
    make_package,
    verify_package,
    with_config,
    with_keys,
)
from heads.testing.gpghome import GpgHome, export_public_keyring, make_owner_key

MIB = 1024 * 1024
CHIP = "W25Q128FV"  # 16 MiB


def _image(
    board: str = "qemu-test", *, payload: bytes = b"kernel v1", size: int = 16
) -> FlashImage:
    files = [
        CbfsFile(BOARD_FILE, board.encode() + b"\n"),
        make_file("payload/kernel", payload * 2000, compression=COMPRESS_LZMA),
    ]
    return new_flash_image(standard_layout(size * MIB)).with_files(files)


def _owned(image: FlashImage) -> FlashImage:
    return image.with_files(
        [
            CbfsFile(PUBRING_FILE, b"owner keyring " * 50),
            CbfsFile(CONFIG_FILE, b'export CONFIG_BOOT_DEV="/dev/vda1"\n'),
        ]
    )


def _chip(tmp_path: Path, image: FlashImage) -> tuple[Path, str]:
    require_tools("flashrom")
    chip = tmp_path / "chip.bin"
    chip.write_bytes(image.data)
    return chip, f"dummy:emulate={CHIP},image={chip}"


def test_flash_keeps_user_files_and_reads_back(tmp_path: Path) -> None:
    old = _owned(_image())
    chip, programmer = _chip(tmp_path, old)
    new = _image(payload=b"kernel v2")
    report = flash(programmer, new, backup=tmp_path / "backup.rom")
    flashed = FlashImage.from_bytes(chip.read_bytes())
    assert report.carried == (PUBRING_FILE, CONFIG_FILE)
    assert report.sha256 == hashlib.sha256(chip.read_bytes()).hexdigest()
    assert (tmp_path / "backup.rom").read_bytes() == old.data
    kernel = flashed.file("payload/kernel")
    assert kernel is not None
    assert kernel.content() == b"kernel v2" * 2000
    assert image_config(flashed).get("CONFIG_BOOT_DEV") == "/dev/vda1"
    assert report.write_s > 0
    assert report.verify_s > 0
    again = flash(programmer, new)
    assert again.unchanged


def test_clean_flash_drops_user_files(tmp_path: Path) -> None:
    chip, programmer = _chip(tmp_path, _owned(_image()))
    new = _image(payload=b"kernel v2")
    report = flash(programmer, new, clean=True)
    assert report.carried == ()
    assert chip.read_bytes() == new.data


def test_a_new_image_keeps_its_own_user_files(tmp_path: Path) -> None:
    chip, programmer = _chip(tmp_path, _owned(_image()))
    new = _image(payload=b"v2").with_file(CbfsFile(CONFIG_FILE, b"export CONFIG_TPM=y\n"))
    report = flash(programmer, new)
    assert report.carried == (PUBRING_FILE,)
    assert image_config(FlashImage.from_bytes(chip.read_bytes())).get("CONFIG_TPM") == "y"


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (_image(size=8), "is 8388608 bytes but the chip holds 16777216"),
        (_image("other-board"), "for board other-board but the chip holds a qemu-test image"),
        (_image().without_file(BOARD_FILE), "for board (unnamed)"),
    ],
)
def test_wrong_size_or_board_is_refused_untouched(
    tmp_path: Path, new: FlashImage, reason: str
) -> None:
    old = _owned(_image())
    chip, programmer = _chip(tmp_path, old)
    with pytest.raises(UsageError) as info:
        flash(programmer, new)
    assert reason in info.value.message
    assert chip.read_bytes() == old.data


def test_read_back_mismatch_is_exit_3(tmp_path: Path) -> None:
    old = _owned(_image())
    chip, programmer = _chip(tmp_path, old)
    # The chip accepts erases but silently ignores page programs: what flashrom wrote is gone.
    with pytest.raises(VerificationError) as info:
        flash(programmer + ",spi_ignorelist=02", _image(payload=b"v2"), backup=tmp_path / "b.rom")
    assert info.value.exit_code == ExitCode.VERIFICATION_FAILED
    assert "read back differs from the image written, first at byte offset 0x" in str(info.value)
    assert info.value.hint is not None
    assert str(tmp_path / "b.rom") in info.value.hint
    assert chip.read_bytes() != old.data


def test_failed_write_says_the_chip_may_be_half_written(tmp_path: Path) -> None:
    _, programmer = _chip(tmp_path, _owned(_image()))
    with pytest.raises(FlashError) as info:
        flash(programmer + ",spi_blacklist=02", _image(payload=b"v2"))
    assert "may hold part of the new image" in info.value.message
    assert info.value.hint is not None
    assert "do not power off" in info.value.hint


@pytest.fixture
def package(tmp_path: Path, owner: Owner) -> Path:
    rom = tmp_path / "qemu-test-v2.rom"
    rom.write_bytes(_image(payload=b"v2").data)
    out = tmp_path / "update.zip"
    name, fpr = make_package(rom, out, GpgSigner(owner.home, owner.fpr))
    assert (name, fpr) == ("qemu-test-v2.rom", owner.fpr)
    return out


def test_package_verifies_with_the_owner_keyring(package: Path, owner: Owner) -> None:
    check = verify_package(package, owner.keyring)
    assert check.fingerprint == owner.fpr
    assert check.image.file("payload/kernel") is not None
    with zipfile.ZipFile(package) as zf:
        assert sorted(zf.namelist()) == ["qemu-test-v2.rom", "sha256sum.txt", "sha256sum.txt.asc"]
        line = zf.read("sha256sum.txt").decode()
        assert (
            line == f"{hashlib.sha256(zf.read('qemu-test-v2.rom')).hexdigest()}  qemu-test-v2.rom\n"
        )


def _rewritten(package: Path, **members: bytes) -> Path:
    with zipfile.ZipFile(package) as zf:
        contents = {n: zf.read(n) for n in zf.namelist()}
    contents.update(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    out = package.with_name("evil.zip")
    out.write_bytes(buf.getvalue())
    return out


def test_bad_hash_is_refused(package: Path, owner: Owner) -> None:
    evil = _rewritten(package, **{"qemu-test-v2.rom": _image(payload=b"evil").data})
    with pytest.raises(HashMismatchError) as info:
        verify_package(evil, owner.keyring)
    assert info.value.exit_code == ExitCode.VERIFICATION_FAILED


def test_untrusted_signature_is_refused(package: Path, tmp_path: Path, owner: Owner) -> None:
    with GpgHome() as other:
        fpr = make_owner_key(other.path, "Mallory", "mallory@heads.invalid")
        rom = _image(payload=b"evil").data
        sig, _ = GpgSigner(other.path, fpr).sign(
            f"{hashlib.sha256(rom).hexdigest()}  qemu-test-v2.rom\n".encode()
        )
        mallory_keyring = export_public_keyring(other.path, tmp_path / "mallory.gpg")
    evil = _rewritten(
        package,
        **{
            "qemu-test-v2.rom": rom,
            "sha256sum.txt": f"{hashlib.sha256(rom).hexdigest()}  qemu-test-v2.rom\n".encode(),
            "sha256sum.txt.asc": sig,
        },
    )
    with pytest.raises(SignatureError, match="no public key"):
        verify_package(evil, owner.keyring)
    assert verify_package(evil, mallory_keyring).fingerprint == fpr


def test_keys_add_replace_and_list(tmp_path: Path, owner: Owner) -> None:
    require_tools("gpg")
    image = _image()
    assert image_keys(image) == []
    image, fprs = with_keys(image, owner.keyring.read_bytes(), replace=False)
    assert fprs == [owner.fpr]
    (key,) = image_keys(image)
    assert key.fingerprint == owner.fpr
    assert key.uids == ("Heads Owner <owner@heads.invalid>",)
    assert key.validity == "u"  # ultimate, as Heads' ownertrust 6 makes it
    assert image.file(TRUSTDB_FILE) is not None
    with GpgHome() as other:
        fpr = make_owner_key(other.path, "New: Owner\x1b[2J", "new@heads.invalid")
        second = export_public_keyring(other.path, tmp_path / "second.gpg").read_bytes()
    added, _ = with_keys(image, second, replace=False)
    assert {k.fingerprint for k in image_keys(added)} == {owner.fpr, fpr}
    replaced, _ = with_keys(image, second, replace=True)
    (only,) = image_keys(replaced)
    assert only.fingerprint == fpr
    assert only.uids == ("New: Owner\x1b[2J <new@heads.invalid>",)
    with pytest.raises(UsageError, match="no OpenPGP public key"):
        with_keys(image, b"not a key", replace=False)


def test_config_in_image_round_trips() -> None:
    image = _image()
    config = image_config(image).set("CONFIG_TOTP_LABEL", 'a "quoted" $(label)\nline')
    again = image_config(with_config(image, config))
    assert again.get("CONFIG_TOTP_LABEL") == 'a "quoted" $(label)\nline'
    assert with_config(image, config.unset("CONFIG_TOTP_LABEL")).file(CONFIG_FILE) is None
