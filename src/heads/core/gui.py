"""Heads' ``gui-init`` as a pure state machine (docs/runtime-menus.md).

The machine knows the menus and the order of things; it does nothing itself.  It is started
with the facts the runtime found before any secret is touched (:class:`StartFacts`: the
rollback-counter preflight, the keyring, the configuration), then every call returns the next
:data:`Step`: either a :class:`~heads.core.dialogs.Dialog` to show (answer it with
:meth:`Gui.answer`) or an :data:`Effect` to perform (report how it went with
:meth:`Gui.result`).  Tests walk it with plain values; the runtime
(``heads.runtime.menu``) performs the effects through the flows.

Rules it keeps (Heads' own, docs/runtime-menus.md §Rules):

* nothing is unsealed after a failed preflight, and a TOTP secret is sealed only at the end
  of a TPM reset or when the owner chooses "generate" behind the integrity gate, never on its
  own;
* Basic mode boots the first entry without attestation or signature checks;
* Restricted mode refuses the recovery shell, the forced boot, flashing, Basic mode and
  unsigned USB media; turning it off first wipes the TOTP secret;
* the owner passphrase typed for a TPM reset lives only until the reset is requested, the
  factory reset's passphrases until :class:`FactoryReset` is requested, and
  :meth:`Gui.wipe_secrets` drops them (the runtime calls it on recovery entry).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final

from heads.core.dialogs import (
    NO,
    YES,
    Dialog,
    DialogId,
    Kind,
    Tone,
    menu,
    message,
    pager,
    passphrase,
    text_input,
    yesno,
)
from heads.core.disk_key import MIN_PASSPHRASE_CHARS, check_passphrase
from heads.core.mode_config import ModeConfig, mode_from_config
from heads.core.secret import Secret
from heads.core.text import shown
from heads.errors import UsageError

__all__ = [
    "AddKey",
    "BootBasic",
    "BootDefault",
    "BootEntry",
    "ChangeRecoveryKey",
    "CheckRecoveryKey",
    "Effect",
    "Entries",
    "FactoryReset",
    "Failed",
    "FailureKind",
    "FindDisks",
    "Flash",
    "Gui",
    "IntegrityReport",
    "ListEntries",
    "ListKeys",
    "LuksDevices",
    "ModeConfig",
    "NotAvailable",
    "Ok",
    "Outcome",
    "PowerOff",
    "Preflight",
    "Reboot",
    "RecoveryShell",
    "Reencrypt",
    "RefreshTotp",
    "Report",
    "ResetTpm",
    "SaveConfig",
    "SaveDefault",
    "SealDiskKey",
    "SealTotp",
    "SetTime",
    "ShowSignedLists",
    "SignBoot",
    "StartFacts",
    "Step",
    "SystemInfo",
    "TotpCode",
    "UnlockBackupKey",
    "UsbBoot",
    "UsbEntries",
    "WipeTotp",
    "config_changes",
    "mode_from_config",
    "parse_time",
]

# -- facts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preflight:
    """Heads' start-up checks, made before any secret is unsealed or sealed.

    Attributes:
        ok: the rollback counter /boot is bound to is readable (or nothing was signed yet).
        problem: why not (shown in the red preflight menu).
        keyring_empty: the firmware image holds no public key.
        clean_boot: an OS is installed but nothing of Heads' is on /boot and the keyring is
            empty: a machine to take ownership of (Heads offers the factory reset).
    """

    ok: bool = True
    problem: str = ""
    keyring_empty: bool = False
    clean_boot: bool = False


@dataclass(frozen=True, slots=True)
class StartFacts:
    """What the runtime knows when the menus start."""

    config: ModeConfig
    preflight: Preflight
    now: datetime


# -- effects (what the machine asks the runtime to do) -------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshTotp:
    """Unseal the TOTP secret and show the code (:class:`TotpCode`, or :class:`Failed` with
    :attr:`FailureKind.NO_SECRET` / ``ERROR``)."""


@dataclass(frozen=True, slots=True)
class BootDefault:
    """Verify /boot and boot the saved default entry (:class:`Failed` with a
    :class:`FailureKind` when it does not boot)."""


@dataclass(frozen=True, slots=True)
class BootBasic:
    """Basic mode: boot the first entry, no signature or hash checks (PCR 4 still moves)."""


@dataclass(frozen=True, slots=True)
class ListEntries:
    """Today's boot entries (:class:`Entries`); ``verified``: verify /boot first."""

    verified: bool = True


@dataclass(frozen=True, slots=True)
class BootEntry:
    """Boot entry ``index`` (1-based).

    ``force``: the owner chose to ignore tampering: no verification, a red console.
    ``basic``: Basic mode: no verification either (PCR 4 still moves), normal console.
    """

    index: int
    force: bool = False
    basic: bool = False


@dataclass(frozen=True, slots=True)
class SaveDefault:
    """Make entry ``index`` the default and sign /boot (the rollback counter moves)."""

    index: int


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """Verify /boot and report (:class:`Report`)."""


@dataclass(frozen=True, slots=True)
class ShowSignedLists:
    """The signed ``kexec*.txt`` files' contents (:class:`Ok` with lines)."""


@dataclass(frozen=True, slots=True)
class SignBoot:
    """Update the checksums and sign /boot (counter +1, or created after a TPM reset)."""


@dataclass(frozen=True, slots=True)
class SealTotp:
    """Seal a new TOTP secret and show it (QR code and URI).

    ``owner``: the TPM owner passphrase, when the runtime does not have it yet (after a
    factory reset, sealing in a later boot needs it: :attr:`FailureKind.OWNER_AUTH`).
    """

    owner: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ResetTpm:
    """Reset the TPM with a new owner passphrase (everything it held is gone)."""

    owner: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class WipeTotp:
    """Remove the sealed TOTP secret."""


@dataclass(frozen=True, slots=True)
class SetTime:
    """Set the system clock (UTC)."""

    when: datetime


@dataclass(frozen=True, slots=True)
class SaveConfig:
    """Write these ``CONFIG_*`` values into ``config.user`` in the firmware image.

    ``owner`` (here and in :class:`Flash`, :class:`AddKey`): the TPM owner passphrase, when
    resealing the TOTP secret for the new image needs it (:attr:`FailureKind.OWNER_AUTH`).
    """

    changes: tuple[tuple[str, str], ...]
    owner: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Flash:
    """Flash a firmware image (``keep_settings``: keep the user files)."""

    path: str
    keep_settings: bool
    owner: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class FactoryReset:
    """The OEM factory reset up to signing /boot (docs/runtime-menus.md §Factory reset).

    Reset the TPM with ``owner``; generate the owner's signing key (``user_id``) in memory;
    write it, protected with ``backup``, to the key-backup USB drive; flash its public key and
    ``config.user`` into the firmware image.  The key stays in memory for the
    :class:`SaveDefault` that follows.  :class:`Ok` lines say what was done.
    """

    owner: Secret = field(repr=False)
    backup: Secret = field(repr=False)
    user_id: str


@dataclass(frozen=True, slots=True)
class UnlockBackupKey:
    """Load the owner's key from the key-backup USB drive into memory with ``passphrase``,
    for the next signature only."""

    passphrase: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class UsbBoot:
    """Boot from a USB drive (docs/runtime-menus.md §USB boot).

    Without ``index``: scan the USB drives and list their boot entries (:class:`UsbEntries`).
    With it: boot entry ``index`` (1-based) of a new scan, provided its title is still
    ``title`` (the drive may have been swapped meanwhile); ``unsigned``: the owner accepted
    booting it without a signature.
    """

    index: int | None = None
    title: str = ""
    unsigned: bool = False


@dataclass(frozen=True, slots=True)
class AddKey:
    """Add a public key to the firmware image's keyring."""

    owner: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ListKeys:
    """The keys in the firmware image's keyring (:class:`Ok` with lines)."""


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """Board, firmware, kernel, CPU, memory and disks (:class:`Ok` with lines)."""


@dataclass(frozen=True, slots=True)
class FindDisks:
    """Scan the block devices for LUKS headers and read ``kexec_key_devices.txt``
    (:class:`LuksDevices`)."""


@dataclass(frozen=True, slots=True)
class CheckRecoveryKey:
    """Whether the Disk Recovery Key passphrase opens a key slot of every device
    (:class:`Ok`, or :class:`Failed`: nothing was changed)."""

    devices: tuple[str, ...]
    recovery: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class SealDiskKey:
    """Put a new disk unlock key in every device's dedicated slot and seal it to this boot's
    PCRs with ``passphrase`` (docs/disk-key.md §Set-up and reseal in the menus).

    ``wipe_others``: first wipe every key slot that is neither the recovery key's nor the
    disk unlock key's.  ``owner``: the TPM owner passphrase, when the TPM wants it
    (:attr:`FailureKind.OWNER_AUTH`).  /boot must be signed afterwards.
    """

    devices: tuple[str, ...]
    recovery: Secret = field(repr=False)
    passphrase: Secret = field(repr=False)
    wipe_others: bool = False
    owner: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ChangeRecoveryKey:
    """``cryptsetup luksChangeKey`` on every device: ``recovery`` becomes ``new``."""

    devices: tuple[str, ...]
    recovery: Secret = field(repr=False)
    new: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class Reencrypt:
    """``cryptsetup reencrypt`` every device (a new volume key) with the recovery key's slot
    kept: every other slot, the disk unlock key's too, is gone afterwards."""

    devices: tuple[str, ...]
    recovery: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecoveryShell:
    """Extend PCR 4 with ``recovery``, wipe the secrets, start the shell."""

    reason: str


@dataclass(frozen=True, slots=True)
class PowerOff:
    """Power the machine off."""


@dataclass(frozen=True, slots=True)
class Reboot:
    """Restart the machine (QEMU boards power off instead, as in Heads)."""


Effect = (
    RefreshTotp
    | BootDefault
    | BootBasic
    | ListEntries
    | BootEntry
    | SaveDefault
    | IntegrityReport
    | ShowSignedLists
    | SignBoot
    | SealTotp
    | ResetTpm
    | WipeTotp
    | SetTime
    | SaveConfig
    | Flash
    | FactoryReset
    | UnlockBackupKey
    | UsbBoot
    | AddKey
    | ListKeys
    | SystemInfo
    | FindDisks
    | CheckRecoveryKey
    | SealDiskKey
    | ChangeRecoveryKey
    | Reencrypt
    | RecoveryShell
    | PowerOff
    | Reboot
)
#: Effects after which the machine has nothing more to say.
TERMINAL: Final = (RecoveryShell, PowerOff, Reboot)

Step = Dialog | Effect

# -- outcomes (what the runtime reports back) ---------------------------------------------


class FailureKind(enum.Enum):
    """Why an effect failed, where the menus react differently."""

    ERROR = "error"
    NOT_VERIFIED = "not-verified"  #: /boot does not verify (Boot Hash Mismatch)
    DEFAULT_HASH = "default-hash"  #: the default's files differ from kexec_default_hashes.txt
    ENTRY_CHANGED = "entry-changed"  #: today's entry N is not the saved default
    NO_DEFAULT = "no-default"  #: no default entry saved
    NO_SECRET = "no-secret"  # noqa: S105 - a kind of failure: no TOTP secret in the TPM
    NO_SIGNING_KEY = "no-signing-key"  #: no key to sign /boot with
    OWNER_AUTH = "owner-auth"  #: the TPM wants its owner passphrase
    #: the LUKS headers differ from those the disk unlock key was sealed with
    DISK_KEY_CHANGED = "disk-key-changed"


@dataclass(frozen=True, slots=True)
class Ok:
    """The effect worked; ``lines`` is what it has to show (already escaped)."""

    lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Failed:
    """The effect failed; ``reason`` and ``lines`` say why (already escaped)."""

    reason: str
    kind: FailureKind = FailureKind.ERROR
    lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NotAvailable:
    """This build cannot do it (yet); ``what`` names it."""

    what: str


@dataclass(frozen=True, slots=True)
class TotpCode:
    """The TOTP code and when it was computed."""

    code: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Entries:
    """Today's boot entries' titles, in menu order (escaped)."""

    titles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """The integrity report: the lines, whether /boot verified, the files that differ."""

    lines: tuple[str, ...]
    boot_ok: bool
    mismatches: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UsbEntries:
    """The boot entries found on the USB drives, in menu order: the titles (escaped) and
    whether a signature the firmware keyring verifies covers each one."""

    titles: tuple[str, ...]
    signed: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.titles) != len(self.signed):
            raise ValueError("UsbEntries: one signed flag per title")


@dataclass(frozen=True, slots=True)
class LuksDevices:
    """The LUKS devices found (escaped names, in order) and those ``kexec_key_devices.txt``
    lists (empty: no disk unlock key is set up)."""

    found: tuple[str, ...]
    configured: tuple[str, ...] = ()


Outcome = Ok | Failed | NotAvailable | TotpCode | Entries | Report | UsbEntries | LuksDevices

# -- configuration values ------------------------------------------------------------------

_AUTO_BOOT_CHOICES: Final = (("0", "Off"), ("1", "1 second"), ("5", "5 seconds"), ("10", "10 s"))
_OUTPUT_LEVELS: Final = (("0", "None (quiet)"), ("1", "Info"), ("2", "Debug"))
_TIME_RE: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?Z?")
_MIN_YEAR: Final = 2024
_MAX_YEAR: Final = 2200
_MAX_OWNER_PASSPHRASE: Final = 32
#: Heads' factory reset takes passphrases of at least 8 characters (its custom mode); the
#: backup passphrase stands for the card's Admin PIN, at most 25 characters.
_MIN_FACTORY_PASSPHRASE: Final = 8
_MAX_BACKUP_PASSPHRASE: Final = 25


def config_changes(before: ModeConfig, after: ModeConfig) -> tuple[tuple[str, str], ...]:
    """The ``CONFIG_*`` assignments that turn ``before`` into ``after`` (Heads' names)."""
    out: list[tuple[str, str]] = []
    if before.basic != after.basic:
        out.append(("CONFIG_BASIC", "y" if after.basic else "n"))
    if before.restricted != after.restricted:
        out.append(("CONFIG_RESTRICTED_BOOT", "y" if after.restricted else "n"))
    if before.auto_boot_timeout != after.auto_boot_timeout:
        value = after.auto_boot_timeout
        out.append(("CONFIG_AUTO_BOOT_TIMEOUT", "" if not value else str(value)))
    if before.output_level != after.output_level:
        out.append(("CONFIG_QUIET_MODE", "y" if after.output_level == 0 else "n"))
        out.append(("CONFIG_DEBUG_OUTPUT", "y" if after.output_level >= 2 else "n"))
    return tuple(out)


def parse_time(text: str) -> datetime | None:
    """``YYYY-MM-DD HH:MM[:SS]`` in UTC, years 2024-2200 (as Heads' change-time.sh); None if
    the text is not such a time."""
    m = _TIME_RE.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return None
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- the machine ---------------------------------------------------------------------------

_Answer = Callable[[str | Secret], Step]
_Result = Callable[[Outcome], Step]
_Then = Callable[[], Step]


class Gui:
    """gui-init's menus; see the module docstring.  No I/O: every step is returned."""

    def __init__(self, facts: StartFacts) -> None:
        self.facts = facts
        self.config = facts.config
        self.now = facts.now
        self.totp: str = "N/A"
        #: Heads' INTEGRITY_GATE_REQUIRED: the TOTP failed this session, so a reseal needs
        #: the integrity report to pass first.
        self.gate_required = False
        #: Heads' tpm_reset_required marker: a failed preflight blocks sealing until a reset.
        self.tpm_reset_required = not facts.preflight.ok
        self.tone = Tone.DANGER if not facts.preflight.ok else Tone.NORMAL
        self._on_answer: _Answer | None = None
        self._on_result: _Result | None = None
        self._owner: Secret | None = None
        self._fr: _FactoryAnswers | None = None
        self._dk: _DiskKeyAnswers | None = None
        self.current: Step | None = None

    # -- driving -------------------------------------------------------------------------

    def start(self) -> Step:
        """The first step."""
        return self._startup()

    def answer(self, value: str | Secret) -> Step:
        """Answer the dialog last returned.

        Raises:
            ValueError: the last step was not a dialog, or ``value`` is not one of its choices.
        """
        dialog = self.current
        if not isinstance(dialog, Dialog) or self._on_answer is None:
            raise ValueError("no dialog is waiting for an answer")
        if dialog.kind is Kind.PASSPHRASE:
            if not isinstance(value, Secret):
                raise ValueError(f"dialog {dialog.id} takes a passphrase (Secret)")
        elif isinstance(value, Secret) or not dialog.accepts(value):
            raise ValueError(f"dialog {dialog.id}: {value!s} is not one of {dialog.keys}")
        handler, self._on_answer = self._on_answer, None
        return handler(value)

    def result(self, outcome: Outcome) -> Step:
        """Report the outcome of the effect last returned.

        Raises:
            ValueError: the last step was not an effect waiting for its outcome.
        """
        if self._on_result is None:
            raise ValueError("no effect is waiting for its outcome")
        handler, self._on_result = self._on_result, None
        return handler(outcome)

    def wipe_secrets(self) -> None:
        """Forget every secret typed into the menus (recovery entry)."""
        self._owner = None
        self._fr = None
        self._dk = None

    def _show(self, dialog: Dialog, on_answer: _Answer) -> Step:
        self.current = dialog
        self._on_answer = on_answer
        return dialog

    def _do(self, effect: Effect, on_result: _Result | None = None) -> Step:
        self.current = effect
        if isinstance(effect, RecoveryShell):
            self.wipe_secrets()
        self._on_result = on_result if on_result is not None else self._terminal
        return effect

    def _terminal(self, outcome: Outcome) -> Step:
        # A boot that returns has failed to start the OS; power, reboot and recovery don't
        # come back at all.  Whatever it was, power off rather than loop.
        del outcome
        return self._do(PowerOff())

    def _choice(self, dialog: Dialog, actions: dict[str, _Then]) -> Step:
        def on_answer(value: str | Secret) -> Step:
            return actions[str(value)]()

        return self._show(dialog, on_answer)

    def _ack(self, dialog: Dialog, then: _Then) -> Step:
        return self._show(dialog, lambda _value: then())

    # -- start-up ------------------------------------------------------------------------

    def _startup(self) -> Step:
        pre = self.facts.preflight
        if self.config.basic:
            return self._auto_boot_or_main()
        if pre.clean_boot:
            return self._choice(
                yesno(
                    DialogId.CLEAN_BOOT,
                    "Clean Boot Detected - Perform OEM Factory Reset / Re-Ownership?",
                    "An operating system is installed but nothing on /boot is signed and the "
                    "firmware holds no public key.\nTake ownership of this machine now?",
                    default=YES,
                    tone=Tone.WARNING,
                ),
                {YES: self._factory_reset, NO: self._after_clean_boot},
            )
        return self._after_clean_boot()

    def _after_clean_boot(self) -> Step:
        pre = self.facts.preflight
        if not pre.ok:
            return self._preflight_menu()
        return self._after_preflight()

    def _preflight_menu(self) -> Step:
        problem = self.facts.preflight.problem or "the TPM rollback counter cannot be read"
        return self._choice(
            menu(
                DialogId.PREFLIGHT_FAILED,
                "ERROR: TPM State Inconsistent",
                f"{problem}\n\nPossible cause: the TPM was reset or swapped. No secret has "
                "been unsealed or sealed.",
                (
                    ("i", "Show integrity report"),
                    ("o", "OEM Factory Reset / Re-Ownership"),
                    ("p", "Reset the TPM"),
                    ("c", "Continue to the main menu"),
                ),
                tone=Tone.DANGER,
            ),
            {
                "i": lambda: self._integrity_report(then=self._preflight_menu),
                "o": self._factory_reset,
                "p": self._tpm_reset,
                "c": self._main_menu_untrusted,
            },
        )

    def _main_menu_untrusted(self) -> Step:
        self.totp = "UNAVAILABLE (TPM state inconsistent)"
        self.tone = Tone.DANGER
        return self._main_menu()

    def _after_preflight(self) -> Step:
        if self.facts.preflight.keyring_empty:
            return self._choice(
                menu(
                    DialogId.KEYRING_EMPTY,
                    "ERROR: GPG keyring empty!",
                    "The firmware holds no public key: /boot cannot be verified.",
                    (
                        ("g", "Add a GPG key (GPG options)"),
                        ("o", "OEM Factory Reset / Re-Ownership"),
                        ("i", "Ignore and continue"),
                        ("x", "Exit to recovery shell"),
                    ),
                    tone=Tone.DANGER,
                ),
                {
                    "g": lambda: self._gpg_options(then=self._after_keyring),
                    "o": self._factory_reset,
                    "i": self._after_keyring,
                    "x": lambda: self._recovery("GPG keyring empty"),
                },
            )
        return self._after_keyring()

    def _after_keyring(self) -> Step:
        return self._do(RefreshTotp(), self._startup_totp)

    def _startup_totp(self, outcome: Outcome) -> Step:
        if isinstance(outcome, TotpCode):
            self._totp_ok(outcome)
            return self._auto_boot_or_main()
        return self._totp_failed(outcome)

    def _totp_ok(self, code: TotpCode) -> None:
        self.totp = code.code
        self.now = code.at
        if self.tone is not Tone.DANGER:
            self.tone = Tone.NORMAL

    def _totp_failed(self, outcome: Outcome) -> Step:
        self.gate_required = True
        self.tone = Tone.DANGER
        self.totp = "ERROR"
        reason = _reason(outcome)
        return self._choice(
            menu(
                DialogId.TOTP_FAILED,
                "ERROR: TOTP Generation Failed!",
                f"{reason}\n\nIf you just changed the firmware or its settings, generate a new "
                "secret behind the integrity gate. Otherwise this machine may have been "
                "tampered with.",
                (
                    ("g", "Generate new TOTP/HOTP secret"),
                    ("p", "Reset the TPM"),
                    ("i", "Ignore error and continue to the main menu"),
                    ("x", "Exit to recovery shell"),
                ),
                tone=Tone.DANGER,
            ),
            {
                "g": lambda: self._generate(then=self._main_menu),
                "p": self._tpm_reset,
                "i": self._main_menu,
                "x": lambda: self._recovery("TOTP generation failed"),
            },
        )

    def _auto_boot_or_main(self) -> Step:
        timeout = self.config.auto_boot_timeout
        if not timeout:
            return self._main_menu()
        boot = self._boot_basic if self.config.basic else self._boot_default
        return self._choice(
            menu(
                DialogId.AUTO_BOOT,
                "Automatic boot",
                f"Automatic boot in {timeout} seconds unless interrupted by keypress...",
                (("b", "Boot the default entry now"), ("m", "Show the main menu")),
                default="b",
                timeout_s=timeout,
            ),
            {"b": boot, "m": self._main_menu},
        )

    # -- main menu -----------------------------------------------------------------------

    def _main_menu(self) -> Step:
        cfg = self.config
        title = f"{shown(cfg.board)} | {shown(cfg.brand)} Boot Menu"
        choices: tuple[tuple[str, str], ...]
        if cfg.basic:
            text = f"{_stamp(self.now)}\nBasic mode: no attestation, no signature checks"
            choices = (
                ("d", "Default boot"),
                ("o", "Options -->"),
                ("s", "System Info"),
                ("p", "Power Off"),
            )
            tone = Tone.WARNING
        else:
            hotp = " | HOTP: N/A" if cfg.hotp else ""
            text = f"{_stamp(self.now)}\nTOTP: {self.totp}{hotp}"
            choices = (
                ("d", "Default boot"),
                ("r", "Refresh TOTP/HOTP"),
                ("o", "Options -->"),
                ("s", "System Info"),
                ("p", "Power Off"),
            )
            tone = self.tone
        return self._choice(
            menu(DialogId.MAIN_MENU, title, text, choices, tone=tone),
            {
                "d": self._boot_basic if cfg.basic else self._boot_default,
                "r": self._refresh,
                "o": self._options,
                "s": self._system_info,
                "p": lambda: self._do(PowerOff()),
            },
        )

    def _refresh(self) -> Step:
        if not self.facts.preflight.ok:
            return self._main_menu()  # nothing is unsealed after a failed preflight
        return self._do(RefreshTotp(), self._refreshed)

    def _refreshed(self, outcome: Outcome) -> Step:
        if isinstance(outcome, TotpCode):
            self._totp_ok(outcome)
            return self._main_menu()
        return self._totp_failed(outcome)

    def _system_info(self) -> Step:
        def shown_info(outcome: Outcome) -> Step:
            lines = outcome.lines if isinstance(outcome, Ok) else (_reason(outcome),)
            return self._ack(
                pager(DialogId.SYSTEM_INFO, "System Info", "\n".join(lines)), self._main_menu
            )

        return self._do(SystemInfo(), shown_info)

    # -- options -------------------------------------------------------------------------

    def _options(self) -> Step:
        if self.config.basic:
            choices: tuple[tuple[str, str], ...] = (
                ("b", "Boot Options -->"),
                ("c", "Change configuration settings -->"),
                ("f", "Flash/Update the BIOS -->"),
                ("x", "Exit to recovery shell"),
                ("r", "<-- Return to main menu"),
            )
        else:
            choices = (
                ("b", "Boot Options -->"),
                ("t", "TPM/TOTP/HOTP Options -->"),
                ("i", "Investigate integrity discrepancies"),
                ("h", "Change system time"),
                ("u", "Update checksums and sign all files in /boot"),
                ("c", "Change configuration settings -->"),
                ("f", "Flash/Update the BIOS -->"),
                ("g", "GPG Options -->"),
                ("F", "OEM Factory Reset / Re-Ownership -->"),
                ("x", "Exit to recovery shell"),
                ("r", "<-- Return to main menu"),
            )
        return self._choice(
            menu(DialogId.OPTIONS, "Heads Options", "", choices),
            {
                "b": self._boot_options,
                "t": self._tpm_options,
                "i": lambda: self._integrity_report(then=self._options),
                "h": lambda: self._change_time(then=self._options),
                "u": lambda: self._update_checksums(then=self._main_menu),
                "c": self._config_menu,
                "f": self._flash,
                "g": lambda: self._gpg_options(then=self._options),
                "F": self._factory_reset,
                "x": self._recovery_confirm,
                "r": self._main_menu,
            },
        )

    def _refused(self, what: str, then: _Then) -> Step:
        return self._ack(
            message(
                DialogId.RESTRICTED_REFUSED,
                "ERROR: Restricted Boot Enabled",
                f"{what} is not allowed while Restricted Boot is enabled.\nDisable Restricted "
                "Boot in the configuration settings first (this wipes the TOTP secret).",
                tone=Tone.DANGER,
            ),
            then,
        )

    def _not_available(self, outcome: Outcome, then: _Then) -> Step:
        return self._ack(
            message(
                DialogId.NOT_AVAILABLE,
                "Not available",
                _reason(outcome),
                tone=Tone.WARNING,
            ),
            then,
        )

    # -- recovery ------------------------------------------------------------------------

    def _recovery_confirm(self) -> Step:
        if self.config.restricted:
            return self._refused("The recovery shell", then=lambda: self._do(Reboot()))
        return self._choice(
            yesno(
                DialogId.RECOVERY_CONFIRM,
                "Exit to recovery shell",
                'PCR 4 is extended with "recovery" first: the TOTP secret cannot be unsealed '
                "again until the machine restarts.\nContinue?",
                tone=Tone.WARNING,
            ),
            {YES: lambda: self._recovery("owner request"), NO: self._options},
        )

    def _recovery(self, reason: str) -> Step:
        if self.config.restricted:
            return self._refused("The recovery shell", then=lambda: self._do(Reboot()))
        return self._do(RecoveryShell(reason))

    # -- booting -------------------------------------------------------------------------

    def _boot_default(self) -> Step:
        return self._do(BootDefault(), self._boot_failed)

    def _boot_basic(self) -> Step:
        return self._do(BootBasic(), self._boot_failed)

    def _boot_failed(self, outcome: Outcome) -> Step:
        if isinstance(outcome, Ok):
            return self._terminal(outcome)
        kind = outcome.kind if isinstance(outcome, Failed) else FailureKind.ERROR
        lines = outcome.lines if isinstance(outcome, Failed) else ()
        reason = _reason(outcome)
        body = "\n".join((reason, *lines))
        if kind is FailureKind.NOT_VERIFIED:
            self.tone = Tone.DANGER
            return self._hash_mismatch(body)
        if kind is FailureKind.DISK_KEY_CHANGED:
            return self._disk_key_offer_reseal(body, then=self._main_menu)
        if kind in (FailureKind.DEFAULT_HASH, FailureKind.ENTRY_CHANGED, FailureKind.NO_DEFAULT):
            ids = {
                FailureKind.DEFAULT_HASH: (
                    DialogId.DEFAULT_HASH_MISMATCH,
                    "ERROR: Default Boot Hash Mismatch",
                ),
                FailureKind.ENTRY_CHANGED: (
                    DialogId.BOOT_ENTRY_CHANGED,
                    "ERROR: Boot Entry Has Changed",
                ),
                FailureKind.NO_DEFAULT: (
                    DialogId.NO_DEFAULT,
                    "No Default Boot Option Configured",
                ),
            }
            id_, title = ids[kind]
            return self._choice(
                menu(
                    id_,
                    title,
                    f"{body}\n\nPlease select a new default boot option.",
                    (("s", "Select a boot option -->"), ("m", "<-- Return to main menu")),
                    tone=Tone.WARNING if kind is FailureKind.NO_DEFAULT else Tone.DANGER,
                ),
                {"s": self._os_boot_menu, "m": self._main_menu},
            )
        return self._ack(
            message(DialogId.BOOT_FAILED, "ERROR: Boot failed", body, tone=Tone.DANGER),
            self._main_menu,
        )

    def _hash_mismatch(self, body: str) -> Step:
        return self._choice(
            menu(
                DialogId.BOOT_HASH_MISMATCH,
                "ERROR: Boot Hash Mismatch",
                f"{body}\n\nThe files in /boot do not match what the owner signed. If you "
                "did not change them yourself, this machine may have been tampered with.",
                (
                    ("i", "Investigate discrepancies"),
                    ("u", "Update checksums and sign all files in /boot"),
                    ("m", "<-- Return to main menu"),
                ),
                tone=Tone.DANGER,
            ),
            {
                "i": lambda: self._integrity_report(then=self._main_menu),
                "u": lambda: self._update_checksums(then=self._main_menu),
                "m": self._main_menu,
            },
        )

    def _boot_options(self) -> Step:
        return self._choice(
            menu(
                DialogId.BOOT_OPTIONS,
                "Boot Options",
                "Select a boot option",
                (
                    ("m", "Show OS boot menu"),
                    ("u", "USB boot"),
                    ("i", "Ignore tampering and force a boot (Unsafe!)"),
                    ("r", "<-- Return to main menu"),
                ),
            ),
            {
                "m": self._os_boot_menu,
                "u": self._usb_boot,
                "i": self._force_boot,
                "r": self._main_menu,
            },
        )

    def _usb_boot(self) -> Step:
        # Restricted mode still lists the drive: a signed medium may boot, an unsigned one
        # is refused when chosen.
        return self._do(UsbBoot(), self._usb_listed)

    def _usb_listed(self, outcome: Outcome) -> Step:
        if isinstance(outcome, NotAvailable):
            return self._not_available(outcome, self._boot_options)
        if not isinstance(outcome, UsbEntries) or not outcome.titles:
            reason = "No bootable entry was found on the USB drives."
            if not isinstance(outcome, UsbEntries):
                lines = outcome.lines if isinstance(outcome, Failed) else ()
                reason = "\n".join((_reason(outcome), *lines))
            return self._ack(
                message(DialogId.USB_NOTHING, "USB boot", reason, tone=Tone.WARNING),
                self._boot_options,
            )
        entries = outcome
        numbered = tuple(
            (str(i), title if signed else f"{title} (unsigned)")
            for i, (title, signed) in enumerate(zip(entries.titles, entries.signed, strict=True), 1)
        )

        def pick(index: int) -> _Then:
            return lambda: self._usb_pick(index, entries)

        actions: dict[str, _Then] = {key: pick(int(key)) for key, _label in numbered}
        actions["b"] = self._boot_options
        return self._choice(
            menu(
                DialogId.USB_SELECT,
                "Select your USB boot option",
                "",
                (*numbered, ("b", "<-- Back to the boot options")),
            ),
            actions,
        )

    def _usb_pick(self, index: int, entries: UsbEntries) -> Step:
        title = entries.titles[index - 1]
        if entries.signed[index - 1]:
            return self._do(UsbBoot(index, title), self._boot_failed)
        if self.config.restricted:
            return self._refused("Booting unsigned USB media", then=self._boot_options)
        return self._choice(
            yesno(
                DialogId.USB_UNSIGNED,
                "UNSIGNED USB MEDIA WARNING",
                f"{title}\n\nNo signature from a key in the firmware's keyring covers this "
                "medium: its kernel and initrd are booted as they are.\nBoot unsigned USB "
                "media?",
                tone=Tone.DANGER,
            ),
            {
                YES: lambda: self._do(UsbBoot(index, title, unsigned=True), self._boot_failed),
                NO: self._boot_options,
            },
        )

    def _force_boot(self) -> Step:
        if self.config.restricted:
            return self._refused("A forced boot", then=self._boot_options)
        return self._choice(
            yesno(
                DialogId.FORCE_BOOT,
                "Unsafe Forced Boot Selected!",
                "This boots without checking the signature or the hashes of /boot, with a red "
                "console. Only do this if you know why the checks fail.\nContinue?",
                tone=Tone.DANGER,
            ),
            {YES: lambda: self._os_boot_menu(force=True), NO: self._boot_options},
        )

    def _os_boot_menu(self, *, force: bool = False) -> Step:
        unverified = force or self.config.basic

        def listed(outcome: Outcome) -> Step:
            if not isinstance(outcome, Entries):
                return self._boot_failed(outcome)
            return self._boot_select(outcome.titles, force=force)

        return self._do(ListEntries(verified=not unverified), listed)

    def _boot_select(self, titles: tuple[str, ...], *, force: bool) -> Step:
        numbered = tuple((str(i), t) for i, t in enumerate(titles, 1))
        actions: dict[str, _Then] = {"b": self._main_menu}
        unverified = force or self.config.basic

        def pick(index: int) -> _Then:
            if unverified:
                entry = BootEntry(index, force=force, basic=self.config.basic and not force)
                return lambda: self._do(entry, self._boot_failed)
            return lambda: self._boot_confirm(index, titles)

        for key, _title in numbered:
            actions[key] = pick(int(key))
        return self._choice(
            menu(
                DialogId.BOOT_SELECT,
                "Select your boot option",
                "UNSAFE: files are not verified" if force else "",
                (*numbered, ("b", "<-- Back to main menu")),
                tone=Tone.DANGER if force else Tone.NORMAL,
            ),
            actions,
        )

    def _boot_confirm(self, index: int, titles: tuple[str, ...]) -> Step:
        return self._choice(
            menu(
                DialogId.BOOT_CONFIRM,
                "Confirm boot details",
                f"{titles[index - 1]}",
                (("y", "Boot"), ("d", "Make default"), ("b", "Back to menu")),
            ),
            {
                "y": lambda: self._do(BootEntry(index), self._boot_failed),
                "d": lambda: self._signing(
                    SaveDefault(index),
                    self._signed(
                        self._main_menu,
                        after_ok=lambda: self._disk_key_setup(then=self._main_menu),
                    ),
                ),
                "b": lambda: self._boot_select(titles, force=False),
            },
        )

    # -- integrity -----------------------------------------------------------------------

    def _integrity_report(self, *, then: _Then) -> Step:
        def reported(outcome: Outcome) -> Step:
            if not isinstance(outcome, Report):
                outcome = Report((_reason(outcome),), boot_ok=False)
            rep = outcome
            after: _Then = then if rep.boot_ok else (lambda: self._investigate(rep, then))
            return self._ack(
                pager(
                    DialogId.INTEGRITY_REPORT,
                    "Measured Integrity Report",
                    "\n".join(rep.lines),
                    tone=Tone.NORMAL if rep.boot_ok else Tone.DANGER,
                ),
                after,
            )

        return self._do(IntegrityReport(), reported)

    def _investigate(self, report: Report, then: _Then) -> Step:
        def again() -> Step:
            return self._investigate(report, then)

        return self._choice(
            menu(
                DialogId.INVESTIGATION,
                "Integrity Investigation",
                f"{len(report.mismatches)} file(s) in /boot differ from the signed list.",
                (
                    ("d", "Show the files that differ"),
                    ("s", "Show the signed lists (kexec*.txt)"),
                    ("u", "Update checksums and sign all files in /boot"),
                    ("r", "Exit to recovery shell"),
                    ("c", "Continue"),
                ),
                tone=Tone.DANGER,
            ),
            {
                "d": lambda: self._ack(
                    pager(
                        DialogId.MISMATCH_LIST,
                        "Files that differ",
                        "\n".join(report.mismatches) or "(none)",
                        tone=Tone.DANGER,
                    ),
                    again,
                ),
                "s": lambda: self._do(ShowSignedLists(), lambda o: self._signed_lists(o, again)),
                "u": lambda: self._update_checksums(then=then),
                "r": lambda: self._recovery("integrity investigation"),
                "c": then,
            },
        )

    def _signed_lists(self, outcome: Outcome, then: _Then) -> Step:
        lines = outcome.lines if isinstance(outcome, Ok) else (_reason(outcome),)
        return self._ack(
            pager(DialogId.SIGNED_LISTS, "Signed lists in /boot", "\n".join(lines)), then
        )

    def _update_checksums(self, *, then: _Then) -> Step:
        return self._choice(
            yesno(
                DialogId.UPDATE_CHECKSUMS,
                "Update checksums and sign /boot",
                "Every file in /boot is hashed and the list signed with your key; the TPM "
                "rollback counter moves on. Only do this if you changed /boot yourself.\n"
                "Continue?",
                tone=Tone.WARNING,
            ),
            {YES: lambda: self._signing(SignBoot(), self._signed(then)), NO: then},
        )

    def _signed(self, then: _Then, *, after_ok: _Then | None = None) -> _Result:
        def done(outcome: Outcome) -> Step:
            if isinstance(outcome, Ok):
                self.tone = Tone.NORMAL if self.totp.isdigit() else self.tone
                return self._ack(
                    message(DialogId.SIGNED, "/boot signed", "\n".join(outcome.lines)),
                    after_ok or then,
                )
            return self._signing_failed(outcome, then)

        return done

    def _signing_failed(self, outcome: Outcome, then: _Then) -> Step:
        if isinstance(outcome, NotAvailable):
            return self._not_available(outcome, then)
        title = (
            "ERROR: GPG signing key unavailable"
            if isinstance(outcome, Failed) and outcome.kind is FailureKind.NO_SIGNING_KEY
            else "ERROR: Signing /boot failed"
        )
        return self._ack(
            message(DialogId.SIGNING_FAILED, title, _reason(outcome), tone=Tone.DANGER), then
        )

    # -- TPM / TOTP / HOTP ---------------------------------------------------------------

    def _tpm_options(self) -> Step:
        return self._choice(
            menu(
                DialogId.TPM_OPTIONS,
                "TPM/TOTP/HOTP Options",
                "",
                (
                    ("g", "Generate new TOTP/HOTP secret"),
                    ("r", "Reset the TPM"),
                    ("t", "TOTP/HOTP does not match after refresh, troubleshoot"),
                    ("k", "Reseal the disk unlock key"),
                    ("c", "Change the Disk Recovery Key passphrase"),
                    ("e", "Re-encrypt the LUKS devices"),
                    ("m", "<-- Return to main menu"),
                ),
            ),
            {
                "g": lambda: self._generate(then=self._main_menu),
                "r": self._tpm_reset,
                "t": self._troubleshoot_time,
                "k": lambda: self._disk_key_item(then=self._tpm_options),
                "c": lambda: self._disk_devices_for(self._drk_change, then=self._tpm_options),
                "e": lambda: self._disk_devices_for(self._reencrypt, then=self._tpm_options),
                "m": self._main_menu,
            },
        )

    def _generate(self, *, then: _Then) -> Step:
        """Heads' ``gate_reseal_with_integrity_report`` (docs/runtime-menus.md §Gate)."""
        if self.tpm_reset_required:
            return self._ack(
                message(
                    DialogId.TPM_RESET_REQUIRED,
                    "TPM Reset Required",
                    "The TPM's state does not match /boot: reset the TPM before a new secret "
                    "can be sealed.",
                    tone=Tone.DANGER,
                ),
                self._tpm_options,
            )
        if not self.gate_required:
            return self._gate_passed(then)

        def reported(outcome: Outcome) -> Step:
            if isinstance(outcome, Report) and outcome.boot_ok:
                return self._gate_passed(then)
            report = outcome if isinstance(outcome, Report) else Report((_reason(outcome),), False)
            return self._ack(
                message(
                    DialogId.GATE_REFUSED,
                    "ERROR: Integrity gate not passed",
                    "\n".join(
                        (
                            "/boot does not verify: a new secret is not sealed over an "
                            "unexplained change.",
                            *report.lines,
                        )
                    ),
                    tone=Tone.DANGER,
                ),
                lambda: self._investigate(report, then),
            )

        return self._do(IntegrityReport(), reported)

    def _gate_passed(self, then: _Then) -> Step:
        return self._choice(
            yesno(
                DialogId.GATE_PASSED,
                "Integrity Gate Passed",
                "Proceed with TOTP/HOTP reseal action? The code in your authenticator app "
                "stops working; scan the new QR code.",
                default=YES,
            ),
            {YES: lambda: self._sealing(then), NO: then},
        )

    def _sealing(self, then: _Then) -> Step:
        """Seal; if the TPM wants its owner passphrase, ask for it once (Heads does too)."""

        def first(outcome: Outcome) -> Step:
            if not (isinstance(outcome, Failed) and outcome.kind is FailureKind.OWNER_AUTH):
                return self._sealed(then)(outcome)
            return self._show(
                passphrase(
                    DialogId.TPM_OWNER_AUTH,
                    "TPM owner passphrase",
                    f"{outcome.reason}\nType the TPM owner passphrase set at the last TPM "
                    "reset or factory reset.",
                ),
                lambda value: self._do(
                    SealTotp(value if isinstance(value, Secret) else None), self._sealed(then)
                ),
            )

        return self._do(SealTotp(), first)

    def _sealed(self, then: _Then) -> _Result:
        def done(outcome: Outcome) -> Step:
            if not isinstance(outcome, Ok):
                return self._ack(
                    message(
                        DialogId.SEAL_FAILED,
                        "ERROR: Sealing the TOTP secret failed",
                        _reason(outcome),
                        tone=Tone.DANGER,
                    ),
                    then,
                )
            self.gate_required = False
            return self._ack(
                message(
                    DialogId.TOTP_SEALED,
                    "New TOTP secret",
                    "\n".join(
                        (
                            "A new TOTP secret is sealed; scan the QR code shown on the "
                            "console into your authenticator app.",
                            *outcome.lines,
                        )
                    ),
                ),
                lambda: self._do(
                    RefreshTotp(),
                    self._refreshed_then(
                        lambda: self._disk_key_offer_reseal(
                            "A new TOTP secret was sealed: the disk unlock key is still sealed "
                            "to the PCRs of before.",
                            then=then,
                        )
                    ),
                ),
            )

        return done

    def _refreshed_then(self, then: _Then) -> _Result:
        def done(outcome: Outcome) -> Step:
            if isinstance(outcome, TotpCode):
                self._totp_ok(outcome)
                self.tone = Tone.NORMAL
                return then()
            return self._totp_failed(outcome)

        return done

    def _tpm_reset(self) -> Step:
        return self._choice(
            yesno(
                DialogId.TPM_RESET_CONFIRM,
                "Reset the TPM",
                "This clears the TPM: the TOTP/HOTP secret and the rollback counter are gone. "
                "A new owner passphrase is set, /boot is signed again (a new counter) and a "
                "new TOTP secret is sealed.\nContinue?",
                tone=Tone.DANGER,
            ),
            {YES: self._owner_passphrase, NO: self._main_menu},
        )

    def _owner_passphrase(self) -> Step:
        def first(value: str | Secret) -> Step:
            assert isinstance(value, Secret)  # noqa: S101 - answer() checks the kind
            if not 1 <= len(value) <= _MAX_OWNER_PASSPHRASE:
                return self._passphrase_retry("The passphrase must be 1 to 32 characters.")
            self._owner = value
            return self._show(
                passphrase(
                    DialogId.TPM_OWNER_PASSPHRASE_AGAIN,
                    "TPM owner passphrase",
                    "Type the new TPM owner passphrase again.",
                ),
                second,
            )

        def second(value: str | Secret) -> Step:
            owner, self._owner = self._owner, None
            if owner is None or value != owner:
                return self._passphrase_retry("The two passphrases differ.")
            return self._do(ResetTpm(owner), self._tpm_was_reset)

        return self._show(
            passphrase(
                DialogId.TPM_OWNER_PASSPHRASE,
                "TPM owner passphrase",
                "New TPM owner passphrase (1 to 32 characters).",
            ),
            first,
        )

    def _passphrase_retry(self, why: str) -> Step:
        return self._choice(
            yesno(
                DialogId.PASSPHRASE_MISMATCH,
                "Passphrase not accepted",
                f"{why}\nTry again?",
                default=YES,
                tone=Tone.WARNING,
            ),
            {YES: self._owner_passphrase, NO: self._main_menu},
        )

    def _tpm_was_reset(self, outcome: Outcome) -> Step:
        if not isinstance(outcome, Ok):
            return self._ack(
                message(
                    DialogId.TPM_RESET_FAILED,
                    "ERROR: TPM reset failed",
                    _reason(outcome),
                    tone=Tone.DANGER,
                ),
                self._main_menu,
            )
        self.tpm_reset_required = False
        self.gate_required = False

        def signed(result: Outcome) -> Step:
            if not isinstance(result, Ok):
                return self._signing_failed(result, self._main_menu)
            return self._do(SealTotp(), sealed)

        def sealed(result: Outcome) -> Step:
            if not isinstance(result, Ok):
                return self._sealed(self._main_menu)(result)
            return self._ack(
                message(
                    DialogId.TPM_RESET_DONE,
                    "TPM reset complete",
                    "\n".join(
                        (
                            "The TPM was reset, /boot signed with a new rollback counter and a "
                            "new TOTP secret sealed (scan the QR code shown on the console).",
                            *result.lines,
                            "The machine restarts now.",
                        )
                    ),
                ),
                lambda: self._do(Reboot()),
            )

        return self._signing(SignBoot(), signed)

    def _troubleshoot_time(self) -> Step:
        return self._choice(
            yesno(
                DialogId.TIME_TROUBLESHOOT,
                "TOTP/HOTP does not match",
                f"The time here is {_stamp(self.now)}.\nA TOTP code only matches when this "
                "clock and your phone's agree (UTC). Change the time?",
            ),
            {YES: lambda: self._change_time(then=self._main_menu), NO: self._tpm_options},
        )

    # -- time ----------------------------------------------------------------------------

    def _change_time(self, *, then: _Then) -> Step:
        def typed(value: str | Secret) -> Step:
            when = parse_time(str(value))
            if when is None:
                return self._ack(
                    message(
                        DialogId.TIME_INVALID,
                        "Invalid time",
                        f"{shown(str(value))} is not YYYY-MM-DD HH:MM:SS (years 2024-2200).",
                        tone=Tone.WARNING,
                    ),
                    lambda: self._change_time(then=then),
                )

            def set_done(outcome: Outcome) -> Step:
                if isinstance(outcome, Ok):
                    self.now = when
                    return self._ack(
                        message(DialogId.TIME_SET, "Time set", f"The time is {_stamp(when)}."),
                        then,
                    )
                return self._not_available(outcome, then)

            return self._do(SetTime(when), set_done)

        return self._show(
            text_input(
                DialogId.CHANGE_TIME,
                "Change system time",
                "New time in UTC: YYYY-MM-DD HH:MM:SS",
                default=self.now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            ),
            typed,
        )

    # -- configuration -------------------------------------------------------------------

    def _config_menu(self) -> Step:
        cfg = self.config
        timeout = f"{cfg.auto_boot_timeout} s" if cfg.auto_boot_timeout else "off"
        return self._choice(
            menu(
                DialogId.CONFIG_MENU,
                "Config Management Menu",
                f"Basic mode: {_on(cfg.basic)}\nRestricted Boot: {_on(cfg.restricted)}\n"
                f"Automatic boot: {timeout}\nOutput level: {cfg.output_level}",
                (
                    ("P", f"{'Disable' if cfg.basic else 'Enable'} Basic mode"),
                    ("L", f"{'Disable' if cfg.restricted else 'Enable'} Restricted Boot"),
                    ("M", "Change the automatic boot timeout"),
                    ("Z", "Change the output level"),
                    ("r", "<-- Return to main menu"),
                ),
            ),
            {
                "P": self._toggle_basic,
                "L": self._toggle_restricted,
                "M": self._auto_boot_setting,
                "Z": self._output_setting,
                "r": self._main_menu,
            },
        )

    def _toggle_basic(self) -> Step:
        if self.config.restricted and not self.config.basic:
            return self._refused("Basic mode", then=self._config_menu)
        return self._confirm_config(replace(self.config, basic=not self.config.basic))

    def _toggle_restricted(self) -> Step:
        if not self.config.restricted:
            return self._confirm_config(replace(self.config, restricted=True))
        after = replace(self.config, restricted=False)

        def wiped(outcome: Outcome) -> Step:
            if not isinstance(outcome, Ok):
                return self._ack(
                    message(
                        DialogId.SEAL_FAILED,
                        "ERROR: Unable to wipe the sealed secret",
                        _reason(outcome),
                        tone=Tone.DANGER,
                    ),
                    self._config_menu,
                )
            self.totp = "WIPED"
            return self._firmware(
                SaveConfig(config_changes(self.config, after)), self._saved(after)
            )

        return self._choice(
            yesno(
                DialogId.RESTRICTED_OFF_CONFIRM,
                "Disable Restricted Boot",
                "The TOTP/HOTP secret is wiped first, so that the change shows at the next "
                "boot: you will have to generate a new one.\nContinue?",
                tone=Tone.DANGER,
            ),
            {YES: lambda: self._do(WipeTotp(), wiped), NO: self._config_menu},
        )

    def _auto_boot_setting(self) -> Step:
        def pick(key: str) -> _Then:
            value = int(key) or None
            return lambda: self._confirm_config(replace(self.config, auto_boot_timeout=value))

        return self._choice(
            menu(
                DialogId.CONFIG_AUTO_BOOT,
                "Automatic boot",
                "Boot the default entry after this many seconds when the TOTP was unsealed",
                _AUTO_BOOT_CHOICES,
                default=str(self.config.auto_boot_timeout or 0),
            ),
            {key: pick(key) for key, _label in _AUTO_BOOT_CHOICES},
        )

    def _output_setting(self) -> Step:
        def pick(key: str) -> _Then:
            return lambda: self._confirm_config(replace(self.config, output_level=int(key)))

        return self._choice(
            menu(
                DialogId.CONFIG_OUTPUT,
                "Output level",
                "How much the firmware prints",
                _OUTPUT_LEVELS,
                default=str(self.config.output_level),
            ),
            {key: pick(key) for key, _label in _OUTPUT_LEVELS},
        )

    def _confirm_config(self, after: ModeConfig) -> Step:
        changes = config_changes(self.config, after)
        listed = "\n".join(f'{k}="{shown(v)}"' for k, v in changes)
        return self._choice(
            yesno(
                DialogId.CONFIG_PCR7_WARNING,
                "Save the configuration",
                f"{listed}\n\nThe settings are written into config.user in the firmware "
                "image. It is measured into PCR 7: when this boot showed the TOTP and /boot "
                "verifies, the secret is resealed to the new value first; otherwise it no "
                "longer unseals after the restart and must be generated again (behind the "
                "integrity gate).\n"
                "Save and restart?",
                tone=Tone.WARNING,
            ),
            {
                YES: lambda: self._firmware(SaveConfig(changes), self._saved(after)),
                NO: self._config_menu,
            },
        )

    def _firmware(self, effect: SaveConfig | Flash | AddKey, done: _Result) -> Step:
        """A change of the firmware; when resealing the TOTP secret for it needs the TPM owner
        passphrase, ask for it once and do it again (docs/firmware-update.md)."""

        def first(outcome: Outcome) -> Step:
            if not (isinstance(outcome, Failed) and outcome.kind is FailureKind.OWNER_AUTH):
                return done(outcome)
            return self._show(
                passphrase(
                    DialogId.TPM_OWNER_AUTH,
                    "TPM owner passphrase",
                    f"{outcome.reason}\nThe TOTP secret is resealed for the new firmware "
                    "first: type the TPM owner passphrase set at the last TPM reset or "
                    "factory reset.",
                ),
                lambda value: self._do(
                    replace(effect, owner=value if isinstance(value, Secret) else None), done
                ),
            )

        return self._do(effect, first)

    def _saved(self, after: ModeConfig) -> _Result:
        def done(outcome: Outcome) -> Step:
            if not isinstance(outcome, Ok):
                return self._not_available(outcome, self._config_menu)
            self.config = after
            return self._ack(
                message(
                    DialogId.CONFIG_SAVED,
                    "Configuration saved",
                    "The new settings take effect at the next boot. The machine restarts now.",
                ),
                lambda: self._do(Reboot()),
            )

        return done

    # -- keys, flash, factory reset ------------------------------------------------------

    def _gpg_options(self, *, then: _Then) -> Step:
        def keys(outcome: Outcome) -> Step:
            lines = outcome.lines if isinstance(outcome, Ok) else (_reason(outcome),)
            return self._ack(
                pager(DialogId.GPG_KEYS, "Keys in the firmware", "\n".join(lines) or "(none)"),
                lambda: self._gpg_options(then=then),
            )

        return self._choice(
            menu(
                DialogId.GPG_OPTIONS,
                "GPG Management Menu",
                "",
                (
                    ("l", "List the GPG keys in the firmware"),
                    ("r", "Add a GPG key to the firmware"),
                    ("x", "<-- Return"),
                ),
            ),
            {
                "l": lambda: self._do(ListKeys(), keys),
                "r": lambda: self._firmware(
                    AddKey(),
                    # The key went into the firmware: restart to boot with it.
                    lambda o: (
                        self._do(Reboot()) if isinstance(o, Ok) else self._not_available(o, then)
                    ),
                ),
                "x": then,
            },
        )

    def _flash(self) -> Step:
        if self.config.restricted:
            return self._refused("Flashing the firmware", then=self._options)

        def file_for(keep: bool) -> _Then:
            def ask() -> Step:
                def typed(value: str | Secret) -> Step:
                    return self._firmware(
                        Flash(str(value), keep_settings=keep),
                        lambda o: (
                            self._do(Reboot())
                            if isinstance(o, Ok)
                            else self._not_available(o, self._options)
                        ),
                    )

                return self._show(
                    text_input(
                        DialogId.FLASH_FILE,
                        "Firmware image",
                        "Name of the image (*.rom) or update package (*.zip) on the USB "
                        "drive (empty: the only one there)",
                    ),
                    typed,
                )

            return ask

        return self._choice(
            menu(
                DialogId.FLASH_MENU,
                "Firmware Management Menu",
                "",
                (
                    ("f", "Flash the firmware with a new image, keeping settings"),
                    ("c", "Flash the firmware with a new image, erasing settings"),
                    ("x", "<-- Return"),
                ),
                tone=Tone.WARNING,
            ),
            {"f": file_for(True), "c": file_for(False), "x": self._options},
        )

    def _factory_reset(self) -> Step:
        """Heads' oem-factory-reset without a card (docs/runtime-menus.md §Factory reset)."""
        self._fr = _FactoryAnswers()
        return self._choice(
            yesno(
                DialogId.FACTORY_RESET_CONFIRM,
                "OEM Factory Reset / Re-Ownership",
                "This erases the TPM (its TOTP secret and rollback counter) and replaces the "
                "owner's signing key: a new key is generated, backed up to a USB drive, its "
                "public key written into the firmware, and /boot signed with it.\nContinue?",
                tone=Tone.DANGER,
            ),
            {YES: self._fr_owner, NO: self._fr_abort},
        )

    def _fr_abort(self) -> Step:
        self._fr = None
        return self._main_menu()

    def _fr_owner(self) -> Step:
        def keep(value: Secret) -> Step:
            if self._fr is None:  # pragma: no cover - the flow sets it first
                return self._fr_abort()
            self._fr.owner = value
            return self._fr_backup_drive()

        return self._twice(
            (
                DialogId.FACTORY_RESET_OWNER_PASSPHRASE,
                DialogId.FACTORY_RESET_OWNER_PASSPHRASE_AGAIN,
            ),
            "TPM owner passphrase",
            f"New TPM owner passphrase ({_MIN_FACTORY_PASSPHRASE} to {_MAX_OWNER_PASSPHRASE} "
            "characters).",
            (_MIN_FACTORY_PASSPHRASE, _MAX_OWNER_PASSPHRASE),
            keep,
        )

    def _fr_backup_drive(self) -> Step:
        return self._choice(
            yesno(
                DialogId.FACTORY_RESET_BACKUP_DRIVE,
                "GPG key backup drive",
                "This machine has no OpenPGP card: the owner's key is generated here and its "
                "only copy is written, protected by a passphrase, to a USB drive you keep "
                "safe. You need it to sign /boot again.\nInsert the USB drive now: EVERYTHING "
                "ON IT IS ERASED.\nContinue?",
                tone=Tone.WARNING,
            ),
            {YES: self._fr_backup, NO: self._fr_abort},
        )

    def _fr_backup(self) -> Step:
        def keep(value: Secret) -> Step:
            if self._fr is None:  # pragma: no cover - the flow sets it first
                return self._fr_abort()
            self._fr.backup = value
            return self._fr_user_id()

        return self._twice(
            (
                DialogId.FACTORY_RESET_BACKUP_PASSPHRASE,
                DialogId.FACTORY_RESET_BACKUP_PASSPHRASE_AGAIN,
            ),
            "Key backup passphrase",
            f"Passphrase protecting the key on the backup drive ({_MIN_FACTORY_PASSPHRASE} "
            f"to {_MAX_BACKUP_PASSPHRASE} characters).",
            (_MIN_FACTORY_PASSPHRASE, _MAX_BACKUP_PASSPHRASE),
            keep,
        )

    def _twice(
        self,
        ids: tuple[DialogId, DialogId],
        title: str,
        text: str,
        length: tuple[int, int],
        then: Callable[[Secret], Step],
    ) -> Step:
        """A new passphrase typed twice; a short, long or differing one asks again."""
        lo, hi = length

        def retry(why: str) -> Step:
            return self._choice(
                yesno(
                    DialogId.FACTORY_RESET_RETRY,
                    "Passphrase not accepted",
                    f"{why}\nTry again?",
                    default=YES,
                    tone=Tone.WARNING,
                ),
                {YES: lambda: self._twice(ids, title, text, length, then), NO: self._fr_abort},
            )

        def first(value: str | Secret) -> Step:
            assert isinstance(value, Secret)  # noqa: S101 - answer() checks the kind
            if not lo <= len(value) <= hi:
                return retry(f"The passphrase must be {lo} to {hi} characters.")
            return self._show(
                passphrase(ids[1], title, "Type it again."),
                lambda again: then(value) if again == value else retry("The two differ."),
            )

        return self._show(passphrase(ids[0], title, text), first)

    def _fr_user_id(self) -> Step:
        stamp = self.now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
        default = f"OEM Key (OEM-generated key) <oem-{stamp}@example.com>"

        def typed(value: str | Secret) -> Step:
            fr = self._fr
            if fr is None or fr.owner is None or fr.backup is None:  # pragma: no cover
                return self._fr_abort()
            user_id = str(value).strip() or default
            self._fr = None  # the secrets go with the effect, the machine keeps none
            return self._do(FactoryReset(fr.owner, fr.backup, user_id), self._fr_keys_done)

        return self._show(
            text_input(
                DialogId.FACTORY_RESET_KEY_UID,
                "GPG key user ID",
                "The name and e-mail address of the owner's new key.",
                default=default,
            ),
            typed,
        )

    def _fr_failed(self, outcome: Outcome, step: str) -> Step:
        return self._ack(
            message(
                DialogId.FACTORY_RESET_FAILED,
                "ERROR: OEM Factory Reset / Re-Ownership failed",
                f"{step}: {_reason(outcome)}",
                tone=Tone.DANGER,
            ),
            self._main_menu,
        )

    def _fr_keys_done(self, outcome: Outcome) -> Step:
        if not isinstance(outcome, Ok):
            return self._fr_failed(outcome, "The TPM, the key or the firmware")
        self.tpm_reset_required = False
        self.gate_required = False
        self.totp = "N/A (generated at the next boot)"
        done = outcome.lines

        def listed(result: Outcome) -> Step:
            if not isinstance(result, Entries):
                return self._fr_failed(result, "/boot was not signed")
            numbered = tuple((str(i), t) for i, t in enumerate(result.titles, 1))

            def pick(index: int) -> _Then:
                return lambda: self._do(SaveDefault(index), signed)

            return self._choice(
                menu(
                    DialogId.FACTORY_RESET_DEFAULT,
                    "Select the default boot option",
                    "/boot is signed with the new key; this entry boots by default.",
                    numbered,
                ),
                {key: pick(int(key)) for key, _t in numbered},
            )

        def signed(result: Outcome) -> Step:
            if not isinstance(result, Ok):
                return self._fr_failed(result, "/boot was not signed")
            return self._fr_secrets((*done, *result.lines))

        return self._do(ListEntries(verified=False), listed)

    def _fr_secrets(self, lines: tuple[str, ...]) -> Step:
        return self._choice(
            yesno(
                DialogId.FACTORY_RESET_SECRETS,
                "Configured secrets",
                "\n".join(
                    (
                        "TPM owner passphrase: set (the one you typed)",
                        "GPG key backup passphrase: set (the one you typed; it unlocks the "
                        "key on the backup drive)",
                        *lines,
                        "",
                        "Have you recorded both passphrases somewhere safe?",
                    )
                ),
                tone=Tone.WARNING,
            ),
            {
                YES: lambda: self._ack(
                    message(
                        DialogId.FACTORY_RESET_DONE,
                        "OEM Factory Reset / Re-Ownership Complete",
                        "The machine restarts now. At the next boot the TOTP code cannot be "
                        'shown yet: choose "Generate new TOTP/HOTP secret" and scan the QR '
                        "code.",
                    ),
                    lambda: self._do(Reboot()),
                ),
                NO: lambda: self._fr_secrets(lines),
            },
        )

    # -- disk unlock key (docs/disk-key.md §In the menus) --------------------------------

    def _disk_key_setup(self, *, then: _Then) -> Step:
        """After "make default" (Heads' kexec-save-default.sh): offer a disk unlock key when
        LUKS devices exist and none is set up."""

        def found(outcome: Outcome) -> Step:
            if not isinstance(outcome, LuksDevices) or not outcome.found or outcome.configured:
                return then()
            devices = outcome.found
            return self._choice(
                yesno(
                    DialogId.DISK_KEY_ADD,
                    "Disk Unlock Key",
                    f"LUKS devices: {', '.join(devices)}\n\nDo you wish to add a disk encryption "
                    "key to the TPM?\nThe TPM then releases it at boot, with its passphrase, only "
                    "while the firmware, /boot and the LUKS headers stay as they are now.",
                    default=NO,
                ),
                {
                    YES: lambda: self._disk_choose(
                        devices, lambda chosen: self._disk_key_recovery(chosen, then=then), then
                    ),
                    NO: then,
                },
            )

        return self._do(FindDisks(), found)

    def _disk_key_item(self, *, then: _Then) -> Step:
        """The TPM menu's "Reseal the disk unlock key" (set it up when there is none)."""

        def found(outcome: Outcome) -> Step:
            if isinstance(outcome, LuksDevices) and outcome.configured:
                return self._disk_key_recovery(outcome.configured, then=then, reseal=True)
            if isinstance(outcome, LuksDevices) and outcome.found:
                return self._disk_choose(
                    outcome.found, lambda chosen: self._disk_key_recovery(chosen, then=then), then
                )
            return self._disk_none(outcome, then)

        return self._do(FindDisks(), found)

    def _disk_key_offer_reseal(self, reason: str, *, then: _Then) -> Step:
        """After a new TOTP secret or a changed LUKS header: reseal when a key is set up."""

        def found(outcome: Outcome) -> Step:
            if not isinstance(outcome, LuksDevices) or not outcome.configured:
                return then()
            devices = outcome.configured
            return self._choice(
                yesno(
                    DialogId.DISK_KEY_RESEAL,
                    "Reseal the Disk Unlock Key",
                    f"{reason}\n\nReseal the disk unlock key of {', '.join(devices)} now? "
                    "This needs the Disk Recovery Key passphrase; the key works from the "
                    "next boot on.",
                    default=YES,
                    tone=Tone.WARNING,
                ),
                {YES: lambda: self._disk_key_recovery(devices, then=then, reseal=True), NO: then},
            )

        return self._do(FindDisks(), found)

    def _disk_none(self, outcome: Outcome, then: _Then) -> Step:
        text = "No LUKS device was found." if isinstance(outcome, LuksDevices) else _reason(outcome)
        return self._ack(
            message(DialogId.DISK_KEY_NONE, "Disk Unlock Key", text, tone=Tone.WARNING), then
        )

    def _disk_devices_for(
        self, action: Callable[[tuple[str, ...], _Then], Step], *, then: _Then
    ) -> Step:
        """The devices a DRK change or re-encryption applies to: those of the disk unlock
        key, else the LUKS devices found (the owner picks)."""

        def found(outcome: Outcome) -> Step:
            if isinstance(outcome, LuksDevices) and outcome.configured:
                return action(outcome.configured, then)
            if isinstance(outcome, LuksDevices) and outcome.found:
                return self._disk_choose(outcome.found, lambda chosen: action(chosen, then), then)
            return self._disk_none(outcome, then)

        return self._do(FindDisks(), found)

    def _disk_choose(
        self, found: tuple[str, ...], chosen: Callable[[tuple[str, ...]], Step], then: _Then
    ) -> Step:
        def pick(device: str) -> _Then:
            return lambda: chosen((device,))

        numbered = tuple((str(i), device) for i, device in enumerate(found, 1))
        actions: dict[str, _Then] = {"a": lambda: chosen(found)}
        actions.update({key: pick(device) for key, device in numbered})
        actions["c"] = then
        return self._choice(
            menu(
                DialogId.DISK_KEY_DEVICES,
                "Select LUKS devices",
                "Which LUKS devices?",
                (("a", f"All: {', '.join(found)}"), *numbered, ("c", "Cancel")),
            ),
            actions,
        )

    def _disk_recovery_typed(
        self, devices: tuple[str, ...], text: str, then: _Then, tested: Callable[[], Step]
    ) -> Step:
        """Ask the DRK passphrase and test it on every device (nothing typed: cancel)."""

        def typed(value: str | Secret) -> Step:
            assert isinstance(value, Secret)  # noqa: S101 - answer() checks the kind
            if not value:
                return then()
            self._dk = _DiskKeyAnswers(recovery=value)
            return self._do(CheckRecoveryKey(devices, value), checked)

        def checked(outcome: Outcome) -> Step:
            if not isinstance(outcome, Ok):
                return self._disk_failed(outcome, then)
            return tested()

        return self._show(
            passphrase(
                DialogId.DISK_KEY_DRK,
                "Disk Recovery Key",
                f"{text}\nType the Disk Recovery Key passphrase of {', '.join(devices)} (the "
                "LUKS passphrase; nothing: cancel).",
            ),
            typed,
        )

    def _disk_failed(self, outcome: Outcome, then: _Then) -> Step:
        self._dk = None
        return self._ack(
            message(
                DialogId.DISK_KEY_FAILED,
                "ERROR: Disk Unlock Key",
                "\n".join(
                    (_reason(outcome), *(outcome.lines if isinstance(outcome, Failed) else ()))
                ),
                tone=Tone.DANGER,
            ),
            then,
        )

    def _disk_key_recovery(
        self, devices: tuple[str, ...], *, then: _Then, reseal: bool = False
    ) -> Step:
        def tested() -> Step:
            if not reseal:
                return self._disk_key_passphrase(devices, then=then, wipe_others=False)
            return self._choice(
                yesno(
                    DialogId.DISK_KEY_WIPE_SLOTS,
                    "Wipe the other key slots?",
                    "Every key slot that is neither the Disk Recovery Key's nor the disk unlock "
                    "key's can be wiped now: no other passphrase or key file opens these "
                    "devices afterwards. This cannot be undone.\nWipe them?",
                    default=NO,
                    tone=Tone.DANGER,
                ),
                {
                    YES: lambda: self._disk_key_passphrase(devices, then=then, wipe_others=True),
                    NO: lambda: self._disk_key_passphrase(devices, then=then, wipe_others=False),
                },
            )

        what = "Reseal the disk unlock key." if reseal else "Add a disk unlock key."
        return self._disk_recovery_typed(devices, what, then, tested)

    def _disk_key_passphrase(
        self, devices: tuple[str, ...], *, then: _Then, wipe_others: bool
    ) -> Step:
        def first(value: str | Secret) -> Step:
            assert isinstance(value, Secret)  # noqa: S101 - answer() checks the kind
            if self._dk is None:
                return then()
            self._dk.passphrase = value
            return self._show(
                passphrase(
                    DialogId.DISK_KEY_NEW_AGAIN,
                    "Disk Unlock Key passphrase",
                    "Type the disk unlock key passphrase again.",
                ),
                second,
            )

        def second(value: str | Secret) -> Step:
            assert isinstance(value, Secret)  # noqa: S101 - answer() checks the kind
            dk = self._dk
            if dk is None or dk.recovery is None or dk.passphrase is None:
                return then()
            try:
                check_passphrase(dk.passphrase, value)
            except UsageError as err:
                dk.passphrase = None
                return self._choice(
                    yesno(
                        DialogId.DISK_KEY_PASSPHRASE_RETRY,
                        "Passphrase not accepted",
                        f"{err.message[:1].upper()}{err.message[1:]}.\nTry again?",
                        default=YES,
                        tone=Tone.WARNING,
                    ),
                    {
                        YES: lambda: self._disk_key_passphrase(
                            devices, then=then, wipe_others=wipe_others
                        ),
                        NO: lambda: self._disk_failed(Failed("Nothing was changed."), then),
                    },
                )
            self._dk = None
            effect = SealDiskKey(devices, dk.recovery, dk.passphrase, wipe_others)
            return self._disk_key_seal(effect, then)

        return self._show(
            passphrase(
                DialogId.DISK_KEY_NEW,
                "Disk Unlock Key passphrase",
                f"Choose the disk unlock key passphrase (at least {MIN_PASSPHRASE_CHARS} "
                "characters): it is asked at every boot that uses the key.",
            ),
            first,
        )

    def _disk_key_seal(self, effect: SealDiskKey, then: _Then) -> Step:
        def sealed(outcome: Outcome) -> Step:
            if (
                isinstance(outcome, Failed)
                and outcome.kind is FailureKind.OWNER_AUTH
                and effect.owner is None
            ):
                return self._show(
                    passphrase(
                        DialogId.TPM_OWNER_AUTH,
                        "TPM owner passphrase",
                        f"{outcome.reason}\nType the TPM owner passphrase set at the last TPM "
                        "reset or factory reset.",
                    ),
                    lambda value: self._disk_key_seal(
                        replace(effect, owner=value if isinstance(value, Secret) else None), then
                    ),
                )
            if not isinstance(outcome, Ok):
                return self._disk_failed(outcome, then)
            return self._ack(
                message(
                    DialogId.DISK_KEY_SEALED,
                    "Disk Unlock Key sealed",
                    "\n".join((*outcome.lines, "/boot is signed next: its key files changed.")),
                ),
                lambda: self._signing(SignBoot(), self._signed(then)),
            )

        return self._do(effect, sealed)

    def _drk_change(self, devices: tuple[str, ...], then: _Then) -> Step:
        """Heads' luks-change-key: the DRK passphrase changes in the slot it opens."""

        def first(value: str | Secret) -> Step:
            assert isinstance(value, Secret)  # noqa: S101 - answer() checks the kind
            if self._dk is None or not value:
                return self._disk_failed(Failed("Nothing was changed."), then)
            self._dk.passphrase = value
            return self._show(
                passphrase(
                    DialogId.DISK_DRK_NEW_AGAIN,
                    "New Disk Recovery Key passphrase",
                    "Type the new Disk Recovery Key passphrase again.",
                ),
                second,
            )

        def second(value: str | Secret) -> Step:
            dk, self._dk = self._dk, None
            if dk is None or dk.recovery is None or dk.passphrase is None:
                return then()
            if value != dk.passphrase:
                return self._disk_failed(
                    Failed("The two passphrases differ: nothing was changed."), then
                )
            return self._do(ChangeRecoveryKey(devices, dk.recovery, dk.passphrase), changed)

        def changed(outcome: Outcome) -> Step:
            if not isinstance(outcome, Ok):
                return self._disk_failed(outcome, then)
            return self._ack(
                message(
                    DialogId.DISK_DRK_CHANGED,
                    "Disk Recovery Key changed",
                    "\n".join(outcome.lines),
                ),
                lambda: self._disk_key_offer_reseal(
                    "The LUKS headers changed with the Disk Recovery Key.", then=then
                ),
            )

        def tested() -> Step:
            return self._show(
                passphrase(
                    DialogId.DISK_DRK_NEW,
                    "New Disk Recovery Key passphrase",
                    "Type the new Disk Recovery Key passphrase (the one the OS asks when the "
                    "disk unlock key is not released).",
                ),
                first,
            )

        return self._disk_recovery_typed(
            devices, "Change the Disk Recovery Key passphrase.", then, tested
        )

    def _reencrypt(self, devices: tuple[str, ...], then: _Then) -> Step:
        """Heads' luks-reencrypt: a new volume key; only the DRK's slot remains."""

        def tested() -> Step:
            dk, self._dk = self._dk, None
            if dk is None or dk.recovery is None:
                return then()
            recovery = dk.recovery
            return self._choice(
                yesno(
                    DialogId.DISK_REENCRYPT_CONFIRM,
                    "Re-encrypt the LUKS devices",
                    f"{', '.join(devices)} get a new volume key: every byte is rewritten, "
                    "which takes long; do not power off meanwhile. Only the Disk Recovery "
                    "Key's slot is kept (the disk unlock key must be resealed).\nContinue?",
                    default=NO,
                    tone=Tone.WARNING,
                ),
                {YES: lambda: self._do(Reencrypt(devices, recovery), done), NO: then},
            )

        def done(outcome: Outcome) -> Step:
            if not isinstance(outcome, Ok):
                return self._disk_failed(outcome, then)
            return self._ack(
                message(DialogId.DISK_REENCRYPTED, "Re-encrypted", "\n".join(outcome.lines)),
                lambda: self._disk_key_offer_reseal(
                    "The devices were re-encrypted: the disk unlock key's slot is gone.",
                    then=then,
                ),
            )

        return self._disk_recovery_typed(devices, "Re-encrypt the LUKS devices.", then, tested)

    # -- signing with the owner key's backup ----------------------------------------------

    def _signing(self, effect: SignBoot | SaveDefault, on_result: _Result) -> Step:
        """Sign /boot; without a key at hand, ask for the backup drive's passphrase once."""

        def first(outcome: Outcome) -> Step:
            if isinstance(outcome, Failed) and outcome.kind is FailureKind.NO_SIGNING_KEY:
                return self._backup_key(outcome, lambda: self._do(effect, on_result), on_result)
            return on_result(outcome)

        return self._do(effect, first)

    def _backup_key(self, missing: Failed, retry: _Then, on_result: _Result) -> Step:
        def typed(value: str | Secret) -> Step:
            assert isinstance(value, Secret)  # noqa: S101 - answer() checks the kind
            if not value:
                return on_result(missing)  # nothing typed: the owner gave up
            return self._do(UnlockBackupKey(value), unlocked)

        def unlocked(outcome: Outcome) -> Step:
            return retry() if isinstance(outcome, Ok) else on_result(outcome)

        return self._show(
            passphrase(
                DialogId.BACKUP_KEY_PASSPHRASE,
                "GPG key backup drive",
                f"{missing.reason}\nInsert the USB drive holding the owner key's backup and "
                "type its passphrase (nothing: cancel).",
            ),
            typed,
        )


@dataclass(slots=True)
class _DiskKeyAnswers:
    """The disk key dialogs' answers until they go out with an effect."""

    recovery: Secret | None = field(default=None, repr=False)
    passphrase: Secret | None = field(default=None, repr=False)


@dataclass(slots=True)
class _FactoryAnswers:
    """The factory reset's answers until they go out with :class:`FactoryReset`."""

    owner: Secret | None = field(default=None, repr=False)
    backup: Secret | None = field(default=None, repr=False)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _reason(outcome: Outcome) -> str:
    if isinstance(outcome, Failed):
        return outcome.reason
    if isinstance(outcome, NotAvailable):
        return f"{outcome.what} is not available in this build"
    if isinstance(outcome, Ok | Report):
        return "\n".join(outcome.lines)
    return "unexpected outcome"
