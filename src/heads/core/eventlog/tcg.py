"""TCG PC Client binary event logs, as Linux exposes them in
``/sys/kernel/security/tpm0/binary_bios_measurements``.

Two layouts (TCG PC Client Platform Firmware Profile 1.05, §10.2 and §10.4):

* SHA-1 format (TCG 1.2): every event is a ``TCG_PCClientPCREvent``: ``pcrIndex u32,
  eventType u32, digest[20], eventDataSize u32, event[eventDataSize]``, little endian.
* Crypto-agile format: the first event is a SHA-1-format ``EV_NO_ACTION`` whose data is the
  ``TCG_EfiSpecIDEvent`` ("Spec ID Event03") listing the banks and their digest sizes; every
  later event is a ``TCG_PCR_EVENT2``: ``pcrIndex u32, eventType u32, count u32,
  {hashAlg u16, digest}[count], eventSize u32, event[eventSize]``.

coreboot's CBMEM copies of these logs (``CBMEM_ID_TCPA_TCG_LOG`` with a "Spec ID Event00"
header, ``CBMEM_ID_TPM2_TCG_LOG`` with "Spec ID Event03") use the same layouts, preallocated
and zero-filled after the last event; a zero tail therefore ends the log.

Hostile input: the whole file is capped, every length is checked against what remains, and a
log that stops inside an event keeps the events before it (with a warning).  A file whose
first event cannot be read is not a log: :class:`FormatError` names the offset.
"""

from __future__ import annotations

import struct

from heads.core.digest import HashAlg
from heads.core.eventlog.model import (
    EV_NO_ACTION,
    MAX_LOG_BYTES,
    Event,
    EventLog,
    LogFormat,
    LogWarning,
    SpecIdEvent,
)
from heads.errors import FormatError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = ["parse_tcg"]

_SHA1_HEADER: Final = struct.Struct("<II20sI")  # pcrIndex, eventType, digest, eventDataSize
_U32: Final = struct.Struct("<I")
_U16: Final = struct.Struct("<H")
_AGILE_SIG: Final = b"Spec ID Event03\0"
_TCPA_SIG: Final = b"Spec ID Event00\0"
# The Spec ID fixed part: signature[16], platformClass u32, minor u8, major u8, errata u8,
# uintnSize u8 (PFP §10.4.5.1); then numberOfAlgorithms u32 for Event03.
_SPEC_FIXED: Final = struct.Struct("<16sIBBBB")
# A TPM has at most a handful of banks; more is garbage.
_MAX_ALGORITHMS: Final = 32
_HINT: Final = "is this a TCG binary event log (binary_bios_measurements)?"


def _fail(source: str, offset: int, number: int, reason: str) -> FormatError:
    return FormatError(f"event {number}: {reason}", source=source, offset=offset, hint=_HINT)


def _all_zero(data: bytes, start: int) -> bool:
    # Cheap test first: a real event starts with a PCR index and a non-zero type or count,
    # so only a zero header needs the scan to the end (which would be quadratic otherwise).
    if any(data[start : start + 12]):
        return False
    return data.count(0, start) == len(data) - start


def _parse_spec_id(
    payload: bytes, source: str, offset: int, warnings: list[LogWarning]
) -> SpecIdEvent:
    """Parse a Spec ID Event03 payload (``offset`` = where the payload starts)."""
    if len(payload) < _SPEC_FIXED.size + 4:
        raise _fail(source, offset, 0, f"Spec ID event has only {len(payload)} bytes")
    sig, platform, minor, major, errata, uintn = _SPEC_FIXED.unpack_from(payload, 0)
    pos = _SPEC_FIXED.size
    (count,) = _U32.unpack_from(payload, pos)
    pos += 4
    if not 1 <= count <= _MAX_ALGORITHMS:
        raise _fail(source, offset + pos - 4, 0, f"Spec ID event lists {count} algorithms")
    algs: list[tuple[int, int]] = []
    for _ in range(count):
        if pos + 4 > len(payload):
            raise _fail(source, offset + pos, 0, "Spec ID algorithm list overruns the event")
        alg_id, size = struct.unpack_from("<HH", payload, pos)
        try:
            known = HashAlg.from_tpm_alg_id(alg_id)
        except ValueError:
            known = None
        if known is not None and known.digest_size != size:
            raise _fail(
                source, offset + pos, 0, f"Spec ID gives {known.value} a {size}-byte digest"
            )
        if size == 0 or size > 128:
            raise _fail(source, offset + pos, 0, f"Spec ID digest size {size} is implausible")
        if any(a == alg_id for a, _ in algs):
            raise _fail(source, offset + pos, 0, f"Spec ID lists algorithm 0x{alg_id:04x} twice")
        algs.append((alg_id, size))
        pos += 4
    vendor = b""
    if pos < len(payload):
        vsize = payload[pos]
        pos += 1
        vendor = payload[pos : pos + vsize]
        if len(vendor) < vsize:
            # Seen in the wild (tpm2-tools' specid-vendordata fixture): vendorInfoSize
            # overruns eventSize.  The header is still usable; say so.
            warnings.append(
                LogWarning(
                    f"Spec ID vendorInfoSize is {vsize} but the event holds only "
                    f"{len(vendor)} vendor bytes",
                    offset=offset + pos,
                    event_number=0,
                )
            )
        elif pos + vsize < len(payload):
            warnings.append(
                LogWarning(
                    f"{len(payload) - pos - vsize} unused bytes after the Spec ID event",
                    offset=offset + pos + vsize,
                    event_number=0,
                )
            )
    else:
        warnings.append(
            LogWarning("Spec ID event has no vendorInfoSize", offset=offset + pos, event_number=0)
        )
    signature = sig.rstrip(b"\0").decode("ascii", "replace")
    return SpecIdEvent(signature, platform, (major, minor, errata), uintn, tuple(algs), vendor)


def _parse_tcpa_spec_id(payload: bytes) -> SpecIdEvent | None:
    """The TCG 1.2 "Spec ID Event00" header (coreboot's TCPA log); None if malformed."""
    if len(payload) < _SPEC_FIXED.size + 1:
        return None
    sig, platform, minor, major, errata, _reserved = _SPEC_FIXED.unpack_from(payload, 0)
    vsize = payload[_SPEC_FIXED.size]
    vendor = payload[_SPEC_FIXED.size + 1 : _SPEC_FIXED.size + 1 + vsize]
    return SpecIdEvent(
        sig.rstrip(b"\0").decode("ascii", "replace"),
        platform,
        (major, minor, errata),
        0,
        ((HashAlg.SHA1.tpm_alg_id, 20),),
        vendor,
    )


def parse_tcg(data: bytes, source: str = "<event log>") -> EventLog:
    """Parse a TCG PC Client binary log (SHA-1 or crypto-agile format).

    An empty input is an empty log (with a warning).  A log that stops inside an event keeps
    the events before it and is marked ``truncated``; zero bytes to the end of the input (a
    preallocated coreboot buffer) end the log.

    Raises:
        FormatError: the input is larger than the cap, its first event cannot be read, the
            Spec ID header is inconsistent, or an event names a digest algorithm the header
            does not declare (the rest of the log cannot be framed).  The message names the
            byte offset and the event number.
    """
    if len(data) > MAX_LOG_BYTES:
        raise FormatError(f"log is larger than {MAX_LOG_BYTES} bytes", source=source)
    warnings: list[LogWarning] = []
    if not data:
        return EventLog(
            LogFormat.TCG_SHA1,
            source,
            (),
            (),
            warnings=(LogWarning("the log is empty"),),
            size_bytes=0,
        )
    if len(data) < _SHA1_HEADER.size:
        raise _fail(source, 0, 0, f"only {len(data)} bytes, shorter than one event header")
    pcr, etype, digest, size = _SHA1_HEADER.unpack_from(data, 0)
    first_end = _SHA1_HEADER.size + size
    if first_end > len(data):
        raise _fail(
            source,
            0,
            0,
            f"first event claims {size} bytes of data but only "
            f"{len(data) - _SHA1_HEADER.size} follow",
        )
    first_data = data[_SHA1_HEADER.size : first_end]
    if pcr == 0 and etype == EV_NO_ACTION and first_data.startswith(_AGILE_SIG):
        spec = _parse_spec_id(first_data, source, _SHA1_HEADER.size, warnings)
        header = Event(0, pcr, etype, {HashAlg.SHA1: digest}, first_data, offset=0, source=source)
        return _parse_agile(
            data, source, pos=first_end, spec=spec, header=header, warnings=warnings
        )
    return _parse_sha1(data, source, warnings)


def _parse_sha1(data: bytes, source: str, warnings: list[LogWarning]) -> EventLog:
    events: list[Event] = []
    pos = 0
    truncated = False
    spec: SpecIdEvent | None = None
    n = len(data)
    while pos < n:
        number = len(events)
        if _all_zero(data, pos):
            if number:
                warnings.append(LogWarning("zero padding to the end of the log", pos, number))
            break
        if pos + _SHA1_HEADER.size > n:
            warnings.append(
                LogWarning(f"log ends inside the header of event {number}", pos, number)
            )
            truncated = True
            break
        pcr, etype, digest, size = _SHA1_HEADER.unpack_from(data, pos)
        start = pos + _SHA1_HEADER.size
        if start + size > n:
            warnings.append(
                LogWarning(
                    f"log ends inside event {number}: it claims {size} bytes of data, "
                    f"{n - start} remain",
                    pos,
                    number,
                )
            )
            truncated = True
            break
        payload = data[start : start + size]
        if number == 0 and etype == EV_NO_ACTION and payload.startswith(_TCPA_SIG):
            spec = _parse_tcpa_spec_id(payload)
        events.append(
            Event(number, pcr, etype, {HashAlg.SHA1: digest}, payload, pos, source=source)
        )
        pos = start + size
    return EventLog(
        LogFormat.TCG_SHA1,
        source,
        tuple(events),
        (HashAlg.SHA1,),
        spec_id=spec,
        warnings=tuple(warnings),
        truncated=truncated,
        size_bytes=n,
    )


def _parse_agile(
    data: bytes,
    source: str,
    *,
    pos: int,
    spec: SpecIdEvent,
    header: Event,
    warnings: list[LogWarning],
) -> EventLog:
    sizes = dict(spec.algorithms)
    known: dict[int, HashAlg] = {}
    for alg_id in sizes:
        try:
            known[alg_id] = HashAlg.from_tpm_alg_id(alg_id)
        except ValueError:
            warnings.append(
                LogWarning(f"bank 0x{alg_id:04x} is not a hash heads knows; it is not replayed")
            )
    events: list[Event] = [header]
    truncated = False
    n = len(data)
    unpack_u32 = _U32.unpack_from
    unpack_u16 = _U16.unpack_from
    max_count = len(sizes)
    while pos < n:
        number = len(events)
        if _all_zero(data, pos):
            warnings.append(LogWarning("zero padding to the end of the log", pos, number))
            break
        if pos + 12 > n:
            warnings.append(
                LogWarning(f"log ends inside the header of event {number}", pos, number)
            )
            truncated = True
            break
        pcr, etype, count = struct.unpack_from("<III", data, pos)
        if count == 0 or count > max_count:
            raise _fail(
                source,
                pos + 8,
                number,
                f"digest count {count}, but the Spec ID header declares {max_count} banks",
            )
        cur = pos + 12
        digests: dict[HashAlg, bytes] = {}
        others: list[tuple[int, bytes]] = []
        stop = False
        for _ in range(count):
            if cur + 2 > n:
                stop = True
                break
            (alg_id,) = unpack_u16(data, cur)
            dsize = sizes.get(alg_id)
            if dsize is None:
                raise _fail(
                    source,
                    cur,
                    number,
                    f"digest algorithm 0x{alg_id:04x} is not declared in the Spec ID header",
                )
            cur += 2
            if cur + dsize > n:
                stop = True
                break
            value = data[cur : cur + dsize]
            cur += dsize
            alg = known.get(alg_id)
            if alg is None:
                others.append((alg_id, value))
            elif alg in digests:
                raise _fail(source, cur - dsize - 2, number, f"two {alg.value} digests")
            else:
                digests[alg] = value
        if stop or cur + 4 > n:
            warnings.append(
                LogWarning(f"log ends inside the header of event {number}", pos, number)
            )
            truncated = True
            break
        (size,) = unpack_u32(data, cur)
        cur += 4
        if cur + size > n:
            warnings.append(
                LogWarning(
                    f"log ends inside event {number}: it claims {size} bytes of data, "
                    f"{n - cur} remain",
                    pos,
                    number,
                )
            )
            truncated = True
            break
        events.append(
            Event(
                number,
                pcr,
                etype,
                digests,
                data[cur : cur + size],
                pos,
                other_digests=tuple(others),
                source=source,
            )
        )
        pos = cur + size
    return EventLog(
        LogFormat.TCG_AGILE,
        source,
        tuple(events),
        tuple(known[a] for a, _ in spec.algorithms if a in known),
        spec_id=spec,
        warnings=tuple(warnings),
        truncated=truncated,
        size_bytes=n,
    )
