"""The disk unlock key across a firmware update: a pending copy sealed to the new image's
predicted PCRs, tried and promoted at the next boot (docs/disk-key.md §Firmware updates).

Same scheme as the TOTP secret's pending copy (docs/firmware-update.md §Pending seal): before
a flash, the key is unsealed with the owner's passphrase and sealed again, with the same
passphrase, at :data:`PENDING_DISK_KEY_HANDLE` to the values the boot after the flash will
have when it releases the key.  At that boot the current object's policy fails (the firmware
moved PCRs), the pending copy is tried with the passphrase just typed and, released, is
promoted: sealed again at 0x81000003 (the adapter replaces an object through its seal
journal, so one of the two is always there) and only then evicted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final

from heads.adapters.tpm import DISK_KEY_HANDLE, Tpm
from heads.core.digest import HashAlg, zero_digest
from heads.core.disk_key import disk_key_selection, predicted_values
from heads.core.platform import PCR_BOOT_MODE
from heads.core.sealing import SealRecord, pcr_values_for
from heads.core.secret import Secret
from heads.errors import HeadsError, TpmError, UnsealError, UsageError

__all__ = [
    "PENDING_DISK_KEY_HANDLE",
    "drop_pending_disk_key",
    "pending_disk_key_exists",
    "pending_disk_key_values",
    "seal_pending_disk_key",
    "unseal_with_pending",
]

_log = logging.getLogger(__name__)

#: The pending copy of the disk unlock key, next to the current object at 0x81000003
#: (docs/tpm-objects.md).
PENDING_DISK_KEY_HANDLE: Final = DISK_KEY_HANDLE + 1


def pending_disk_key_values(
    predicted: Mapping[int, bytes],
    *,
    profile: str,
    listing: bytes,
    firmware: Mapping[int, bytes] | None,
) -> dict[int, bytes]:
    """The PCR values the boot after the flash has when it releases the key.

    ``predicted``: the new image's predicted PCRs (:func:`heads.flows.update_reseal.
    predict_update`), PCR 4 at its firmware-only value; ``firmware``: PCRs 5 and 6 as this
    boot's firmware left them (:func:`heads.flows.disk_key.firmware_pcrs`; None on a board
    whose firmware measures nothing there, as coreboot): the image does not hold the
    firmware that extends them, so the next boot has the same; ``listing``: the headers as
    measured now (a flash does not touch the disk).

    Raises:
        UsageError: a PCR of the profile's selection was not predicted.
    """
    if PCR_BOOT_MODE not in predicted:
        raise UsageError("no predicted value for PCR 4: not sealing a disk key copy")
    measured = {i: v for i, v in predicted.items() if i != PCR_BOOT_MODE}
    zero = zero_digest(HashAlg.SHA256)
    fw = firmware or {}
    return predicted_values(
        disk_key_selection(profile),
        measured,
        pcr4_firmware=predicted[PCR_BOOT_MODE],
        listing=listing,
        pcr5=fw.get(5, zero),
        pcr6_firmware=fw.get(6, zero),
    )


def seal_pending_disk_key(
    tpm: Tpm,
    key: Secret,
    passphrase: Secret,
    values: Mapping[int, bytes],
    *,
    profile: str,
    owner_auth: Secret | None = None,
) -> SealRecord:
    """Seal ``key`` with ``passphrase`` at :data:`PENDING_DISK_KEY_HANDLE` to ``values``.

    Raises:
        UsageError: a selected PCR has no value.
        TpmError: the TPM failed (AuthError when the owner passphrase is needed).
    """
    selection = disk_key_selection(profile)
    expected = pcr_values_for(
        selection, values, missing="no predicted value for PCR {pcrs}: not sealing a copy"
    )
    record = tpm.seal(
        PENDING_DISK_KEY_HANDLE,
        key,
        selection,
        pcr_values=expected,
        auth=passphrase,
        owner_auth=owner_auth,
    )
    _log.info("sealed a pending disk key copy at 0x%08x to %s", PENDING_DISK_KEY_HANDLE, selection)
    return record


def pending_disk_key_exists(tpm: Tpm) -> bool:
    return tpm.object_exists(PENDING_DISK_KEY_HANDLE)


def _owner_missing(tpm: Tpm, owner_auth: Secret | None) -> bool:
    """The TPM has an owner passphrase and we do not: trying would only cost a DA try."""
    if owner_auth is not None:
        return False
    try:
        return tpm.lockout_state().owner_auth_set
    except TpmError:
        return False


def drop_pending_disk_key(
    tpm: Tpm, owner_auth: Secret | None = None, say: Callable[[str], None] = _log.info
) -> bool:
    """Evict the pending copy; False when it stays (no owner passphrase, or the TPM failed)."""
    if _owner_missing(tpm, owner_auth):
        say("disk key: pending copy kept (removing it needs the TPM owner passphrase)")
        return False
    try:
        tpm.evict(PENDING_DISK_KEY_HANDLE, owner_auth)
    except HeadsError as err:
        say(f"disk key: pending copy not removed ({err.message}); tried again next boot")
        return False
    return True


def _promote(
    tpm: Tpm,
    key: Secret,
    passphrase: Secret,
    record: SealRecord,
    *,
    owner_auth: Secret | None,
    say: Callable[[str], None],
) -> None:
    """Make the pending copy the current object, never leaving neither.

    The key is sealed again at 0x81000003 to the pending record's values (journalled
    replacement: the old or the new object is there at every step), then the pending copy is
    evicted.  Cut short in between, the next boot finds the current object releasing the key
    and drops the pending one (:func:`unseal_with_pending`).
    """
    if _owner_missing(tpm, owner_auth):
        say("disk key: pending copy not promoted (the TPM has an owner passphrase); used again")
        return
    try:
        tpm.seal(
            DISK_KEY_HANDLE,
            key,
            record.selection,
            pcr_values=record.values,
            auth=passphrase,
            owner_auth=owner_auth,
        )
    except HeadsError as err:
        say(f"disk key: pending copy not promoted ({err.message}); it is used again next boot")
        return
    drop_pending_disk_key(tpm, owner_auth, say)
    say(f"disk key: pending copy promoted to 0x{DISK_KEY_HANDLE:08x}")


def unseal_with_pending(
    tpm: Tpm,
    passphrase: Secret,
    *,
    owner_auth: Secret | None = None,
    say: Callable[[str], None] | None = None,
) -> Secret:
    """Release the key at 0x81000003, else (its PCRs moved) the pending copy, promoting it.
    ``say`` gets one line per step taken with a pending copy (default: the log).

    A pending copy left beside a current object that still releases the key (a promotion cut
    short, or a flash that did not happen) is dropped.

    Raises:
        AuthError: wrong passphrase (with the tries left before lockout).
        LockoutError: the TPM is in dictionary-attack lockout.
        UnsealError: the PCRs moved for both objects (names the current object's PCRs).
        TpmError: no key sealed.
    """
    say = say or _log.info
    try:
        key = tpm.unseal(DISK_KEY_HANDLE, auth=passphrase)
    except UnsealError as refused:
        if not pending_disk_key_exists(tpm):
            raise
        say("disk key: the sealed key's PCRs moved; trying the copy sealed for a new firmware")
        record = tpm.seal_record(PENDING_DISK_KEY_HANDLE)
        try:
            key = tpm.unseal(PENDING_DISK_KEY_HANDLE, auth=passphrase)
        except UnsealError as exc:
            say("disk key: the pending copy was refused too: the firmware is not the predicted one")
            raise UnsealError(
                refused.message,
                changed_pcrs=refused.changed_pcrs,
                details=(*refused.details, f"pending copy: {exc.message}"),
                hint=refused.hint,
            ) from None
        say("disk key: released by the pending copy; the firmware is the one predicted")
        if record is not None:
            _promote(tpm, key, passphrase, record, owner_auth=owner_auth, say=say)
        return key
    if pending_disk_key_exists(tpm):
        say("disk key: the current object still releases the key; dropping the pending copy")
        drop_pending_disk_key(tpm, owner_auth, say)
    return key
