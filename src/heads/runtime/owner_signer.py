"""The owner's signing key, brought to the machine on its key-backup USB drive
(docs/runtime-menus.md §Key backup).

This build has no OpenPGP card: the factory reset generates the owner's key in memory and
its only copy leaves on a USB drive, protected by the backup passphrase.  To sign /boot
again ("update checksums", "make default") the owner inserts that drive and types the
passphrase; the key is imported in memory, used for one signature and dropped.  Nothing of
it is written anywhere in the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.core.secret import Secret
from heads.core.text import shown
from heads.errors import HeadsError, UsageError
from heads.runtime.usb import UsbDisk, mounted, usb_disks

if TYPE_CHECKING:
    from heads.core.openpgp import OwnerKey

__all__ = [
    "BACKUP_PUBLIC_ARMORED",
    "BACKUP_PUBLIC_BINARY",
    "BACKUP_SECRET",
    "MAX_BACKUP_BYTES",
    "load_backup_key",
    "read_backup",
]

#: The passphrase-protected secret key (armored; ``gpg --import`` takes it).
BACKUP_SECRET: Final = "heads-owner-key.asc"  # noqa: S105 - a file name
#: The public key, armored and binary (a gpgv keyring as it is).
BACKUP_PUBLIC_ARMORED: Final = "heads-owner-key.pub.asc"
BACKUP_PUBLIC_BINARY: Final = "heads-owner-key.pub.gpg"
MAX_BACKUP_BYTES: Final = 64 * 1024


def read_backup(where: Path) -> bytes | None:
    """The backup's secret-key file in a mounted filesystem, or None if it has none.

    Raises:
        UsageError: the file is not a regular file or is too large to be a key backup.
    """
    path = where / BACKUP_SECRET
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        raise UsageError(f"{BACKUP_SECRET} on the drive is not a regular file")
    with path.open("rb") as f:
        data = f.read(MAX_BACKUP_BYTES + 1)
    if len(data) > MAX_BACKUP_BYTES:
        raise UsageError(f"{BACKUP_SECRET} on the drive is larger than {MAX_BACKUP_BYTES} bytes")
    return data


def _candidates(disks: Sequence[UsbDisk]) -> list[Path]:
    # The factory reset formats the whole disk; a drive the owner prepared may have
    # partitions: try the disk itself first, then each partition.
    return [dev for disk in disks for dev in (disk.device, *disk.partitions)]


def load_backup_key(
    passphrase: Secret,
    *,
    say: Callable[[str], None],
    disks: Sequence[UsbDisk] | None = None,
) -> OwnerKey:
    """Find the key backup on a USB drive and import it in memory with ``passphrase``.

    Raises:
        UsageError: no USB drive, or none holds :data:`BACKUP_SECRET`.
        WrongPassphraseError: the passphrase does not open the backup.
        FormatError: the backup file is damaged (named with the drive).
    """
    from heads.core.openpgp import import_secret  # noqa: PLC0415 - only when signing

    found = usb_disks() if disks is None else list(disks)
    if not found:
        raise UsageError("no USB drive found: insert the drive holding the owner key's backup")
    for device in _candidates(found):
        try:
            with mounted(device) as where:
                data = read_backup(where)
        except HeadsError as err:
            say(f"key backup: {device} skipped ({err.message})")
            continue
        if data is None:
            say(f"key backup: {device} holds no {BACKUP_SECRET}")
            continue
        key = import_secret(data, passphrase, source=f"{device}:{BACKUP_SECRET}")
        say(f"key backup: owner key {key.fingerprint} loaded from {device} (in memory only)")
        return key
    names = ", ".join(shown(str(d.device)) for d in found)
    raise UsageError(f"no USB drive holds the owner key's backup {BACKUP_SECRET} ({names})")
