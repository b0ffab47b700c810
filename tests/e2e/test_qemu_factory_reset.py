"""The OEM factory reset in the guest, from a machine nobody owns (QEMU TCG, OVMF, swtpm).

Boot 1: a blank machine (payload without user files, unsigned /boot) offers the factory
reset; the owner runs it with scripted answers: TPM reset, a key generated in the guest and
backed up to a USB drive, the keyring and config.user flashed, /boot signed.  The host then
checks what the guest wrote: the flash image, /boot verified with gpgv and the TPM's counter,
and a key backup that gpg imports and opens with the passphrase only.
Boot 2: the new user files moved PCR 7; the owner generates the TOTP secret behind the gate
(typing the TPM owner passphrase) and the OS boots.
Boot 3: a changed grub.cfg: "Boot Hash Mismatch", investigation, "update checksums" and "make
default" signed with the key from the backup drive; then a TPM reset, which creates a new
counter, signs /boot again (the backup drive once more) and seals a new TOTP secret.
Boot 4: clean: the new code, /boot verifies, the OS boots.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters._run import run
from heads.adapters.atomic import write_atomic
from heads.adapters.qemu import OVMF_BIOS
from heads.adapters.swtpm import serve_tcp
from heads.adapters.tpm import open_tpm
from heads.core.boot_trust import RollbackReportState, SignatureState
from heads.core.flash_image import FlashImage
from heads.core.heads_config import parse_config
from heads.core.openpgp import read_public
from heads.core.qemu_flash import CONFIG_USER, user_files_of
from heads.flows.boot_signing import verify_boot
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_blank import (
    blank_usb_disk,
    create_blank_machine,
    factory_reset_answers,
    os_boot_files,
    usb_file,
)
from heads.flows.qemu_platform import (
    BootResult,
    Machine,
    boot_machine,
    cached_payload,
    flash_size_for,
    totp_matches,
)
from heads.runtime.factory_reset import KEYRING_FILE
from heads.runtime.owner_signer import BACKUP_SECRET

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.swtpm, pytest.mark.gpg]

REPO = Path(__file__).resolve().parents[2]
OWNER = "Owner-Pass-4711"
BACKUP = "Backup-Pass-0815"
NEW_OWNER = "Owner-Pass-2nd"
USER_ID = "Heads QEMU owner <owner@heads.invalid>"


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _dialogs(result: BootResult) -> list[str]:
    return [
        m.group(1) for ln in result.lines if (m := re.search(r"heads: dialog ([\w-]+): ", ln.text))
    ]


def _said(result: BootResult, pattern: str) -> re.Match[str] | None:
    return next((m for ln in result.lines if (m := re.search(pattern, ln.text))), None)


def _no_secret_shown(result: BootResult, *more: str) -> None:
    text = result.transcript.read_text(encoding="utf-8", errors="replace")
    for secret in (OWNER, BACKUP, *more):
        assert secret not in text, _where(result)


def _change_grub_timeout(machine: Machine) -> None:
    """Change /boot/grub/grub.cfg inside the OS disk image, same length, as an update would."""
    image = machine.os_disk.read_bytes()
    old, new = b"set timeout=5\n", b"set timeout=7\n"
    assert image.count(old) == 1
    write_atomic(machine.os_disk, image.replace(old, new))


def _gpg(home: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> int:
    return run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
        desc="gpg",
        stdin=stdin,
        check=check,
        timeout_s=120,
    ).returncode


def test_factory_reset_takes_ownership_in_the_guest(tmp_path: Path) -> None:
    require_tools(
        "qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4", "debugfs"
    )
    require_tools("mcopy")
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    size = payload.kernel.stat().st_size + payload.initramfs.stat().st_size
    machine = create_blank_machine(
        tmp_path / "machine",
        kernel=payload.kernel,
        initramfs=payload.initramfs,
        flash_size=flash_size_for(size),
    )
    backup = blank_usb_disk(tmp_path / "backup.img")
    assert not user_files_of(FlashImage.from_bytes(machine.flash.read_bytes()))

    # Boot 1: the clean /boot and the empty keyring lead to the factory reset.
    first = boot_machine(
        machine,
        answers=factory_reset_answers(OWNER, BACKUP, user_id=USER_ID),
        usb_disks=[backup],
        disks_writable=True,
    )
    assert _dialogs(first)[-3:] == [
        "factory-reset-default",
        "factory-reset-secrets",
        "factory-reset-done",
    ], _where(first)
    generated = _said(first, r"heads: owner key generated: ([0-9A-F]{40})$")
    assert generated is not None, _where(first)
    fpr = generated.group(1)
    assert not first.os_up, _where(first)
    _no_secret_shown(first)

    # The flash image: the new public key and config.user, in one flash.
    files = {
        f.name: f.data for f in user_files_of(FlashImage.from_bytes(machine.flash.read_bytes()))
    }
    assert read_public(files[KEYRING_FILE], source="keyring").fingerprint == fpr
    config = parse_config(files[CONFIG_USER], source="config.user")
    assert config.get("CONFIG_BOOT_DEV") == "/dev/nvme0n1"
    assert config.get("CONFIG_HAVE_GPG_KEY_BACKUP") == "y"

    # /boot: signed by the new key (gpgv), bound to the counter in the reset TPM.
    keyring = tmp_path / "pubring.gpg"
    keyring.write_bytes(files[KEYRING_FILE])
    boot = os_boot_files(machine, tmp_path / "boot")
    assert (boot / "kexec_default.1.txt").is_file()
    with serve_tcp(machine.tpm_state) as server, open_tpm(server.tcti) as tpm:
        report = verify_boot(boot, keyring=keyring, tpm=tpm)
    assert report.signature.state is SignatureState.VERIFIED, report.render_text()
    assert report.signature.fingerprint == fpr
    assert report.rollback.state is RollbackReportState.OK, report.render_text()
    assert report.ok, report.render_text()

    # The backup: gpg imports it, and it signs only with the backup passphrase.
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    secret = usb_file(backup, BACKUP_SECRET, tmp_path / "backup.asc")
    _gpg(home, "--import", str(secret))
    sign = ("--pinentry-mode", "loopback", "--passphrase-fd", "0", "-u", fpr, "--detach-sign")
    target = tmp_path / "data"
    target.write_bytes(b"restored")
    try:
        assert _gpg(
            home, *sign, "-o", str(tmp_path / "bad.sig"), str(target), stdin=b"wrong\n", check=False
        )
        ok_sig = tmp_path / "ok.sig"
        _gpg(home, *sign, "-o", str(ok_sig), str(target), stdin=BACKUP.encode() + b"\n")
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], desc="stop", check=False)
    # Signed by the key whose public half the firmware holds.
    run(["gpgv", "--keyring", str(keyring), str(ok_sig), str(target)], desc="gpgv")

    # Boot 2: PCR 7 moved; the TOTP secret is generated behind the gate, then the OS boots.
    second = boot_machine(
        machine,
        answers=[
            ("totp-failed", "g"),
            ("gate-passed", "y"),
            ("tpm-owner-auth", OWNER),
            ("totp-sealed", "ok"),
            ("main-menu", "d"),
        ],
    )
    assert second.otpauth_uri is not None, _where(second)
    assert totp_matches(second.otpauth_uri, second.totp), _where(second)
    assert second.os_up, _where(second)
    _no_secret_shown(second)

    # Boot 3: /boot changed (as an OS update changes it): "Boot Hash Mismatch", investigation,
    # "update checksums" signed with the key from the backup drive, "make default" signed
    # again (the key is dropped after each signature), then the TPM reset path: new owner
    # passphrase, counter, signature and TOTP secret.
    _change_grub_timeout(machine)
    third = boot_machine(
        machine,
        answers=[
            ("main-menu", "d"),
            ("boot-hash-mismatch", "i"),
            ("integrity-report", "ok"),
            ("investigation", "u"),
            ("update-checksums", "y"),
            ("backup-key-passphrase", BACKUP),
            ("signed", "ok"),
            ("main-menu", "o"),
            ("options", "b"),
            ("boot-options", "m"),
            ("boot-select", "1"),
            ("boot-confirm", "d"),
            ("backup-key-passphrase", BACKUP),
            ("signed", "ok"),
            ("main-menu", "o"),
            ("options", "t"),
            ("tpm-options", "r"),
            ("tpm-reset-confirm", "y"),
            ("tpm-owner-passphrase", NEW_OWNER),
            ("tpm-owner-passphrase-again", NEW_OWNER),
            ("backup-key-passphrase", BACKUP),
            ("tpm-reset-done", "ok"),
        ],
        usb_disks=[backup],
        disks_writable=True,
    )
    assert any("ERROR: Boot Hash Mismatch" in ln.text for ln in third.lines), _where(third)
    assert any("./grub/grub.cfg" in ln.text for ln in third.lines), _where(third)
    assert totp_matches(second.otpauth_uri, third.totp), _where(third)
    loaded = [ln for ln in third.lines if f"key backup: owner key {fpr} loaded" in ln.text]
    assert len(loaded) == 3, _where(third)
    signed = [ln for ln in third.lines if re.search(r"heads: /boot signed: \d+ files", ln.text)]
    assert len(signed) == 2, _where(third)  # update checksums, then the TPM reset
    assert _said(third, r"heads: entry 1 \(.*\) is the default; /boot signed") is not None
    assert third.otpauth_uri is not None, _where(third)  # the TPM reset sealed a new secret
    assert third.otpauth_uri != second.otpauth_uri
    assert not third.os_up, _where(third)
    _no_secret_shown(third, NEW_OWNER)

    # Boot 4: clean: the new secret's code, /boot verifies, the OS boots.
    fourth = boot_machine(machine, answers=[("main-menu", "d")])
    assert totp_matches(third.otpauth_uri, fourth.totp), _where(fourth)
    assert fourth.refusal is None, _where(fourth)
    assert fourth.os_up, _where(fourth)
