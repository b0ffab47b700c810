"""The gui-init state machine walked with plain values: no console, no TPM.

Every scenario returns the dialog ids it reached.  That every id of
:class:`heads.core.dialogs.DialogId` is reached is checked in one place,
tests/unit/test_dialog_coverage.py (a new dialog needs a path there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from heads.core.dialogs import Dialog, DialogId, Kind, Tone
from heads.core.gui import (
    AddKey,
    BootBasic,
    BootDefault,
    BootEntry,
    Entries,
    FactoryReset,
    Failed,
    FailureKind,
    FindDisks,
    Flash,
    Gui,
    IntegrityReport,
    ListEntries,
    ListKeys,
    LuksDevices,
    ModeConfig,
    NotAvailable,
    Ok,
    Outcome,
    PowerOff,
    Preflight,
    Reboot,
    RecoveryShell,
    RefreshTotp,
    Report,
    ResetTpm,
    SaveConfig,
    SaveDefault,
    SealTotp,
    SetTime,
    ShowSignedLists,
    SignBoot,
    StartFacts,
    Step,
    SystemInfo,
    TotpCode,
    UnlockBackupKey,
    UsbBoot,
    UsbEntries,
    WipeTotp,
    config_changes,
    mode_from_config,
    parse_time,
)
from heads.core.secret import Secret

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
CODE = TotpCode("123456", NOW)
BAD_REPORT = Report(("(changed) ./vmlinuz",), boot_ok=False, mismatches=("./vmlinuz",))
GOOD_REPORT = Report(("/boot verified",), boot_ok=True)


class Walk:
    """Drives a :class:`Gui`, checking each step and recording the dialogs reached."""

    def __init__(self, config: ModeConfig | None = None, preflight: Preflight | None = None):
        self.gui = Gui(StartFacts(config or ModeConfig(), preflight or Preflight(), NOW))
        self.step: Step = self.gui.start()
        self.seen: set[DialogId] = set()
        self.effects: list[object] = []

    def _no_disks(self) -> None:
        # Scenarios that are not about the disk key: the scan finds no LUKS device.
        while isinstance(self.step, FindDisks):
            self.step = self.gui.result(LuksDevices(()))

    def dialog(self, id_: DialogId, answer: str | Secret) -> Walk:
        self._no_disks()
        assert isinstance(self.step, Dialog), self.step
        assert self.step.id is id_, (self.step.id, id_)
        self.seen.add(id_)
        self.step = self.gui.answer(answer)
        return self

    def now(self) -> Step:
        """The current step (a call, so that type checkers do not narrow it)."""
        return self.step

    def see(self, id_: DialogId) -> Dialog:
        self._no_disks()
        assert isinstance(self.step, Dialog), self.step
        assert self.step.id is id_, (self.step.id, id_)
        return self.step

    def effect(self, kind: type, outcome: Outcome | None = None) -> Walk:
        if kind is not FindDisks:
            self._no_disks()
        assert isinstance(self.step, kind), (self.step, kind)
        self.effects.append(self.step)
        if outcome is not None:
            self.step = self.gui.result(outcome)
        return self

    def ends(self, kind: type) -> set[DialogId]:
        self._no_disks()
        assert isinstance(self.step, kind), (self.step, kind)
        self.effects.append(self.step)
        return self.seen

    def main(self, answer: str) -> Walk:
        return self.dialog(DialogId.MAIN_MENU, answer)


def started() -> Walk:
    return Walk().effect(RefreshTotp, CODE)


def scenario_default_boot() -> set[DialogId]:
    walk = started()
    main = walk.see(DialogId.MAIN_MENU)
    assert main.title == "qemu | Heads Boot Menu"
    assert "TOTP: 123456" in main.text
    assert "2026-11-30 04:00:00 UTC" in main.text
    assert main.keys == ("d", "r", "o", "s", "p")
    assert main.tone is Tone.NORMAL
    return (
        walk.main("r").effect(RefreshTotp, CODE).main("d").effect(BootDefault, Ok()).ends(PowerOff)
    )


def scenario_auto_boot() -> set[DialogId]:
    walk = Walk(ModeConfig(auto_boot_timeout=5)).effect(RefreshTotp, CODE)
    auto = walk.see(DialogId.AUTO_BOOT)
    assert auto.timeout_s == 5
    assert auto.default == "b"
    seen = walk.dialog(DialogId.AUTO_BOOT, "b").ends(BootDefault)
    walk = Walk(ModeConfig(auto_boot_timeout=5)).effect(RefreshTotp, CODE)
    walk.dialog(DialogId.AUTO_BOOT, "m").main("s").effect(SystemInfo, Ok(("CPU: x",)))
    return seen | walk.dialog(DialogId.SYSTEM_INFO, "ok").main("p").ends(PowerOff)


def scenario_preflight_failure_then_tpm_reset() -> set[DialogId]:
    walk = Walk(preflight=Preflight(ok=False, problem="TPM integrity counter cannot be read"))
    first = walk.see(DialogId.PREFLIGHT_FAILED)
    assert first.title == "ERROR: TPM State Inconsistent"
    assert first.tone is Tone.DANGER
    assert first.keys == ("i", "o", "p", "c")
    walk.dialog(DialogId.PREFLIGHT_FAILED, "i").effect(IntegrityReport, BAD_REPORT)
    walk.dialog(DialogId.INTEGRITY_REPORT, "ok")
    walk.dialog(DialogId.INVESTIGATION, "d").dialog(DialogId.MISMATCH_LIST, "ok")
    walk.dialog(DialogId.INVESTIGATION, "s").effect(ShowSignedLists, Ok(("kexec_hashes.txt",)))
    walk.dialog(DialogId.SIGNED_LISTS, "ok").dialog(DialogId.INVESTIGATION, "c")
    walk.dialog(DialogId.PREFLIGHT_FAILED, "c")
    assert "UNAVAILABLE" in walk.see(DialogId.MAIN_MENU).text
    # Nothing is unsealed after a failed preflight: refresh shows the menu again.
    walk.main("r").main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "g")
    walk.dialog(DialogId.TPM_RESET_REQUIRED, "ok").dialog(DialogId.TPM_OPTIONS, "r")
    walk.dialog(DialogId.TPM_RESET_CONFIRM, "y")
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE, Secret(b"owner one"))
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE_AGAIN, Secret(b"owner two"))
    walk.dialog(DialogId.PASSPHRASE_MISMATCH, "y")
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE, Secret(b"owner one"))
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE_AGAIN, Secret(b"owner one"))
    reset = walk.now()
    assert isinstance(reset, ResetTpm)
    assert reset.owner == Secret(b"owner one")
    assert "owner one" not in repr(reset)
    walk.effect(ResetTpm, Ok()).effect(SignBoot, Ok(("counter 1",)))
    walk.effect(SealTotp, Ok(("otpauth URI shown",)))
    seen = walk.dialog(DialogId.TPM_RESET_DONE, "ok").ends(Reboot)
    kinds = [type(e) for e in walk.effects]
    assert kinds.index(SealTotp) > kinds.index(SignBoot) > kinds.index(ResetTpm)
    assert kinds.count(RefreshTotp) == 0
    return seen


def scenario_keyring_empty() -> set[DialogId]:
    walk = Walk(preflight=Preflight(keyring_empty=True))
    walk.dialog(DialogId.KEYRING_EMPTY, "g").dialog(DialogId.GPG_OPTIONS, "l")
    walk.effect(ListKeys, Ok(("pub rsa3072 ABCD",))).dialog(DialogId.GPG_KEYS, "ok")
    walk.dialog(DialogId.GPG_OPTIONS, "r").effect(AddKey, NotAvailable("adding a key"))
    not_available = walk.see(DialogId.NOT_AVAILABLE)
    assert "adding a key is not available in this build" in not_available.text
    return walk.dialog(DialogId.NOT_AVAILABLE, "ok").ends(RefreshTotp)


OWNER = Secret(b"Owner-Secret-7")
BACKUP = Secret(b"Backup-Secret-9")


def _to_factory_reset_effect(walk: Walk, user_id: str = "") -> FactoryReset:
    """From the confirmation to the :class:`FactoryReset` effect, with one retry each."""
    walk.dialog(DialogId.FACTORY_RESET_CONFIRM, "y")
    walk.dialog(DialogId.FACTORY_RESET_OWNER_PASSPHRASE, Secret(b"short"))
    walk.dialog(DialogId.FACTORY_RESET_RETRY, "y")
    walk.dialog(DialogId.FACTORY_RESET_OWNER_PASSPHRASE, OWNER)
    walk.dialog(DialogId.FACTORY_RESET_OWNER_PASSPHRASE_AGAIN, OWNER)
    drive = walk.see(DialogId.FACTORY_RESET_BACKUP_DRIVE)
    assert "ERASED" in drive.text
    walk.dialog(DialogId.FACTORY_RESET_BACKUP_DRIVE, "y")
    walk.dialog(DialogId.FACTORY_RESET_BACKUP_PASSPHRASE, BACKUP)
    walk.dialog(DialogId.FACTORY_RESET_BACKUP_PASSPHRASE_AGAIN, Secret(b"backup typo"))
    walk.dialog(DialogId.FACTORY_RESET_RETRY, "y")
    walk.dialog(DialogId.FACTORY_RESET_BACKUP_PASSPHRASE, Secret(b"x" * 26))  # over 25
    walk.dialog(DialogId.FACTORY_RESET_RETRY, "y")
    walk.dialog(DialogId.FACTORY_RESET_BACKUP_PASSPHRASE, BACKUP)
    walk.dialog(DialogId.FACTORY_RESET_BACKUP_PASSPHRASE_AGAIN, BACKUP)
    uid = walk.see(DialogId.FACTORY_RESET_KEY_UID)
    assert uid.default == "OEM Key (OEM-generated key) <oem-20261130040000@example.com>"
    walk.dialog(DialogId.FACTORY_RESET_KEY_UID, user_id)
    effect = walk.now()
    assert isinstance(effect, FactoryReset)
    return effect


def scenario_clean_boot() -> set[DialogId]:
    walk = Walk(preflight=Preflight(clean_boot=True, keyring_empty=True))
    walk.dialog(DialogId.CLEAN_BOOT, "y")
    effect = _to_factory_reset_effect(walk)
    assert effect.owner == OWNER
    assert effect.backup == BACKUP
    assert effect.user_id.startswith("OEM Key (OEM-generated key)")
    assert "Secret-7" not in repr(effect)
    assert "Secret-9" not in repr(effect)
    assert walk.gui._fr is None  # the machine keeps no secret once the effect is out
    walk.effect(FactoryReset, Ok(("owner key ABCD",)))
    assert walk.now() == ListEntries(verified=False)
    walk.effect(ListEntries, Entries(("Debian", "Debian (recovery)")))
    walk.dialog(DialogId.FACTORY_RESET_DEFAULT, "2")
    assert walk.now() == SaveDefault(2)
    walk.effect(SaveDefault, Ok(("entry 2 is the default; /boot signed",)))
    secrets = walk.see(DialogId.FACTORY_RESET_SECRETS)
    assert "TPM owner passphrase: set" in secrets.text
    assert "owner key ABCD" in secrets.text
    assert "entry 2 is the default" in secrets.text
    assert "Secret-7" not in secrets.text
    assert "Secret-9" not in secrets.text
    walk.dialog(DialogId.FACTORY_RESET_SECRETS, "n")  # must be confirmed: shown again
    walk.dialog(DialogId.FACTORY_RESET_SECRETS, "y")
    done = walk.see(DialogId.FACTORY_RESET_DONE)
    assert done.title == "OEM Factory Reset / Re-Ownership Complete"
    seen = walk.dialog(DialogId.FACTORY_RESET_DONE, "ok").ends(Reboot)
    # Nothing is sealed by the factory reset: the next boot generates the TOTP secret.
    assert not any(isinstance(e, SealTotp | ResetTpm) for e in walk.effects)
    return seen


def scenario_factory_reset_failures() -> set[DialogId]:
    walk = Walk(preflight=Preflight(keyring_empty=True)).dialog(DialogId.KEYRING_EMPTY, "o")
    _to_factory_reset_effect(walk, user_id="Owner <me@example.org>")
    assert isinstance(walk.now(), FactoryReset)
    assert walk.now() == FactoryReset(OWNER, BACKUP, "Owner <me@example.org>")
    walk.effect(FactoryReset, Failed("no USB drive for the key backup"))
    failed = walk.see(DialogId.FACTORY_RESET_FAILED)
    assert "no USB drive" in failed.text
    assert failed.tone is Tone.DANGER
    walk.dialog(DialogId.FACTORY_RESET_FAILED, "ok").main("o").dialog(DialogId.OPTIONS, "F")
    _to_factory_reset_effect(walk)
    walk.effect(FactoryReset, Ok())
    walk.effect(ListEntries, Entries(("OS",))).dialog(DialogId.FACTORY_RESET_DEFAULT, "1")
    walk.effect(SaveDefault, Failed("/boot is read-only"))
    assert "/boot was not signed" in walk.see(DialogId.FACTORY_RESET_FAILED).text
    walk.dialog(DialogId.FACTORY_RESET_FAILED, "ok").main("o").dialog(DialogId.OPTIONS, "F")
    walk.dialog(DialogId.FACTORY_RESET_CONFIRM, "y")
    walk.dialog(DialogId.FACTORY_RESET_OWNER_PASSPHRASE, OWNER)
    walk.dialog(DialogId.FACTORY_RESET_OWNER_PASSPHRASE_AGAIN, OWNER)
    walk.dialog(DialogId.FACTORY_RESET_BACKUP_DRIVE, "n")
    assert walk.gui._fr is None  # abandoned: the typed passphrase is gone
    return walk.main("p").ends(PowerOff)


def scenario_seal_asks_the_owner_passphrase() -> set[DialogId]:
    # The boot after a factory reset: no secret yet, and the TPM has an owner passphrase.
    walk = Walk().effect(RefreshTotp, Failed("no TOTP secret", FailureKind.NO_SECRET))
    walk.dialog(DialogId.TOTP_FAILED, "g").effect(IntegrityReport, GOOD_REPORT)
    walk.dialog(DialogId.GATE_PASSED, "y")
    assert walk.now() == SealTotp()
    walk.effect(SealTotp, Failed("the TPM owner passphrase was refused", FailureKind.OWNER_AUTH))
    walk.dialog(DialogId.TPM_OWNER_AUTH, OWNER)
    seal = walk.now()
    assert isinstance(seal, SealTotp)
    assert seal.owner == OWNER
    assert "Secret-7" not in repr(seal)
    walk.effect(SealTotp, Ok(("uri",))).dialog(DialogId.TOTP_SEALED, "ok")
    walk.effect(RefreshTotp, CODE)
    # Refused again: the seal failure is shown, no third try.
    walk.main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "g")
    walk.dialog(DialogId.GATE_PASSED, "y").effect(SealTotp, Failed("x", FailureKind.OWNER_AUTH))
    walk.dialog(DialogId.TPM_OWNER_AUTH, Secret(b"wrong"))
    walk.effect(SealTotp, Failed("refused", FailureKind.OWNER_AUTH))
    return walk.dialog(DialogId.SEAL_FAILED, "ok").main("p").ends(PowerOff)


def scenario_signing_with_the_backup_key() -> set[DialogId]:
    walk = started().main("o").dialog(DialogId.OPTIONS, "u")
    walk.dialog(DialogId.UPDATE_CHECKSUMS, "y")
    walk.effect(SignBoot, Failed("No OpenPGP key to sign with", FailureKind.NO_SIGNING_KEY))
    ask = walk.see(DialogId.BACKUP_KEY_PASSPHRASE)
    assert ask.kind is Kind.PASSPHRASE
    assert "No OpenPGP key" in ask.text
    walk.dialog(DialogId.BACKUP_KEY_PASSPHRASE, BACKUP)
    unlock = walk.now()
    assert isinstance(unlock, UnlockBackupKey)
    assert unlock.passphrase == BACKUP
    assert "Secret-9" not in repr(unlock)
    walk.effect(UnlockBackupKey, Ok()).effect(SignBoot, Ok(("/boot signed",)))
    walk.dialog(DialogId.SIGNED, "ok")
    # A wrong passphrase: the signing failure is shown, nothing is retried.
    walk.main("o").dialog(DialogId.OPTIONS, "u").dialog(DialogId.UPDATE_CHECKSUMS, "y")
    walk.effect(SignBoot, Failed("no key", FailureKind.NO_SIGNING_KEY))
    walk.dialog(DialogId.BACKUP_KEY_PASSPHRASE, Secret(b"wrong one"))
    walk.effect(UnlockBackupKey, Failed("wrong passphrase for the key backup"))
    assert "wrong passphrase" in walk.see(DialogId.SIGNING_FAILED).text
    # Nothing typed: cancelled, the original reason is shown.
    walk.dialog(DialogId.SIGNING_FAILED, "ok").main("o").dialog(DialogId.OPTIONS, "u")
    walk.dialog(DialogId.UPDATE_CHECKSUMS, "y")
    walk.effect(SignBoot, Failed("no key", FailureKind.NO_SIGNING_KEY))
    walk.dialog(DialogId.BACKUP_KEY_PASSPHRASE, Secret(b""))
    failed = walk.see(DialogId.SIGNING_FAILED)
    assert failed.title == "ERROR: GPG signing key unavailable"
    assert not any(isinstance(e, UnlockBackupKey) for e in walk.effects[-1:])
    return walk.dialog(DialogId.SIGNING_FAILED, "ok").main("p").ends(PowerOff)


def scenario_totp_failed_generate_behind_gate() -> set[DialogId]:
    walk = Walk().effect(RefreshTotp, Failed("no TOTP secret", FailureKind.NO_SECRET))
    failed = walk.see(DialogId.TOTP_FAILED)
    assert failed.title == "ERROR: TOTP Generation Failed!"
    walk.dialog(DialogId.TOTP_FAILED, "g").effect(IntegrityReport, BAD_REPORT)
    walk.dialog(DialogId.GATE_REFUSED, "ok").dialog(DialogId.INVESTIGATION, "u")
    walk.dialog(DialogId.UPDATE_CHECKSUMS, "y").effect(SignBoot, Ok(("signed",)))
    walk.dialog(DialogId.SIGNED, "ok")
    assert "TOTP: ERROR" in walk.see(DialogId.MAIN_MENU).text
    walk.main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "g")
    walk.effect(IntegrityReport, GOOD_REPORT).dialog(DialogId.GATE_PASSED, "y")
    walk.effect(SealTotp, Ok(("uri",))).dialog(DialogId.TOTP_SEALED, "ok")
    walk.effect(RefreshTotp, CODE)
    assert walk.see(DialogId.MAIN_MENU).tone is Tone.NORMAL
    return walk.main("p").ends(PowerOff)


def scenario_totp_failed_other_choices() -> set[DialogId]:
    seen: set[DialogId] = set()
    for key, then in (("p", DialogId.TPM_RESET_CONFIRM), ("i", DialogId.MAIN_MENU)):
        walk = Walk().effect(RefreshTotp, Failed("PCR 7 changed"))
        walk.dialog(DialogId.TOTP_FAILED, key)
        walk.see(then)
        seen |= walk.seen
    walk = Walk().effect(RefreshTotp, Failed("PCR 7 changed"))
    return seen | walk.dialog(DialogId.TOTP_FAILED, "x").ends(RecoveryShell)


def scenario_boot_hash_mismatch() -> set[DialogId]:
    walk = (
        started()
        .main("d")
        .effect(
            BootDefault, Failed("/boot does not verify", FailureKind.NOT_VERIFIED, ("./vmlinuz",))
        )
    )
    mismatch = walk.see(DialogId.BOOT_HASH_MISMATCH)
    assert mismatch.title == "ERROR: Boot Hash Mismatch"
    assert "./vmlinuz" in mismatch.text
    walk.dialog(DialogId.BOOT_HASH_MISMATCH, "i").effect(IntegrityReport, BAD_REPORT)
    walk.dialog(DialogId.INTEGRITY_REPORT, "ok").dialog(DialogId.INVESTIGATION, "c")
    walk.main("d").effect(BootDefault, Failed("x", FailureKind.NOT_VERIFIED))
    walk.dialog(DialogId.BOOT_HASH_MISMATCH, "u").dialog(DialogId.UPDATE_CHECKSUMS, "n")
    walk.main("d").effect(BootDefault, Failed("x", FailureKind.NOT_VERIFIED))
    walk.dialog(DialogId.BOOT_HASH_MISMATCH, "m")
    # The menu stays red once /boot failed to verify.
    assert walk.see(DialogId.MAIN_MENU).tone is Tone.DANGER
    return walk.main("p").ends(PowerOff)


def scenario_default_entry_problems() -> set[DialogId]:
    walk = (
        started()
        .main("d")
        .effect(BootDefault, Failed("entry 1 changed", FailureKind.ENTRY_CHANGED))
    )
    assert walk.see(DialogId.BOOT_ENTRY_CHANGED).title == "ERROR: Boot Entry Has Changed"
    walk.dialog(DialogId.BOOT_ENTRY_CHANGED, "s").effect(ListEntries, Entries(("new", "old")))
    walk.dialog(DialogId.BOOT_SELECT, "2").dialog(DialogId.BOOT_CONFIRM, "d")
    assert walk.now() == SaveDefault(2)
    walk.effect(SaveDefault, Ok(("counter 2",))).dialog(DialogId.SIGNED, "ok")
    walk.main("d").effect(BootDefault, Failed("differs", FailureKind.DEFAULT_HASH))
    walk.dialog(DialogId.DEFAULT_HASH_MISMATCH, "m")
    walk.main("d").effect(BootDefault, Failed("none", FailureKind.NO_DEFAULT))
    walk.dialog(DialogId.NO_DEFAULT, "s").effect(ListEntries, Entries(("only",)))
    walk.dialog(DialogId.BOOT_SELECT, "1").dialog(DialogId.BOOT_CONFIRM, "b")
    walk.dialog(DialogId.BOOT_SELECT, "1").dialog(DialogId.BOOT_CONFIRM, "d")
    walk.effect(SaveDefault, Failed("no secret key", FailureKind.NO_SIGNING_KEY))
    walk.dialog(DialogId.BACKUP_KEY_PASSPHRASE, Secret(b""))
    assert walk.see(DialogId.SIGNING_FAILED).title == "ERROR: GPG signing key unavailable"
    walk.dialog(DialogId.SIGNING_FAILED, "ok")
    walk.main("d").effect(BootDefault, Failed("kexec failed"))
    walk.dialog(DialogId.BOOT_FAILED, "ok").main("o").dialog(DialogId.OPTIONS, "b")
    walk.dialog(DialogId.BOOT_OPTIONS, "m").effect(ListEntries, Entries(("only",)))
    walk.dialog(DialogId.BOOT_SELECT, "1").dialog(DialogId.BOOT_CONFIRM, "y")
    assert walk.now() == BootEntry(1)
    return walk.seen


def scenario_forced_and_usb_boot() -> set[DialogId]:
    walk = started().main("o").dialog(DialogId.OPTIONS, "b")
    walk.dialog(DialogId.BOOT_OPTIONS, "u").effect(UsbBoot, NotAvailable("USB boot"))
    walk.dialog(DialogId.NOT_AVAILABLE, "ok").dialog(DialogId.BOOT_OPTIONS, "i")
    forced = walk.see(DialogId.FORCE_BOOT)
    assert forced.title == "Unsafe Forced Boot Selected!"
    assert forced.default == "n"
    walk.dialog(DialogId.FORCE_BOOT, "y")
    assert walk.now() == ListEntries(verified=False)
    walk.effect(ListEntries, Entries(("OS",)))
    assert walk.see(DialogId.BOOT_SELECT).tone is Tone.DANGER
    walk.dialog(DialogId.BOOT_SELECT, "1")
    assert walk.now() == BootEntry(1, force=True)
    return walk.seen


def scenario_usb_boot() -> set[DialogId]:
    seen: set[DialogId] = set()
    # Nothing bootable: a message, back to the boot options.
    walk = started().main("o").dialog(DialogId.OPTIONS, "b").dialog(DialogId.BOOT_OPTIONS, "u")
    walk.effect(UsbBoot, Failed("No USB drive was found."))
    assert "No USB drive" in walk.see(DialogId.USB_NOTHING).text
    walk.dialog(DialogId.USB_NOTHING, "ok").see(DialogId.BOOT_OPTIONS)
    seen |= walk.seen
    # A signed entry boots without a question; an unsigned one asks first (default: no).
    entries = UsbEntries(("Signed live", "Unsigned live"), (True, False))
    walk = started().main("o").dialog(DialogId.OPTIONS, "b").dialog(DialogId.BOOT_OPTIONS, "u")
    assert walk.now() == UsbBoot()
    walk.effect(UsbBoot, entries)
    menu_ = walk.see(DialogId.USB_SELECT)
    assert [c.label for c in menu_.choices][:2] == ["Signed live", "Unsigned live (unsigned)"]
    walk.dialog(DialogId.USB_SELECT, "1")
    assert walk.now() == UsbBoot(1, "Signed live")
    walk.effect(UsbBoot, Failed("kexec failed")).dialog(DialogId.BOOT_FAILED, "ok")
    walk.main("o").dialog(DialogId.OPTIONS, "b").dialog(DialogId.BOOT_OPTIONS, "u")
    walk.effect(UsbBoot, entries).dialog(DialogId.USB_SELECT, "2")
    question = walk.see(DialogId.USB_UNSIGNED)
    assert question.default == "n"
    assert question.tone is Tone.DANGER
    walk.dialog(DialogId.USB_UNSIGNED, "n").dialog(DialogId.BOOT_OPTIONS, "u")
    walk.effect(UsbBoot, entries).dialog(DialogId.USB_SELECT, "2").dialog(
        DialogId.USB_UNSIGNED, "y"
    )
    assert walk.now() == UsbBoot(2, "Unsigned live", unsigned=True)
    seen |= walk.seen
    # Restricted mode boots a signed entry.
    walk = Walk(ModeConfig(restricted=True)).effect(RefreshTotp, CODE).main("o")
    walk.dialog(DialogId.OPTIONS, "b").dialog(DialogId.BOOT_OPTIONS, "u")
    walk.effect(UsbBoot, entries).dialog(DialogId.USB_SELECT, "1")
    assert walk.now() == UsbBoot(1, "Signed live")
    # "b" goes back.
    walk = started().main("o").dialog(DialogId.OPTIONS, "b").dialog(DialogId.BOOT_OPTIONS, "u")
    walk.effect(UsbBoot, entries).dialog(DialogId.USB_SELECT, "b").see(DialogId.BOOT_OPTIONS)
    return seen | walk.seen


def test_usb_entries_need_a_flag_per_title() -> None:
    with pytest.raises(ValueError, match="one signed flag per title"):
        UsbEntries(("a", "b"), (True,))


def scenario_restricted_mode() -> set[DialogId]:
    restricted = ModeConfig(restricted=True)
    seen: set[DialogId] = set()
    for path in (
        ("x",),  # recovery shell
        ("f",),  # flash
        ("b", "i"),  # forced boot
        ("b", "u"),  # unsigned USB boot
        ("c", "P"),  # Basic mode
    ):
        walk = Walk(restricted).effect(RefreshTotp, CODE).main("o")
        walk.dialog(DialogId.OPTIONS, path[0])
        if len(path) > 1:
            menu_id = DialogId.BOOT_OPTIONS if path[0] == "b" else DialogId.CONFIG_MENU
            walk.dialog(menu_id, path[1])
        if path == ("b", "u"):
            # The drive is listed; only choosing its unsigned entry is refused.
            walk.effect(UsbBoot, UsbEntries(("Live",), (False,))).dialog(DialogId.USB_SELECT, "1")
        refused = walk.see(DialogId.RESTRICTED_REFUSED)
        assert refused.title == "ERROR: Restricted Boot Enabled"
        walk.dialog(DialogId.RESTRICTED_REFUSED, "ok")
        assert not any(isinstance(e, RecoveryShell | BootEntry | Flash) for e in walk.effects)
        if path == ("x",):
            walk.ends(Reboot)  # Heads reboots instead of starting the shell
        seen |= walk.seen
    # A failure that would drop to the shell reboots instead.
    walk = Walk(restricted).effect(RefreshTotp, Failed("PCR 7 changed"))
    walk.dialog(DialogId.TOTP_FAILED, "x").dialog(DialogId.RESTRICTED_REFUSED, "ok")
    walk.ends(Reboot)
    # Turning it off wipes the TOTP secret first, then saves.
    walk = Walk(restricted).effect(RefreshTotp, CODE).main("o").dialog(DialogId.OPTIONS, "c")
    walk.dialog(DialogId.CONFIG_MENU, "L").dialog(DialogId.RESTRICTED_OFF_CONFIRM, "y")
    walk.effect(WipeTotp, Ok())
    assert walk.now() == SaveConfig((("CONFIG_RESTRICTED_BOOT", "n"),))
    walk.effect(SaveConfig, Ok()).dialog(DialogId.CONFIG_SAVED, "ok")
    seen |= walk.ends(Reboot)
    # A wipe that fails saves nothing.
    walk = Walk(restricted).effect(RefreshTotp, CODE).main("o").dialog(DialogId.OPTIONS, "c")
    walk.dialog(DialogId.CONFIG_MENU, "L").dialog(DialogId.RESTRICTED_OFF_CONFIRM, "y")
    walk.effect(WipeTotp, Failed("TPM error"))
    walk.dialog(DialogId.SEAL_FAILED, "ok").see(DialogId.CONFIG_MENU)
    assert not any(isinstance(e, SaveConfig) for e in walk.effects)
    return seen | walk.seen


def scenario_configuration() -> set[DialogId]:
    walk = started().main("o").dialog(DialogId.OPTIONS, "c")
    walk.dialog(DialogId.CONFIG_MENU, "M").dialog(DialogId.CONFIG_AUTO_BOOT, "10")
    warning = walk.see(DialogId.CONFIG_PCR7_WARNING)
    assert "PCR 7" in warning.text
    assert 'CONFIG_AUTO_BOOT_TIMEOUT="10"' in warning.text
    walk.dialog(DialogId.CONFIG_PCR7_WARNING, "y")
    walk.effect(SaveConfig, NotAvailable("saving config.user"))
    walk.dialog(DialogId.NOT_AVAILABLE, "ok").dialog(DialogId.CONFIG_MENU, "Z")
    walk.dialog(DialogId.CONFIG_OUTPUT, "2").dialog(DialogId.CONFIG_PCR7_WARNING, "n")
    walk.dialog(DialogId.CONFIG_MENU, "L").dialog(DialogId.CONFIG_PCR7_WARNING, "y")
    assert walk.now() == SaveConfig((("CONFIG_RESTRICTED_BOOT", "y"),))
    walk.effect(SaveConfig, NotAvailable("saving config.user"))
    walk.dialog(DialogId.NOT_AVAILABLE, "ok").dialog(DialogId.CONFIG_MENU, "P")
    walk.dialog(DialogId.CONFIG_PCR7_WARNING, "y")
    assert walk.now() == SaveConfig((("CONFIG_BASIC", "y"),))
    return walk.seen


def scenario_time() -> set[DialogId]:
    walk = started().main("o").dialog(DialogId.OPTIONS, "h")
    walk.dialog(DialogId.CHANGE_TIME, "yesterday").dialog(DialogId.TIME_INVALID, "ok")
    walk.dialog(DialogId.CHANGE_TIME, "2030-01-02 03:04:05")
    assert walk.now() == SetTime(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    walk.effect(SetTime, Ok()).dialog(DialogId.TIME_SET, "ok")
    walk.dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "t")
    assert "2030-01-02 03:04:05 UTC" in walk.see(DialogId.TIME_TROUBLESHOOT).text
    walk.dialog(DialogId.TIME_TROUBLESHOOT, "n").dialog(DialogId.TPM_OPTIONS, "m")
    return walk.main("p").ends(PowerOff)


def scenario_recovery_and_failures() -> set[DialogId]:
    walk = started().main("o").dialog(DialogId.OPTIONS, "x")
    walk.dialog(DialogId.RECOVERY_CONFIRM, "n").dialog(DialogId.OPTIONS, "x")
    walk.dialog(DialogId.RECOVERY_CONFIRM, "y")
    seen = walk.ends(RecoveryShell)
    walk = started().main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "g")
    walk.dialog(DialogId.GATE_PASSED, "y").effect(SealTotp, Failed("TPM error"))
    walk.dialog(DialogId.SEAL_FAILED, "ok").dialog(DialogId.MAIN_MENU, "o")
    walk.dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "r")
    walk.dialog(DialogId.TPM_RESET_CONFIRM, "y")
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE, Secret(b"x" * 33))
    walk.dialog(DialogId.PASSPHRASE_MISMATCH, "n").main("o").dialog(DialogId.OPTIONS, "t")
    walk.dialog(DialogId.TPM_OPTIONS, "r").dialog(DialogId.TPM_RESET_CONFIRM, "y")
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE, Secret(b"pw"))
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE_AGAIN, Secret(b"pw"))
    walk.effect(ResetTpm, Failed("TPM refused the reset"))
    walk.dialog(DialogId.TPM_RESET_FAILED, "ok").main("o").dialog(DialogId.OPTIONS, "f")
    walk.dialog(DialogId.FLASH_MENU, "f").dialog(DialogId.FLASH_FILE, "/media/update.zip")
    assert walk.now() == Flash("/media/update.zip", keep_settings=True)
    walk.effect(Flash, NotAvailable("flashing"))
    walk.dialog(DialogId.NOT_AVAILABLE, "ok").dialog(DialogId.OPTIONS, "g")
    walk.dialog(DialogId.GPG_OPTIONS, "x").dialog(DialogId.OPTIONS, "F")
    walk.dialog(DialogId.FACTORY_RESET_CONFIRM, "n")
    return seen | walk.main("p").ends(PowerOff)


def scenario_basic_mode() -> set[DialogId]:
    walk = Walk(ModeConfig(basic=True))
    main = walk.see(DialogId.MAIN_MENU)
    assert main.keys == ("d", "o", "s", "p")
    assert "TOTP" not in main.text
    seen = walk.main("d").ends(BootBasic)  # no TOTP, no preflight menu
    walk = Walk(ModeConfig(basic=True)).main("o").dialog(DialogId.OPTIONS, "b")
    walk.dialog(DialogId.BOOT_OPTIONS, "m")
    assert walk.now() == ListEntries(verified=False)
    walk.effect(ListEntries, Entries(("OS",))).dialog(DialogId.BOOT_SELECT, "1")
    assert walk.now() == BootEntry(1, basic=True)
    # Basic mode boots even with a failed preflight: there is no attestation to protect.
    walk = Walk(ModeConfig(basic=True, auto_boot_timeout=1), Preflight(ok=False))
    walk.dialog(DialogId.AUTO_BOOT, "b")
    return seen | walk.seen | walk.ends(BootBasic)


SCENARIOS: tuple[Callable[[], set[DialogId]], ...] = (
    scenario_usb_boot,
    scenario_default_boot,
    scenario_auto_boot,
    scenario_preflight_failure_then_tpm_reset,
    scenario_keyring_empty,
    scenario_clean_boot,
    scenario_factory_reset_failures,
    scenario_signing_with_the_backup_key,
    scenario_seal_asks_the_owner_passphrase,
    scenario_totp_failed_generate_behind_gate,
    scenario_totp_failed_other_choices,
    scenario_boot_hash_mismatch,
    scenario_default_entry_problems,
    scenario_forced_and_usb_boot,
    scenario_restricted_mode,
    scenario_configuration,
    scenario_time,
    scenario_recovery_and_failures,
    scenario_basic_mode,
)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenario(scenario: Callable[[], set[DialogId]]) -> None:
    assert scenario()


def test_no_seal_without_an_owner_choice() -> None:
    # A first boot (no secret) and a failed unseal both stop at a menu: nothing is sealed
    # unless the owner chooses it.
    for outcome in (Failed("no secret", FailureKind.NO_SECRET), Failed("PCR 7 changed")):
        walk = Walk().effect(RefreshTotp, outcome)
        walk.see(DialogId.TOTP_FAILED)
        assert not any(isinstance(e, SealTotp) for e in walk.effects)


def test_preflight_failure_unseals_nothing() -> None:
    walk = Walk(preflight=Preflight(ok=False, problem="counter gone"))
    assert "counter gone" in walk.see(DialogId.PREFLIGHT_FAILED).text
    assert walk.effects == []


def test_wrong_answers_are_refused() -> None:
    walk = started()
    with pytest.raises(ValueError, match="not one of"):
        walk.gui.answer("z")
    with pytest.raises(ValueError, match="not one of"):
        walk.gui.answer(Secret(b"d"))
    with pytest.raises(ValueError, match="no effect is waiting"):
        walk.gui.result(Ok())
    walk.main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "r")
    walk.dialog(DialogId.TPM_RESET_CONFIRM, "y")
    with pytest.raises(ValueError, match="takes a passphrase"):
        walk.gui.answer("typed in clear")


def test_recovery_wipes_the_factory_reset_passphrases() -> None:
    walk = Walk(preflight=Preflight(clean_boot=True, keyring_empty=True))
    walk.dialog(DialogId.CLEAN_BOOT, "y").dialog(DialogId.FACTORY_RESET_CONFIRM, "y")
    walk.dialog(DialogId.FACTORY_RESET_OWNER_PASSPHRASE, OWNER)
    walk.dialog(DialogId.FACTORY_RESET_OWNER_PASSPHRASE_AGAIN, OWNER)
    assert walk.gui._fr is not None
    assert walk.gui._fr.owner == OWNER
    walk.gui.wipe_secrets()
    assert walk.gui._fr is None


def test_recovery_wipes_the_typed_passphrase() -> None:
    walk = started().main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "r")
    walk.dialog(DialogId.TPM_RESET_CONFIRM, "y")
    walk.dialog(DialogId.TPM_OWNER_PASSPHRASE, Secret(b"half typed"))
    assert walk.gui._owner is not None
    walk.gui.wipe_secrets()
    assert walk.gui._owner is None


def test_hostile_board_name_is_escaped_in_the_title() -> None:
    walk = Walk(ModeConfig(board="evil\x1b[2J\nheads: kexec")).effect(RefreshTotp, CODE)
    title = walk.see(DialogId.MAIN_MENU).title
    assert "\x1b" not in title
    assert "\n" not in title
    assert "evil\\x1b[2J\\nheads: kexec" in title


def test_dialog_kinds_have_their_keys() -> None:
    walk = started().main("o").dialog(DialogId.OPTIONS, "u")
    question = walk.see(DialogId.UPDATE_CHECKSUMS)
    assert question.kind is Kind.YESNO
    assert question.keys == ("y", "n")
    assert question.default == "n"


def test_config_changes_use_heads_names() -> None:
    before = ModeConfig()
    assert config_changes(before, replace(before, output_level=0)) == (
        ("CONFIG_QUIET_MODE", "y"),
        ("CONFIG_DEBUG_OUTPUT", "n"),
    )
    assert config_changes(before, replace(before, auto_boot_timeout=None)) == ()
    assert config_changes(replace(before, auto_boot_timeout=5), before) == (
        ("CONFIG_AUTO_BOOT_TIMEOUT", ""),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-02 03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04Z", datetime(2030, 1, 2, 3, 4, tzinfo=UTC)),
        ("2023-12-31 23:59:59", None),
        ("2201-01-01 00:00:00", None),
        ("2030-02-30 00:00:00", None),
        ("2030-01-02", None),
        ("", None),
    ],
)
def test_parse_time(text: str, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_mode_from_config_reads_heads_keys_later_wins() -> None:
    assert mode_from_config({}) == ModeConfig()
    mode = mode_from_config(
        {
            "CONFIG_BOARD_NAME": "x230",
            "CONFIG_RESTRICTED_BOOT": "y",
            "CONFIG_BASIC": "n",
            "CONFIG_AUTO_BOOT_TIMEOUT": "5",
            "CONFIG_DEBUG_OUTPUT": "y",
            "CONFIG_HOTPKEY": "y",
        }
    )
    assert mode == ModeConfig(
        board="x230",
        restricted=True,
        basic=False,
        auto_boot_timeout=5,
        output_level=2,
        hotp=True,
    )
    assert mode_from_config({"CONFIG_QUIET_MODE": "y"}).output_level == 0
    # Values Heads would not understand keep the base's setting; an empty timeout is "off".
    base = ModeConfig(restricted=True, auto_boot_timeout=9)
    odd = mode_from_config({"CONFIG_RESTRICTED_BOOT": "yes", "CONFIG_AUTO_BOOT_TIMEOUT": ""}, base)
    assert odd.restricted
    assert odd.auto_boot_timeout is None
    # The inverse of config_changes.
    after = ModeConfig(basic=True, auto_boot_timeout=3, output_level=0)
    assert mode_from_config(dict(config_changes(ModeConfig(), after))) == after
