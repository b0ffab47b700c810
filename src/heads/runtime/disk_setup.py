"""Set up, reseal and change the disk unlock key from the menus (docs/disk-key.md §In the
menus).

Port of Heads' ``kexec-save-key.sh``/``kexec-seal-key.sh`` as ``kexec-save-default.sh``
offers them, and of its ``luks-change-key``/``luks-reencrypt`` items.  The state machine
(:mod:`heads.core.gui`) asks the questions and the passphrases; this module performs its
effects on the machine:

* :func:`find_disks`: the block devices whose first bytes are a LUKS header, and the devices
  ``kexec_key_devices.txt`` lists;
* :func:`check_recovery`: whether the Disk Recovery Key opens every device (nothing changes
  before it does);
* :func:`seal`: optionally wipe the key slots that are neither the recovery key's nor the disk
  key's, then :func:`heads.flows.disk_key.seal_disk_key` with this boot's PCRs
  (:func:`heads.flows.disk_key.values_from_live`: PCR 4 at its firmware value, 5 and 6
  replayed from the firmware's event log) and the owner's passphrase, and write the crypttab
  overrides of the default entry's initrd (:mod:`heads.flows.crypttab_overrides`; a zstd
  initrd gets none here: the payload has no ``zstd``); /boot must be writable, and signed
  afterwards;
* :func:`change_recovery`, :func:`reencrypt`: ``luksChangeKey`` and an offline ``reencrypt``.

Passphrases reach cryptsetup through pipes only (:mod:`heads.adapters.cryptsetup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from heads.adapters import cryptsetup
from heads.adapters.tpm import Tpm
from heads.core.disk_key import DEVICES_FILE, parse_devices
from heads.core.gui import (
    ChangeRecoveryKey,
    CheckRecoveryKey,
    Failed,
    FailureKind,
    LuksDevices,
    Ok,
    Outcome,
    Reencrypt,
    SealDiskKey,
)
from heads.core.luks import FIRST_READ, header_bytes_needed
from heads.core.secret import Secret
from heads.core.text import shown
from heads.errors import AuthError, FormatError
from heads.flows.crypttab_overrides import write_crypttab_overrides
from heads.flows.disk_key import DiskTarget, seal_disk_key, values_from_live

__all__ = [
    "change_recovery",
    "check_recovery",
    "find_disks",
    "luks_devices",
    "reencrypt",
    "seal",
]

#: Block devices that never hold an owner's LUKS volume (memory, loop, optical, mappings).
_SKIPPED: Final = ("loop", "ram", "zram", "sr", "dm-", "fd")
_MAX_FILE: Final = 64 * 1024

Say = Callable[[str], None]


def luks_devices(
    sys_block: Path = Path("/sys/class/block"), dev: Path = Path("/dev")
) -> tuple[str, ...]:
    """The block devices (disks and partitions) that start with a LUKS header, by name."""
    try:
        names = sorted(p.name for p in sys_block.iterdir())
    except OSError:
        return ()
    found: list[str] = []
    for name in names:
        if name.startswith(_SKIPPED):
            continue
        path = dev / name
        try:
            with path.open("rb") as f:
                first = f.read(FIRST_READ)
            header_bytes_needed(first, source=str(path))
        except (OSError, FormatError):
            continue
        found.append(str(path))
    return tuple(found)


def _configured(boot_dir: Path) -> tuple[str, ...]:
    try:
        with (boot_dir / DEVICES_FILE).open("rb") as f:
            raw = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return ()
    return tuple(d.device for d in parse_devices(raw, source=str(boot_dir / DEVICES_FILE)))


def find_disks(boot_dir: Path, *, scan: Callable[[], Sequence[str]] = luks_devices) -> Outcome:
    """:class:`LuksDevices` (names escaped).

    Raises:
        FormatError: ``kexec_key_devices.txt`` is malformed.
    """
    found = tuple(scan())
    return LuksDevices(
        tuple(shown(d) for d in found), tuple(shown(d) for d in _configured(boot_dir))
    )


def _targets(devices: Sequence[str], locate: Callable[[str], Path]) -> list[DiskTarget]:
    return [DiskTarget(d, locate(d)) for d in devices]


def check_recovery(effect: CheckRecoveryKey, *, locate: Callable[[str], Path] = Path) -> Outcome:
    """:class:`Ok` when the recovery passphrase opens a key slot of every device."""
    for target in _targets(effect.devices, locate):
        if not cryptsetup.opens_with(target.path, effect.recovery):
            return Failed(
                f"The Disk Recovery Key passphrase does not open {shown(target.device)}: "
                "nothing was changed."
            )
    return Ok()


def _wipe_others(target: DiskTarget, recovery: Secret, say: Say) -> list[str]:
    """Wipe every slot but the recovery key's and the disk key's (Heads' reseal option)."""
    keep = cryptsetup.slot_of(target.path, recovery)
    if keep is None:
        raise AuthError(f"the recovery passphrase does not open {target.device}")
    v1 = cryptsetup.luks_version(target.path) == 1
    duk = cryptsetup.DUK_SLOT_LUKS1 if v1 else cryptsetup.DUK_SLOT_LUKS2
    lines: list[str] = []
    for slot in cryptsetup.active_slots(target.path):
        if slot in (keep, duk):
            continue
        cryptsetup.kill_slot(target.path, slot, recovery)
        line = f"{shown(target.device)}: key slot {slot} wiped"
        say(f"disk key: {line}")
        lines.append(line)
    return lines


def seal(
    effect: SealDiskKey,
    *,
    tpm: Tpm,
    boot_dir: Path,
    profile: str,
    firmware_log: Path | None,
    owner: Secret | None,
    say: Say,
    locate: Callable[[str], Path] = Path,
) -> Outcome:
    """Seal a new disk unlock key for ``effect.devices`` and write the key files to /boot.

    A refused TPM owner authorisation is :attr:`FailureKind.OWNER_AUTH` (the menus ask it).

    Raises:
        HeadsError: cryptsetup, the TPM or a header failed (shown by the performer).
    """
    targets = _targets(effect.devices, locate)
    for target in targets:
        if not cryptsetup.opens_with(target.path, effect.recovery):
            return Failed(f"The Disk Recovery Key passphrase does not open {shown(target.device)}.")
    lines: list[str] = []
    if effect.wipe_others:
        for target in targets:
            lines += _wipe_others(target, effect.recovery, say)
    values = values_from_live(tpm, profile=profile, event_log=firmware_log)
    try:
        result = seal_disk_key(
            tpm,
            targets=targets,
            recovery=effect.recovery,
            passphrase=effect.passphrase,
            boot_dir=boot_dir,
            values=values,
            profile=profile,
            owner_auth=effect.owner or owner,
            say=lambda m: say(f"disk key: {m}"),
        )
    except AuthError as err:
        # The recovery passphrase was checked just above: what refuses now is the TPM.
        say(f"disk key: {err.message}")
        return Failed(shown(err.message), FailureKind.OWNER_AUTH)
    names = ", ".join(shown(d.device) for d in result.devices)
    lines.append(f"Disk unlock key added to key slot {result.slot} of {names}.")
    lines.append(f"Sealed to PCRs {result.record.selection} of this boot ({values.source}).")
    # As the host's `heads disk seal`: the OS keeps its own crypttab names and options.
    overrides = write_crypttab_overrides(boot_dir, say=lambda m: say(f"disk key: {shown(m)}"))
    if overrides:
        paths = ", ".join(sorted({shown(o.path) for o in overrides}))
        lines.append(f"The key file replaces the OS initrd's own in {paths}.")
    say(f"disk key: sealed for {names}; key files written to /boot")
    return Ok(tuple(lines))


def change_recovery(
    effect: ChangeRecoveryKey, *, say: Say, locate: Callable[[str], Path] = Path
) -> Outcome:
    """``luksChangeKey`` on every device (all were checked to open with the old one)."""
    lines: list[str] = []
    for target in _targets(effect.devices, locate):
        cryptsetup.change_key(target.path, effect.recovery, effect.new)
        line = f"{shown(target.device)}: Disk Recovery Key passphrase changed"
        say(f"disk key: {line}")
        lines.append(line)
    return Ok(tuple(lines))


def reencrypt(effect: Reencrypt, *, say: Say, locate: Callable[[str], Path] = Path) -> Outcome:
    """Offline ``reencrypt`` of every device, keeping the recovery key's slot only."""
    lines: list[str] = []
    for target in _targets(effect.devices, locate):
        slot = cryptsetup.slot_of(target.path, effect.recovery)
        if slot is None:
            return Failed(f"The Disk Recovery Key passphrase does not open {shown(target.device)}.")
        say(f"disk key: re-encrypting {shown(target.device)} (do not power off)")
        cryptsetup.reencrypt(target.path, effect.recovery, slot=slot)
        line = f"{shown(target.device)}: re-encrypted; only the recovery key's slot remains"
        say(f"disk key: {line}")
        lines.append(line)
    return Ok(tuple(lines))
