"""Every dialog of the runtime is reached by at least one walked path of the menus.

The dialog ids come from :class:`heads.core.dialogs.DialogId` itself, so a new dialog fails
:func:`test_every_dialog_id_is_reached` until a path that reaches it is added to
:data:`PATHS`.  A path is plain data (docs/runtime-menus.md): where the machine starts (the
configuration and the preflight), then one item per step, in order:

* ``"dialog-id=choice"`` answers the dialog on screen (the id is checked; a passphrase
  dialog's choice is typed as a secret);
* an outcome (``Failed(...)``, ``Report(...)``...) is what the effect waiting reports.

An effect the path gives no outcome for gets its usual one (:data:`USUAL_OUTCOMES`: the
TOTP unseals, /boot verifies, signing works...), so paths only spell out what differs.  A
path may stop on an effect (a boot, the recovery shell); ``ends`` says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from heads.core.dialogs import EFFECT_DIALOGS, Dialog, DialogId, Kind
from heads.core.gui import (
    TERMINAL,
    AddKey,
    BootDefault,
    BootEntry,
    ChangeRecoveryKey,
    CheckRecoveryKey,
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
    Preflight,
    Reboot,
    RecoveryShell,
    Reencrypt,
    RefreshTotp,
    Report,
    ResetTpm,
    SaveConfig,
    SaveDefault,
    SealDiskKey,
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
)
from heads.core.secret import Secret

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
CODE = TotpCode("123456", NOW)
BAD_REPORT = Report(("(changed) ./vmlinuz",), boot_ok=False, mismatches=("./vmlinuz",))

#: What an effect reports when a path does not say otherwise: everything works.
USUAL_OUTCOMES: Mapping[type, Outcome] = {
    RefreshTotp: CODE,
    IntegrityReport: Report(("/boot verified",), boot_ok=True),
    ListEntries: Entries(("Debian GNU/Linux", "Debian GNU/Linux (recovery mode)")),
    ShowSignedLists: Ok(("kexec_hashes.txt: 3 files",)),
    SignBoot: Ok(("/boot signed",)),
    SaveDefault: Ok(("default entry saved",)),
    SealTotp: Ok(("otpauth://totp/heads?secret=...",)),
    ResetTpm: Ok(("The TPM was reset.",)),
    WipeTotp: Ok(),
    SetTime: Ok(),
    SaveConfig: Ok(),
    SystemInfo: Ok(("TPM: swtpm",)),
    ListKeys: Ok(("1 public key(s)",)),
    Flash: NotAvailable("flashing the firmware"),
    FactoryReset: Ok(("owner key ABCD",)),
    UnlockBackupKey: Ok(),
    UsbBoot: UsbEntries(("Debian live", "Tails"), (True, False)),
    AddKey: NotAvailable("adding a key to the firmware image"),
    FindDisks: LuksDevices(()),
    CheckRecoveryKey: Ok(),
    SealDiskKey: Ok(("sealed at 0x81000003",)),
    ChangeRecoveryKey: Ok(("/dev/sda2: Disk Recovery Key changed",)),
    Reencrypt: Ok(("/dev/sda2: re-encrypted",)),
}


@dataclass(frozen=True, slots=True)
class MenuPath:
    """One walk through the menus (see the module docstring)."""

    name: str
    steps: tuple[str | Outcome, ...]
    config: ModeConfig = field(default_factory=ModeConfig)
    preflight: Preflight = field(default_factory=Preflight)
    ends: type | None = None  #: the effect the walk stops on (None: any step)


class PathError(AssertionError):
    """A path does not match what the menus do."""


def walk(path: MenuPath) -> set[DialogId]:
    """Walk ``path``; returns the ids of every dialog shown on the way.

    Raises:
        PathError: a step names another dialog than the one on screen, answers an effect,
            gives an outcome to a dialog, or goes on after the menus ended.
    """
    gui = Gui(StartFacts(path.config, path.preflight, NOW))
    step: Step = gui.start()
    seen: set[DialogId] = set()
    items = list(path.steps)
    while True:
        if isinstance(step, Dialog):
            seen.add(step.id)
            if not items:
                break
            item = items.pop(0)
            if not isinstance(item, str):
                raise PathError(f"{path.name}: dialog {step.id} is on screen, not an effect")
            id_, _, choice = item.partition("=")
            if id_ != step.id:
                raise PathError(f"{path.name}: dialog {step.id} is on screen, not {id_}")
            step = gui.answer(Secret(choice.encode()) if step.kind is Kind.PASSPHRASE else choice)
            continue
        if isinstance(step, TERMINAL) or not items:
            break
        item = items[0]
        if isinstance(item, str):
            usual = USUAL_OUTCOMES.get(type(step))
            if usual is None:
                raise PathError(f"{path.name}: {step!r} needs an outcome before {item}")
            outcome = usual
        else:
            outcome = item
            items.pop(0)
        step = gui.result(outcome)
    if items:
        raise PathError(f"{path.name}: the menus ended on {step!r} before {items}")
    if path.ends is not None and not isinstance(step, path.ends):
        raise PathError(f"{path.name}: ends on {step!r}, not {path.ends.__name__}")
    return seen


RESTRICTED = ModeConfig(restricted=True)
SWAPPED = Preflight(ok=False, problem="rollback counter gone")
NOT_VERIFIED = Failed("signature does not verify", FailureKind.NOT_VERIFIED, ("./vmlinuz",))

#: The walked paths.  Add one for every new dialog (or new branch worth keeping).
PATHS: tuple[MenuPath, ...] = (
    MenuPath(
        "system info, refresh, power off",
        ("main-menu=s", "system-info=ok", "main-menu=r", "main-menu=p"),
    ),
    MenuPath("auto boot", ("auto-boot=b",), ModeConfig(auto_boot_timeout=5), ends=BootDefault),
    MenuPath(
        "swapped TPM: preflight, then the TPM reset is required before sealing",
        (
            "preflight-failed=i",
            "integrity-report=ok",
            "preflight-failed=c",
            "main-menu=o",
            "options=t",
            "tpm-options=g",
            "tpm-reset-required=ok",
            "tpm-options=m",
        ),
        preflight=SWAPPED,
    ),
    MenuPath(
        "empty keyring",
        ("keyring-empty=g", "gpg-options=l", "gpg-keys=ok", "gpg-options=x", "main-menu=p"),
        preflight=Preflight(keyring_empty=True),
    ),
    MenuPath(
        "clean boot: the factory reset to its end, with one retry",
        (
            "clean-boot=y",
            "factory-reset-confirm=y",
            "factory-reset-owner-passphrase=short",
            "factory-reset-retry=y",
            "factory-reset-owner-passphrase=Owner-Secret-7",
            "factory-reset-owner-passphrase-again=Owner-Secret-7",
            "factory-reset-backup-drive=y",
            "factory-reset-backup-passphrase=Backup-Secret-9",
            "factory-reset-backup-passphrase-again=Backup-Secret-9",
            "factory-reset-key-uid=",
            Ok(("owner key ABCD",)),
            Entries(("Debian", "Debian (recovery)")),
            "factory-reset-default=2",
            "factory-reset-secrets=y",
            "factory-reset-done=ok",
        ),
        preflight=Preflight(keyring_empty=True, clean_boot=True),
        ends=Reboot,
    ),
    MenuPath(
        "empty keyring: the factory reset fails, back to the menu",
        (
            "keyring-empty=o",
            "factory-reset-confirm=y",
            "factory-reset-owner-passphrase=Owner-Secret-7",
            "factory-reset-owner-passphrase-again=Owner-Secret-7",
            "factory-reset-backup-drive=y",
            "factory-reset-backup-passphrase=Backup-Secret-9",
            "factory-reset-backup-passphrase-again=Backup-Secret-9",
            "factory-reset-key-uid=Owner <me@example.org>",
            Failed("no USB drive for the key backup"),
            "factory-reset-failed=ok",
            "main-menu=p",
        ),
        preflight=Preflight(keyring_empty=True),
    ),
    MenuPath(
        "sealing asks the TPM owner passphrase",
        (
            Failed("no TOTP secret", FailureKind.NO_SECRET),
            "totp-failed=g",
            "gate-passed=y",
            Failed("the TPM owner passphrase was refused", FailureKind.OWNER_AUTH),
            "tpm-owner-auth=Owner-Secret-7",
            "totp-sealed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "update checksums with the key from the backup drive",
        (
            "main-menu=o",
            "options=u",
            "update-checksums=y",
            Failed("No OpenPGP key to sign with", FailureKind.NO_SIGNING_KEY),
            "backup-key-passphrase=Backup-Secret-9",
            "signed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "TOTP failed: generate behind the gate",
        (
            Failed("PCR 7 changed"),
            "totp-failed=g",
            "gate-passed=y",
            "totp-sealed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "TOTP failed: the gate refuses, investigate",
        (
            Failed("PCR 4 changed"),
            "totp-failed=g",
            BAD_REPORT,
            "gate-refused=ok",
            "investigation=d",
            "mismatch-list=ok",
            "investigation=s",
            "signed-lists=ok",
            "investigation=c",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "sealing fails",
        (
            Failed("no secret", FailureKind.NO_SECRET),
            "totp-failed=g",
            "gate-passed=y",
            Failed("NV full"),
            "seal-failed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "Boot Hash Mismatch: investigate, sign, boot",
        (
            "main-menu=d",
            NOT_VERIFIED,
            "boot-hash-mismatch=i",
            BAD_REPORT,
            "integrity-report=ok",
            "investigation=u",
            "update-checksums=y",
            "signed=ok",
            "main-menu=d",
        ),
        ends=BootDefault,
    ),
    MenuPath(
        "signing fails without a key: no backup passphrase typed",
        (
            "main-menu=o",
            "options=u",
            "update-checksums=y",
            Failed("no key", FailureKind.NO_SIGNING_KEY),
            "backup-key-passphrase=",
            "signing-failed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "default entry problems",
        (
            "main-menu=d",
            Failed("differs", FailureKind.DEFAULT_HASH),
            "default-hash-mismatch=m",
            "main-menu=d",
            Failed("entry 2 moved", FailureKind.ENTRY_CHANGED),
            "boot-entry-changed=s",
            "boot-select=b",
            "main-menu=d",
            Failed("none", FailureKind.NO_DEFAULT),
            "no-default=m",
            "main-menu=d",
            Failed("kexec failed"),
            "boot-failed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "boot menu: confirm, make default, boot",
        (
            "main-menu=o",
            "options=b",
            "boot-options=m",
            "boot-select=2",
            "boot-confirm=d",
            "signed=ok",
            "main-menu=o",
            "options=b",
            "boot-options=m",
            "boot-select=2",
            "boot-confirm=y",
        ),
        ends=BootEntry,
    ),
    MenuPath(
        "forced boot",
        (
            "main-menu=o",
            "options=b",
            "boot-options=u",
            NotAvailable("USB boot"),
            "not-available=ok",
            "boot-options=i",
            "force-boot=y",
            "boot-select=1",
        ),
        ends=BootEntry,
    ),
    MenuPath(
        "TPM reset: passphrases differ, then it fails",
        (
            "main-menu=o",
            "options=t",
            "tpm-options=r",
            "tpm-reset-confirm=y",
            "tpm-owner-passphrase=owner",
            "tpm-owner-passphrase-again=other",
            "passphrase-mismatch=y",
            "tpm-owner-passphrase=owner",
            "tpm-owner-passphrase-again=owner",
            Failed("TPM2_Clear refused"),
            "tpm-reset-failed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "TPM reset done",
        (
            "main-menu=o",
            "options=t",
            "tpm-options=r",
            "tpm-reset-confirm=y",
            "tpm-owner-passphrase=owner",
            "tpm-owner-passphrase-again=owner",
            "tpm-reset-done=ok",
        ),
        ends=Reboot,
    ),
    MenuPath(
        "time troubleshooting",
        (
            "main-menu=o",
            "options=t",
            "tpm-options=t",
            "time-troubleshoot=y",
            "change-time=yesterday",
            "time-invalid=ok",
            "change-time=2030-01-02 03:04:05",
            "time-set=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "configuration: automatic boot declined, output level saved",
        (
            "main-menu=o",
            "options=c",
            "config-menu=M",
            "config-auto-boot=5",
            "config-pcr7-warning=n",
            "config-menu=Z",
            "config-output=2",
            "config-pcr7-warning=y",
            "config-saved=ok",
        ),
        ends=Reboot,
    ),
    MenuPath(
        "Restricted: no recovery shell",
        ("main-menu=o", "options=x", "restricted-refused=ok"),
        RESTRICTED,
        ends=Reboot,
    ),
    MenuPath(
        "Restricted off wipes the TOTP first",
        (
            "main-menu=o",
            "options=c",
            "config-menu=L",
            "restricted-off-confirm=y",
            "config-saved=ok",
        ),
        RESTRICTED,
        ends=Reboot,
    ),
    MenuPath(
        "flashing not in this build",
        (
            "main-menu=o",
            "options=f",
            "flash-menu=f",
            "flash-file=/media/heads.rom",
            "not-available=ok",
            "options=r",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "factory reset declined, recovery shell",
        (
            "main-menu=o",
            "options=F",
            "factory-reset-confirm=n",
            "main-menu=o",
            "options=x",
            "recovery-confirm=y",
        ),
        ends=RecoveryShell,
    ),
    MenuPath(
        "USB boot: nothing found, then an unsigned entry after the question",
        (
            "main-menu=o",
            "options=b",
            "boot-options=u",
            Failed("No USB drive was found."),
            "usb-nothing=ok",
            "boot-options=u",
            "usb-select=2",
            "usb-unsigned=y",
        ),
        ends=UsbBoot,
    ),
    MenuPath(
        "USB boot: Restricted refuses the unsigned entry, boots the signed one",
        (
            "main-menu=o",
            "options=b",
            "boot-options=u",
            "usb-select=2",
            "restricted-refused=ok",
            "boot-options=u",
            "usb-select=1",
        ),
        RESTRICTED,
        ends=UsbBoot,
    ),
    MenuPath(
        "make default sets up the disk unlock key, with one short passphrase",
        (
            "main-menu=o",
            "options=b",
            "boot-options=m",
            "boot-select=1",
            "boot-confirm=d",
            "signed=ok",
            LuksDevices(("/dev/sda2", "/dev/sdb1")),
            "disk-key-add=y",
            "disk-key-devices=a",
            "disk-key-drk=owner recovery",
            "disk-key-new=short",
            "disk-key-new-again=short",
            "disk-key-passphrase-retry=y",
            "disk-key-new=correct horse battery",
            "disk-key-new-again=correct horse battery",
            "disk-key-sealed=ok",
            "signed=ok",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "changed LUKS headers: reseal, wiping the other slots; then a wrong DRK",
        (
            "main-menu=d",
            Failed("Encrypted disk keys have changed", FailureKind.DISK_KEY_CHANGED),
            LuksDevices(("/dev/sda2",), ("/dev/sda2",)),
            "disk-key-reseal=y",
            "disk-key-drk=owner recovery",
            "disk-key-wipe-slots=y",
            "disk-key-new=correct horse battery",
            "disk-key-new-again=correct horse battery",
            "disk-key-sealed=ok",
            "signed=ok",
            "main-menu=o",
            "options=t",
            "tpm-options=k",
            LuksDevices(("/dev/sda2",), ("/dev/sda2",)),
            "disk-key-drk=not it",
            Failed("the recovery passphrase does not open /dev/sda2"),
            "disk-key-failed=ok",
            "tpm-options=k",
            "disk-key-none=ok",
            "tpm-options=m",
            "main-menu=p",
        ),
    ),
    MenuPath(
        "change the DRK, then re-encrypt; each offers the reseal",
        (
            "main-menu=o",
            "options=t",
            "tpm-options=c",
            LuksDevices(("/dev/sda2",), ("/dev/sda2",)),
            "disk-key-drk=owner recovery",
            "disk-drk-new=new recovery",
            "disk-drk-new-again=new recovery",
            "disk-drk-changed=ok",
            LuksDevices(("/dev/sda2",), ("/dev/sda2",)),
            "disk-key-reseal=n",
            "tpm-options=e",
            LuksDevices(("/dev/sda2",), ("/dev/sda2",)),
            "disk-key-drk=new recovery",
            "disk-reencrypt-confirm=y",
            "disk-reencrypted=ok",
            LuksDevices(("/dev/sda2",), ("/dev/sda2",)),
            "disk-key-reseal=n",
            "tpm-options=m",
            "main-menu=p",
        ),
    ),
)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_path_walks(path: MenuPath) -> None:
    assert walk(path)


def unreached(paths: tuple[MenuPath, ...]) -> list[str]:
    """The dialog ids no path reaches.

    The dialogs an effect shows itself (:data:`EFFECT_DIALOGS`, the disk key's) are not the
    machine's: tests/flows/test_disk_key_runtime.py answers them.
    """
    reached: set[DialogId] = set().union(*(walk(p) for p in paths))
    return sorted(str(i) for i in set(DialogId) - reached - EFFECT_DIALOGS)


def test_every_dialog_id_is_reached() -> None:
    missing = unreached(PATHS)
    assert not missing, f"no path in PATHS reaches the dialogs {missing}: add one"


def test_a_dialog_only_one_path_reaches_is_missed_without_it() -> None:
    without = tuple(p for p in PATHS if p.name != "Restricted off wipes the TOTP first")
    assert unreached(without) == ["restricted-off-confirm"]


def test_path_names_are_unique() -> None:
    names = [p.name for p in PATHS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (MenuPath("wrong dialog", ("options=b",)), "main-menu is on screen, not options"),
        (MenuPath("outcome to a dialog", (CODE, Ok())), "main-menu is on screen, not an effect"),
        (MenuPath("past the end", ("main-menu=p", "main-menu=p")), "ended on PowerOff"),
        (MenuPath("wrong end", ("main-menu=p",), ends=Reboot), "not Reboot"),
        (
            MenuPath("a boot has no usual outcome", ("main-menu=d", "main-menu=p")),
            "needs an outcome",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_walker_rejects_a_path_the_menus_do_not_take(path: MenuPath, problem: str) -> None:
    with pytest.raises(PathError, match=problem):
        walk(path)
