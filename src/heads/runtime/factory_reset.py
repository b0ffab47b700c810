"""The OEM factory reset / re-ownership in the running payload, up to signing /boot
(docs/runtime-menus.md §Factory reset).

What Heads' ``oem-factory-reset`` does with a GPG backup drive and no card, in its order:

1. find the flash chip, the backup USB drive and a boot entry on /boot first, so that a
   missing piece stops the flow before anything is erased;
2. reset the TPM with the new owner passphrase (the old TOTP secret and rollback counter go
   with it);
3. generate the owner's OpenPGP key in memory (:mod:`heads.core.openpgp`);
4. check that the protected export opens again with the backup passphrase, then format the
   USB drive (FAT, busybox ``mkdosfs``) and write the secret key, protected, and the public
   key to it, and read the secret key back;
5. flash the public key (the firmware's keyring) and ``config.user`` (``CONFIG_BOOT_DEV``
   and ``CONFIG_HAVE_GPG_KEY_BACKUP``, the owner's other settings kept) in one flash.

The key stays in the runtime's memory for the one signature of /boot that follows (the menus'
"make default" step: kexec_default files, hashes, a new rollback counter, kexec.sig) and is
dropped after it.  PCR 7 measures the new user files at the next boot: that boot seals the
TOTP secret, behind the integrity gate.  Passphrases stay :class:`~heads.core.secret.Secret`
values: never on a command line, the console or the drive in clear.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.adapters._run import run
from heads.adapters.atomic import write_atomic
from heads.adapters.tpm import Tpm
from heads.core.heads_config import parse_config
from heads.core.qemu_flash import CONFIG_USER
from heads.core.secret import Secret
from heads.errors import FormatError, UsageError, VerificationError
from heads.runtime.owner_signer import (
    BACKUP_PUBLIC_ARMORED,
    BACKUP_PUBLIC_BINARY,
    BACKUP_SECRET,
    read_backup,
)
from heads.runtime.usb import UsbDisk, mounted, usb_disks

if TYPE_CHECKING:
    from heads.core.gui import FactoryReset
    from heads.core.openpgp import OwnerKey

__all__ = [
    "BACKUP_LABEL",
    "KEYRING_FILE",
    "MIN_BACKUP_BYTES",
    "ResetDone",
    "backup_owner_key",
    "new_config_user",
    "run_factory_reset",
]

#: The FAT volume label of the key-backup drive.
BACKUP_LABEL: Final = "HEADS-KEY"
#: The user file holding the firmware's keyring (as Heads names it, whatever its format).
KEYRING_FILE: Final = "heads/initrd/.gnupg/pubring.kbx"
#: busybox's mkdosfs always makes FAT32, with one sector per cluster on small drives: below
#: 64 MiB that is fewer than the 65525 clusters FAT32 needs, and other systems (mtools,
#: Windows) read it as FAT16 and see no files.  Any real drive is far larger.
MIN_BACKUP_BYTES: Final = 64 * 1024 * 1024
#: Zeroed before formatting: an old partition table or filesystem signature must not survive.
_WIPE_BYTES: Final = 1024 * 1024
_MAX_CONFIG_BYTES: Final = 256 * 1024
_NEW_CONFIG_USER: Final = b"# heads user configuration (firmware image, measured into PCR 7)\n"

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ResetDone:
    """The factory reset up to signing: the owner's key (in memory) and what was done."""

    key: OwnerKey
    lines: tuple[str, ...]


def new_config_user(current: bytes | None, *, boot_device: str, source: str) -> bytes:
    """``config.user`` with the detected /boot device and the backup flag; other keys kept.

    Raises:
        FormatError: the current file does not parse (named with its line).
        ValueError: ``boot_device`` is not an absolute path.
    """
    config = parse_config(current or _NEW_CONFIG_USER, source=source)
    config = config.set("CONFIG_BOOT_DEV", boot_device)
    return config.set("CONFIG_HAVE_GPG_KEY_BACKUP", "y").to_bytes()


def _read_config_user(root: Path) -> bytes | None:
    path = root / "etc" / "config.user"
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_CONFIG_BYTES:
        raise FormatError(f"larger than {_MAX_CONFIG_BYTES} bytes", source=str(path))
    return data


def backup_owner_key(disk: UsbDisk, key: OwnerKey, passphrase: Secret, *, say: Say) -> None:
    """Format ``disk`` and write the owner's key to it (secret protected, public in clear).

    The protected export is opened again with ``passphrase`` before the drive is touched,
    and the file on the drive is read back after writing.

    Raises:
        VerificationError: the export does not open again, or the drive does not hold what
            was written.
        ToolError: formatting or mounting failed.
    """
    from heads.core.openpgp import (  # noqa: PLC0415 - factory reset only
        export_public,
        export_public_armored,
        export_secret,
        import_secret,
    )

    secret = export_secret(key, passphrase, rng=os.urandom)
    again = import_secret(secret, passphrase, source="the new key backup")
    if again.fingerprint != key.fingerprint:
        raise VerificationError("the key backup does not open to the same key")
    public = export_public(key)
    with disk.device.open("r+b") as f:
        f.write(bytes(min(_WIPE_BYTES, disk.size or _WIPE_BYTES)))
        f.flush()
        os.fsync(f.fileno())
    run(["mkdosfs", "-n", BACKUP_LABEL, str(disk.device)], desc=f"format {disk.device}")
    say(f"key backup: {disk.device} formatted (FAT, label {BACKUP_LABEL})")
    with mounted(disk.device, writable=True, fstype="vfat") as where:
        write_atomic(where / BACKUP_SECRET, secret, mode=0o600)
        write_atomic(where / BACKUP_PUBLIC_BINARY, public)
        write_atomic(where / BACKUP_PUBLIC_ARMORED, export_public_armored(key))
    with mounted(disk.device) as where:
        if read_backup(where) != secret:
            raise VerificationError(f"{disk.device} does not hold the key backup just written")
    say(f"key backup: {BACKUP_SECRET} and the public key written to {disk.device}, read back")


def run_factory_reset(
    effect: FactoryReset,
    *,
    tpm: Tpm,
    root: Path,
    boot_dir: Path,
    boot_device: str,
    now: datetime,
    say: Say,
    flash_device: Path | None,
    disks: list[UsbDisk] | None = None,
) -> ResetDone:
    """Steps 1-5 of the module docstring.

    Raises:
        UsageError: no flash chip, no USB drive or no boot entry (nothing was changed).
        HeadsError: a later step failed (the message says which; the TPM may be reset).
    """
    from heads.core.openpgp import export_public, generate_owner_key  # noqa: PLC0415
    from heads.core.openpgp.key import check_user_id  # noqa: PLC0415
    from heads.flows.boot_entries import list_entries  # noqa: PLC0415
    from heads.runtime.flash_update import flash_user_files  # noqa: PLC0415

    if flash_device is None:
        raise UsageError("no flash chip found: the firmware image cannot be written")
    found = usb_disks() if disks is None else disks
    if not found:
        raise UsageError("no USB drive for the key backup: insert one and try again")
    disk = found[0]
    if disk.size < MIN_BACKUP_BYTES:
        raise UsageError(
            f"the USB drive {disk.device} holds {disk.size // 2**20} MiB: the key backup "
            f"needs one of at least {MIN_BACKUP_BYTES // 2**20} MiB"
        )
    check_user_id(effect.user_id)
    if not list_entries(boot_dir).entries:
        raise UsageError("no boot entry found on /boot: install the operating system first")
    config_user = new_config_user(
        _read_config_user(root), boot_device=boot_device or "/boot", source="config.user"
    )
    say(f"factory reset: flash chip {flash_device}, key backup drive {disk.device}")

    tpm.reset(owner_auth=effect.owner)
    say("TPM reset: new owner passphrase set, its objects are gone")
    key = generate_owner_key(effect.user_id, created=int(now.timestamp()), rng=os.urandom)
    say(f"owner key generated: {key.fingerprint}")
    backup_owner_key(disk, key, effect.backup, say=say)
    flash_user_files(
        flash_device, {KEYRING_FILE: export_public(key), CONFIG_USER: config_user}, say=say
    )
    say("factory reset: public key and config.user flashed; PCR 7 changes at the next boot")
    return ResetDone(
        key,
        (
            f"Owner key: {key.fingerprint}",
            f"Key backup: {BACKUP_SECRET} on {disk.device}",
            "Firmware: public key and config.user flashed",
        ),
    )
