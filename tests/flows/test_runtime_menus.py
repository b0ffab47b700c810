"""The boot runtime with its menus, on the host against a real swtpm and gpg, driven by
scripted answers through the line renderer (kexec only printed).

Each test boots a machine (a CBFS image with the owner's keyring, a signed /boot) one or more
times; a power cycle is a swtpm restart.  The console is what an owner at a serial console
would read.
"""

from __future__ import annotations

import io
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import Owner
from heads.adapters.tpm import open_tpm
from heads.core.cbfs import CbfsFile, build_cbfs
from heads.core.gui import ModeConfig
from heads.core.rollback import RollbackBinding
from heads.flows.boot_entries import save_default
from heads.flows.boot_signing import sign_boot
from heads.flows.totp import totp_exists
from heads.runtime.boot import EXIT_POWEROFF, EXIT_RECOVERY, RuntimeEnv, run_boot
from heads.testing.swtpm import Swtpm

pytestmark = [pytest.mark.swtpm, pytest.mark.gpg]

CONFIG = b'export CONFIG_BOOT_DEV="/dev/nvme0n1"\n'
GRUB_ONE = "menuentry 'OS' {\n  linux /vmlinuz console=ttyS0\n  initrd /initrd.img\n}\n"


def _machine(tmp_path: Path, swtpm: Swtpm, owner: Owner, *, signed: bool = True) -> RuntimeEnv:
    rom = tmp_path / "user.rom"
    rom.write_bytes(
        build_cbfs(
            [
                CbfsFile("heads/initrd/.gnupg/pubring.kbx", owner.keyring.read_bytes()),
                CbfsFile("heads/initrd/etc/config.user", CONFIG),
            ]
        )
    )
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz").write_bytes(b"kernel " * 1000)
    (boot / "initrd.img").write_bytes(b"initrd " * 1000)
    (boot / "grub").mkdir()
    (boot / "grub" / "grub.cfg").write_text(GRUB_ONE)
    if signed:
        save_default(boot, 1)
        with open_tpm(swtpm.tcti) as tpm:
            sign_boot(boot, gnupghome=owner.home, key=owner.fpr, tpm=tpm)
    return RuntimeEnv(
        tcti=swtpm.tcti,
        rom=rom,
        root=tmp_path / "root",
        firmware_log=tmp_path / "no-firmware-log",
        event_log=tmp_path / "root" / "run" / "measurements.cel.jsonl",
        boot_device="",
        boot_dir=boot,
        profile="uefi",
        batch=True,
        do_kexec=False,
        gnupghome=owner.home,
        signing_key=owner.fpr,
        set_clock=False,
    )


def _boot(env: RuntimeEnv, *answers: str) -> str:
    """One boot with these ``ID=CHOICE`` answers (none: the unattended path)."""
    pairs = tuple(tuple(a.split("=", 1)) for a in answers)
    out = io.StringIO()
    if env.event_log.exists():
        env.event_log.unlink()
    code = run_boot(replace(env, answers=pairs or None), out)  # type: ignore[arg-type]
    assert code == EXIT_POWEROFF, out.getvalue()
    return out.getvalue()


def _power_cycle(env: RuntimeEnv, swtpm: Swtpm) -> RuntimeEnv:
    swtpm.restart()
    return replace(env, tcti=swtpm.tcti)


def _dialogs(text: str) -> list[str]:
    return re.findall(r"^heads: dialog ([\w-]+): ", text, re.MULTILINE)


def _provisioned(tmp_path: Path, swtpm: Swtpm, owner: Owner) -> RuntimeEnv:
    """A machine after its first (unattended) boot sealed the TOTP secret; powered off."""
    env = _machine(tmp_path, swtpm, owner)
    assert "TOTP URI" in _boot(env)
    return _power_cycle(env, swtpm)


def _counter(env: RuntimeEnv) -> int:
    binding = RollbackBinding.from_bytes((env.boot_dir / "kexec_rollback.txt").read_bytes())
    with open_tpm(env.tcti) as tpm:
        return tpm.nv_counter_read(binding.nv_index)


def test_menu_default_boot_shows_totp_then_kexecs(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    text = _boot(env, "main-menu=d")
    assert _dialogs(text) == ["main-menu"]
    code = re.search(r"^heads: TOTP (\d{6}) at ", text, re.MULTILINE)
    assert code is not None, text
    assert f"heads:   TOTP: {code.group(1)}\n" in text
    assert "heads: dialog main-menu: qemu | Heads Boot Menu\n" in text
    assert "heads:   1) Default boot [d]\n" in text
    assert "heads: answer main-menu=d\n" in text
    assert "heads: kexec /vmlinuz (OS)\n" in text
    assert 'PCR 4 extended with "generic"' in text
    assert "TOTP URI" not in text


def test_first_boot_with_menus_seals_only_when_the_owner_generates(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _machine(tmp_path, swtpm, owner)
    text = _boot(env, "totp-failed=i", "main-menu=p")
    assert "heads: dialog totp-failed: ERROR: TOTP Generation Failed! [DANGER]" in text
    assert "TOTP URI" not in text
    with open_tpm(env.tcti) as tpm:
        assert not totp_exists(tpm)
    env = _power_cycle(env, swtpm)
    text = _boot(
        env,
        "totp-failed=g",
        "gate-passed=y",
        "totp-sealed=ok",
        "main-menu=d",
    )
    assert _dialogs(text) == [
        "totp-failed",
        "gate-passed",
        "totp-sealed",
        "main-menu",
    ]
    assert "heads: dialog gate-passed: Integrity Gate Passed" in text
    assert re.search(r"^heads: TOTP URI otpauth://", text, re.MULTILINE)
    assert re.search(r"^heads: TOTP \d{6} at ", text, re.MULTILINE)
    assert "heads: kexec /vmlinuz (OS)" in text
    with open_tpm(env.tcti) as tpm:
        assert totp_exists(tpm)


def test_an_unanswered_dialog_stops_the_scripted_boot(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _machine(tmp_path, swtpm, owner)
    text = _boot(env, "main-menu=d")
    assert "heads: BOOT FAILED: dialog totp-failed (ERROR: TOTP Generation Failed!) has no " in (
        text
    )
    assert "hint: add --answer totp-failed=CHOICE (choices: g, p, i, x)" in text
    assert 'PCR 4 extended with "recovery"' in text
    assert "\nheads: kexec" not in text


def test_tampered_kernel_investigate_then_update_checksums_and_next_boot_is_clean(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    before = _counter(env)
    (env.boot_dir / "vmlinuz").write_bytes(b"updated kernel " * 1000)
    text = _boot(
        env,
        "main-menu=d",
        "boot-hash-mismatch=i",
        "integrity-report=ok",
        "investigation=d",
        "mismatch-list=ok",
        "investigation=u",
        "update-checksums=y",
        "signed=ok",
        # The default's own digests still name the old kernel: choose it again (re-signs).
        "main-menu=d",
        "default-hash-mismatch=s",
        "boot-select=1",
        "boot-confirm=d",
        "signed=ok",
        "main-menu=d",
    )
    assert "heads: dialog boot-hash-mismatch: ERROR: Boot Hash Mismatch [DANGER]" in text
    assert "heads: dialog investigation: Integrity Investigation" in text
    assert "heads:   (changed) ./vmlinuz\n" in text, text
    assert "heads: dialog default-hash-mismatch: ERROR: Default Boot Hash Mismatch" in text
    assert "heads: kexec /vmlinuz (OS)" in text
    assert _counter(env) == before + 2  # update checksums, then the new default
    # The next boot, unattended, verifies and boots with the same TOTP secret: /boot is not
    # measured, so the owner's re-signing does not disturb the seal.
    text = _boot(_power_cycle(env, swtpm))
    assert "heads: /boot verified" in text
    assert re.search(r"^heads: TOTP \d{6} at ", text, re.MULTILINE)
    assert "heads: kexec /vmlinuz (OS)" in text


def test_tampered_kernel_return_to_menu_does_not_boot(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    (env.boot_dir / "vmlinuz").write_bytes(b"evil kernel")
    text = _boot(env, "main-menu=d", "boot-hash-mismatch=m", "main-menu=p")
    assert _dialogs(text) == ["main-menu", "boot-hash-mismatch", "main-menu"]
    assert "heads: dialog main-menu: qemu | Heads Boot Menu [DANGER]" in text
    assert "\nheads: kexec" not in text
    assert "generic" not in text


def test_recovery_shell_moves_pcr4_and_the_totp_is_refused_until_restart(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    text = _boot(env, "main-menu=o", "options=x", "recovery-confirm=y")
    assert "heads: recovery shell: owner request" in text
    assert re.search(r"heads: log #\d+ PCR 4 string recovery", text)
    # Same power cycle: PCR 4 holds "recovery", the secret stays sealed.
    text = _boot(env, "totp-failed=i", "main-menu=p")
    assert "TOTP secret not released" in text
    assert "PCR 4" in text
    assert not re.search(r"^heads: TOTP \d{6}", text, re.MULTILINE)
    # After a restart it unseals again.
    text = _boot(_power_cycle(env, swtpm), "main-menu=p")
    assert re.search(r"^heads: TOTP \d{6}", text, re.MULTILINE)


def test_restricted_mode_refuses_recovery_and_forced_boot(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = replace(_provisioned(tmp_path, swtpm, owner), mode=ModeConfig(restricted=True))
    text = _boot(env, "main-menu=o", "options=x", "restricted-refused=ok")
    assert "heads: dialog restricted-refused: ERROR: Restricted Boot Enabled [DANGER]" in text
    assert 'PCR 4 extended with "recovery"' not in text
    assert "heads: recovery shell:" not in text
    assert "heads: restart (this board powers off)" in text
    text = _boot(
        env,
        "main-menu=o",
        "options=b",
        "boot-options=i",
        "restricted-refused=ok",
        "boot-options=r",
        "main-menu=p",
    )
    assert "dialog force-boot" not in text
    assert "\nheads: kexec" not in text


def test_disabling_restricted_mode_wipes_the_totp_secret_first(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = replace(_provisioned(tmp_path, swtpm, owner), mode=ModeConfig(restricted=True))
    text = _boot(
        env,
        "main-menu=o",
        "options=c",
        "config-menu=L",
        "restricted-off-confirm=y",
        "not-available=ok",
        "config-menu=r",
        "main-menu=p",
    )
    assert "heads: TOTP secret wiped" in text
    # This host has no flash device: the save is refused after the wipe, as the owner sees.
    assert "heads: flash: no flash device in this machine" in text
    with open_tpm(env.tcti) as tpm:
        assert not totp_exists(tpm)


def test_tpm_reset_recreates_counter_signature_and_totp(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    old = RollbackBinding.from_bytes((env.boot_dir / "kexec_rollback.txt").read_bytes())
    passphrase = "correct horse battery"
    text = _boot(
        env,
        "main-menu=o",
        "options=t",
        "tpm-options=r",
        "tpm-reset-confirm=y",
        f"tpm-owner-passphrase={passphrase}",
        f"tpm-owner-passphrase-again={passphrase}",
        "tpm-reset-done=ok",
    )
    assert passphrase not in text
    assert "heads: answer tpm-owner-passphrase=(hidden)" in text
    assert "heads: TPM reset: new owner passphrase set" in text
    assert "heads: /boot signed: " in text
    assert "TOTP URI otpauth://" in text
    new = RollbackBinding.from_bytes((env.boot_dir / "kexec_rollback.txt").read_bytes())
    with open_tpm(env.tcti) as tpm:
        assert totp_exists(tpm)
        assert not tpm.nv_exists(old.nv_index) or new.nv_index == old.nv_index
        assert tpm.nv_exists(new.nv_index)
    # The next boot is clean: new counter, new signature, new secret.
    text = _boot(_power_cycle(env, swtpm))
    assert "heads: /boot verified" in text
    assert re.search(r"^heads: TOTP \d{6}", text, re.MULTILINE)
    assert "heads: kexec /vmlinuz (OS)" in text


def test_basic_mode_boots_an_unsigned_boot(tmp_path: Path, swtpm: Swtpm, owner: Owner) -> None:
    env = replace(_machine(tmp_path, swtpm, owner, signed=False), mode=ModeConfig(basic=True))
    text = _boot(env, "main-menu=d")
    assert "heads: booting OS WITHOUT verification (Basic mode)" in text
    assert "heads: kexec /vmlinuz (OS)" in text
    assert 'PCR 4 extended with "generic"' in text
    assert "dialog totp-failed" not in text


def test_changed_entry_list_asks_for_a_new_default_and_resigns(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    # A kernel update puts a new entry first and the owner signs /boot (not the default).
    (env.boot_dir / "vmlinuz-new").write_bytes(b"new kernel " * 1000)
    (env.boot_dir / "grub" / "grub.cfg").write_text(
        "menuentry 'OS new' {\n  linux /vmlinuz-new console=ttyS0\n}\n" + GRUB_ONE
    )
    with open_tpm(env.tcti) as tpm:
        sign_boot(env.boot_dir, gnupghome=owner.home, key=owner.fpr, tpm=tpm)
    before = _counter(env)
    text = _boot(
        env,
        "main-menu=d",
        "boot-entry-changed=s",
        "boot-select=1",
        "boot-confirm=d",
        "signed=ok",
        "main-menu=d",
    )
    assert "heads: dialog boot-entry-changed: ERROR: Boot Entry Has Changed" in text
    assert "heads:   1) OS new [1]\n" in text
    assert "heads: kexec /vmlinuz-new (OS new)" in text
    assert _counter(env) == before + 1


def test_swapped_tpm_stops_at_the_preflight_menu_and_seals_nothing(
    tmp_path: Path, swtpm: Swtpm, owner: Owner, manufactured_state: Path
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    other_state = tmp_path / "other-tpm"
    shutil.copytree(manufactured_state, other_state)
    other = Swtpm(other_state)
    other.start()
    try:
        text = _boot(
            replace(env, tcti=other.tcti), "preflight-failed=c", "main-menu=r", "main-menu=p"
        )
        assert "heads: dialog preflight-failed: ERROR: TPM State Inconsistent [DANGER]" in text
        assert "possible TPM reset or swap" in text
        assert "heads:   TOTP: UNAVAILABLE (TPM state inconsistent)" in text
        assert "TOTP URI" not in text
        assert not re.search(r"^heads: TOTP \d{6}", text, re.MULTILINE)
        with open_tpm(other.tcti) as tpm:
            assert not totp_exists(tpm)
    finally:
        other.stop()


def test_config_change_moves_pcr7_then_generate_behind_the_gate(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = _provisioned(tmp_path, swtpm, owner)
    rom = build_cbfs(
        [
            CbfsFile("heads/initrd/.gnupg/pubring.kbx", owner.keyring.read_bytes()),
            CbfsFile("heads/initrd/etc/config.user", CONFIG + b'export CONFIG_X="y"\n'),
        ]
    )
    env.rom.write_bytes(rom)
    text = _boot(env, "totp-failed=g", "gate-passed=y", "totp-sealed=ok", "main-menu=d")
    assert "PCR 7 changed since it was sealed" in text, text
    assert _dialogs(text) == ["totp-failed", "gate-passed", "totp-sealed", "main-menu"]
    assert "TOTP URI otpauth://" in text
    assert "heads: kexec /vmlinuz (OS)" in text
    # The new secret is sealed to the new PCR 7: the next boot shows its code unattended.
    text = _boot(_power_cycle(env, swtpm))
    assert re.search(r"^heads: TOTP \d{6}", text, re.MULTILINE), text
    assert "TOTP URI" not in text


def test_restricted_mode_gives_no_shell_even_when_the_menus_fail(
    tmp_path: Path, swtpm: Swtpm, owner: Owner
) -> None:
    env = replace(_provisioned(tmp_path, swtpm, owner), batch=False, answers=(("options", "x"),))
    # At an interactive console a failure of the menus ends in the recovery shell...
    assert run_boot(env, io.StringIO()) == EXIT_RECOVERY
    # ...but never in Restricted mode.
    env = _power_cycle(env, swtpm)
    out = io.StringIO()
    assert run_boot(replace(env, mode=ModeConfig(restricted=True)), out) == EXIT_POWEROFF
    assert "heads: BOOT FAILED: dialog main-menu" in out.getvalue()
    assert "Restricted Boot is enabled: no recovery shell" in out.getvalue()
