"""The disk unlock key in the menus (docs/disk-key.md §In the menus), walked with plain
values: set-up after "make default", the reseal after a changed header, after a new TOTP
secret and from the TPM menu, the DRK change and the re-encryption."""

from __future__ import annotations

from test_gui import CODE, Walk, started

from heads.core.dialogs import NO, Dialog, DialogId, Kind
from heads.core.gui import (
    ChangeRecoveryKey,
    CheckRecoveryKey,
    Entries,
    Failed,
    FailureKind,
    FindDisks,
    IntegrityReport,
    ListEntries,
    LuksDevices,
    Ok,
    PowerOff,
    Reencrypt,
    RefreshTotp,
    Report,
    SaveDefault,
    SealDiskKey,
    SealTotp,
    SignBoot,
)
from heads.core.secret import Secret

DRK = Secret(b"owner recovery")
DUK = Secret(b"correct horse battery")
TWO = LuksDevices(("/dev/sda2", "/dev/sdb1"))
SET_UP = LuksDevices(("/dev/sda2",), ("/dev/sda2",))


def _make_default(walk: Walk) -> Walk:
    walk.main("o").dialog(DialogId.OPTIONS, "b").dialog(DialogId.BOOT_OPTIONS, "m")
    walk.effect(ListEntries, Entries(("Debian",))).dialog(DialogId.BOOT_SELECT, "1")
    walk.dialog(DialogId.BOOT_CONFIRM, "d").effect(SaveDefault, Ok(("saved",)))
    return walk.dialog(DialogId.SIGNED, "ok")


def _passphrases(walk: Walk, first: Secret, again: Secret) -> Walk:
    return walk.dialog(DialogId.DISK_KEY_NEW, first).dialog(DialogId.DISK_KEY_NEW_AGAIN, again)


def test_make_default_sets_up_the_key_on_the_picked_device() -> None:
    walk = _make_default(started()).effect(FindDisks, TWO)
    ask = walk.see(DialogId.DISK_KEY_ADD)
    assert "Do you wish to add a disk encryption key to the TPM?" in ask.text
    assert ask.default == NO
    walk.dialog(DialogId.DISK_KEY_ADD, "y")
    assert walk.see(DialogId.DISK_KEY_DEVICES).keys == ("a", "1", "2", "c")
    walk.dialog(DialogId.DISK_KEY_DEVICES, "2")
    assert walk.see(DialogId.DISK_KEY_DRK).kind is Kind.PASSPHRASE
    walk.dialog(DialogId.DISK_KEY_DRK, DRK)
    assert walk.now() == CheckRecoveryKey(("/dev/sdb1",), DRK)
    walk.effect(CheckRecoveryKey, Ok())
    # No wipe question when setting up: that is for a reseal only.
    _passphrases(walk, DUK, DUK)
    seal = walk.now()
    assert seal == SealDiskKey(("/dev/sdb1",), DRK, DUK, wipe_others=False)
    assert "horse" not in repr(seal)
    assert "owner recovery" not in repr(seal)
    walk.effect(SealDiskKey, Ok(("sealed",))).dialog(DialogId.DISK_KEY_SEALED, "ok")
    # /boot is signed again: the key files are new.
    walk.effect(SignBoot, Ok(("signed",))).dialog(DialogId.SIGNED, "ok")
    walk.main("p").ends(PowerOff)


def test_no_question_without_luks_or_with_a_key_already() -> None:
    for found in (LuksDevices(()), SET_UP):
        walk = _make_default(started()).effect(FindDisks, found)
        walk.see(DialogId.MAIN_MENU)
    # "No" (the default) changes nothing.
    walk = _make_default(started()).effect(FindDisks, TWO).dialog(DialogId.DISK_KEY_ADD, "n")
    walk.see(DialogId.MAIN_MENU)
    assert not any(isinstance(e, SealDiskKey | CheckRecoveryKey) for e in walk.effects)


def test_short_or_different_passphrases_are_asked_again() -> None:
    walk = _make_default(started()).effect(FindDisks, TWO).dialog(DialogId.DISK_KEY_ADD, "y")
    walk.dialog(DialogId.DISK_KEY_DEVICES, "a").dialog(DialogId.DISK_KEY_DRK, DRK)
    walk.effect(CheckRecoveryKey, Ok())
    _passphrases(walk, Secret(b"short"), Secret(b"short"))
    assert "at least 12 characters" in walk.see(DialogId.DISK_KEY_PASSPHRASE_RETRY).text
    walk.dialog(DialogId.DISK_KEY_PASSPHRASE_RETRY, "y")
    _passphrases(walk, DUK, Secret(b"correct horse batterY"))
    assert "differ" in walk.see(DialogId.DISK_KEY_PASSPHRASE_RETRY).text
    walk.dialog(DialogId.DISK_KEY_PASSPHRASE_RETRY, "n").dialog(DialogId.DISK_KEY_FAILED, "ok")
    walk.see(DialogId.MAIN_MENU)
    assert not any(isinstance(e, SealDiskKey) for e in walk.effects)


def test_wrong_drk_changes_nothing_and_blank_cancels() -> None:
    walk = _make_default(started()).effect(FindDisks, TWO).dialog(DialogId.DISK_KEY_ADD, "y")
    walk.dialog(DialogId.DISK_KEY_DEVICES, "a").dialog(DialogId.DISK_KEY_DRK, Secret(b"no"))
    walk.effect(CheckRecoveryKey, Failed("the recovery passphrase does not open /dev/sda2"))
    assert "does not open /dev/sda2" in walk.see(DialogId.DISK_KEY_FAILED).text
    walk.dialog(DialogId.DISK_KEY_FAILED, "ok")
    walk.main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "k")
    walk.effect(FindDisks, SET_UP).dialog(DialogId.DISK_KEY_DRK, Secret(b""))
    walk.see(DialogId.TPM_OPTIONS)


def test_changed_header_offers_the_reseal_with_the_wipe_default_no() -> None:
    walk = started().main("d")
    walk.effect(type(walk.now()), Failed("keys changed", FailureKind.DISK_KEY_CHANGED))
    walk.effect(FindDisks, SET_UP)
    assert "keys changed" in walk.see(DialogId.DISK_KEY_RESEAL).text
    walk.dialog(DialogId.DISK_KEY_RESEAL, "y").dialog(DialogId.DISK_KEY_DRK, DRK)
    walk.effect(CheckRecoveryKey, Ok())
    wipe = walk.see(DialogId.DISK_KEY_WIPE_SLOTS)
    assert wipe.default == NO
    walk.dialog(DialogId.DISK_KEY_WIPE_SLOTS, "y")
    _passphrases(walk, DUK, DUK)
    assert walk.now() == SealDiskKey(("/dev/sda2",), DRK, DUK, wipe_others=True)


def test_the_tpm_owner_passphrase_is_asked_once_for_the_seal() -> None:
    walk = started().main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "k")
    walk.effect(FindDisks, SET_UP).dialog(DialogId.DISK_KEY_DRK, DRK)
    walk.effect(CheckRecoveryKey, Ok()).dialog(DialogId.DISK_KEY_WIPE_SLOTS, "n")
    _passphrases(walk, DUK, DUK)
    walk.effect(SealDiskKey, Failed("owner auth refused", FailureKind.OWNER_AUTH))
    walk.dialog(DialogId.TPM_OWNER_AUTH, Secret(b"owner"))
    seal = walk.now()
    assert isinstance(seal, SealDiskKey)
    assert seal.owner == Secret(b"owner")
    walk.effect(SealDiskKey, Failed("refused", FailureKind.OWNER_AUTH))
    walk.dialog(DialogId.DISK_KEY_FAILED, "ok")
    walk.see(DialogId.TPM_OPTIONS)


def test_a_new_totp_secret_offers_the_reseal() -> None:
    walk = Walk().effect(RefreshTotp, Failed("PCR 0 changed"))
    walk.dialog(DialogId.TOTP_FAILED, "g").effect(IntegrityReport, Report(("ok",), True))
    walk.dialog(DialogId.GATE_PASSED, "y").effect(SealTotp, Ok(("uri",)))
    walk.dialog(DialogId.TOTP_SEALED, "ok").effect(RefreshTotp, CODE)
    walk.effect(FindDisks, SET_UP)
    assert "new TOTP secret" in walk.see(DialogId.DISK_KEY_RESEAL).text
    walk.dialog(DialogId.DISK_KEY_RESEAL, "y")
    walk.see(DialogId.DISK_KEY_DRK)
    # Without a key set up, nothing is asked.
    walk = Walk().effect(RefreshTotp, Failed("PCR 0 changed"))
    walk.dialog(DialogId.TOTP_FAILED, "g").effect(IntegrityReport, Report(("ok",), True))
    walk.dialog(DialogId.GATE_PASSED, "y").effect(SealTotp, Ok(("uri",)))
    walk.dialog(DialogId.TOTP_SEALED, "ok").effect(RefreshTotp, CODE)
    walk.effect(FindDisks, LuksDevices(("/dev/sda2",)))
    walk.see(DialogId.MAIN_MENU)


def test_drk_change_and_reencrypt_then_the_reseal_question() -> None:
    walk = started().main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "c")
    walk.effect(FindDisks, SET_UP).dialog(DialogId.DISK_KEY_DRK, DRK)
    walk.effect(CheckRecoveryKey, Ok())
    new = Secret(b"new recovery")
    walk.dialog(DialogId.DISK_DRK_NEW, new).dialog(DialogId.DISK_DRK_NEW_AGAIN, new)
    assert walk.now() == ChangeRecoveryKey(("/dev/sda2",), DRK, new)
    walk.effect(ChangeRecoveryKey, Ok(("changed",))).dialog(DialogId.DISK_DRK_CHANGED, "ok")
    walk.effect(FindDisks, SET_UP).dialog(DialogId.DISK_KEY_RESEAL, "n")
    walk.dialog(DialogId.TPM_OPTIONS, "e").effect(FindDisks, TWO)
    walk.dialog(DialogId.DISK_KEY_DEVICES, "1").dialog(DialogId.DISK_KEY_DRK, new)
    walk.effect(CheckRecoveryKey, Ok())
    assert walk.see(DialogId.DISK_REENCRYPT_CONFIRM).default == NO
    walk.dialog(DialogId.DISK_REENCRYPT_CONFIRM, "y")
    assert walk.now() == Reencrypt(("/dev/sda2",), new)
    # Different new passphrases change nothing.
    walk = started().main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "c")
    walk.effect(FindDisks, SET_UP).dialog(DialogId.DISK_KEY_DRK, DRK)
    walk.effect(CheckRecoveryKey, Ok()).dialog(DialogId.DISK_DRK_NEW, new)
    walk.dialog(DialogId.DISK_DRK_NEW_AGAIN, Secret(b"other"))
    assert "differ" in walk.see(DialogId.DISK_KEY_FAILED).text
    assert not any(isinstance(e, ChangeRecoveryKey) for e in walk.effects)


def test_secrets_are_forgotten_on_recovery_entry() -> None:
    walk = started().main("o").dialog(DialogId.OPTIONS, "t").dialog(DialogId.TPM_OPTIONS, "k")
    walk.effect(FindDisks, SET_UP).dialog(DialogId.DISK_KEY_DRK, DRK)
    walk.gui.wipe_secrets()
    walk.effect(CheckRecoveryKey, Ok()).dialog(DialogId.DISK_KEY_WIPE_SLOTS, "n")
    walk.dialog(DialogId.DISK_KEY_NEW, DUK)
    # The answers were dropped: the set-up ends instead of sealing.
    assert isinstance(walk.now(), Dialog)
    assert not any(isinstance(e, SealDiskKey) for e in walk.effects)
