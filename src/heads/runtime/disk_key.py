"""The disk unlock key at boot: measure the LUKS headers, ask the passphrase, release the key
and hand it to the OS in an archive appended to its initrd (docs/disk-key.md §At boot).

Port of Heads' ``kexec-insert-key.sh``/``kexec-unseal-key.sh``.  Called from the kexec path
once /boot has verified (so ``kexec_key_devices.txt`` is covered by the owner's signature) and
before PCR 4 leaves its firmware value.  Three tries of the passphrase, the tries left shown;
a blank answer, a header that changed, a PCR that moved or a lockout go to the question
"boot and use the Disk Recovery Key?": yes boots the unmodified initrd (the OS asks its
recovery passphrase), no returns to the menu.  The key and the archive stay in memory: the
kexec adapter writes the initrd to an anonymous memory file, never to a disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from heads.adapters.lvm import activate_volume_group
from heads.adapters.tpm import Tpm
from heads.core.dialogs import YES, DialogId, Tone, passphrase, yesno
from heads.core.disk_key import (
    CRYPTTAB_OVERRIDES_FILE,
    DEVICES_FILE,
    LVM_FILE,
    CrypttabOverride,
    key_initrd,
    parse_devices,
    parse_lvm,
    parse_overrides,
)
from heads.core.secret import Secret
from heads.core.text import shown
from heads.errors import AuthError, HeadsError, LockoutError, ToolError, UnsealError, UsageError
from heads.flows.disk_key import DiskTarget, check_listing, measure_headers_once, unseal_disk_key
from heads.flows.measure import EventLogWriter
from heads.ui.renderer import Renderer

__all__ = ["TRIES", "DiskKeyDeclinedError", "disk_key_archive"]

TRIES: Final = 3
_MAX_FILE: Final = 64 * 1024


class DiskKeyDeclinedError(HeadsError):
    """The key was not released and the owner chose not to boot with the recovery key.

    ``headers_changed``: because the LUKS headers differ from those sealed (the menus then
    offer the reseal).
    """

    def __init__(self, message: str, *, hint: str | None = None, headers_changed: bool) -> None:
        super().__init__(message, hint=hint)
        self.headers_changed = headers_changed


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as f:
            return f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return None


def _fallback(renderer: Renderer | None, reason: str, *, headers_changed: bool = False) -> None:
    """Ask whether to boot with the recovery key; raises DiskKeyDeclinedError on no."""
    question = yesno(
        DialogId.DISK_KEY_RECOVERY,
        "Disk Unlock Key not released",
        f"{reason}\n\nDo you wish to boot and use the LUKS Disk Recovery Key?",
        default=YES,
        tone=Tone.WARNING,
    )
    answer = renderer.show(question) if renderer is not None else YES
    if answer != YES:
        raise DiskKeyDeclinedError(
            f"not booting: {reason}",
            hint="re-seal the disk unlock key, or boot with the DRK",
            headers_changed=headers_changed,
        )


def disk_key_archive(
    *,
    boot_dir: Path,
    tpm: Tpm,
    log: EventLogWriter | None,
    say: Callable[[str], None],
    renderer: Renderer | None,
    locate: Callable[[str], Path] = Path,
) -> Secret | None:
    """The archive to append to the OS initrd, or None (no key configured, or the owner boots
    with the recovery key).

    ``say`` prints one console line; ``locate`` maps a listed device to what to read (tests
    read image files).  Without a renderer (an unattended boot) nobody can type
    the passphrase: the boot goes on with the recovery key.

    Raises:
        DiskKeyDeclinedError: the key was not released and the owner declined the fallback.
        FormatError: the key files on /boot or a LUKS header are malformed.
    """
    tell = say
    raw = _read(boot_dir / DEVICES_FILE)
    if raw is None:
        return None
    devices = parse_devices(raw, source=str(boot_dir / DEVICES_FILE))
    raw_overrides = _read(boot_dir / CRYPTTAB_OVERRIDES_FILE)
    overrides: tuple[CrypttabOverride, ...] = ()
    if raw_overrides is not None:
        overrides = parse_overrides(raw_overrides, source=str(boot_dir / CRYPTTAB_OVERRIDES_FILE))
    raw_lvm = _read(boot_dir / LVM_FILE)
    group = parse_lvm(raw_lvm, source=str(boot_dir / LVM_FILE)) if raw_lvm is not None else None
    if group is not None:
        try:
            activate_volume_group(group)
        except ToolError as err:
            # The devices may not exist yet; nothing is released without their headers.
            reason = (
                f"The disk key's volume group {shown(group)} was not activated: "
                f"{shown(err.message)}."
            )
            tell(f"disk key: {reason}")
            _fallback(renderer, reason)
            return None
        tell(f"disk key: LVM volume group {shown(group)} activated")
    targets = [DiskTarget(d.device, locate(d.device)) for d in devices]
    try:
        listing, extended = measure_headers_once(tpm, log, targets)
    except UsageError as err:
        reason = f"The disk key's LUKS headers could not be read: {shown(err.message)}."
        tell(f"disk key: {reason}")
        _fallback(renderer, reason)
        return None
    names = ", ".join(shown(d.device) for d in devices)
    when = "measured into PCR 6" if extended else "already measured into PCR 6 in this boot"
    tell(f"disk key: LUKS headers of {names} {when}")
    if check_listing(boot_dir, listing) is False:
        reason = (
            "Encrypted disk keys have changed since the TPM Disk Unlock Key was sealed "
            "(PCR 6 will not match)."
        )
        tell(f"disk key: {reason}")
        _fallback(renderer, reason, headers_changed=True)
        return None
    if renderer is None:
        tell("disk key: unattended boot, no passphrase: booting with the recovery key")
        return None
    note = ""
    for attempt in range(TRIES):
        text = f"Enter the disk unlock key passphrase (blank to use the recovery key).{note}"
        answer = renderer.show(
            passphrase(
                DialogId.DISK_KEY_PASSPHRASE,
                f"Disk Unlock Key ({TRIES - attempt} of {TRIES} tries left)",
                text,
            )
        )
        if not isinstance(answer, Secret) or len(answer) == 0:
            tell("disk key: no passphrase given")
            _fallback(renderer, "No disk unlock key passphrase was given.")
            return None
        started = time.monotonic()
        try:
            key = unseal_disk_key(tpm, answer, say=tell)
        except AuthError as err:
            left = f" ({err.tries_left} before TPM lockout)" if err.tries_left is not None else ""
            tell(f"disk key: wrong passphrase{left}")
            note = f"\n\nWrong passphrase{left}."
            continue
        except (UnsealError, LockoutError) as err:
            tell(f"disk key: {err.message}")
            _fallback(renderer, err.message)
            return None
        archive = key_initrd(key, devices, overrides)
        tell(f"disk key: released in {time.monotonic() - started:.2f} s; handed to the OS initrd")
        return archive
    tell(f"disk key: {TRIES} wrong passphrases")
    _fallback(renderer, f"The passphrase was wrong {TRIES} times.")
    return None
