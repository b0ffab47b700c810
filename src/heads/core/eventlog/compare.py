"""Explain why a TPM's PCR differs from what the logs replay to.

A PCR is a hash chain, so the only thing a log can prove about a TPM value is equality with
one of the chain's links.  For each PCR that differs, in each bank:

* the TPM holds the value after an earlier event of the log: the events after it were
  logged but never reached the TPM; the first of them is named (``kind = "log-ahead"``);
* the TPM holds a value no prefix of the log reaches: extends are missing from the log
  (after its last event, or an event was altered): the log is incomplete
  (``kind = "log-incomplete"``), and any event whose digest does not match its payload is
  named as a suspect;
* no event touches the PCR at all but the TPM has moved from its reset value
  (``kind = "not-logged"``);
* some event gives no digest for the bank (``kind = "bank-incomplete"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from heads.core.digest import HashAlg
from heads.core.eventlog.events import event_type_name
from heads.core.eventlog.model import Event
from heads.core.eventlog.replay import DigestMismatch, Replay

__all__ = ["PcrComparison", "PcrResult", "compare_pcrs"]

KINDS: Final = ("match", "log-ahead", "log-incomplete", "not-logged", "bank-incomplete")


def _describe(event: Event) -> str:
    what = event_type_name(event.event_type) if event.event_type is not None else "record"
    desc = f" {event.description!r}" if event.description else ""
    source = f"{event.source}: " if event.source else ""
    return f"{source}{event.where} ({what}{desc})"


@dataclass(frozen=True, slots=True)
class PcrResult:
    """The verdict for one PCR in one bank.

    Attributes:
        kind: one of ``match``, ``log-ahead``, ``log-incomplete``, ``not-logged``,
            ``bank-incomplete``.
        first_unexplained: for ``log-ahead``, the first logged event the TPM value does not
            include.
        events: how many events of the logs extend this PCR.
    """

    alg: HashAlg
    pcr: int
    tpm: bytes
    replayed: bytes | None
    kind: str
    explanation: str
    first_unexplained: Event | None = None
    events: int = 0
    suspects: tuple[DigestMismatch, ...] = ()

    @property
    def matches(self) -> bool:
        return self.kind == "match"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bank": self.alg.value,
            "pcr": self.pcr,
            "tpm": self.tpm.hex(),
            "replayed": self.replayed.hex() if self.replayed is not None else None,
            "status": self.kind,
            "events": self.events,
            "explanation": self.explanation,
        }
        if self.first_unexplained is not None:
            ev = self.first_unexplained
            out["first_unexplained_event"] = {
                "log": ev.source,
                "number": ev.number,
                "offset": ev.offset,
                "line": ev.line,
                "type": event_type_name(ev.event_type),
                "description": ev.description,
            }
        if self.suspects:
            out["suspects"] = [str(s) for s in self.suspects]
        return out


@dataclass(frozen=True, slots=True)
class PcrComparison:
    """Every compared PCR; ``differing`` are those that do not match."""

    results: tuple[PcrResult, ...]

    @property
    def differing(self) -> tuple[PcrResult, ...]:
        return tuple(r for r in self.results if not r.matches)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": not self.differing,
            "pcrs": [r.to_json() for r in self.results],
        }


def _explain(replay: Replay, alg: HashAlg, pcr: int, tpm: bytes) -> PcrResult:
    if (alg, pcr) in replay.incomplete:
        return PcrResult(
            alg,
            pcr,
            tpm,
            None,
            "bank-incomplete",
            f"some event for PCR {pcr} carries no {alg.value} digest; the {alg.value} value "
            "cannot be replayed (compare another bank)",
        )
    steps = replay.steps_for(alg, pcr)
    replayed = replay.value(alg, pcr)
    if tpm == replayed:
        return PcrResult(alg, pcr, tpm, replayed, "match", "matches the logs", events=len(steps))
    if not steps:
        return PcrResult(
            alg,
            pcr,
            tpm,
            replayed,
            "not-logged",
            f"PCR {pcr} was extended but no log records it: the log is incomplete",
        )
    links = [steps[0].before] + [s.after for s in steps]
    for k, link in enumerate(links[:-1]):
        if link == tpm:
            first = steps[k].event
            after = "its starting value" if k == 0 else _describe(steps[k - 1].event)
            return PcrResult(
                alg,
                pcr,
                tpm,
                replayed,
                "log-ahead",
                f"the TPM holds the value after {after}; {_describe(first)} and the "
                f"{len(steps) - k - 1} events after it are in the log but not in the TPM",
                first_unexplained=first,
                events=len(steps),
            )
    suspects = tuple(m for m in replay.mismatches if m.alg is alg and m.event.pcr == pcr)
    text = (
        f"no prefix of the {len(steps)} logged events reaches the TPM value: the log is "
        f"incomplete (extends after {_describe(steps[-1].event)} are missing) or an event "
        "was altered"
    )
    if suspects:
        text += f"; suspect: {suspects[0]}"
    return PcrResult(
        alg, pcr, tpm, replayed, "log-incomplete", text, events=len(steps), suspects=suspects
    )


def compare_pcrs(
    replay: Replay,
    tpm_values: Mapping[HashAlg, Mapping[int, bytes]],
    pcrs: Iterable[int] | None = None,
) -> PcrComparison:
    """Compare the TPM's PCRs with the replay, bank by bank, and explain each difference.

    Only banks both the TPM and the logs have are compared.  ``pcrs`` limits the indices
    (default: every index given in ``tpm_values``).
    """
    wanted = set(pcrs) if pcrs is not None else None
    results: list[PcrResult] = []
    for alg in replay.banks:
        values = tpm_values.get(alg)
        if values is None:
            continue
        for pcr in sorted(values):
            if wanted is not None and pcr not in wanted:
                continue
            results.append(_explain(replay, alg, pcr, values[pcr]))
    # One bank matching where another does not means the events' digests disagree with
    # each other: say so next to the differing bank.
    matched = {(r.pcr) for r in results if r.matches}
    final: list[PcrResult] = []
    for r in results:
        if not r.matches and r.pcr in matched and r.kind == "log-incomplete":
            other = next(x.alg.value for x in results if x.pcr == r.pcr and x.matches)
            r = PcrResult(  # noqa: PLW2901 - rebuilt with the cross-bank note
                r.alg,
                r.pcr,
                r.tpm,
                r.replayed,
                r.kind,
                r.explanation + f"; the {other} bank matches, so the logged {r.alg.value} "
                "digests disagree with the other bank's",
                r.first_unexplained,
                r.events,
                r.suspects,
            )
        final.append(r)
    return PcrComparison(tuple(final))
