"""The PCRs the TOTP secret is sealed to after flashing a new image (docs/firmware-update.md).

The image that will really be on the chip is the new one with the current image's user files
carried over (unless the flash is clean), so that is the one predicted.  The current boot's
firmware event log supplies every measurement the image does not determine; the rules and
their self-checks are in :mod:`heads.core.pcr_predict`.
"""

from __future__ import annotations

from heads.core.eventlog import parse_log
from heads.core.flash_image import FlashImage
from heads.core.pcr_predict import Prediction, predict
from heads.core.rom_update import carry_user_files, check_replacement

__all__ = ["Prediction", "predict_pcrs"]


def predict_pcrs(
    new: FlashImage,
    current: FlashImage,
    *,
    profile: str,
    firmware_log: bytes | None,
    log_source: str = "firmware event log",
    clean: bool = False,
    memory_mib: int = 1024,
) -> Prediction:
    """The sha256 values of the profile's TOTP PCRs after flashing ``new`` over ``current``.

    ``firmware_log`` is this boot's firmware log (TCG binary; cbmem's on coreboot), or None.

    Raises:
        UsageError: ``new`` would be refused on this chip (size, board).
        FormatError: the log or an image does not parse.
    """
    check_replacement(current, new)
    final, _carried = carry_user_files(current, new, clean=clean)
    log = None if firmware_log is None else parse_log(firmware_log, source=log_source)
    return predict(final, current, profile=profile, firmware_log=log, mem_below_4g=memory_mib << 20)
