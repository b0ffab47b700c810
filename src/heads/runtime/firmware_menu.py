"""The menus' firmware items in the running payload: Flash/Update the BIOS, save the
configuration, add a key (docs/firmware-update.md).

Each one builds the whole new image in memory, reseals first, then flashes it over the flash
device (:func:`heads.flows.firmware.flash`: written, read back, compared) and lets the menus
restart the machine (QEMU boards power off).

The reseal keeps attestation working across the change: the PCRs the new image will produce
are predicted and, when this boot passed the integrity gate (the TOTP secret was released this
boot and /boot verifies now), a copy of the secret is sealed to them beside the current object
(:func:`heads.flows.update_reseal.reseal_for_update`).  The next boot's unseal falls back to
that copy and promotes it.  Without the gate, or when a PCR cannot be predicted, the flash goes
ahead as in Heads and the console says the TOTP secret must be generated again.  A disk
unlock key, when one is sealed, is resealed the same way with its passphrase
(:mod:`heads.runtime.disk_key_reseal`).

The update file comes from a USB drive: the name the owner typed, looked up on every USB
drive (top directory only), or the only ``*.rom``/``*.zip`` there when the name is empty.  A
package is verified with the firmware's own keyring; a bare image is flashed as it is, its
SHA-256 printed.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.adapters.tpm import Tpm
from heads.core.gui import AddKey, Failed, FailureKind, Flash, Ok, Outcome, SaveConfig
from heads.core.secret import Secret
from heads.core.text import shown
from heads.errors import AuthError, HeadsError, UsageError

if TYPE_CHECKING:
    from heads.core.flash_image import FlashImage
    from heads.core.pcr_predict import Prediction
    from heads.flows.measure import EventLogWriter
    from heads.runtime.boot import RuntimeEnv
    from heads.ui.renderer import Renderer

__all__ = ["FirmwareContext", "perform"]

_UPDATE_SUFFIXES: Final = (".rom", ".zip")
_KEY_SUFFIXES: Final = (".asc", ".gpg", ".pub", ".key")
_MAX_NAMES: Final = 32
_MAX_LOG_BYTES: Final = 16 * 1024 * 1024 + 1


@dataclass
class FirmwareContext:
    """What the menus' performer hands over for one effect.

    Attributes:
        totp_released: the TOTP secret was unsealed in this boot (half of the gate).
        recovered: PCR 4 holds ``recovery``: nothing unseals, so nothing is resealed.
        owner: the TPM owner passphrase typed in this boot, if any.
        device: the flash device (None: the NVMe disk with the flash serial); host tests
            pass a file.
        media: a directory to take files from instead of the USB drives (host tests).
        renderer: asks the disk unlock key passphrase (None: nobody to ask).
        log: the runtime's event log (the LUKS headers are measured once per boot).
        locate: where to read a LUKS device listed on /boot (host tests read image files).
    """

    env: RuntimeEnv
    tpm: Tpm
    say: Callable[[str], None]
    totp_released: bool
    recovered: bool
    owner: Secret | None = None
    device: Path | None = None
    media: Path | None = None
    renderer: Renderer | None = None
    log: EventLogWriter | None = None
    locate: Callable[[str], Path] = Path
    #: Whether /boot verifies, once checked in this effect.
    boot_verified: bool | None = None


class _OwnerAuthNeeded(Exception):  # noqa: N818 - a question for the owner, not a failure
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def perform(ctx: FirmwareContext, effect: Flash | SaveConfig | AddKey) -> Outcome:
    """Do one firmware effect.

    Returns :class:`Failed` with :attr:`FailureKind.OWNER_AUTH`, before anything is written,
    when the reseal needs the TPM owner passphrase and ``effect.owner`` does not have it.

    Raises:
        HeadsError: a step failed (the performer shows it as a failure).
    """
    from heads.runtime.flash_update import find_flash_device  # noqa: PLC0415

    device = ctx.device or find_flash_device()
    if device is None:
        ctx.say("flash: no flash device in this machine")
        return Failed("There is no flash device in this machine.")
    if effect.owner is not None:
        ctx = replace(ctx, owner=effect.owner)
    try:
        if isinstance(effect, Flash):
            return _update(ctx, device, effect)
        if isinstance(effect, SaveConfig):
            return _save_config(ctx, device, effect)
        return _add_key(ctx, device)
    except _OwnerAuthNeeded as need:
        return Failed(shown(need.message), FailureKind.OWNER_AUTH)


# -- the gate and the reseal -----------------------------------------------------------------


def _gate(ctx: FirmwareContext) -> str | None:
    """Why this boot may not reseal, or None when it passed the integrity gate."""
    from heads.flows.totp import totp_exists  # noqa: PLC0415

    if ctx.recovered:
        return 'PCR 4 holds "recovery"'
    if not totp_exists(ctx.tpm):
        return "no TOTP secret is sealed"
    if not ctx.totp_released:
        return "the TOTP secret was not released in this boot"
    if not _boot_verifies(ctx):
        return "/boot does not verify"
    return None


def _boot_verifies(ctx: FirmwareContext) -> bool:
    from heads.flows.boot_signing import verify_boot  # noqa: PLC0415

    if ctx.boot_verified is None:
        keyring = ctx.env.root / ".gnupg" / "pubring.kbx"
        ctx.boot_verified = verify_boot(ctx.env.boot_dir, keyring=keyring, tpm=ctx.tpm).ok
    return ctx.boot_verified


def _firmware_log(ctx: FirmwareContext) -> bytes | None:
    try:
        with ctx.env.firmware_log.open("rb") as f:
            return f.read(_MAX_LOG_BYTES)
    except OSError:
        return None


def _reseal(
    ctx: FirmwareContext, new: FlashImage, current: FlashImage, *, clean: bool
) -> tuple[str, ...]:
    """Seal pending copies (TOTP, disk key) for ``new``; returns the lines for the owner."""
    from heads.runtime.disk_key_reseal import reseal_disk_key  # noqa: PLC0415

    line, prediction = _reseal_totp(ctx, new, current, clean=clean)

    def predicted() -> Prediction | None:
        if prediction is not None:
            return prediction
        from heads.flows.update_reseal import predict_update  # noqa: PLC0415

        try:
            return predict_update(
                new,
                current,
                profile=ctx.env.profile,
                firmware_log=_firmware_log(ctx),
                clean=clean,
            )
        except HeadsError as err:
            ctx.say(f"disk key reseal: no prediction: {err.message}")
            return None

    def owner_needed() -> None:
        if ctx.owner is None and ctx.tpm.lockout_state().owner_auth_set:
            ctx.say("disk key reseal: the TPM owner passphrase is needed")
            raise _OwnerAuthNeeded("Resealing the disk unlock key needs the TPM owner passphrase.")

    duk = reseal_disk_key(
        ctx,
        predicted,
        firmware_log=_firmware_log(ctx),
        boot_verifies=lambda: _boot_verifies(ctx),
        owner_needed=owner_needed,
        locate=ctx.locate,
    )
    return (line,) if duk is None else (line, duk)


def _reseal_totp(
    ctx: FirmwareContext, new: FlashImage, current: FlashImage, *, clean: bool
) -> tuple[str, Prediction | None]:
    """Seal a pending TOTP copy for ``new`` when the gate allows; returns the line for the
    owner and the prediction (None when none was made)."""
    from heads.flows.update_reseal import reseal_for_update  # noqa: PLC0415

    refused = _gate(ctx)
    if refused is not None:
        ctx.say(f"reseal: skipped: {refused}")
        line = f"No reseal ({refused}): the TOTP secret will not unseal after the restart."
        ctx.say(line)
        return line, None
    if ctx.owner is None and ctx.tpm.lockout_state().owner_auth_set:
        # Asked before trying: a try without it would cost a dictionary-attack try.
        ctx.say("reseal: the TPM owner passphrase is needed")
        raise _OwnerAuthNeeded("Resealing the TOTP secret needs the TPM owner passphrase.")
    try:
        result = reseal_for_update(
            ctx.tpm,
            new=new,
            current=current,
            profile=ctx.env.profile,
            firmware_log=_firmware_log(ctx),
            clean=clean,
            owner_auth=ctx.owner,
        )
    except AuthError as err:
        # The TPM has an owner passphrase (set by a TPM reset or the factory reset) that
        # this boot was not told: ask for it rather than lose the TOTP.
        ctx.say(f"reseal: the TPM owner passphrase is needed: {err.message}")
        raise _OwnerAuthNeeded(f"Resealing the TOTP secret: {err.message}") from None
    except HeadsError as err:
        # The flash is still what the owner asked for (a log that does not parse, a TPM
        # error...): go on as Heads does, and say so.
        ctx.say(f"reseal: failed: {err.message}")
        line = f"No reseal ({shown(err.message)}): the TOTP secret will not unseal after the "
        line += "restart; generate a new one behind the integrity gate."
        ctx.say(line)
        return line, None
    prediction = result.prediction
    for pcr, value in sorted(prediction.values.items()):
        ctx.say(f"reseal: PCR {pcr} predicted {value.hex()} ({prediction.reasons.get(pcr, '')})")
    for pcr, why in sorted(prediction.unpredictable.items()):
        ctx.say(f"reseal: PCR {pcr} cannot be predicted: {why}")
    if not result.sealed:
        line = "No reseal (a PCR cannot be predicted): the TOTP secret will not unseal after "
        line += "the restart; generate a new one behind the integrity gate."
        ctx.say(line)
        return line, prediction
    ctx.say(
        f"reseal: pending copy sealed (prediction {result.predict_s:.2f} s, unseal and seal "
        f"{result.seal_s:.2f} s)"
    )
    return "The TOTP secret was resealed to the new firmware's PCRs: the code stays valid.", (
        prediction
    )


# -- Flash/Update the BIOS ------------------------------------------------------------------


def _candidates(root: Path, suffixes: tuple[str, ...]) -> list[str]:
    try:
        names = sorted(
            p.name
            for p in root.iterdir()
            if p.name.lower().endswith(suffixes) and p.is_file() and not p.is_symlink()
        )
    except OSError:
        return []
    return names[:_MAX_NAMES]


def _pick(
    ctx: FirmwareContext, wanted: str, suffixes: tuple[str, ...], use: Callable[[Path], Outcome]
) -> Outcome:
    """Find ``wanted`` (or the only candidate) on the USB drives and call ``use`` on it while
    its drive is mounted."""
    from heads.runtime.usb import mounted, usb_disks  # noqa: PLC0415

    if "/" in wanted or wanted in (".", ".."):
        return Failed(f"{shown(wanted)}: give a file name on the USB drive, not a path")
    if ctx.media is not None:
        names = _candidates(ctx.media, suffixes)
        if wanted in names or (not wanted and len(names) == 1):
            return use(ctx.media / (wanted or names[0]))
        return Failed(f"{shown(wanted) or 'no single file'} in {ctx.media}")
    seen: list[str] = []
    disks = usb_disks()
    if not disks:
        return Failed("No USB drive found: plug in the drive holding the file.")
    for disk in disks:
        with mounted(disk.filesystem_device) as where:
            names = _candidates(where, suffixes)
            seen.extend(f"{disk.device.name}: {shown(n)}" for n in names)
            if wanted and wanted in names:
                return use(where / wanted)
            if not wanted and len(names) == 1 and len(disks) == 1:
                return use(where / names[0])
    what = f"{shown(wanted)} is not" if wanted else "no single file is"
    return Failed(
        f"{what} on the USB drive; the files there:",
        lines=tuple(seen) or ("(none with " + ", ".join(suffixes) + ")",),
    )


def _update(ctx: FirmwareContext, device: Path, effect: Flash) -> Outcome:
    if ctx.env.mode is not None and ctx.env.mode.restricted:
        return Failed("Flashing is not allowed while Restricted Boot is enabled.")

    def use(path: Path) -> Outcome:
        return _flash_file(ctx, device, path, keep=effect.keep_settings)

    return _pick(ctx, effect.path.strip(), _UPDATE_SUFFIXES, use)


def _flash_file(ctx: FirmwareContext, device: Path, path: Path, *, keep: bool) -> Outcome:
    from heads.adapters.flash_device import read_device  # noqa: PLC0415
    from heads.core.flash_image import FlashImage  # noqa: PLC0415
    from heads.core.rom_update import carry_user_files, check_replacement  # noqa: PLC0415
    from heads.flows.firmware import read_image_file, verify_package  # noqa: PLC0415

    lines: list[str] = []
    if path.name.lower().endswith(".zip"):
        check = verify_package(path, ctx.env.root / ".gnupg" / "pubring.kbx")
        new = check.image
        ctx.say(
            f"update: package {shown(path.name)}: {shown(check.rom_name)} signed by "
            f"{check.fingerprint or 'an unnamed key'}; sha256 {check.sha256}"
        )
        lines.append(f"Package verified: {shown(check.rom_name)}, signed by {check.fingerprint}")
    else:
        new = read_image_file(path)
        digest = hashlib.sha256(new.to_bytes()).hexdigest()
        ctx.say(f"update: bare image {shown(path.name)}: sha256 {digest} (not signed)")
        lines.append(f"Bare image {shown(path.name)} (not signed), SHA-256 {digest}")
    current = FlashImage.from_bytes(read_device(device), source=str(device))
    check_replacement(current, new)
    final, carried = carry_user_files(current, new, clean=not keep)
    ctx.say(f"update: {'keeping ' + ', '.join(carried) if carried else 'no settings kept'}")
    lines.extend(_reseal(ctx, new, current, clean=not keep))
    lines.append(_write(ctx, device, final))
    return Ok(tuple(lines))


def _write(ctx: FirmwareContext, device: Path, image: FlashImage) -> str:
    from heads.adapters.flash_device import DeviceChip  # noqa: PLC0415
    from heads.flows.firmware import flash  # noqa: PLC0415

    with (
        tempfile.TemporaryDirectory(prefix="heads-flash-") as tmp,
        DeviceChip(device, Path(tmp)) as chip,
    ):
        report = flash(chip.programmer, image, clean=True)
    ctx.say(
        f"flash: written in {report.write_s:.2f} s, read back and verified in "
        f"{report.verify_s:.2f} s (device read {chip.read_s:.2f} s, copied back and synced "
        f"{chip.copy_back_s:.2f} s)"
    )
    ctx.say("flash: done; the machine restarts (this board powers off)")
    return f"Flashed and verified (sha256 {report.sha256})."


# -- Save configuration ---------------------------------------------------------------------


def _save_config(ctx: FirmwareContext, device: Path, effect: SaveConfig) -> Outcome:
    from heads.adapters.flash_device import read_device  # noqa: PLC0415
    from heads.core.flash_image import FlashImage  # noqa: PLC0415
    from heads.flows.firmware import image_config, with_config  # noqa: PLC0415

    current = FlashImage.from_bytes(read_device(device), source=str(device))
    config = image_config(current)
    try:
        for key, value in effect.changes:
            config = config.set(key, value)
    except ValueError as exc:
        raise UsageError(f"cannot save the configuration: {exc}") from None
    new = with_config(current, config)
    for key, value in effect.changes:
        ctx.say(f'config.user: {key}="{shown(value)}"')
    lines = [*_reseal(ctx, new, current, clean=False), _write(ctx, device, new)]
    return Ok(tuple(lines))


# -- GPG options: add a key -----------------------------------------------------------------


def _add_key(ctx: FirmwareContext, device: Path) -> Outcome:
    def use(path: Path) -> Outcome:
        return _flash_key(ctx, device, path)

    return _pick(ctx, "", _KEY_SUFFIXES, use)


def _flash_key(ctx: FirmwareContext, device: Path, path: Path) -> Outcome:
    from heads.adapters.flash_device import read_device  # noqa: PLC0415
    from heads.core.flash_image import FlashImage  # noqa: PLC0415
    from heads.core.keyring_edit import with_added_key  # noqa: PLC0415
    from heads.flows.firmware import read_small_file  # noqa: PLC0415

    key_data = read_small_file(path, "the public key")
    current = FlashImage.from_bytes(read_device(device), source=str(device))
    new, count = with_added_key(current, key_data, source=path.name)
    ctx.say(f"keys: {shown(path.name)} added; the firmware keyring holds {count} key(s)")
    lines = [
        f"{shown(path.name)} added: {count} key(s) in the firmware keyring.",
        *_reseal(ctx, new, current, clean=False),
        _write(ctx, device, new),
    ]
    return Ok(tuple(lines))
