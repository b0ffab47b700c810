"""Firmware updates flashed from inside the guest keep the TOTP valid (QEMU TCG, OVMF, swtpm).

One provisioned machine (its first boot seals the TOTP secret) is copied per scenario:

* update: "Flash/Update the BIOS" with a signed package from a USB drive whose payload moves
  PCRs 4, 7 and 9.  The runtime predicts them and seals a pending copy of the secret first;
  the next boot shows a code of the same secret, every PCR equal to its prediction, and the
  copy is promoted.  That boot then saves a configuration change (PCR 7 moves again, resealed
  the same way) and the boot after it still shows a valid code;
* no gate: the same update from a boot whose /boot does not verify: nothing is resealed and
  the next boot refuses the TOTP, as in Heads.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters.qemu import OVMF_BIOS
from heads.core.flash_image import FlashImage
from heads.core.qemu_flash import CONFIG_USER, payload_of, user_files_of
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_platform import (
    BootResult,
    Machine,
    boot_machine,
    cached_payload,
    create_machine,
    provision_machine,
    tamper_os_kernel,
    totp_matches,
)
from heads.flows.qemu_update import (
    UPDATE_ANSWERS,
    UPDATE_NOTE,
    pcr_comparisons,
    update_image,
    update_package,
    usb_drive,
)

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.swtpm, pytest.mark.gpg]

REPO = Path(__file__).resolve().parents[2]
PROFILE_PCRS = [0, 1, 2, 3, 4, 7, 9]
CONFIG_ANSWERS = (
    ("main-menu", "o"),
    ("options", "c"),
    ("config-menu", "M"),
    ("config-auto-boot", "5"),
    ("config-pcr7-warning", "y"),
    ("config-saved", "ok"),
)


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _said(result: BootResult, pattern: str) -> re.Match[str] | None:
    return next((m for ln in result.lines if (m := re.search(pattern, ln.text))), None)


def _predicted(result: BootResult) -> dict[int, str]:
    return {
        int(m[1]): m[2]
        for ln in result.lines
        if (m := re.search(r"^heads: reseal: PCR (\d+) predicted ([0-9a-f]+)", ln.text))
    }


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Machine, str]:
    """A machine after its first boot (TOTP sealed, OS booted), and its otpauth URI."""
    require_tools(
        "qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4", "flashrom"
    )
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    machine = create_machine(tmp_path_factory.mktemp("base") / "machine")
    provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs)
    first = boot_machine(machine)
    assert first.otpauth_uri is not None, _where(first)
    assert totp_matches(first.otpauth_uri, first.totp), _where(first)
    return machine, first.otpauth_uri


def _copy(machine: Machine, to: Path) -> Machine:
    shutil.copytree(machine.root, to, symlinks=True)
    return Machine.load(to)


def _usb_update(machine: Machine, tmp_path: Path) -> tuple[Path, FlashImage]:
    image = update_image(machine)
    package = tmp_path / "update.zip"
    update_package(machine, image, package)
    return usb_drive(tmp_path / "usb.img", {"update.zip": package.read_bytes()}), image


def test_update_and_config_change_keep_the_totp(
    provisioned: tuple[Machine, str], tmp_path: Path
) -> None:
    base, uri = provisioned
    machine = _copy(base, tmp_path / "machine")
    drive, image = _usb_update(machine, tmp_path)

    # Boot 1: flash the package from the menu; the TOTP is resealed to the prediction first.
    flashed = boot_machine(machine, answers=UPDATE_ANSWERS, usb_disks=[drive])
    assert totp_matches(uri, flashed.totp), _where(flashed)
    assert _said(flashed, r"^heads: update: package update.zip: .* signed by"), _where(flashed)
    predicted = _predicted(flashed)
    assert sorted(predicted) == PROFILE_PCRS, _where(flashed)
    sealed = _said(
        flashed,
        r"reseal: pending copy sealed \(prediction ([\d.]+) s, unseal and "
        r"seal ([\d.]+) s\)",
    )
    assert sealed is not None, _where(flashed)
    times = _said(flashed, r"flash: written in ([\d.]+) s, read back and verified in ([\d.]+) s")
    assert times is not None, _where(flashed)
    print(
        f"guest update: prediction {sealed[1]} s, unseal+seal {sealed[2]} s; "
        f"flash write {times[1]} s, verify {times[2]} s"
    )
    assert _said(flashed, r"^heads: flash: done"), _where(flashed)
    assert not flashed.os_up, _where(flashed)
    on_chip = FlashImage.from_bytes(machine.flash.read_bytes())
    assert payload_of(on_chip) == payload_of(image)
    names = [f.name for f in user_files_of(on_chip)]
    assert UPDATE_NOTE in names, names
    assert CONFIG_USER in names, names  # settings kept

    # Boot 2: the new firmware.  The current object is refused, the pending copy releases
    # the same secret and every PCR is the predicted one.  Then a configuration change.
    changed = boot_machine(machine, answers=CONFIG_ANSWERS)
    compared = pcr_comparisons(changed)
    assert sorted(compared) == PROFILE_PCRS, _where(changed)
    for pcr, (want, real, ok) in compared.items():
        assert want == predicted[pcr], (pcr, _where(changed))
        assert real == want, (pcr, _where(changed))
        assert ok, (pcr, _where(changed))
    refused = _said(changed, r"^heads: pending seal: the current object was refused: (.*)")
    assert refused is not None, _where(changed)
    assert re.search(r"PCRs 4, 7, 9 changed", refused[1]), refused[1]
    print(f"update prediction: {len(compared)}/{len(PROFILE_PCRS)} PCRs matched ({refused[1]})")
    assert _said(changed, r"^heads: pending seal: promoted"), _where(changed)
    assert totp_matches(uri, changed.totp), _where(changed)
    assert _said(changed, r'^heads: config.user: CONFIG_AUTO_BOOT_TIMEOUT="5"'), _where(changed)
    assert _said(changed, r"reseal: pending copy sealed"), _where(changed)
    config_predicted = _predicted(changed)

    # Boot 3: PCR 7 moved with config.user; the copy sealed for it releases the secret.
    third = boot_machine(machine)
    compared = pcr_comparisons(third)
    assert {p: c[0] for p, c in compared.items()} == config_predicted, _where(third)
    assert all(ok for _w, _r, ok in compared.values()), _where(third)
    print(f"config prediction: {len(compared)}/{len(PROFILE_PCRS)} PCRs matched")
    assert totp_matches(uri, third.totp), _where(third)
    assert third.refusal is None, _where(third)
    assert third.os_up, _where(third)


def test_update_without_the_gate_loses_the_totp(
    provisioned: tuple[Machine, str], tmp_path: Path
) -> None:
    base, uri = provisioned
    machine = _copy(base, tmp_path / "machine")
    drive, _image = _usb_update(machine, tmp_path)
    tamper_os_kernel(machine)

    flashed = boot_machine(machine, answers=UPDATE_ANSWERS, usb_disks=[drive])
    assert totp_matches(uri, flashed.totp), _where(flashed)  # the TOTP ignores /boot
    assert _said(flashed, r"^heads: reseal: skipped: /boot does not verify"), _where(flashed)
    assert not _said(flashed, r"pending copy sealed"), _where(flashed)
    assert _said(flashed, r"^heads: flash: done"), _where(flashed)

    after = boot_machine(machine)
    assert after.totp is None, _where(after)
    assert after.refusal is not None
    assert "TOTP secret not released" in after.refusal
    assert re.search(r"PCRs [\d, ]*\b4\b.*\b7\b.*\b9\b", after.refusal), after.refusal
    assert not pcr_comparisons(after), _where(after)
    assert not after.os_up, _where(after)
