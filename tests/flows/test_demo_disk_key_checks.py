"""The demo's disk-key checks and timing (heads.flows.qemu_luks) read from console lines
shaped as the runtime and the demo OS print them: each check must fail on the boot it
exists to catch (no QEMU here; tests/e2e/test_qemu_demo.py runs the real boots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from heads.adapters.qemu import ConsoleLine
from heads.core.disk_key import check_passphrase
from heads.core.secret import Secret
from heads.flows.qemu_luks import (
    DEMO_DISK_KEY_PASSPHRASE,
    OS_LUKS_BY_KEY_FILE,
    OS_LUKS_BY_PASSPHRASE,
    OS_LUKS_PROMPT,
    dialogs_of,
    disk_key_answers,
    disk_key_timing,
    to_kexec_s,
    unlock_checks,
    untouched,
)
from heads.flows.qemu_platform import OS_MARKER, BootResult

MENU = (20.295, "heads: dialog main-menu: qemu | Heads Boot Menu")
VERIFIED = (21.877, "heads: default entry: Heads demo OS")
MEASURED = (22.740, "heads: disk key: LUKS headers of /dev/nvme1n1 measured into PCR 6")
ASKED = (22.743, "heads: dialog disk-key-passphrase: Disk Unlock Key (3 of 3 tries left)")
RELEASED = (22.967, "heads: disk key: released in 0.21 s; handed to the OS initrd")
KEXEC = (22.968, "heads: kexec /vmlinuz-demo (Heads demo OS)")
OS_UP = (32.626, OS_MARKER)
BY_KEY = (35.234, OS_LUKS_BY_KEY_FILE)

GOOD = [MENU, VERIFIED, MEASURED, ASKED, RELEASED, KEXEC, OS_UP, BY_KEY]


def _boot(lines: list[tuple[float, str]]) -> BootResult:
    return BootResult(
        transcript=Path("console.log"),
        returncode=0,
        marks={},
        totp=None,
        otpauth_uri=None,
        os_up=any(text == OS_MARKER for _t, text in lines),
        refusal=None,
        report=(),
        log=(),
        lines=tuple(ConsoleLine(t, text) for t, text in lines),
    )


def _failed(boot: BootResult) -> list[str]:
    return [name for name, passed in unlock_checks("boot 2", boot) if not passed]


def test_the_good_boot_passes_and_is_timed() -> None:
    boot = _boot(GOOD)
    assert _failed(boot) == []
    assert dialogs_of(boot) == ["main-menu", "disk-key-passphrase"]
    timing = disk_key_timing(boot)
    assert timing is not None
    assert timing.headers_s == pytest.approx(22.740 - 21.877)
    assert timing.released_s == pytest.approx(22.967 - 22.743)
    assert timing.unseal_s == pytest.approx(0.21)
    assert timing.to_kexec_s == pytest.approx(22.968 - 21.877)
    assert not untouched(boot)


def test_a_refused_key_fails_the_release_and_key_file_checks() -> None:
    refused = [
        MENU,
        VERIFIED,
        MEASURED,
        ASKED,
        (22.9, "heads: disk key: the TPM refused to unseal 0x81000003: PCR 7 changed"),
        (23.0, "heads: dialog disk-key-recovery: Disk Unlock Key not released"),
        KEXEC,
        OS_UP,
        (33.0, OS_LUKS_PROMPT),
        (34.0, OS_LUKS_BY_PASSPHRASE),
    ]
    boot = _boot(refused)
    assert disk_key_timing(boot) is None
    assert _failed(boot) == [
        "boot 2: disk key released and handed to the OS initrd",
        "boot 2: OS opened its LUKS volume by key file (no DRK prompt)",
    ]


def test_a_passphrase_asked_twice_or_echoed_fails() -> None:
    again = [
        *GOOD[:4],
        (22.8, "heads: disk key: wrong passphrase (31 before TPM lockout)"),
        *GOOD[3:],
    ]
    assert _failed(_boot(again)) == [
        "boot 2: DUK passphrase asked once (dialog disk-key-passphrase)"
    ]
    echoed = [*GOOD, (36.0, f"typed: {DEMO_DISK_KEY_PASSPHRASE}")]
    assert _failed(_boot(echoed)) == ["boot 2: DUK passphrase never on the console"]


def test_the_tamper_boot_must_not_reach_any_disk_key_step() -> None:
    refused = [
        (18.6, "heads: runtime started"),
        (20.1, "heads: INTEGRITY REPORT: 1 file(s) in /boot differ from the signed manifest"),
        (20.2, 'heads: PCR 4 extended with "recovery"'),
    ]
    assert untouched(_boot(refused))
    # Headers measured (even without a passphrase) means the gate was passed.
    assert not untouched(_boot([*refused, MEASURED]))
    assert not untouched(_boot([*refused, ASKED]))
    assert not untouched(_boot([*refused, OS_UP]))


def test_to_kexec_needs_both_lines() -> None:
    assert to_kexec_s(_boot([VERIFIED, KEXEC])) == pytest.approx(22.968 - 21.877)
    assert to_kexec_s(_boot([VERIFIED])) is None


def test_the_demo_duk_passphrase_meets_the_rule_and_is_answered() -> None:
    duk = Secret(DEMO_DISK_KEY_PASSPHRASE.encode())
    check_passphrase(duk, duk)  # Heads' rule: 12 characters or more
    assert disk_key_answers() == [
        ("main-menu", "d"),
        ("disk-key-passphrase", DEMO_DISK_KEY_PASSPHRASE),
    ]
