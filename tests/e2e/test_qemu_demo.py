"""The demo (``run_demo``, what ``heads qemu demo`` runs) under QEMU (TCG) with OVMF and the
machine's own swtpm, plus one boot of a changed payload initramfs (the TOTP secret must not
be released).

The demo's boots: 0 the factory reset in the guest, 1 the TOTP secret sealed, then the host
gives the OS a LUKS volume and seals the disk unlock key, 2 the DUK passphrase typed (the OS
opens its volume by key file), 3 a tampered OS kernel refused before any disk-key step.  One
machine directory is shared by the boots (CI has 90 minutes on 2 cores).  The payload is
built once into ``out/payload`` (reused while its inputs are unchanged).  Console transcripts
stay in the machine directory under pytest's temporary directory; every assertion names the
one to read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters._run import run
from heads.adapters.qemu import OVMF_BIOS
from heads.core.cpio import CpioEntry, build_newc
from heads.core.otp import parse_otpauth_uri, totp_code
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_luks import (
    DEMO_DISK_KEY_PASSPHRASE,
    DEMO_DISK_RECOVERY_PASSPHRASE,
    OS_LUKS_BY_KEY_FILE,
    OS_LUKS_PROMPT,
    dialogs_of,
    disk_key_timing,
    to_kexec_s,
)
from heads.flows.qemu_platform import (
    OS_KERNEL_NAME,
    BootResult,
    DemoPayload,
    Machine,
    boot_machine,
    cached_payload,
    flash_size_for,
    run_demo,
    write_payload,
)

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.swtpm,
    pytest.mark.gpg,
    pytest.mark.cryptsetup,
]

REPO = Path(__file__).resolve().parents[2]


def _expected_code(uri: str, shown_at: str) -> str:
    secret = parse_otpauth_uri(uri).secret
    when = datetime.strptime(shown_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return totp_code(secret, when).code


def _chip(payload: DemoPayload) -> int:
    """A 16 MiB chip, as on most Heads boards: the payload's budget keeps it fitting."""
    chip = flash_size_for(payload.kernel.stat().st_size + payload.initramfs.stat().st_size)
    assert chip == 16 * 2**20
    return chip


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _has(result: BootResult, text: str) -> bool:
    return any(text in line.text for line in result.lines)


def test_demo_then_changed_initramfs(tmp_path: Path) -> None:
    require_tools(
        "qemu-system-x86_64",
        "swtpm",
        "swtpm_setup",
        "gpg",
        "gpgv",
        "mkfs.ext4",
        "cryptsetup",
        "debugfs",
        "mcopy",
    )
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    _chip(payload)
    said: list[str] = []
    report = run_demo(tmp_path / "machine", payload, say=said.append)
    transcripts = [str(b.transcript) for b in report.boots]
    failed = [name for name, passed in report.checks if not passed]
    assert not failed, (failed, transcripts)
    # Boots: ownership, 1, 2, the update's flash and the new firmware's boot, the tamper.
    assert len(report.boots) == 6, transcripts
    owned, first, second, flashed, updated, third = report.boots
    names = [name for name, _ in report.checks]
    for wanted in (
        "boot 2: DUK passphrase asked once (dialog disk-key-passphrase)",
        "boot 2: disk key released and handed to the OS initrd",
        "boot 2: OS opened its LUKS volume by key file (no DRK prompt)",
        "boot 2: DUK passphrase never on the console",
        "boot 3: no disk-key step, no key archive, no OS",
        "update: pending copy sealed before the flash",
        "update: every predicted PCR matched the new boot",
        "update: TOTP code after the update matches the secret",
        "update: disk unlock key kept for the new firmware",
        "update: new firmware's boot: OS opened its LUKS volume by key file (no DRK prompt)",
    ):
        assert wanted in names, names
    assert owned.returncode == 0, _where(owned)

    # Boot 1: provisioning shows the secret; the code is RFC 6238 over it at the guest's time.
    assert first.otpauth_uri is not None, _where(first)
    assert first.totp is not None, _where(first)
    assert first.totp[0] == _expected_code(first.otpauth_uri, first.totp[1]), _where(first)
    assert first.refusal is None, _where(first)
    assert first.os_up, _where(first)
    assert (4, "string", "generic") in first.log, _where(first)
    assert first.returncode == 0, _where(first)
    # OVMF's log replays to the TPM's PCRs (checked before the runtime extends anything).
    assert any("replay of PCRs" in ln.text and "matches the TPM" in ln.text for ln in first.lines)
    # The secret was shown to the person at the console, but is not kept in the transcript.
    secret_b32 = first.otpauth_uri.split("secret=", 1)[1].split("&", 1)[0]
    assert secret_b32 not in first.transcript.read_text(encoding="utf-8")
    assert not _has(first, "disk key"), _where(first)  # no volume yet

    # Boot 2: the same sealed secret is released (PCRs unchanged, /boot signed again by the
    # host with the backup key); the DUK passphrase releases the key, the OS opens by it.
    assert second.otpauth_uri is None, _where(second)
    assert second.totp is not None, _where(second)
    assert second.totp[0] == _expected_code(first.otpauth_uri, second.totp[1]), _where(second)
    assert dialogs_of(second) == ["main-menu", "disk-key-passphrase"], _where(second)
    assert second.os_up, _where(second)
    assert _has(second, OS_LUKS_BY_KEY_FILE), _where(second)
    assert not _has(second, OS_LUKS_PROMPT), _where(second)
    assert any(pcr == 6 for pcr, _, _ in second.log), _where(second)  # headers measured
    transcript = second.transcript.read_text(encoding="utf-8")
    assert DEMO_DISK_KEY_PASSPHRASE not in transcript
    assert DEMO_DISK_RECOVERY_PASSPHRASE not in transcript
    timing = disk_key_timing(second)
    baseline = to_kexec_s(first)
    assert timing is not None, _where(second)
    assert baseline is not None, _where(first)
    print(
        f"\nguest (TCG): LUKS headers measured {timing.headers_s:.2f} s after /boot verified; "
        f"passphrase to key released {timing.released_s:.2f} s (unseal {timing.unseal_s:.2f} s); "
        f"/boot verified to kexec {timing.to_kexec_s:.2f} s vs {baseline:.2f} s without the key"
    )

    # The update: flashed from the guest's menu; the new firmware's boot shows a code of the
    # same secret (the pending copy sealed to the predicted PCRs) and boots the OS, which
    # opens its volume by key file: the disk key was resealed for the new firmware too.
    assert any("flash: done" in ln.text for ln in flashed.lines), _where(flashed)
    assert not flashed.os_up, _where(flashed)
    assert updated.totp is not None, _where(updated)
    assert updated.totp[0] == _expected_code(first.otpauth_uri, updated.totp[1]), _where(updated)
    assert updated.os_up, _where(updated)
    assert _has(updated, OS_LUKS_BY_KEY_FILE), _where(updated)
    assert not _has(updated, OS_LUKS_PROMPT), _where(updated)
    updated_transcript = updated.transcript.read_text(encoding="utf-8")
    assert DEMO_DISK_KEY_PASSPHRASE not in updated_transcript
    assert DEMO_DISK_KEY_PASSPHRASE not in flashed.transcript.read_text(encoding="utf-8")

    # Boot 3: one byte of the OS kernel flipped on the disk: refused, file named, no OS, and
    # nothing of the disk key (no header measured, no passphrase asked, no key archive).
    assert third.refusal is not None, _where(third)
    assert any(OS_KERNEL_NAME in line and "changed" in line for line in third.report), (
        third.report,
        _where(third),
    )
    assert not third.os_up, _where(third)
    assert "kexec" not in third.marks, _where(third)
    assert (4, "string", "recovery") in third.log, _where(third)
    assert (4, "string", "generic") not in third.log, _where(third)
    assert "disk-key-passphrase" not in dialogs_of(third), _where(third)
    assert not _has(third, "disk key"), _where(third)
    assert not any(pcr == 6 for pcr, _, _ in third.log), _where(third)

    # Boot 4: the payload's initramfs with one more file (an appended archive): the EFI stub
    # measures it into PCR 9 (its size also changes PCR 4), so the sealed secret stays sealed.
    machine = Machine.load(report.machine)
    overlay = build_newc([CpioEntry.file("etc/heads/extra", b"changed\n")], mtime=0)
    changed = tmp_path / "initramfs-changed.cpio.zst"
    compressed = run(["zstd", "-q", "-c"], desc="compress the overlay", stdin=overlay).stdout
    changed.write_bytes(payload.initramfs.read_bytes() + compressed)
    write_payload(machine, kernel=payload.kernel, initramfs=changed)
    fourth = boot_machine(machine)
    assert fourth.totp is None, _where(fourth)
    assert fourth.refusal is not None, _where(fourth)
    assert "TOTP secret not released" in fourth.refusal, _where(fourth)
    assert re.search(r"PCRs? [\d, ]*\b9\b", fourth.refusal), (fourth.refusal, _where(fourth))
    assert not fourth.os_up, _where(fourth)
    assert (4, "string", "recovery") in fourth.log, _where(fourth)
