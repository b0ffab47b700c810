"""Read event logs from files and PCRs from the TPM; replay, compare, predict.

``heads pcr check`` (docs/pcr-layout.md §Checking PCRs against the logs): replay the firmware
log plus our own CEL log, compare with the TPM, and for each PCR that differs name the first
event after which no extension of the log can explain the TPM value (or say the log is
incomplete).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.adapters._run import run
from heads.core.digest import HashAlg
from heads.core.eventlog import (
    EventLog,
    LogFormat,
    Measurement,
    PcrComparison,
    Prediction,
    Replay,
    compare_pcrs,
    parse_log,
    policy_pcr_digest,
    predict_pcr,
    replay_logs,
)
from heads.core.pcr import PcrSelection
from heads.core.platform import FIRMWARE_EVENT_LOG
from heads.errors import ToolError, UsageError
from heads.flows.log_files import read_capped as _read_capped
from heads.flows.log_files import read_log
from heads.flows.measure import default_log_path

if TYPE_CHECKING:
    # Only a type here: replay and prediction must not pay for loading the TPM stack.
    from heads.adapters.tpm import Tpm

__all__ = [
    "FIRMWARE_LOG_PATH",
    "CheckResult",
    "check_pcrs",
    "default_logs",
    "order_logs",
    "predict_from_logs",
    "predicted_policy",
    "read_cbmem_log",
    "read_firmware_log",
    "read_log",
    "read_measurement_file",
]

FIRMWARE_LOG_PATH: Final = FIRMWARE_EVENT_LOG
# PCRs checked even when no log mentions them: the firmware's and ours
# (docs/pcr-layout.md §Checking PCRs against the logs).
_ALWAYS_CHECKED: Final = range(8)
_MAX_MEASURED_FILE: Final = 512 * 1024 * 1024


def read_measurement_file(path: Path) -> Measurement:
    """A file to extend with, as a :class:`Measurement` of its bytes.

    Raises:
        UsageError: unreadable or larger than 512 MiB.
    """
    return Measurement.data(str(path), _read_capped(path, _MAX_MEASURED_FILE, "file"))


def read_cbmem_log() -> EventLog | None:
    """coreboot's TPM log as `cbmem -L` prints it (Heads' ``calcfuturepcr`` source).

    Runs ``cbmem -L``.  None when cbmem is missing or finds no coreboot tables (not a
    coreboot machine, or no access to /dev/mem).

    Raises:
        FormatError: cbmem printed something that is not a TPM log.
    """
    try:
        result = run(["cbmem", "-L"], desc="read coreboot's TPM log", timeout_s=20, check=False)
    except ToolError:
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return parse_log(result.stdout, "cbmem -L", "coreboot")


def read_firmware_log(path: Path = FIRMWARE_LOG_PATH) -> EventLog | None:
    """The firmware's event log: the kernel's copy when it holds events, else `cbmem -L`.

    Linux shows coreboot's TPM 2.0 CBMEM log as an empty ``binary_bios_measurements`` on
    some boards, so an empty or absent file falls back to cbmem.  None when neither exists.

    Raises:
        UsageError: the file exists but cannot be read.
        FormatError: the log does not parse.
    """
    if path.exists():
        log = read_log(path)
        if log.events:
            return log
    return read_cbmem_log()


def default_logs(
    firmware_path: Path = FIRMWARE_LOG_PATH, runtime_path: Path | None = None
) -> list[EventLog]:
    """The firmware log (see :func:`read_firmware_log`) and our runtime log, those present.

    Raises:
        UsageError, FormatError: as :func:`read_log`.
    """
    logs: list[EventLog] = []
    firmware = read_firmware_log(firmware_path)
    if firmware is not None:
        logs.append(firmware)
    ours = runtime_path if runtime_path is not None else default_log_path()
    if ours.exists():
        logs.append(read_log(ours, "cel"))
    return logs


def order_logs(logs: Iterable[EventLog]) -> list[EventLog]:
    """Firmware logs first (in the given order), then our CEL logs: the order of extends."""
    items = list(logs)
    return [lg for lg in items if lg.format is not LogFormat.CEL] + [
        lg for lg in items if lg.format is LogFormat.CEL
    ]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The logs used, their replay, and the comparison with the TPM."""

    logs: tuple[EventLog, ...]
    replay: Replay
    comparison: PcrComparison

    def to_json(self) -> dict[str, object]:
        out = self.comparison.to_json()
        out["logs"] = [
            {
                "path": lg.source,
                "format": lg.format.value,
                "events": len(lg.events),
                "truncated": lg.truncated,
                "warnings": [str(w) for w in lg.warnings],
            }
            for lg in self.logs
        ]
        out["notices"] = list(self.replay.notices)
        return out


def check_pcrs(
    tpm: Tpm, logs: Sequence[EventLog], pcrs: Iterable[int] | None = None
) -> CheckResult:
    """Replay ``logs`` (firmware first, then ours) and compare with the TPM's PCRs.

    Compares every bank both the TPM and the logs have; PCRs: ``pcrs``, else every PCR a log
    extends plus 0-7.

    Raises:
        UsageError: the TPM shares no bank with the logs.
        TpmError: reading the PCRs failed.
    """
    ordered = order_logs(logs)
    replay = replay_logs(ordered)
    tpm_banks = tpm.banks()
    banks = [a for a in replay.banks if a in tpm_banks]
    if not banks:
        raise UsageError(
            "the TPM and the logs have no PCR bank in common "
            f"(TPM: {', '.join(a.value for a in tpm_banks) or 'none'}; logs: "
            f"{', '.join(a.value for a in replay.banks) or 'none'})"
        )
    if pcrs is None:
        wanted = set(_ALWAYS_CHECKED)
        for step in replay.steps:
            wanted.add(step.pcr)
        for alg, pcr in replay.incomplete:
            del alg
            wanted.add(pcr)
    else:
        wanted = set(pcrs)
    indices = sorted(wanted)
    tpm_values = {alg: tpm.read_pcrs(alg, indices) for alg in banks}
    return CheckResult(tuple(ordered), replay, compare_pcrs(replay, tpm_values, indices))


def predict_from_logs(
    firmware_logs: Sequence[EventLog],
    alg: HashAlg,
    pcr: int,
    measurements: Sequence[Measurement],
) -> Prediction:
    """``calcfuturepcr``: PCR ``pcr`` after the firmware logs' events plus ``measurements``.

    Our own CEL log is never part of the firmware's share, so CEL logs are refused.

    Raises:
        UsageError: a CEL log was given, or a digest does not fit the bank.
    """
    for lg in firmware_logs:
        if lg.format is LogFormat.CEL:
            raise UsageError(
                f"{lg.source} is our own measurement log, not a firmware log",
                hint="prediction starts from the firmware's part only; give the firmware log",
            )
    firmware = replay_logs(list(firmware_logs)) if firmware_logs else None
    return predict_pcr(firmware, alg, pcr, measurements)


def predicted_policy(
    selection: PcrSelection, prediction: Prediction, others: Replay | Tpm | None
) -> tuple[bytes, dict[int, bytes]]:
    """The PolicyPCR digest over ``selection`` with the predicted PCR at its predicted value.

    The other PCRs come from ``others``: a replay of the logs, or the TPM's current values.

    Raises:
        UsageError: the selection does not include the predicted PCR, its bank differs, or
            another PCR's value is unknown.
        TpmError: reading the TPM failed.
    """
    if prediction.pcr not in selection.indices:
        raise UsageError(f"the policy PCRs {selection} do not include PCR {prediction.pcr}")
    if selection.alg is not prediction.alg:
        raise UsageError(f"the policy bank {selection.alg.value} is not the predicted bank")
    rest = [i for i in selection.indices if i != prediction.pcr]
    values: dict[int, bytes] = {prediction.pcr: prediction.value}
    if isinstance(others, Replay):
        for i in rest:
            try:
                values[i] = others.value(selection.alg, i)
            except KeyError:
                raise UsageError(f"PCR {i} cannot be replayed in {selection.alg.value}") from None
    elif others is not None:
        values.update(others.read_pcrs(selection.alg, rest))
    elif rest:
        raise UsageError("values for the other policy PCRs are needed (a log or the TPM)")
    return policy_pcr_digest(selection, values), values
