"""Before a flash from the menus: keep the disk unlock key for the new firmware
(docs/disk-key.md §Firmware updates).

When /boot lists LUKS devices and a key is sealed, the owner types the DUK passphrase (dialog
``disk-key-update-passphrase``, three tries); the key is released as at a boot and a copy is
sealed with the same passphrase to the new image's predicted PCRs
(:func:`heads.flows.update_reseal.reseal_disk_key_for_update`).  A blank answer, a boot in
recovery, a /boot that does not verify or a PCR that cannot be predicted skip it with a
warning: the flash goes on, and the next boot will need the Disk Recovery Key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.core.dialogs import DialogId, passphrase
from heads.core.disk_key import DEVICES_FILE, parse_devices
from heads.core.secret import Secret
from heads.core.text import shown
from heads.errors import AuthError, HeadsError

if TYPE_CHECKING:
    from heads.core.pcr_predict import Prediction
    from heads.runtime.firmware_menu import FirmwareContext

__all__ = ["TRIES", "reseal_disk_key"]

TRIES: Final = 3
_MAX_FILE: Final = 64 * 1024


def _skipped(ctx: FirmwareContext, why: str) -> str:
    ctx.say(f"disk key reseal: skipped: {why}")
    line = (
        f"No disk key reseal ({shown(why)}): the next boot will not release the disk unlock "
        "key; boot with the Disk Recovery Key and seal the key again."
    )
    ctx.say(line)
    return line


def reseal_disk_key(
    ctx: FirmwareContext,
    predicted: Callable[[], Prediction | None],
    *,
    firmware_log: bytes | None,
    boot_verifies: Callable[[], bool],
    owner_needed: Callable[[], None],
    locate: Callable[[str], Path] = Path,
) -> str | None:
    """Seal the pending disk key copy for the new image (``predicted`` gives its PCRs, or
    None); returns the line for the owner, or None when no disk key is configured.

    ``owner_needed`` raises when the TPM has an owner passphrase this boot was not told
    (asked before the disk key passphrase, which would otherwise be typed for nothing).

    Raises:
        FormatError: ``kexec_key_devices.txt`` is malformed.
    """
    from heads.flows.disk_key import DiskTarget, disk_key_exists  # noqa: PLC0415
    from heads.flows.disk_key_pending import PENDING_DISK_KEY_HANDLE  # noqa: PLC0415
    from heads.flows.update_reseal import reseal_disk_key_for_update  # noqa: PLC0415

    path = ctx.env.boot_dir / DEVICES_FILE
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return None
    if not disk_key_exists(ctx.tpm):
        ctx.say("disk key reseal: /boot lists LUKS devices but no disk key is sealed")
        return None
    if ctx.recovered:
        return _skipped(ctx, 'PCR 4 holds "recovery"')
    if not boot_verifies():
        return _skipped(ctx, "/boot does not verify")
    prediction = predicted()
    if prediction is None or not prediction.complete:
        return _skipped(ctx, "a PCR of the new firmware cannot be predicted")
    if ctx.renderer is None:
        return _skipped(ctx, "nobody at the console to type the passphrase")
    owner_needed()
    devices = parse_devices(raw, source=str(path))
    targets = [DiskTarget(d.device, locate(d.device)) for d in devices]
    note = ""
    for attempt in range(TRIES):
        answer = ctx.renderer.show(
            passphrase(
                DialogId.DISK_KEY_UPDATE_PASSPHRASE,
                f"Disk Unlock Key for the new firmware ({TRIES - attempt} of {TRIES} tries left)",
                "Enter the disk unlock key passphrase to keep the key after the update (blank: "
                f"the next boot will need the Disk Recovery Key).{note}",
            )
        )
        if not isinstance(answer, Secret) or len(answer) == 0:
            return _skipped(ctx, "no passphrase given")
        try:
            result = reseal_disk_key_for_update(
                ctx.tpm,
                answer,
                prediction,
                profile=ctx.env.profile,
                firmware_log=firmware_log,
                targets=targets,
                log=ctx.log,
                owner_auth=ctx.owner,
                say=ctx.say,
            )
        except AuthError as err:
            left = f" ({err.tries_left} before TPM lockout)" if err.tries_left is not None else ""
            ctx.say(f"disk key reseal: wrong passphrase{left}")
            note = f"\n\nWrong passphrase{left}."
            continue
        except HeadsError as err:
            return _skipped(ctx, err.message)
        when = "measured now" if result.headers_extended else "measured earlier in this boot"
        ctx.say(
            f"disk key reseal: pending copy sealed at 0x{PENDING_DISK_KEY_HANDLE:08x} (headers "
            f"{when}; unseal and seal {result.seal_s:.2f} s)"
        )
        return "The disk unlock key was resealed to the new firmware's PCRs."
    return _skipped(ctx, f"the passphrase was wrong {TRIES} times")
