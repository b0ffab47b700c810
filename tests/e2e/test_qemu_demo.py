"""The demo's three boots under QEMU (TCG) with OVMF and the machine's own swtpm, plus one
boot of a changed payload initramfs (the TOTP secret must not be released).

One machine directory is shared by the boots (CI has 90 minutes on 2 cores).  The payload
is built once into ``out/payload`` (reused while its inputs are unchanged).  Console
transcripts stay in the machine directory under pytest's temporary directory; every assertion
names the one to read.
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
from heads.flows.qemu_platform import (
    OS_KERNEL_NAME,
    BootResult,
    DemoPayload,
    boot_machine,
    cached_payload,
    create_machine,
    flash_size_for,
    provision_machine,
    tamper_os_kernel,
    write_payload,
)

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.swtpm, pytest.mark.gpg]

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


def test_demo_boots_then_changed_initramfs(tmp_path: Path) -> None:
    require_tools("qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4")
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    machine = create_machine(tmp_path / "machine", flash_size=_chip(payload))
    provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs)

    # Boot 1: provisioning shows the secret; the code is RFC 6238 over it at the guest's time.
    first = boot_machine(machine)
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

    # Boot 2: the same sealed secret is released (PCRs unchanged), no new provisioning.
    second = boot_machine(machine)
    assert second.otpauth_uri is None, _where(second)
    assert second.totp is not None, _where(second)
    assert second.totp[0] == _expected_code(first.otpauth_uri, second.totp[1]), _where(second)
    assert second.os_up, _where(second)

    # Boot 3: one byte of the OS kernel flipped on the disk: refused, file named, no OS.
    tampered = tamper_os_kernel(machine)
    assert tampered == f"/{OS_KERNEL_NAME}"
    third = boot_machine(machine)
    assert third.refusal is not None, _where(third)
    assert any(OS_KERNEL_NAME in line and "changed" in line for line in third.report), (
        third.report,
        _where(third),
    )
    assert not third.os_up, _where(third)
    assert "kexec" not in third.marks, _where(third)
    assert (4, "string", "recovery") in third.log, _where(third)
    assert (4, "string", "generic") not in third.log, _where(third)

    # Boot 4: the payload's initramfs with one more file (an appended archive): the EFI stub
    # measures it into PCR 9 (its size also changes PCR 4), so the sealed secret stays sealed.
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
