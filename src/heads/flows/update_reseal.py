"""Reseal before a flash: a copy of the TOTP secret sealed to the new image's predicted PCRs
(docs/firmware-update.md §Pending seal).

The prediction (:func:`heads.flows.rom_predict.predict_pcrs`) needs the RAM below 4 GiB for
PCR 4 on the uefi profile (QEMU patches the initrd address into the kernel it measures).  The
running system does not know it exactly, so a few common sizes are tried: the prediction
checks each rule against this boot's own log first, and only the size that reproduces the
current kernel's measurement gives a complete prediction.

Nothing here decides whether the boot deserves a reseal: the caller checks the integrity
gate (the TOTP was released this boot and /boot verifies).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from heads.adapters.tpm import Tpm
from heads.core.flash_image import FlashImage
from heads.core.pcr_predict import Prediction
from heads.core.secret import Secret
from heads.flows.rom_predict import predict_pcrs
from heads.flows.totp import seal_pending, unseal_totp

__all__ = ["MEMORY_CANDIDATES_MIB", "Reseal", "predict_update", "reseal_for_update"]

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
