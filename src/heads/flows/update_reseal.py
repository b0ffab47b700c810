"""Reseal before a flash: a copy of the TOTP secret sealed to the new image's predicted PCRs
(docs/firmware-update.md §Pending seal).

The prediction (:func:`heads.flows.rom_predict.predict_pcrs`) needs the RAM below 4 GiB for
PCR 4 on the uefi profile (QEMU patches the initrd address into the kernel it measures).  The
running system does not know it exactly, so a few common sizes are tried: the prediction
checks each rule against this boot's own log first, and only the size that reproduces the
current kernel's measurement gives a complete prediction.

The disk unlock key, when one is sealed, gets the same treatment
(:func:`reseal_disk_key_for_update`, docs/disk-key.md §Firmware updates): its own passphrase
releases it, and the copy is sealed with that passphrase to the same prediction, PCRs 5 and 6
completed as the key's policy needs them.

Nothing here decides whether the boot deserves a reseal: the caller checks the integrity
gate (the TOTP was released this boot and /boot verifies).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from heads.adapters.tpm import Tpm
from heads.core.flash_image import FlashImage
from heads.core.pcr_predict import Prediction
from heads.core.sealing import SealRecord
from heads.core.secret import Secret
from heads.errors import AuthError, UsageError
from heads.flows.rom_predict import predict_pcrs
from heads.flows.totp import seal_pending, unseal_totp

if TYPE_CHECKING:
    from heads.flows.disk_key import DiskTarget
    from heads.flows.measure import EventLogWriter

__all__ = [
    "MEMORY_CANDIDATES_MIB",
    "DiskKeyReseal",
    "Reseal",
    "predict_update",
    "reseal_disk_key_for_update",
    "reseal_for_update",
]

_log = logging.getLogger(__name__)

#: RAM sizes tried for the uefi prediction, most likely first (the QEMU machines use 1 GiB).
MEMORY_CANDIDATES_MIB: Final = (1024, 2048, 512, 768, 1536, 4096, 3072, 256)


@dataclass(frozen=True, slots=True)
class Reseal:
    """A reseal: the prediction, and (when it was complete) the seconds each step took."""

    prediction: Prediction
    predict_s: float
    seal_s: float
    sealed: bool


def predict_update(
    new: FlashImage,
    current: FlashImage,
    *,
    profile: str,
    firmware_log: bytes | None,
    clean: bool,
    memory_candidates_mib: Sequence[int] = MEMORY_CANDIDATES_MIB,
) -> Prediction:
    """The first complete prediction over ``memory_candidates_mib``, else the first one.

    Raises:
        UsageError: ``new`` would be refused on this chip.
        FormatError: the log or an image does not parse.
    """
    first: Prediction | None = None
    for mib in memory_candidates_mib if profile == "uefi" else memory_candidates_mib[:1]:
        prediction = predict_pcrs(
            new, current, profile=profile, firmware_log=firmware_log, clean=clean, memory_mib=mib
        )
        if prediction.complete:
            return prediction
        first = first or prediction
    assert first is not None  # noqa: S101 - at least one candidate
    return first


def reseal_for_update(
    tpm: Tpm,
    *,
    new: FlashImage,
    current: FlashImage,
    profile: str,
    firmware_log: bytes | None,
    clean: bool,
    owner_auth: Secret | None = None,
) -> Reseal:
    """Predict the PCRs after flashing ``new``; when every one is predictable, unseal the
    secret (in memory only) and seal a pending copy to them.

    Raises:
        UsageError: ``new`` would be refused on this chip.
        FormatError: the log or an image does not parse.
        NotProvisionedError, UnsealError, LockoutError, TpmError: the secret could not be
            unsealed or the copy sealed.
    """
    started = time.monotonic()
    prediction = predict_update(
        new, current, profile=profile, firmware_log=firmware_log, clean=clean
    )
    predict_s = time.monotonic() - started
    if not prediction.complete:
        return Reseal(prediction, predict_s, 0.0, sealed=False)
    started = time.monotonic()
    secret = unseal_totp(tpm, owner_auth=owner_auth)
    seal_pending(tpm, secret, prediction.values, profile=profile, owner_auth=owner_auth)
    return Reseal(prediction, predict_s, time.monotonic() - started, sealed=True)


@dataclass(frozen=True, slots=True)
class DiskKeyReseal:
    """A disk key copy sealed for a new image: its record, whether PCR 6 was extended with the
    header listing now (False: earlier in this boot), and the seconds unseal + seal took."""

    record: SealRecord
    headers_extended: bool
    seal_s: float


def reseal_disk_key_for_update(
    tpm: Tpm,
    passphrase: Secret,
    prediction: Prediction,
    *,
    profile: str,
    firmware_log: bytes | None,
    targets: Sequence[DiskTarget],
    log: EventLogWriter | None,
    owner_auth: Secret | None = None,
    say: Callable[[str], None] = _log.info,
) -> DiskKeyReseal:
    """Seal a pending copy of the disk unlock key for the image ``prediction`` is about.

    PCR 6 must hold the header listing for the current object to release the key: the
    headers are measured unless this boot already did (once per boot, as the kexec path).
    PCRs 5 and 6 of the next boot are this boot's firmware values (the image does not carry
    the firmware that extends them), replayed from ``firmware_log``.

    Raises:
        UsageError: the prediction is incomplete.
        FormatError, MeasurementError: a header or the firmware log does not parse.
        AuthError: wrong DUK passphrase (a refused owner passphrase is a UsageError).
        UnsealError, LockoutError, TpmError: not released, or the copy not sealed.
    """
    from heads.flows.disk_key import (  # noqa: PLC0415 - only with a disk key
        firmware_pcrs,
        measure_headers_once,
        unseal_disk_key,
    )
    from heads.flows.disk_key_pending import (  # noqa: PLC0415
        pending_disk_key_values,
        seal_pending_disk_key,
    )

    if not prediction.complete:
        raise UsageError("a PCR of the new image cannot be predicted: no disk key copy sealed")
    # Parsed before the passphrase is used: a log that does not replay costs no TPM try.
    firmware = (
        firmware_pcrs(firmware_log, source="the firmware event log")
        if firmware_log is not None
        else None
    )
    listing, extended = measure_headers_once(tpm, log, targets)
    started = time.monotonic()
    key = unseal_disk_key(tpm, passphrase, owner_auth=owner_auth, say=say)
    values = pending_disk_key_values(
        prediction.values, profile=profile, listing=listing, firmware=firmware
    )
    try:
        record = seal_pending_disk_key(
            tpm, key, passphrase, values, profile=profile, owner_auth=owner_auth
        )
    except AuthError as err:
        # The TPM owner's passphrase, not the DUK's: asking the DUK passphrase again would
        # not help.
        raise UsageError(f"the copy was not sealed: {err.message}", hint=err.hint) from None
    return DiskKeyReseal(record, extended, time.monotonic() - started)
