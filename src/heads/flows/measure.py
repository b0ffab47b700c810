"""Measure strings, files and digests into PCRs, recording each extend in our event log.

Every extend goes to the TPM and to our CEL log (docs/pcr-layout.md §How heads measures), in
that order: a log line is only written for an extend the TPM accepted, so the log never claims
more than happened.  If the log cannot be written after the extend, the error says so, because
the PCR then no longer replays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.core.cel import MAX_LINE_BYTES, CelRecord, parse_cel
from heads.core.digest import HashAlg
from heads.core.platform import EVENT_LOG
from heads.errors import MeasurementError, UsageError

if TYPE_CHECKING:
    # Only for annotations: reading the log (``heads pcr replay``) must not pay for tpm2-pytss.
    from heads.adapters.tpm import Tpm

__all__ = [
    "DEFAULT_LOG_PATH",
    "EventLogWriter",
    "default_log_path",
    "measure_digests",
    "measure_file",
    "measure_string",
]

DEFAULT_LOG_PATH: Final = EVENT_LOG
_MAX_FILE_BYTES: Final = 512 * 1024 * 1024


def default_log_path() -> Path:
    """$HEADS_EVENT_LOG, else /run/heads/measurements.cel.jsonl (tmpfs: gone at power-off)."""
    env = os.environ.get("HEADS_EVENT_LOG")
    return Path(env) if env else DEFAULT_LOG_PATH


class EventLogWriter:
    """Appends records to our CEL JSON-lines log, numbering them after the existing ones."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[CelRecord]:
        """The records so far (none when the log does not exist yet)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UsageError(f"cannot read the event log {self.path}: {exc.strerror}") from None
        return parse_cel(data, str(self.path))

    def next_recnum(self) -> int:
        """The record number the next appended record takes.

        The whole log is parsed, not just its last line: an extend must not be added to a log
        that no longer replays (a damaged line anywhere is refused before the TPM is touched).

        Raises:
            FormatError: a line of the log is malformed.
            UsageError: the log cannot be read.
        """
        records = self.records()
        return records[-1].recnum + 1 if records else 0

    def append(self, record: CelRecord) -> None:
        """Append one line and fsync it (a crash must not lose an extend the TPM saw)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, record.to_json_line().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def _banks(tpm: Tpm) -> tuple[HashAlg, ...]:
    # sha256 is primary; sha1 is extended too where the TPM has it (docs/pcr-layout.md §How
    # heads measures).
    return tuple(a for a in (HashAlg.SHA256, HashAlg.SHA1) if a in tpm.banks())


def _extend_and_log(
    tpm: Tpm,
    log: EventLogWriter | None,
    pcr: int,
    digests: Mapping[HashAlg, bytes],
    *,
    kind: str,
    description: str,
    string: str | None = None,
    path: str | None = None,
) -> CelRecord:
    if not digests:
        raise UsageError("the TPM has neither a sha256 nor a sha1 PCR bank")
    # Everything that can refuse is done before the extend: afterwards the PCR has moved.
    record = CelRecord(
        recnum=log.next_recnum() if log is not None else 0,
        pcr=pcr,
        digests=dict(digests),
        kind=kind,
        string=string,
        path=path,
        description=description,
    )
    if len(record.to_json_line().encode("utf-8")) > MAX_LINE_BYTES:
        raise UsageError(
            f"the event log record would exceed {MAX_LINE_BYTES} bytes; shorten the description"
        )
    tpm.extend_digests(pcr, digests)
    if log is not None:
        try:
            log.append(record)
        except OSError as exc:
            raise MeasurementError(
                f"PCR {pcr} was extended but the event log {log.path} could not be written: "
                f"{exc.strerror}",
                hint="PCR values will not replay from the log until the next boot",
            ) from None
    return record


def measure_string(
    tpm: Tpm, log: EventLogWriter | None, pcr: int, text: str, *, description: str = ""
) -> CelRecord:
    """Extend ``pcr`` with H(text) in each bank (Heads' `tpmr extend -ic`).

    Raises:
        UsageError: ``text`` is not valid Unicode (bytes from the command line that are not
            UTF-8 arrive as lone surrogates): its measurement could not be replayed from the log.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("the string to measure is not valid UTF-8") from None
    digests = {alg: alg.hash(data) for alg in _banks(tpm)}
    return _extend_and_log(
        tpm, log, pcr, digests, kind="string", string=text, description=description
    )


def measure_file(
    tpm: Tpm, log: EventLogWriter | None, pcr: int, path: Path, *, description: str = ""
) -> CelRecord:
    """Extend ``pcr`` with H(file bytes) in each bank (Heads' `tpmr extend -if`).

    The file is read once and the same bytes are hashed for every bank.
    """
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise UsageError(f"{path} is {size} bytes; measuring more than 512 MiB is refused")
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    digests = {alg: alg.hash(data) for alg in _banks(tpm)}
    return _extend_and_log(
        tpm, log, pcr, digests, kind="file", path=str(path), description=description
    )


def measure_digests(
    tpm: Tpm,
    log: EventLogWriter | None,
    pcr: int,
    digests: Mapping[HashAlg, bytes],
    *,
    description: str = "",
) -> CelRecord:
    """Extend ``pcr`` with digests given as is, only in the banks they are for."""
    for alg in digests:
        if alg not in tpm.banks():
            raise UsageError(f"the TPM has no {alg.value} bank to extend")
    return _extend_and_log(tpm, log, pcr, digests, kind="digest", description=description)
