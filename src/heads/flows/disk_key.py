"""Seal and release the disk unlock key (DUK) (docs/disk-key.md).

Port of Heads' ``kexec-save-key.sh``/``kexec-seal-key.sh`` (seal) and
``kexec-insert-key.sh``/``kexec-unseal-key.sh`` (release):

* :func:`seal_disk_key`: test the recovery passphrase (DRK) on every device, make a 128-byte
  key (the OS's and the TPM's random bytes XORed), put it in the dedicated key slot (LUKS2 31,
  LUKS1 7) after wiping that slot, list the new headers, seal the key at 0x81000003 to the
  PCR values of the boot that will release it, with the owner's DUK passphrase, and write
  ``kexec_key_devices.txt``/``kexec_lukshdr_hash.txt`` (/boot must then be signed again);
* :func:`measure_headers`: extend PCR 6 with the header listing (once per boot);
* :func:`unseal_disk_key`: release it with the passphrase.

The PCR values a key is sealed to come from a :class:`BootValues`: either the PCRs the
firmware and payload set on this boot (:func:`values_from_live`; PCR 4 from the firmware event
log) or those the TOTP secret was sealed to (:func:`values_from_totp_record`, for a host
preparing a machine that is switched off: the TOTP record holds the same PCRs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters import cryptsetup
from heads.adapters.atomic import write_atomic
from heads.adapters.tpm import DISK_KEY_HANDLE, TOTP_HANDLE, Tpm
from heads.core.digest import HashAlg, extend, zero_digest
from heads.core.disk_key import (
    DEVICES_FILE,
    HEADER_LISTING_FILE,
    KEY_BYTES,
    LVM_FILE,
    KeyDevice,
    disk_key_selection,
    format_devices,
    header_listing,
    predicted_values,
)
from heads.core.luks import (
    FIRST_READ,
    LuksHeader,
    backup_padding,
    header_bytes_needed,
    parse_header,
)
from heads.core.platform import PCR_BOOT_MODE, PCR_LUKS_HEADERS
from heads.core.sealing import SealRecord
from heads.core.secret import Secret
from heads.errors import AuthError, FormatError, MeasurementError, UsageError
from heads.flows.disk_key_pending import (
    PENDING_DISK_KEY_HANDLE,
    pending_disk_key_exists,
    unseal_with_pending,
)
from heads.flows.measure import EventLogWriter, measure_digests

__all__ = [
    "BootValues",
    "DiskTarget",
    "SealResult",
    "backup_digest",
    "check_listing",
    "disk_key_exists",
    "firmware_pcrs",
    "headers_measured",
    "measure_headers",
    "measure_headers_once",
    "read_listing",
    "seal_disk_key",
    "unseal_disk_key",
    "values_from_live",
    "values_from_totp_record",
    "wipe_disk_key",
]

_BASE_PCRS: Final = (0, 1, 2, 3, 7, 9)
_FIRMWARE_REPLAYED: Final = (4, 5, 6)
_CHUNK: Final = 1 << 20
_HEADERS_EVENT: Final = "LUKS headers"


@dataclass(frozen=True, slots=True)
class DiskTarget:
    """A LUKS device: its name on the machine that boots, and where to read it now.

    On the machine itself both are the device (``/dev/sda2``); a host preparing a QEMU disk
    reads an image file that the guest will see as ``/dev/nvme1n1``.
    """

    device: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> DiskTarget:
        """``/dev/NAME`` or ``/dev/NAME=PATH``.

        Raises:
            UsageError: the name is not under /dev.
        """
        device, sep, path = text.partition("=")
        if not device.startswith("/dev/"):
            raise UsageError(f"{device!r}: the device must be named as the machine sees it")
        return cls(device, Path(path) if sep else Path(device))


@dataclass(frozen=True, slots=True)
class BootValues:
    """PCR values of the boot that releases the key, before the runtime's own extends.

    Attributes:
        measured: sha256 values of PCRs 0-3, 7 and 9 (those present).
        pcr4_firmware: PCR 4 before ``generic``/``recovery``/``usb``.
        pcr5: PCR 5 as the boot leaves it (the firmware's value: the payload loads no modules).
        pcr6_firmware: PCR 6 before the runtime measures the headers.
        source: where they come from, for the owner.
    """

    measured: Mapping[int, bytes]
    pcr4_firmware: bytes
    pcr5: bytes
    pcr6_firmware: bytes
    source: str


@dataclass(frozen=True, slots=True)
class SealResult:
    devices: tuple[KeyDevice, ...]
    listing: bytes
    record: SealRecord
    slot: int


def backup_digest(target: DiskTarget) -> tuple[LuksHeader, bytes]:
    """The header of one device and the SHA-256 of the header backup Heads measures.

    The header area (16 MiB with LUKS2's defaults) is hashed as it is read, in 1 MiB pieces:
    in a slow guest, copying it whole costs seconds.

    Raises:
        FormatError: not LUKS, a damaged header, or a device that ends inside the header area.
        UsageError: the device cannot be read.
    """
    source = target.device if str(target.path) == target.device else str(target.path)
    digest = hashlib.sha256()
    try:
        with target.path.open("rb") as f:
            first = f.read(FIRST_READ)
            need = header_bytes_needed(first, source=source)
            data = first + f.read(max(0, need - len(first)))
            header = parse_header(data, source=source)
            done = min(len(data), header.backup_size)
            digest.update(data[:done])
            while done < header.backup_size:
                chunk = f.read(min(_CHUNK, header.backup_size - done))
                if not chunk:
                    raise FormatError(
                        f"device ends at {done} bytes, inside its LUKS header area "
                        f"({header.backup_size} bytes)",
                        source=source,
                    )
                digest.update(chunk)
                done += len(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    digest.update(bytes(backup_padding(header)))
    return header, digest.digest()


def read_listing(targets: Sequence[DiskTarget]) -> tuple[bytes, tuple[KeyDevice, ...], int]:
    """The header listing (Heads' ``luksDump.txt``), the devices and their LUKS version.

    Raises:
        FormatError: a header does not parse.
        UsageError: LUKS1 and LUKS2 mixed (Heads refuses it too), or a device is unreadable.
    """
    digests: dict[str, bytes] = {}
    devices: list[KeyDevice] = []
    versions: set[int] = set()
    for target in targets:
        header, digest = backup_digest(target)
        versions.add(header.version)
        digests[target.device] = digest
        devices.append(KeyDevice(target.device, header.uuid))
    if len(versions) > 1:
        raise UsageError("LUKS1 and LUKS2 devices cannot share one disk unlock key")
    return header_listing(digests), tuple(devices), versions.pop() if versions else 2


def firmware_pcrs(log_bytes: bytes, *, source: str) -> dict[int, bytes]:
    """PCRs 4, 5 and 6 (sha256) as the firmware alone leaves them, replayed from its TCG log
    (Heads' ``calcfuturepcr``): the runtime's own extends go to our CEL log, not that one.

    Raises:
        FormatError: the log does not parse.
        MeasurementError: it is truncated or lacks sha256 digests.
    """
    from heads.core.eventlog.model import EV_NO_ACTION  # noqa: PLC0415 - large, on demand
    from heads.core.eventlog.tcg import parse_tcg  # noqa: PLC0415

    log = parse_tcg(log_bytes, source=source)
    if log.truncated:
        raise MeasurementError(f"{source}: the firmware event log is truncated")
    alg = HashAlg.SHA256
    values = {pcr: zero_digest(alg) for pcr in _FIRMWARE_REPLAYED}
    for event in log.events:
        if event.pcr not in values or event.event_type == EV_NO_ACTION:
            continue
        digest = event.digests.get(alg)
        if digest is None:
            raise MeasurementError(f"{source}: {event.where} has no sha256 digest")
        values[event.pcr] = extend(alg, values[event.pcr], digest)
    return values


def values_from_live(tpm: Tpm, *, profile: str, event_log: Path | None) -> BootValues:
    """This boot's PCRs; 4, 5 and 6 replayed from the firmware event log (zero without one,
    as on coreboot).

    Raises:
        MeasurementError / FormatError: the event log does not replay.
    """
    selection = disk_key_selection(profile)
    wanted = [i for i in _BASE_PCRS if i in selection.indices]
    measured = tpm.read_pcrs(HashAlg.SHA256, wanted)
    if event_log is not None and event_log.is_file():
        fw = firmware_pcrs(event_log.read_bytes(), source=str(event_log))
        where = f"this boot; PCRs 4-6 replayed from {event_log}"
    else:
        fw = {pcr: zero_digest(HashAlg.SHA256) for pcr in _FIRMWARE_REPLAYED}
        where = "this boot; PCRs 4-6 zero (no firmware event log)"
    return BootValues(measured, fw[4], fw[5], fw[6], where)


def values_from_totp_record(tpm: Tpm, firmware: Mapping[int, bytes]) -> BootValues:
    """The PCR values the TOTP secret is sealed to (its seal record), with PCRs 5 and 6 as the
    firmware leaves them (``firmware``, e.g. from :func:`firmware_pcrs` of a previous boot).

    Raises:
        UsageError: no TOTP secret with a seal record, or PCR 5/6 missing.
    """
    record = tpm.seal_record(TOTP_HANDLE)
    if record is None:
        raise UsageError(
            "the TOTP secret has no seal record to take the boot's PCR values from",
            hint="boot the machine once so that it seals its TOTP secret",
        )
    if 5 not in firmware or 6 not in firmware:
        raise UsageError("the firmware's values of PCRs 5 and 6 are needed")
    values = dict(record.values)
    pcr4 = values.pop(PCR_BOOT_MODE)
    return BootValues(values, pcr4, firmware[5], firmware[6], "the TOTP secret's seal record")


def _new_key(tpm: Tpm, rng: Callable[[int], bytes]) -> Secret:
    # As strong as the better of the two sources.
    a, b = rng(KEY_BYTES), tpm.get_random(KEY_BYTES)
    return Secret(bytes(x ^ y for x, y in zip(a, b, strict=True)))


def seal_disk_key(
    tpm: Tpm,
    *,
    targets: Sequence[DiskTarget],
    recovery: Secret,
    passphrase: Secret,
    boot_dir: Path,
    values: BootValues,
    profile: str,
    volume_group: str | None = None,
    owner_auth: Secret | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    say: Callable[[str], None] = lambda _m: None,
) -> SealResult:
    """Add a new key to every device and seal it; /boot must be signed afterwards.

    Raises:
        AuthError: the recovery passphrase opens no key slot of a device (nothing changed).
        UsageError: no device, mixed LUKS versions, or PCR values missing.
        FormatError: a header does not parse.
        CryptsetupError / TpmError: the tools failed.
    """
    if not targets:
        raise UsageError("name at least one LUKS device")
    _, _, version = read_listing(targets)
    slot = cryptsetup.DUK_SLOT_LUKS2 if version == 2 else cryptsetup.DUK_SLOT_LUKS1
    for target in targets:
        if not cryptsetup.opens_with(target.path, recovery):
            raise AuthError(f"the recovery passphrase does not open {target.device}")
    key = _new_key(tpm, rng)
    for target in targets:
        cryptsetup.kill_slot(target.path, slot, recovery)
        cryptsetup.add_key(target.path, recovery, key, slot=slot)
        say(f"{target.device}: disk unlock key added to key slot {slot}")
    # The headers changed with the new slot: this listing is what the boot will measure.
    listing, devices, _ = read_listing(targets)
    selection = disk_key_selection(profile)
    expected = predicted_values(
        selection,
        values.measured,
        pcr4_firmware=values.pcr4_firmware,
        listing=listing,
        pcr5=values.pcr5,
        pcr6_firmware=values.pcr6_firmware,
    )
    record = tpm.seal(
        DISK_KEY_HANDLE,
        key,
        selection,
        pcr_values=expected,
        auth=passphrase,
        owner_auth=owner_auth,
    )
    say(f"sealed at 0x{DISK_KEY_HANDLE:08x} to PCRs {selection} ({values.source})")
    write_atomic(boot_dir / DEVICES_FILE, format_devices(devices))
    write_atomic(boot_dir / HEADER_LISTING_FILE, listing)
    if volume_group is not None:
        write_atomic(boot_dir / LVM_FILE, f"{volume_group}\n".encode("ascii"))
    return SealResult(devices, listing, record, slot)


def measure_headers(tpm: Tpm, log: EventLogWriter | None, targets: Sequence[DiskTarget]) -> bytes:
    """Extend PCR 6 with the header listing's hash in every bank; returns the listing.

    Raises:
        FormatError: a header does not parse (nothing is extended).
    """
    listing, _, _ = read_listing(targets)
    digests = {alg: alg.hash(listing) for alg in tpm.banks()}
    measure_digests(tpm, log, PCR_LUKS_HEADERS, digests, description=_HEADERS_EVENT)
    return listing


def headers_measured(log: EventLogWriter | None) -> bytes | None:
    """The sha256 digest this boot already extended PCR 6 with for the headers (our event log
    is the runtime's record of its own extends), or None."""
    if log is None:
        return None
    for record in log.records():
        if record.pcr == PCR_LUKS_HEADERS and record.description == _HEADERS_EVENT:
            return record.digests.get(HashAlg.SHA256, b"")
    return None


def measure_headers_once(
    tpm: Tpm, log: EventLogWriter | None, targets: Sequence[DiskTarget]
) -> tuple[bytes, bool]:
    """:func:`measure_headers` unless this boot already did (a reseal before a flash measures
    them, then the kexec path would again): PCR 6 holds one listing, as the key is sealed to.
    Returns the listing and whether PCR 6 was extended now.

    Raises:
        FormatError: a header does not parse, or the event log is damaged.
    """
    if headers_measured(log) is None:
        return measure_headers(tpm, log, targets), True
    listing, _, _ = read_listing(targets)
    return listing, False


def disk_key_exists(tpm: Tpm) -> bool:
    return tpm.object_exists(DISK_KEY_HANDLE)


def unseal_disk_key(
    tpm: Tpm,
    passphrase: Secret,
    *,
    owner_auth: Secret | None = None,
    say: Callable[[str], None] | None = None,
) -> Secret:
    """Release the key (the TPM checks the PCRs and the passphrase); after a firmware update,
    from the pending copy sealed for it, which is then promoted
    (:func:`heads.flows.disk_key_pending.unseal_with_pending`).

    Raises:
        AuthError: wrong passphrase (with the tries left before lockout).
        LockoutError: the TPM is in dictionary-attack lockout.
        UnsealError: the PCRs moved (names them: PCR 6 when a header changed).
        TpmError: no key sealed.
    """
    return unseal_with_pending(tpm, passphrase, owner_auth=owner_auth, say=say)


def wipe_disk_key(tpm: Tpm, *, owner_auth: Secret | None = None) -> bool:
    """Remove the sealed key (and a pending copy); False when there was none."""
    if pending_disk_key_exists(tpm):
        tpm.evict(PENDING_DISK_KEY_HANDLE, owner_auth=owner_auth)
    if not tpm.object_exists(DISK_KEY_HANDLE):
        return False
    tpm.evict(DISK_KEY_HANDLE, owner_auth=owner_auth)
    return True


def check_listing(boot_dir: Path, listing: bytes) -> bool | None:
    """Whether the listing equals the one saved when the key was sealed (None: not saved)."""
    try:
        saved = (boot_dir / HEADER_LISTING_FILE).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", source=HEADER_LISTING_FILE) from None
    return saved == listing
