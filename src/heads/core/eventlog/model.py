"""The values every event-log format parses into: events, the log, and its warnings.

One model for all formats (TCG PC Client binary logs, coreboot CBMEM logs and ``cbmem -L``
text, our own CEL log) so replay, comparison and prediction never care where an event came
from.  Every event remembers its place (byte offset or line) so messages can point at it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum

from heads.core.digest import HashAlg
from heads.core.frozen_record import FrozenRecord

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "EV_EFI_HCRTM_EVENT",
    "EV_NO_ACTION",
    "MAX_LOG_BYTES",
    "Event",
    "EventLog",
    "LogFormat",
    "LogWarning",
    "SpecIdEvent",
    "bank_hash",
]

# A firmware log is tens of KiB; 16 MiB leaves room for pathological but real logs while
# capping what a hostile file can make us allocate.
MAX_LOG_BYTES: Final = 16 * 1024 * 1024

# TCG PC Client Platform Firmware Profile (PFP) 1.05 §10.4.1.
EV_NO_ACTION: Final = 0x00000003
EV_EFI_HCRTM_EVENT: Final = 0x80000010


def _hasher(alg: HashAlg, module: str, name: str) -> Callable[[bytes], bytes]:
    """CPython's own ``module.name`` constructor as a hash function; :meth:`HashAlg.hash`
    (hashlib, OpenSSL) where this interpreter lacks it."""
    try:
        constructor = getattr(__import__(module), name)
    except (ImportError, AttributeError):
        return alg.hash

    def run(data: bytes) -> bytes:
        digest: bytes = constructor(data).digest()
        return digest

    return run


# A replay hashes a few hundred short values.  CPython's own SHA code (``_sha256`` and
# friends, compiled into Debian's interpreter) needs nothing loaded, where ``hashlib`` loads
# OpenSSL first, which costs a short command more than all its hashing
# (docs/architecture.md §Command start-up); OpenSSL is loaded only for SM3, which only it has,
# and for an interpreter built without the SHA modules.
_HASHERS: Final[dict[HashAlg, Callable[[bytes], bytes]]] = {
    HashAlg.SHA1: _hasher(HashAlg.SHA1, "_sha1", "sha1"),
    HashAlg.SHA256: _hasher(HashAlg.SHA256, "_sha256", "sha256"),
    HashAlg.SHA384: _hasher(HashAlg.SHA384, "_sha512", "sha384"),
    HashAlg.SHA512: _hasher(HashAlg.SHA512, "_sha512", "sha512"),
    HashAlg.SM3_256: HashAlg.SM3_256.hash,
}


def bank_hash(alg: HashAlg, data: bytes) -> bytes:
    """The bank's hash of ``data``.

    Raises:
        ValueError: this Python's OpenSSL lacks the algorithm (SM3 on some builds).
    """
    return _HASHERS[alg](data)


class LogFormat(Enum):
    """Where a log came from; the value is the name used on the command line and in JSON."""

    TCG_SHA1 = "tcg-sha1"  # TCG 1.2 / PFP SHA-1 format (TCG_PCClientPCREvent only)
    TCG_AGILE = "tcg-agile"  # crypto-agile: Spec ID Event03 header, then TCG_PCR_EVENT2
    COREBOOT_CB = "coreboot"  # coreboot's own CBMEM table (tcpa_table / tpm_cb_log_table)
    COREBOOT_TEXT = "cbmem-text"  # what `cbmem -L` prints, for any of coreboot's formats
    CEL = "cel"  # our own measurement log (heads.core.cel)


_set = object.__setattr__


class Event(FrozenRecord):
    """One measurement as a log records it.

    Attributes:
        number: position in its log, from 0 (the Spec ID header event is number 0).
        pcr: the PCR index as logged (may be >= 24: such events are never extended).
        event_type: TCG event type, or ``None`` for records without one (coreboot's own
            table, our CEL records): those are always extended.
        digests: one digest per known bank, in log order.
        data: the event data as logged (empty when the format has none).
        offset: byte offset of the event in a binary log.
        line: line number of the event in a text log.
        description: a name the format gives the event (coreboot, CEL).
        other_digests: digests for algorithms heads does not know, as (TPM_ALG_ID, bytes).
        source: the log's name, for messages.
    """

    __slots__ = (  # noqa: RUF023 - the fields in order, as compared and printed
        "number",
        "pcr",
        "event_type",
        "digests",
        "data",
        "offset",
        "line",
        "description",
        "other_digests",
        "source",
    )
    number: int
    pcr: int
    event_type: int | None
    digests: Mapping[HashAlg, bytes]
    data: bytes
    offset: int | None
    line: int | None
    description: str
    other_digests: tuple[tuple[int, bytes], ...]
    source: str

    def __init__(  # noqa: PLR0917 - positional, as the dataclass it was
        self,
        number: int,
        pcr: int,
        event_type: int | None,
        digests: Mapping[HashAlg, bytes],
        data: bytes = b"",
        offset: int | None = None,
        line: int | None = None,
        description: str = "",
        other_digests: tuple[tuple[int, bytes], ...] = (),
        source: str = "",
    ) -> None:
        _set(self, "number", number)
        _set(self, "pcr", pcr)
        _set(self, "event_type", event_type)
        _set(self, "digests", digests)
        _set(self, "data", data)
        _set(self, "offset", offset)
        _set(self, "line", line)
        _set(self, "description", description)
        _set(self, "other_digests", other_digests)
        _set(self, "source", source)

    @property
    def where(self) -> str:
        """``event 12 at byte offset 1834`` (or ``line``), for messages."""
        if self.offset is not None:
            return f"event {self.number} at byte offset {self.offset}"
        if self.line is not None:
            return f"event {self.number} at line {self.line}"
        return f"event {self.number}"


class LogWarning(FrozenRecord):
    """Something odd in a log that did not stop the parse (truncation, malformed header)."""

    __slots__ = ("message", "offset", "event_number")  # noqa: RUF023 - fields in order
    message: str
    offset: int | None
    event_number: int | None

    def __init__(
        self, message: str, offset: int | None = None, event_number: int | None = None
    ) -> None:
        _set(self, "message", message)
        _set(self, "offset", offset)
        _set(self, "event_number", event_number)

    def __str__(self) -> str:
        where = []
        if self.event_number is not None:
            where.append(f"event {self.event_number}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class SpecIdEvent(FrozenRecord):
    """The TCG_EfiSpecIDEvent (PFP §10.4.5.1) or the TCG 1.2 Spec ID Event00 header."""

    __slots__ = (  # noqa: RUF023 - the fields in order, as compared and printed
        "signature",
        "platform_class",
        "version",
        "uintn_size",
        "algorithms",
        "vendor_info",
    )
    signature: str
    platform_class: int
    version: tuple[int, int, int]  # major, minor, errata
    uintn_size: int
    algorithms: tuple[tuple[int, int], ...]  # (TPM_ALG_ID, digest size)
    vendor_info: bytes

    def __init__(  # noqa: PLR0917 - positional, as the dataclass it was
        self,
        signature: str,
        platform_class: int,
        version: tuple[int, int, int],
        uintn_size: int,
        algorithms: tuple[tuple[int, int], ...],
        vendor_info: bytes,
    ) -> None:
        _set(self, "signature", signature)
        _set(self, "platform_class", platform_class)
        _set(self, "version", version)
        _set(self, "uintn_size", uintn_size)
        _set(self, "algorithms", algorithms)
        _set(self, "vendor_info", vendor_info)


class EventLog(FrozenRecord):
    """A parsed log: its events in order, the banks it records, and what looked wrong.

    Attributes:
        truncated: the log stops inside an event (the events before it are kept).
    """

    __slots__ = (  # noqa: RUF023 - the fields in order, as compared and printed
        "format",
        "source",
        "events",
        "banks",
        "spec_id",
        "warnings",
        "truncated",
        "size_bytes",
        "extra",
    )
    format: LogFormat
    source: str
    events: tuple[Event, ...]
    banks: tuple[HashAlg, ...]
    spec_id: SpecIdEvent | None
    warnings: tuple[LogWarning, ...]
    truncated: bool
    size_bytes: int
    extra: Mapping[str, str]

    def __init__(  # noqa: PLR0917 - positional, as the dataclass it was
        self,
        format: LogFormat,
        source: str,
        events: tuple[Event, ...],
        banks: tuple[HashAlg, ...],
        spec_id: SpecIdEvent | None = None,
        warnings: tuple[LogWarning, ...] = (),
        truncated: bool = False,
        size_bytes: int = 0,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        _set(self, "format", format)
        _set(self, "source", source)
        _set(self, "events", events)
        _set(self, "banks", banks)
        _set(self, "spec_id", spec_id)
        _set(self, "warnings", warnings)
        _set(self, "truncated", truncated)
        _set(self, "size_bytes", size_bytes)
        _set(self, "extra", {} if extra is None else extra)
