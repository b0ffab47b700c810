"""The runtime's firmware items on the host: a file stands for the flash device, a directory
for the USB drive; real swtpm, gpg/gpgv and flashrom's dummy programmer
(docs/firmware-update.md §In the running payload).

The host has no firmware event log, so every PCR is unpredictable here and nothing is
resealed (the QEMU test covers the reseal); what is checked is what reaches the chip, what is
refused before anything is written, and that the gate is asked first.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runtime_menus import _provisioned

from conftest import Owner, require_tools
from heads.adapters.gpg import GpgSigner, GpgVerdict, sign_detached, verify_detached
from heads.adapters.tpm import Tpm, open_tpm
from heads.core.cbfs import CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.gui import AddKey, Failed, Flash, Ok, SaveConfig
from heads.core.keyring import parse_keyring
from heads.core.qemu_flash import CONFIG_USER, build_flash, user_files_of
from heads.errors import SignatureError, UsageError
from heads.flows.firmware import make_package, write_image_file
from heads.runtime.boot import RuntimeEnv
from heads.runtime.firmware_menu import FirmwareContext, perform
from heads.testing.gpghome import GpgHome, make_owner_key
from heads.testing.swtpm import Swtpm

pytestmark = [pytest.mark.swtpm, pytest.mark.gpg]

SIZE = 2 * 1024 * 1024


@pytest.fixture
def machine(tmp_path: Path, swtpm: Swtpm, owner: Owner) -> Iterator[tuple[RuntimeEnv, Tpm]]:
    require_tools("flashrom", "gpg", "gpgv")
    env = _provisioned(tmp_path, swtpm, owner)
    with open_tpm(env.tcti) as tpm:
        yield env, tpm


def _chip(env: RuntimeEnv, path: Path, *, board_note: bytes = b"") -> Path:
    files = user_files_of(FlashImage.from_bytes(env.rom.read_bytes()))
    image = build_flash(b"kernel" + board_note, b"initrd", files, cmdline="quiet", size=SIZE)
    write_image_file(path, image)
    return path


def _ctx(
    env: RuntimeEnv, tpm: Tpm, device: Path, media: Path, said: list[str], *, released: bool
) -> FirmwareContext:
    return FirmwareContext(
        env, tpm, said.append, totp_released=released, recovered=False, device=device, media=media
    )


def test_saving_the_configuration_flashes_config_user(
    machine: tuple[RuntimeEnv, Tpm], tmp_path: Path
) -> None:
    env, tpm = machine
    chip = _chip(env, tmp_path / "chip.rom")
    said: list[str] = []
    ctx = _ctx(env, tpm, chip, tmp_path, said, released=True)
    outcome = perform(ctx, SaveConfig((("CONFIG_AUTO_BOOT_TIMEOUT", "5"),)))
    assert isinstance(outcome, Ok), outcome
    config = FlashImage.from_bytes(chip.read_bytes()).file(CONFIG_USER)
    assert config is not None
    assert b'export CONFIG_AUTO_BOOT_TIMEOUT="5"\n' in config.data
    # The gate passed, but without a firmware log nothing can be predicted: said so.
    assert any(ln.startswith("reseal: PCR 4 cannot be predicted") for ln in said), said
    assert any("No reseal (a PCR cannot be predicted)" in ln for ln in said), said
    assert any(ln.startswith("flash: written in ") for ln in said), said


def test_without_the_gate_nothing_is_resealed(
    machine: tuple[RuntimeEnv, Tpm], tmp_path: Path
) -> None:
    env, tpm = machine
    chip = _chip(env, tmp_path / "chip.rom")
    said: list[str] = []
    ctx = _ctx(env, tpm, chip, tmp_path, said, released=False)
    assert isinstance(perform(ctx, SaveConfig((("CONFIG_BASIC", "y"),))), Ok)
    assert "reseal: skipped: the TOTP secret was not released in this boot" in said
    assert not any("predicted" in ln for ln in said), said


def test_a_key_from_the_drive_joins_the_keyring(
    machine: tuple[RuntimeEnv, Tpm], tmp_path: Path
) -> None:
    env, tpm = machine
    chip = _chip(env, tmp_path / "chip.rom")
    media = tmp_path / "usb"
    media.mkdir()
    with GpgHome() as home:
        fpr = make_owner_key(home.path, "Second Key", "second@heads.invalid")
        armored = subprocess.run(
            ["gpg", "--homedir", str(home.path), "--armor", "--export", fpr],
            check=True,
            capture_output=True,
        ).stdout
        (media / "second.asc").write_bytes(armored)
        said: list[str] = []
        outcome = perform(_ctx(env, tpm, chip, media, said, released=True), AddKey())
        assert isinstance(outcome, Ok), outcome
        ring = FlashImage.from_bytes(chip.read_bytes()).file("heads/initrd/.gnupg/pubring.kbx")
        assert ring is not None
        assert parse_keyring(ring.data, source="ring").keys == 2
        keyring = tmp_path / "pubring.kbx"
        keyring.write_bytes(ring.data)
        signature, _ = sign_detached(b"data", gnupghome=home.path, key=fpr)
        assert verify_detached(signature, b"data", keyring).verdict is GpgVerdict.GOOD


def test_an_update_package_must_be_signed_by_a_firmware_key(
    machine: tuple[RuntimeEnv, Tpm], tmp_path: Path, owner: Owner
) -> None:
    env, tpm = machine
    chip = _chip(env, tmp_path / "chip.rom")
    before = chip.read_bytes()
    media = tmp_path / "usb"
    media.mkdir()
    rom = _chip(env, tmp_path / "new.rom", board_note=b" v2")
    with GpgHome() as stranger:
        fpr = make_owner_key(stranger.path, "Stranger", "x@heads.invalid")
        make_package(rom, media / "update.zip", GpgSigner(stranger.path, fpr))
    said: list[str] = []
    ctx = _ctx(env, tpm, chip, media, said, released=True)
    with pytest.raises(SignatureError, match=r"update\.zip"):
        perform(ctx, Flash("update.zip", keep_settings=True))
    assert chip.read_bytes() == before
    # Signed by the owner, it is flashed, the settings carried over.
    make_package(rom, media / "update.zip", GpgSigner(owner.home, owner.fpr))
    outcome = perform(ctx, Flash("", keep_settings=True))
    assert isinstance(outcome, Ok), outcome
    flashed = FlashImage.from_bytes(chip.read_bytes())
    kernel = flashed.file("payload/kernel")
    assert kernel is not None
    assert kernel.data == b"kernel v2"
    assert flashed.file(CONFIG_USER) is not None


def test_an_image_of_another_size_or_a_missing_file_is_refused(
    machine: tuple[RuntimeEnv, Tpm], tmp_path: Path
) -> None:
    env, tpm = machine
    chip = _chip(env, tmp_path / "chip.rom")
    before = chip.read_bytes()
    media = tmp_path / "usb"
    media.mkdir()
    small = build_flash(b"k", b"i", [CbfsFile("heads/initrd/x", b"x")], cmdline="", size=SIZE // 2)
    write_image_file(media / "small.rom", small)
    ctx = _ctx(env, tpm, chip, media, [], released=True)
    with pytest.raises(UsageError, match="bytes but the chip holds"):
        perform(ctx, Flash("small.rom", keep_settings=True))
    missing = perform(ctx, Flash("other.rom", keep_settings=True))
    assert isinstance(missing, Failed)
    assert "other.rom" in missing.reason
    path = perform(ctx, Flash("../chip.rom", keep_settings=True))
    assert isinstance(path, Failed)
    assert "not a path" in path.reason
    assert chip.read_bytes() == before
