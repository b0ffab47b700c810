"""Measured-boot event logs: parse every real format, replay, explain, predict.

Pure: bytes in, values out (no files, no TPM).  ``heads.flows.pcr_check`` reads the files
and the TPM; ``heads.cli.pcr`` presents the results.
"""

from __future__ import annotations

from heads.core.eventlog.compare import PcrComparison, PcrResult, compare_pcrs
from heads.core.eventlog.coreboot import parse_cb_table, parse_cbmem_text
from heads.core.eventlog.events import (
    EVENT_TYPE_NAMES,
    decode_event,
    device_path_text,
    event_summary,
    event_type_name,
    guid_text,
)
from heads.core.eventlog.model import (
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    MAX_LOG_BYTES,
    Event,
    EventLog,
    LogFormat,
    LogWarning,
    SpecIdEvent,
    bank_hash,
)
from heads.core.eventlog.parse import FORMAT_CHOICES, detect_format, parse_log
from heads.core.eventlog.predict import Measurement, Prediction, policy_pcr_digest, predict_pcr
from heads.core.eventlog.replay import (
    DigestMismatch,
    ExtendStep,
    Replay,
    cel_to_log,
    check_event_digests,
    initial_value,
    replay_logs,
)
from heads.core.eventlog.tcg import parse_tcg

__all__ = [
    "EVENT_TYPE_NAMES",
    "EV_EFI_HCRTM_EVENT",
    "EV_NO_ACTION",
    "FORMAT_CHOICES",
    "MAX_LOG_BYTES",
    "DigestMismatch",
    "Event",
    "EventLog",
    "ExtendStep",
    "LogFormat",
    "LogWarning",
    "Measurement",
    "PcrComparison",
    "PcrResult",
    "Prediction",
    "Replay",
    "SpecIdEvent",
    "bank_hash",
    "cel_to_log",
    "check_event_digests",
    "compare_pcrs",
    "decode_event",
    "detect_format",
    "device_path_text",
    "event_summary",
    "event_type_name",
    "guid_text",
    "initial_value",
    "parse_cb_table",
    "parse_cbmem_text",
    "parse_log",
    "parse_tcg",
    "policy_pcr_digest",
    "predict_pcr",
    "replay_logs",
]
