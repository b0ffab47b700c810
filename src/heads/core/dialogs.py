"""The boot runtime's dialogs as values (docs/runtime-menus.md).

Every dialog the runtime can show is a frozen :class:`Dialog` with a stable :class:`DialogId`,
the title Heads shows for it (so owners recognise it), its text, its choices (each with a
stable key that scripted answers name), a default and a :class:`Tone` (the integrity state a
renderer shows in colour).  Renderers (``heads.ui``) draw them; the state machine
(:mod:`heads.core.gui`) decides which one comes next.  Pure data: no I/O.

Text inside a dialog may come from an attacker (file names, entry titles, configuration
values): whoever builds a dialog escapes such parts with :func:`heads.core.text.shown`, and
renderers escape once more with :func:`heads.core.text.scrub` as a last barrier.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "EFFECT_DIALOGS",
    "NO",
    "OK",
    "PASSPHRASE_IDS",
    "YES",
    "Choice",
    "Dialog",
    "DialogId",
    "Kind",
    "Tone",
    "menu",
    "message",
    "pager",
    "passphrase",
    "text_input",
    "yesno",
]


class Kind(enum.Enum):
    """What a dialog asks for."""

    MENU = "menu"  #: one of the choices
    YESNO = "yesno"  #: ``y`` or ``n``
    INPUT = "input"  #: a line of text
    #: a secret line, never echoed, printed or logged
    PASSPHRASE = "passphrase"  # noqa: S105 - the name of a kind
    MESSAGE = "message"  #: read and acknowledge (``ok``)
    PAGER = "pager"  #: a long text to scroll through, then ``ok``


class Tone(enum.Enum):
    """The integrity state a dialog is shown in (Heads' normal / warning / error colours)."""

    NORMAL = "normal"
    WARNING = "warning"
    DANGER = "danger"


class DialogId(enum.StrEnum):
    """Every dialog of the runtime.  The values are what ``--answer ID=CHOICE`` names."""

    # Start-up
    PREFLIGHT_FAILED = "preflight-failed"
    KEYRING_EMPTY = "keyring-empty"
    CLEAN_BOOT = "clean-boot"
    TOTP_FAILED = "totp-failed"
    AUTO_BOOT = "auto-boot"
    # Main menu and what it opens
    MAIN_MENU = "main-menu"
    SYSTEM_INFO = "system-info"
    OPTIONS = "options"
    # Booting
    BOOT_OPTIONS = "boot-options"
    BOOT_SELECT = "boot-select"
    BOOT_CONFIRM = "boot-confirm"
    FORCE_BOOT = "force-boot"
    BOOT_HASH_MISMATCH = "boot-hash-mismatch"
    DEFAULT_HASH_MISMATCH = "default-hash-mismatch"
    BOOT_ENTRY_CHANGED = "boot-entry-changed"
    NO_DEFAULT = "no-default"
    BOOT_FAILED = "boot-failed"
    # USB boot
    USB_SELECT = "usb-select"
    USB_UNSIGNED = "usb-unsigned"
    USB_NOTHING = "usb-nothing"
    # Integrity
    INTEGRITY_REPORT = "integrity-report"
    INVESTIGATION = "investigation"
    MISMATCH_LIST = "mismatch-list"
    SIGNED_LISTS = "signed-lists"
    UPDATE_CHECKSUMS = "update-checksums"
    SIGNED = "signed"
    SIGNING_FAILED = "signing-failed"
    # TPM / TOTP / HOTP
    TPM_OPTIONS = "tpm-options"
    TPM_RESET_REQUIRED = "tpm-reset-required"
    GATE_REFUSED = "gate-refused"
    GATE_PASSED = "gate-passed"
    TOTP_SEALED = "totp-sealed"
    SEAL_FAILED = "seal-failed"
    TPM_RESET_CONFIRM = "tpm-reset-confirm"
    TPM_OWNER_PASSPHRASE = "tpm-owner-passphrase"  # noqa: S105 - a dialog id
    TPM_OWNER_PASSPHRASE_AGAIN = "tpm-owner-passphrase-again"  # noqa: S105 - a dialog id
    PASSPHRASE_MISMATCH = "passphrase-mismatch"  # noqa: S105 - a dialog id
    TPM_RESET_FAILED = "tpm-reset-failed"
    TPM_OWNER_AUTH = "tpm-owner-auth"
    TPM_RESET_DONE = "tpm-reset-done"
    TIME_TROUBLESHOOT = "time-troubleshoot"
    # Time
    CHANGE_TIME = "change-time"
    TIME_INVALID = "time-invalid"
    TIME_SET = "time-set"
    # Configuration
    CONFIG_MENU = "config-menu"
    CONFIG_AUTO_BOOT = "config-auto-boot"
    CONFIG_OUTPUT = "config-output"
    CONFIG_PCR7_WARNING = "config-pcr7-warning"
    RESTRICTED_OFF_CONFIRM = "restricted-off-confirm"
    CONFIG_SAVED = "config-saved"
    # Refusals and other outcomes
    RESTRICTED_REFUSED = "restricted-refused"
    NOT_AVAILABLE = "not-available"
    GPG_OPTIONS = "gpg-options"
    GPG_KEYS = "gpg-keys"
    FLASH_MENU = "flash-menu"
    FLASH_FILE = "flash-file"
    FACTORY_RESET_CONFIRM = "factory-reset-confirm"
    FACTORY_RESET_OWNER_PASSPHRASE = "factory-reset-owner-passphrase"  # noqa: S105 - a dialog id
    FACTORY_RESET_OWNER_PASSPHRASE_AGAIN = "factory-reset-owner-passphrase-again"  # noqa: S105
    FACTORY_RESET_BACKUP_DRIVE = "factory-reset-backup-drive"
    FACTORY_RESET_BACKUP_PASSPHRASE = "factory-reset-backup-passphrase"  # noqa: S105 - a dialog id
    FACTORY_RESET_BACKUP_PASSPHRASE_AGAIN = "factory-reset-backup-passphrase-again"  # noqa: S105
    FACTORY_RESET_RETRY = "factory-reset-retry"
    FACTORY_RESET_KEY_UID = "factory-reset-key-uid"
    FACTORY_RESET_DEFAULT = "factory-reset-default"
    FACTORY_RESET_FAILED = "factory-reset-failed"
    FACTORY_RESET_SECRETS = "factory-reset-secrets"
    FACTORY_RESET_DONE = "factory-reset-done"
    # Signing with the owner key's backup
    BACKUP_KEY_PASSPHRASE = "backup-key-passphrase"  # noqa: S105 - a dialog id
    RECOVERY_CONFIRM = "recovery-confirm"
    # Disk unlock key (docs/disk-key.md)
    DISK_KEY_PASSPHRASE = "disk-key-passphrase"  # noqa: S105 - a dialog id
    DISK_KEY_RECOVERY = "disk-key-recovery"
    DISK_KEY_ADD = "disk-key-add"
    DISK_KEY_DEVICES = "disk-key-devices"
    DISK_KEY_DRK = "disk-key-drk"
    DISK_KEY_WIPE_SLOTS = "disk-key-wipe-slots"
    DISK_KEY_NEW = "disk-key-new"
    DISK_KEY_NEW_AGAIN = "disk-key-new-again"
    DISK_KEY_PASSPHRASE_RETRY = "disk-key-passphrase-retry"  # noqa: S105 - a dialog id
    DISK_KEY_SEALED = "disk-key-sealed"
    DISK_KEY_FAILED = "disk-key-failed"
    DISK_KEY_NONE = "disk-key-none"
    DISK_KEY_RESEAL = "disk-key-reseal"
    DISK_DRK_NEW = "disk-drk-new"
    DISK_DRK_NEW_AGAIN = "disk-drk-new-again"
    DISK_DRK_CHANGED = "disk-drk-changed"
    DISK_REENCRYPT_CONFIRM = "disk-reencrypt-confirm"
    DISK_REENCRYPTED = "disk-reencrypted"
    DISK_KEY_UPDATE_PASSPHRASE = "disk-key-update-passphrase"  # noqa: S105 - a dialog id


#: Dialogs shown while an effect is performed (the disk key step of a boot), not by the
#: menu state machine itself; they are scripted by id like the others.
EFFECT_DIALOGS: Final = frozenset(
    {
        DialogId.DISK_KEY_PASSPHRASE,
        DialogId.DISK_KEY_RECOVERY,
        DialogId.DISK_KEY_UPDATE_PASSPHRASE,
    }
)

#: Dialogs whose answer is a secret: never given on a command line (``--answer`` refuses
#: them; an answer file carries them).
PASSPHRASE_IDS: Final = frozenset(
    {
        DialogId.TPM_OWNER_PASSPHRASE,
        DialogId.TPM_OWNER_PASSPHRASE_AGAIN,
        DialogId.FACTORY_RESET_OWNER_PASSPHRASE,
        DialogId.FACTORY_RESET_OWNER_PASSPHRASE_AGAIN,
        DialogId.FACTORY_RESET_BACKUP_PASSPHRASE,
        DialogId.FACTORY_RESET_BACKUP_PASSPHRASE_AGAIN,
        DialogId.BACKUP_KEY_PASSPHRASE,
        DialogId.TPM_OWNER_AUTH,
        DialogId.DISK_KEY_PASSPHRASE,
        DialogId.DISK_KEY_DRK,
        DialogId.DISK_KEY_NEW,
        DialogId.DISK_KEY_NEW_AGAIN,
        DialogId.DISK_DRK_NEW,
        DialogId.DISK_DRK_NEW_AGAIN,
        DialogId.DISK_KEY_UPDATE_PASSPHRASE,
    }
)


@dataclass(frozen=True, slots=True)
class Choice:
    """One entry of a menu: ``key`` is stable (scripted answers name it), ``label`` is shown."""

    key: str
    label: str


YES: Final = "y"
NO: Final = "n"
OK: Final = "ok"


@dataclass(frozen=True, slots=True)
class Dialog:
    """One dialog.

    Attributes:
        id: stable identifier (:class:`DialogId`).
        kind: what is asked (:class:`Kind`).
        title: the title, as Heads shows it.
        text: the body (attacker-controlled parts already escaped).
        choices: for menus the entries in order; yes/no, message and pager dialogs have their
            fixed keys (``y``/``n``, ``ok``); input and passphrase dialogs have none.
        default: the key chosen by Enter alone (or when a countdown ends).
        tone: the integrity state the renderer shows.
        timeout_s: a countdown after which ``default`` is chosen (auto-boot); None: wait.
    """

    id: DialogId
    kind: Kind
    title: str
    text: str
    choices: tuple[Choice, ...] = ()
    default: str | None = None
    tone: Tone = Tone.NORMAL
    timeout_s: int | None = None

    def __post_init__(self) -> None:
        keys = [c.key for c in self.choices]
        if len(set(keys)) != len(keys):
            raise ValueError(f"dialog {self.id}: duplicate choice keys {keys}")
        if self.default is not None and self.choices and self.default not in keys:
            raise ValueError(f"dialog {self.id}: default {self.default!r} is not a choice")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.choices)

    def accepts(self, answer: str) -> bool:
        """Whether ``answer`` is a valid choice (any text for input dialogs)."""
        if self.kind in (Kind.INPUT, Kind.PASSPHRASE):
            return True
        return answer in self.keys


def menu(
    id_: DialogId,
    title: str,
    text: str,
    choices: tuple[tuple[str, str], ...],
    *,
    default: str | None = None,
    tone: Tone = Tone.NORMAL,
    timeout_s: int | None = None,
) -> Dialog:
    """A menu dialog from ``(key, label)`` pairs."""
    return Dialog(
        id_,
        Kind.MENU,
        title,
        text,
        tuple(Choice(k, label) for k, label in choices),
        default=default if default is not None else (choices[0][0] if choices else None),
        tone=tone,
        timeout_s=timeout_s,
    )


def yesno(
    id_: DialogId, title: str, text: str, *, default: str = NO, tone: Tone = Tone.NORMAL
) -> Dialog:
    """A yes/no question (keys ``y`` and ``n``)."""
    return Dialog(
        id_, Kind.YESNO, title, text, (Choice(YES, "Yes"), Choice(NO, "No")), default, tone
    )


def message(id_: DialogId, title: str, text: str, *, tone: Tone = Tone.NORMAL) -> Dialog:
    """A message to acknowledge (key ``ok``)."""
    return Dialog(id_, Kind.MESSAGE, title, text, (Choice(OK, "OK"),), OK, tone)


def pager(id_: DialogId, title: str, text: str, *, tone: Tone = Tone.NORMAL) -> Dialog:
    """A long text to scroll through (key ``ok``)."""
    return Dialog(id_, Kind.PAGER, title, text, (Choice(OK, "OK"),), OK, tone)


def text_input(
    id_: DialogId, title: str, text: str, *, default: str = "", tone: Tone = Tone.NORMAL
) -> Dialog:
    """A line of text."""
    return Dialog(id_, Kind.INPUT, title, text, (), default, tone)


def passphrase(id_: DialogId, title: str, text: str, *, tone: Tone = Tone.NORMAL) -> Dialog:
    """A secret line (never echoed)."""
    return Dialog(id_, Kind.PASSPHRASE, title, text, (), None, tone)
