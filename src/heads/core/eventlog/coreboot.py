"""coreboot's TPM logs: the CBMEM ``tpm_cb_log_table`` and the text of ``cbmem -L``.

coreboot keeps its measurements in CBMEM in one of three formats (``CONFIG_TPM_LOG_*``):

* its own table (``CBMEM_ID_TPM_CB_LOG``, formerly ``CBMEM_ID_TCPA_LOG``, "TCPA"):
  ``max_entries u16, num_entries u16`` (newer releases add ``pad u32``), then fixed entries
  of 132 bytes: ``pcr u32, digest_type char[10], digest u8[64], digest_length u32,
  name char[50]``;
* a TCG 1.2 log ("Spec ID Event00") and a TCG 2.0 crypto-agile log ("Spec ID Event03"),
  zero-filled after the last event: those are TCG logs, parsed by
  :func:`heads.core.eventlog.tcg.parse_tcg` (``cbmem -r <id>`` dumps them raw).

``cbmem -L`` prints any of them as text (``util/cbmem/cbmem.c``: ``dump_tpm_cb_log``,
``parse_tpm12_log``, ``parse_tpm2_log``); Heads' ``calcfuturepcr`` reads that text, so we
do too.  Records of coreboot's own table have no TCG event type and are always extended.
"""

from __future__ import annotations

import re
import struct

from heads.core.digest import HashAlg
from heads.core.eventlog.model import MAX_LOG_BYTES, Event, EventLog, LogFormat, LogWarning
from heads.errors import FormatError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = ["looks_like_cb_table", "looks_like_cbmem_text", "parse_cb_table", "parse_cbmem_text"]

_ENTRY: Final = struct.Struct("<I10s64sI50s")  # 132 bytes
_TEXT_HEADS: Final = ("coreboot TPM log:", "TCPA log:", "TPM2 log:")
_MAX_TEXT_LINES: Final = 200_000

# cbmem.c tpm_event_types[]: its names for TCG event types 0x00-0x12.
_CBMEM_TYPE_NAMES: Final = {
    "Reserved": 0x00,
    "POST code": 0x01,
    "Unused": 0x02,
    "No action": 0x03,
    "Separator": 0x04,
    "Action": 0x05,
    "Event tag": 0x06,
    "S-CRTM contents": 0x07,
    "S-CRTM version": 0x08,
    "CPU microcode": 0x09,
    "Platform configuration flags": 0x0A,
    "Table of devices": 0x0B,
    "Compact hash": 0x0C,
    "IPL": 0x0D,
    "IPL partition data": 0x0E,
    "Non-host code": 0x0F,
    "Non-host configuration": 0x10,
    "Non-host information": 0x11,
    "Omit boot device events": 0x12,
}
_UNKNOWN_TYPE: Final = re.compile(r"Unknown \(0x([0-9a-fA-F]{1,8}) >= \d+\)")
_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_PCR_NUMBER: Final = re.compile(r"[0-9]{1,10}")
_CB_LINE: Final = re.compile(r"\s*PCR-(\d{1,10}) ([0-9a-fA-F]*) (\S*) \[(.*)\]\s*")
_TEXT_DIGEST_NAMES: Final = {
    "SHA1": HashAlg.SHA1,
    "SHA256": HashAlg.SHA256,
    "SHA384": HashAlg.SHA384,
    "SHA512": HashAlg.SHA512,
    "SM3": HashAlg.SM3_256,
    "SM3_256": HashAlg.SM3_256,
}


def _alg_from_cb_name(name: str) -> HashAlg | None:
    norm = name.strip().upper().replace("-", "").replace("_", "")
    for key, alg in _TEXT_DIGEST_NAMES.items():
        if key.replace("_", "") == norm:
            return alg
    return None


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _table_header_size(data: bytes) -> int | None:
    """4 or 8 (with ``pad``), whichever frames a plausible first entry; None if neither."""
    if len(data) < 4:
        return None
    max_entries, num = struct.unpack_from("<HH", data, 0)
    if num > max_entries:
        return None
    for header in (8, 4):
        if num == 0:
            if len(data) in (header, header + max_entries * _ENTRY.size):
                return header
            continue
        if header + _ENTRY.size > len(data):
            continue
        _pcr, dtype, _digest, _dlen, _name = _ENTRY.unpack_from(data, header)
        if _alg_from_cb_name(_cstr(dtype)) is not None:
            return header
    return None


def looks_like_cb_table(data: bytes) -> bool:
    """True when ``data`` frames as coreboot's own CBMEM TPM log table."""
    return _table_header_size(data) is not None


def parse_cb_table(data: bytes, source: str = "<coreboot log>") -> EventLog:
    """Parse coreboot's CBMEM ``tpm_cb_log_table`` (the ``TCPA`` entry, raw).

    Raises:
        FormatError: the header does not frame the entries, or an entry names an unknown
            digest type or a digest length that does not fit it (offset and entry named).
    """
    if len(data) > MAX_LOG_BYTES:
        raise FormatError(f"log is larger than {MAX_LOG_BYTES} bytes", source=source)
    header = _table_header_size(data)
    if header is None:
        raise FormatError(
            "not a coreboot TPM log table (max_entries/num_entries do not frame the entries)",
            source=source,
            offset=0,
        )
    _max, num = struct.unpack_from("<HH", data, 0)
    events: list[Event] = []
    warnings: list[LogWarning] = []
    truncated = False
    banks: list[HashAlg] = []
    for i in range(num):
        pos = header + i * _ENTRY.size
        if pos + _ENTRY.size > len(data):
            warnings.append(LogWarning(f"table ends inside entry {i} of {num}", pos, i))
            truncated = True
            break
        pcr, dtype, digest, dlen, name = _ENTRY.unpack_from(data, pos)
        type_name = _cstr(dtype)
        alg = _alg_from_cb_name(type_name)
        if alg is None:
            raise FormatError(
                f"entry {i}: unknown digest type {type_name!r}", source=source, offset=pos + 4
            )
        if dlen != alg.digest_size:
            raise FormatError(
                f"entry {i}: {alg.value} digest length is {dlen}",
                source=source,
                offset=pos + 78,
            )
        if alg not in banks:
            banks.append(alg)
        events.append(
            Event(
                i,
                pcr,
                None,
                {alg: digest[:dlen]},
                offset=pos,
                description=_cstr(name),
                source=source,
            )
        )
    return EventLog(
        LogFormat.COREBOOT_CB,
        source,
        tuple(events),
        tuple(banks),
        warnings=tuple(warnings),
        truncated=truncated,
        size_bytes=len(data),
    )


def looks_like_cbmem_text(data: bytes) -> bool:
    head = data[:4096].lstrip()
    return any(head.startswith(h.encode()) for h in _TEXT_HEADS) or b"\n PCR-" in data[:4096]


class _Entry:
    """One `TCPA/TPM2 log entry N:` block being collected."""

    __slots__ = ("data", "digests", "etype", "line", "pcr")

    def __init__(self, line: int) -> None:
        self.line = line
        self.pcr: int | None = None
        self.etype: int | None = None
        self.digests: dict[HashAlg, bytes] = {}
        self.data = b""


class _TextParser:
    """State for one ``cbmem -L`` text: the current entry being collected."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.events: list[Event] = []
        self.banks: list[HashAlg] = []
        self.cur: _Entry | None = None

    def fail(self, line: int, reason: str) -> FormatError:
        return FormatError(
            f"event {len(self.events)}: {reason}",
            source=self.source,
            line=line,
            hint="give the output of `cbmem -L` unchanged",
        )

    def add(
        self,
        line: int,
        pcr: int,
        etype: int | None,
        digests: dict[HashAlg, bytes],
        *,
        data: bytes = b"",
        desc: str = "",
    ) -> None:
        for alg in digests:
            if alg not in self.banks:
                self.banks.append(alg)
        self.events.append(
            Event(
                len(self.events),
                pcr,
                etype,
                digests,
                data,
                line=line,
                description=desc,
                source=self.source,
            )
        )

    def digest(self, line: int, alg: HashAlg, text: str) -> bytes:
        text = text.strip()
        if not _HEX.fullmatch(text) or len(text) != 2 * alg.digest_size:
            raise self.fail(
                line, f"{alg.value} digest {text[:80]!r} is not {alg.digest_size} bytes"
            )
        return bytes.fromhex(text)

    def flush(self) -> None:
        cur = self.cur
        if cur is None:
            return
        self.cur = None
        if cur.pcr is None or not cur.digests:
            raise self.fail(cur.line, "entry has no PCR or no digest")
        self.add(cur.line, cur.pcr, cur.etype, cur.digests, data=cur.data)


def parse_cbmem_text(data: bytes, source: str = "<cbmem -L>") -> EventLog:
    """Parse what ``cbmem -L`` prints, for any of coreboot's three log formats.

    The TCG formats' event data is printed as text when printable (else hex); it is kept as
    those bytes, for display only: replay uses the printed digests.

    Raises:
        FormatError: a line that belongs to no format, a malformed digest, an entry without
            a PCR or digest; the message names the line and the event number.
    """
    if len(data) > MAX_LOG_BYTES:
        raise FormatError(f"log is larger than {MAX_LOG_BYTES} bytes", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"not text (byte {exc.start} is not UTF-8)", source=source, offset=exc.start
        ) from None
    lines = text.splitlines()
    if len(lines) > _MAX_TEXT_LINES:
        raise FormatError(f"more than {_MAX_TEXT_LINES} lines", source=source)
    p = _TextParser(source)
    kind: str | None = None
    in_digests = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped in _TEXT_HEADS:
            p.flush()
            kind = stripped
            continue
        if kind == "coreboot TPM log:" or (kind is None and stripped.startswith("PCR-")):
            kind = "coreboot TPM log:"
            m = _CB_LINE.fullmatch(line)
            if m is None:
                raise p.fail(lineno, f"expected ' PCR-N <hex> <alg> [name]', got {stripped[:80]!r}")
            alg = _alg_from_cb_name(m.group(3))
            if alg is None:
                raise p.fail(lineno, f"unknown digest type {m.group(3)[:20]!r}")
            digest = p.digest(lineno, alg, m.group(2))
            p.add(lineno, int(m.group(1)), None, {alg: digest}, desc=m.group(4))
            continue
        if kind is None:
            raise p.fail(lineno, f"not `cbmem -L` output: {stripped[:80]!r}")
        if re.fullmatch(r"(TCPA|TPM2) log entry \d+:", stripped):
            p.flush()
            p.cur = _Entry(lineno)
            in_digests = False
            continue
        if stripped.startswith(("Specification:", "Platform class:")) and p.cur is None:
            continue
        cur = p.cur
        if cur is None:
            raise p.fail(lineno, f"unexpected line {stripped[:80]!r}")
        key, sep, value = stripped.partition(":")
        value = value.strip()
        bank = _alg_from_cb_name(key) if in_digests and sep else None
        if bank is not None:
            cur.digests[bank] = p.digest(lineno, bank, value)
            continue
        in_digests = False
        if key == "PCR" and sep:
            # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
            if not _PCR_NUMBER.fullmatch(value):
                raise p.fail(lineno, f"bad PCR {value[:20]!r}")
            cur.pcr = int(value)
        elif key == "Event type" and sep:
            m = _UNKNOWN_TYPE.fullmatch(value)
            if m is not None:
                cur.etype = int(m.group(1), 16)
            elif value in _CBMEM_TYPE_NAMES:
                cur.etype = _CBMEM_TYPE_NAMES[value]
            else:
                raise p.fail(lineno, f"unknown event type {value[:40]!r}")
        elif key == "Digest" and sep:
            cur.digests[HashAlg.SHA1] = p.digest(lineno, HashAlg.SHA1, value)
        elif key == "Digests" and sep:
            in_digests = True
        elif key == "Event data" and sep:
            cur.data = raw.split(":", 1)[1].lstrip(" ").encode()
        elif stripped in ("Event data not provided", "No digests in this log entry"):
            continue
        else:
            raise p.fail(lineno, f"unexpected line {stripped[:80]!r}")
    p.flush()
    fmt_banks = tuple(p.banks)
    return EventLog(
        LogFormat.COREBOOT_TEXT,
        source,
        tuple(p.events),
        fmt_banks,
        size_bytes=len(data),
        extra={"cbmem_format": (kind or "").rstrip(":")},
    )
