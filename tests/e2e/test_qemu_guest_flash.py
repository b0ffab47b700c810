"""Flashing from inside the guest under QEMU (TCG): the next boot loads what was flashed.

Boot 1 is a good first boot (TOTP sealed and shown, /boot verified); instead of kexec it
flashes the machine's image with a changed ``config.user`` through flashrom, as fw_cfg asked.
Boot 2 loads the payload and the user files out of the flashed image: the new ``config.user``
is measured into PCR 7, so the TOTP secret sealed on boot 1 is refused, as in Heads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters.qemu import OVMF_BIOS
from heads.core.flash_image import FlashImage
from heads.core.qemu_flash import CONFIG_USER, payload_of, user_files_of
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_platform import (
    BootResult,
    boot_machine,
    cached_payload,
    create_machine,
    flash_size_for,
    provision_machine,
    totp_matches,
)

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.swtpm, pytest.mark.gpg]

REPO = Path(__file__).resolve().parents[2]
NEW_CONFIG = (
    b"# heads user configuration (firmware image, measured into PCR 7)\n"
    b'export CONFIG_BOOT_DEV="/dev/nvme0n1"\n'
    b'export CONFIG_TOTP_LABEL="heads-qemu"\n'
    b'export CONFIG_FLASHED_FROM_THE_GUEST="y"\n'
)


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _said(result: BootResult, pattern: str) -> re.Match[str] | None:
    return next((m for ln in result.lines if (m := re.search(pattern, ln.text))), None)


def test_flash_from_the_guest_changes_the_next_boot(tmp_path: Path) -> None:
    require_tools("qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4")
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    # A 16 MiB chip, as on most Heads boards (the payload's budget keeps it fitting).
    chip = flash_size_for(payload.kernel.stat().st_size + payload.initramfs.stat().st_size)
    assert chip == 16 * 2**20
    machine = create_machine(tmp_path / "machine", flash_size=chip)
    provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs)
    before = FlashImage.from_bytes(machine.flash.read_bytes(), expected_size=chip)
    old_config = {f.name: f.data for f in user_files_of(before)}[CONFIG_USER]

    first = boot_machine(machine, flash_config_user=NEW_CONFIG)
    assert totp_matches(first.otpauth_uri, first.totp), _where(first)
    assert _said(first, r"^heads: /boot verified"), _where(first)
    times = _said(first, r"flash: written in ([\d.]+) s, read back and verified in ([\d.]+) s")
    assert times is not None, _where(first)
    print(f"guest flash of a {chip // 2**20} MiB image: write {times[1]} s, verify {times[2]} s")
    assert _said(first, r"^heads: flash: done"), _where(first)
    assert "kexec" not in first.marks, _where(first)
    assert not first.os_up, _where(first)

    after = FlashImage.from_bytes(machine.flash.read_bytes(), expected_size=chip)
    assert {f.name: f.data for f in user_files_of(after)}[CONFIG_USER] == NEW_CONFIG
    assert payload_of(after) == payload_of(before)

    second = boot_machine(machine)
    measured = rf"^heads: PCR 7 measured /etc/config.user \({len(NEW_CONFIG)} bytes\)"
    assert _said(second, measured), _where(second)
    assert not _said(second, rf"config.user \({len(old_config)} bytes\)"), _where(second)
    assert second.totp is None, _where(second)
    assert second.refusal is not None
    assert "TOTP secret not released" in second.refusal
    assert re.search(r"PCRs? [\d, ]*\b7\b", second.refusal), (second.refusal, _where(second))
    assert not second.os_up, _where(second)
