"""Replay logs into PCR values, bank by bank, every extend traceable to its event.

Rules (TCG PC Client PFP 1.05 §3.3.2-§3.3.4 and §10.4.5.3, TPM 2.0 Part 1 §34.3):

* ``EV_NO_ACTION`` events are never extended (Spec ID, StartupLocality, SP800-155,
  NvIndexInstance...): they are informational by definition.
* Events for PCR indices >= 24 are not extended (there is no such PCR).
* PCR 0 starts at ``0..0L`` when a StartupLocality event says the TPM was started from
  locality L (L = 3 on many Intel platforms), and at ``0..04`` when the log holds an
  ``EV_EFI_HCRTM_EVENT`` (an H-CRTM measured through ``_TPM_Hash_Start`` at locality 4).
* PCRs 17-22 start at all ones (PC Client PTP: reset by TPM2_Startup to -1; a dynamic launch
  sets them to 0, but a firmware log covers the static chain only).  All others start at 0.
* A later log (our CEL log) continues from where the earlier ones left off.

An event that lacks a digest for a replayed bank makes that PCR of that bank unknown
(``incomplete``) instead of silently wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from heads.core.digest import HashAlg, zero_digest
from heads.core.eventlog.events import decode_startup_locality, event_type_name
from heads.core.eventlog.model import (
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    Event,
    EventLog,
    LogFormat,
    bank_hash,
)
from heads.core.frozen_record import FrozenRecord

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

    from heads.core.cel import CelRecord

__all__ = [
    "DigestMismatch",
    "ExtendStep",
    "Replay",
    "cel_to_log",
    "check_event_digests",
    "has_payload_digest",
    "initial_value",
    "replay_logs",
]

_PCR_LIMIT: Final = 24
_ONES_PCRS: Final = range(17, 23)
_HCRTM_LOCALITY: Final = 4

# Event types whose digest is, by the PFP, the hash of the event data as logged.
_DATA_HASHED: Final = frozenset(
    {
        0x00000004,  # EV_SEPARATOR
        0x00000005,  # EV_ACTION
        0x00000008,  # EV_S_CRTM_VERSION
        0x80000001,  # EV_EFI_VARIABLE_DRIVER_CONFIG
        0x80000006,  # EV_EFI_GPT_EVENT
        0x80000007,  # EV_EFI_ACTION
        0x8000000C,  # EV_EFI_VARIABLE_BOOT2
        0x800000E0,  # EV_EFI_VARIABLE_AUTHORITY
    }
)
_EV_IPL: Final = 0x0000000D
_EV_EFI_VARIABLE_BOOT: Final = 0x80000002


_set = object.__setattr__


class ExtendStep(FrozenRecord):
    """One extend of one bank: which event, the value before and after."""

    __slots__ = ("event", "alg", "pcr", "digest", "before", "after")  # noqa: RUF023 - in order
    event: Event
    alg: HashAlg
    pcr: int
    digest: bytes
    before: bytes
    after: bytes

    def __init__(  # noqa: PLR0917 - positional, as the dataclass it was
        self, event: Event, alg: HashAlg, pcr: int, digest: bytes, before: bytes, after: bytes
    ) -> None:
        _set(self, "event", event)
        _set(self, "alg", alg)
        _set(self, "pcr", pcr)
        _set(self, "digest", digest)
        _set(self, "before", before)
        _set(self, "after", after)


class DigestMismatch(FrozenRecord):
    """An event whose logged digest is not the hash of its own payload."""

    __slots__ = ("event", "alg", "logged", "computed")  # noqa: RUF023 - in order
    event: Event
    alg: HashAlg
    logged: bytes
    computed: bytes

    def __init__(self, event: Event, alg: HashAlg, logged: bytes, computed: bytes) -> None:
        _set(self, "event", event)
        _set(self, "alg", alg)
        _set(self, "logged", logged)
        _set(self, "computed", computed)

    def __str__(self) -> str:
        return (
            f"{self.event.source}: {self.event.where} ({event_type_name(self.event.event_type)}, "
            f"PCR {self.event.pcr}): {self.alg.value} digest does not match its payload"
        )


class Replay(FrozenRecord):
    """PCR values replayed from one or more logs.

    Attributes:
        pcrs: every PCR extended at least once, per bank (complete banks only).
        start: the starting value of every PCR in ``pcrs`` and ``incomplete``.
        steps: every extend, in order.
        skipped: events that were not extended, with the reason (``notices`` words the ones
            worth telling a user).
        incomplete: (bank, PCR) pairs some event gave no digest for.
        startup_locality: from a StartupLocality event, else None.
        hcrtm: the log holds an H-CRTM event.
        mismatches: events whose digest is not the hash of their payload (replayed anyway:
            the TPM extended the digest, not the payload).
    """

    __slots__ = (  # noqa: RUF023 - the fields in order, as compared and printed
        "banks",
        "pcrs",
        "start",
        "steps",
        "skipped",
        "incomplete",
        "startup_locality",
        "hcrtm",
        "mismatches",
    )
    banks: tuple[HashAlg, ...]
    pcrs: Mapping[HashAlg, Mapping[int, bytes]]
    start: Mapping[HashAlg, Mapping[int, bytes]]
    steps: tuple[ExtendStep, ...]
    skipped: tuple[tuple[Event, str], ...]
    incomplete: frozenset[tuple[HashAlg, int]]
    startup_locality: int | None
    hcrtm: bool
    mismatches: tuple[DigestMismatch, ...]

    def __init__(  # noqa: PLR0917 - positional, as the dataclass it was
        self,
        banks: tuple[HashAlg, ...],
        pcrs: Mapping[HashAlg, Mapping[int, bytes]],
        start: Mapping[HashAlg, Mapping[int, bytes]],
        steps: tuple[ExtendStep, ...],
        skipped: tuple[tuple[Event, str], ...],
        incomplete: frozenset[tuple[HashAlg, int]],
        startup_locality: int | None,
        hcrtm: bool,
        mismatches: tuple[DigestMismatch, ...],
    ) -> None:
        _set(self, "banks", banks)
        _set(self, "pcrs", pcrs)
        _set(self, "start", start)
        _set(self, "steps", steps)
        _set(self, "skipped", skipped)
        _set(self, "incomplete", incomplete)
        _set(self, "startup_locality", startup_locality)
        _set(self, "hcrtm", hcrtm)
        _set(self, "mismatches", mismatches)

    def value(self, alg: HashAlg, pcr: int) -> bytes:
        """The replayed value, or the starting value of a PCR no event extended.

        Raises:
            KeyError: the PCR is incomplete in that bank.
        """
        if (alg, pcr) in self.incomplete:
            raise KeyError((alg, pcr))
        bank = self.pcrs.get(alg, {})
        if pcr in bank:
            return bank[pcr]
        start = self.start.get(alg, {}).get(pcr)
        if start is None:
            start = initial_value(alg, pcr, self.startup_locality, hcrtm=self.hcrtm)
        return start

    @property
    def notices(self) -> tuple[str, ...]:
        """One line per event the replay left out that a log should not hold.

        ``EV_NO_ACTION`` events are never extended by definition and are not listed; an event
        for a PCR that does not exist (index 24 or more, e.g. ``0xffffffff``) is: the TPM never
        received it, so whoever wrote the log meant something the PCRs cannot show.
        """
        return tuple(
            f"{ev.source}: {ev.where} ({event_type_name(ev.event_type)}, PCR {ev.pcr:#x}) "
            f"was not extended: {why}"
            for ev, why in self.skipped
            if ev.event_type != EV_NO_ACTION
        )

    def steps_for(self, alg: HashAlg, pcr: int) -> list[ExtendStep]:
        return [s for s in self.steps if s.alg is alg and s.pcr == pcr]

    def to_json(self) -> dict[str, dict[str, str]]:
        """``{"sha256": {"0": "hex", ...}, ...}``: every PCR the logs extend, per bank."""
        return {
            alg.value: {str(pcr): value.hex() for pcr, value in sorted(bank.items())}
            for alg, bank in self.pcrs.items()
            if bank
        }


def initial_value(alg: HashAlg, pcr: int, locality: int | None, *, hcrtm: bool) -> bytes:
    """A PCR's value after TPM2_Startup, given what the log says about the start."""
    size = alg.digest_size
    if pcr == 0:
        if hcrtm:
            return b"\0" * (size - 1) + bytes([_HCRTM_LOCALITY])
        if locality is not None:
            return b"\0" * (size - 1) + bytes([locality & 0xFF])
    if pcr in _ONES_PCRS:
        return b"\xff" * size
    return zero_digest(alg)


def _payload_candidates(event: Event) -> list[bytes]:
    etype = event.event_type
    if etype is None or not event.data:
        return []
    if etype in _DATA_HASHED:
        return [event.data]
    if etype == _EV_EFI_VARIABLE_BOOT:
        candidates = [event.data]
        if len(event.data) >= 32:
            name_len = int.from_bytes(event.data[16:24], "little")
            data_len = int.from_bytes(event.data[24:32], "little")
            start = 32 + 2 * name_len
            if start <= len(event.data):
                candidates.append(event.data[start : start + data_len])
        return candidates
    if etype == _EV_IPL and len(event.data) >= 4 and event.data[1] == 0 and event.data[3] == 0:
        return [event.data]
    return []


def has_payload_digest(event: Event) -> bool:
    """True when the PFP defines this event's digest as a hash of its payload."""
    return bool(_payload_candidates(event))


def check_event_digests(event: Event) -> list[DigestMismatch]:
    """Compare each digest with the hash of the payload, where the PFP defines it so.

    ``EV_EFI_VARIABLE_BOOT`` may hash either the whole UEFI_VARIABLE_DATA or only its
    VariableData (PFP §10.4.4 vs. edk2 practice); both are accepted.  ``EV_IPL`` is checked
    only when its payload is a UTF-16 string (systemd-boot measures exactly those bytes;
    GRUB logs a prefixed text of a differently hashed command).
    """
    candidates = _payload_candidates(event)
    if not candidates:
        return []
    out: list[DigestMismatch] = []
    for alg, digest in event.digests.items():
        computed = [bank_hash(alg, c) for c in candidates]
        if digest not in computed:
            out.append(DigestMismatch(event, alg, digest, computed[0]))
    return out


def _displayable(text: str) -> str:
    # JSON may carry lone surrogates ("\\ud800"), which no output encoding accepts.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def cel_to_log(records: Sequence[CelRecord], source: str = "<measurement log>") -> EventLog:
    """Our CEL records as events (type None: every record is an extend), for merged replay.

    The description is for display: text from the log that cannot be encoded (lone
    surrogates) is shown escaped.
    """
    events = []
    banks: list[HashAlg] = []
    for i, rec in enumerate(records):
        for alg in rec.digests:
            if alg not in banks:
                banks.append(alg)
        if rec.kind == "string" and rec.string is not None:
            what = f"string {rec.string!r}"
        elif rec.kind == "file":
            what = f"file {rec.path}" if rec.path else "file"
        else:
            what = rec.kind
        desc = _displayable(f"{rec.description}: {what}" if rec.description else what)
        events.append(
            Event(
                number=i,
                pcr=rec.pcr,
                event_type=None,
                digests=dict(rec.digests),
                line=None,
                description=desc,
                source=source,
            )
        )
    return EventLog(LogFormat.CEL, source, tuple(events), tuple(banks))


def _find_start(logs: Iterable[EventLog]) -> tuple[int | None, bool]:
    locality: int | None = None
    hcrtm = False
    for log in logs:
        for ev in log.events:
            if ev.pcr != 0:
                continue
            loc = decode_startup_locality(ev)
            if loc is not None and locality is None:
                locality = loc
            if ev.event_type == EV_EFI_HCRTM_EVENT:
                hcrtm = True
        # Only the firmware's log describes how the TPM was started.
        break
    return locality, hcrtm


def replay_logs(
    logs: Sequence[EventLog],
    banks: Sequence[HashAlg] | None = None,
    *,
    record_steps: bool = True,
) -> Replay:
    """Replay ``logs`` in order (firmware log first, then our CEL log).

    ``banks`` defaults to every bank any log records, in order of appearance.  With
    ``record_steps=False`` the result's ``steps`` is empty: a caller that wants only the
    values (`heads pcr replay`) skips one object per extend; explaining a PCR
    (:func:`heads.core.eventlog.compare.compare_pcrs`) needs the steps.
    """
    if banks is None:
        found: list[HashAlg] = []
        for log in logs:
            for alg in log.banks:
                if alg not in found:
                    found.append(alg)
        banks = found
    locality, hcrtm = _find_start(logs)
    state: dict[HashAlg, dict[int, bytes]] = {alg: {} for alg in banks}
    start: dict[HashAlg, dict[int, bytes]] = {alg: {} for alg in banks}
    steps: list[ExtendStep] = []
    skipped: list[tuple[Event, str]] = []
    incomplete: set[tuple[HashAlg, int]] = set()
    mismatches: list[DigestMismatch] = []
    for log in logs:
        for ev in log.events:
            if ev.event_type == EV_NO_ACTION:
                skipped.append((ev, "EV_NO_ACTION is never extended"))
                continue
            if not 0 <= ev.pcr < _PCR_LIMIT:
                skipped.append((ev, f"PCR {ev.pcr} does not exist (a TPM has PCRs 0-23)"))
                continue
            mismatches.extend(check_event_digests(ev))
            for alg in banks:
                bank = state[alg]
                pcr = ev.pcr
                if pcr not in bank:
                    first = initial_value(alg, pcr, locality, hcrtm=hcrtm)
                    start[alg][pcr] = first
                    bank[pcr] = first
                digest = ev.digests.get(alg)
                if digest is None or (alg, pcr) in incomplete:
                    incomplete.add((alg, pcr))
                    continue
                before = bank[pcr]
                after = bank_hash(alg, before + digest)
                bank[pcr] = after
                if record_steps:
                    steps.append(ExtendStep(ev, alg, pcr, digest, before, after))
    pcrs = {
        alg: {pcr: v for pcr, v in sorted(bank.items()) if (alg, pcr) not in incomplete}
        for alg, bank in state.items()
    }
    return Replay(
        tuple(banks),
        pcrs,
        start,
        tuple(steps),
        tuple(skipped),
        frozenset(incomplete),
        locality,
        hcrtm,
        tuple(mismatches),
    )
