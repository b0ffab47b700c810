"""The runtime's menus in the guest, scripted through fw_cfg answers (QEMU TCG, OVMF, swtpm).

One provisioned machine, three boots: a first boot where the owner generates the TOTP secret
from the menu and boots; a tampered kernel refused with "Boot Hash Mismatch" and no kexec; a
scripted boot that reaches a dialog it has no answer for and stops.  The payload is the shared
``out/payload``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters.qemu import OVMF_BIOS
from heads.core.otp import parse_otpauth_uri, totp_code
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_platform import (
    BootResult,
    boot_machine,
    cached_payload,
    create_machine,
    provision_machine,
    tamper_os_kernel,
)

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.swtpm, pytest.mark.gpg]

REPO = Path(__file__).resolve().parents[2]


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _dialogs(result: BootResult) -> list[str]:
    return [
        m.group(1) for ln in result.lines if (m := re.search(r"heads: dialog ([\w-]+): ", ln.text))
    ]


def test_scripted_menus_in_the_guest(tmp_path: Path) -> None:
    require_tools("qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4")
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    machine = create_machine(tmp_path / "machine")
    provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs)

    def boot(*answers: str) -> BootResult:
        pairs = [(a.split("=", 1)[0], a.split("=", 1)[1]) for a in answers]
        return boot_machine(machine, answers=pairs)

    # Boot 1: no secret yet; the owner generates it from the menu, then boots.
    first = boot("totp-failed=g", "gate-passed=y", "totp-sealed=ok", "main-menu=d")
    assert _dialogs(first) == ["totp-failed", "gate-passed", "totp-sealed", "main-menu"], _where(
        first
    )
    assert first.otpauth_uri is not None, _where(first)
    assert first.totp is not None, _where(first)
    secret = parse_otpauth_uri(first.otpauth_uri).secret
    assert totp_code(secret, _at(first.totp[1])).code == first.totp[0], _where(first)
    assert first.os_up, _where(first)
    assert (4, "string", "generic") in first.log, _where(first)
    # The answer file is gone from the machine directory once the boot ended.
    assert not list(machine.root.glob("boots/*/answers"))

    # Boot 2: a tampered kernel: Boot Hash Mismatch, the owner returns, nothing boots.
    tamper_os_kernel(machine)
    second = boot("main-menu=d", "boot-hash-mismatch=m", "main-menu=p")
    assert _dialogs(second) == ["main-menu", "boot-hash-mismatch", "main-menu"], _where(second)
    assert any("ERROR: Boot Hash Mismatch" in ln.text for ln in second.lines), _where(second)
    assert second.totp is not None, _where(second)  # PCRs unchanged: the code still shows
    assert "kexec" not in second.marks, _where(second)
    assert not second.os_up, _where(second)

    # Boot 3: a script that does not cover the main menu stops there, clearly.
    third = boot("options=x")
    assert any(
        "BOOT FAILED: dialog main-menu" in ln.text and "has no scripted answer" in ln.text
        for ln in third.lines
    ), _where(third)
    assert (4, "string", "recovery") in third.log, _where(third)
    assert not third.os_up, _where(third)


def _at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
