"""Measured-boot event logs: parse every real format, replay, explain, predict.

Pure: bytes in, values out (no files, no TPM).  ``heads.flows.pcr_check`` reads the files
and the TPM; ``heads.cli.pcr`` presents the results.
"""

from __future__ import annotations

from heads.core.lazy_exports import lazy_getattr

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
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

# Each name is imported from its submodule on first use (PEP 562), so a caller that needs only
# the parser and the replay does not pay for the comparison and prediction code
# (docs/architecture.md §Performance targets).
_SUBMODULE = {
    "PcrComparison": "compare",
    "PcrResult": "compare",
    "compare_pcrs": "compare",
    "parse_cb_table": "coreboot",
    "parse_cbmem_text": "coreboot",
    "EVENT_TYPE_NAMES": "events",
    "decode_event": "events",
    "device_path_text": "events",
    "event_summary": "events",
    "event_type_name": "events",
    "guid_text": "events",
    "EV_EFI_HCRTM_EVENT": "model",
    "EV_NO_ACTION": "model",
    "Event": "model",
    "EventLog": "model",
    "LogFormat": "model",
    "LogWarning": "model",
    "MAX_LOG_BYTES": "model",
    "SpecIdEvent": "model",
    "bank_hash": "model",
    "FORMAT_CHOICES": "parse",
    "detect_format": "parse",
    "parse_log": "parse",
    "Measurement": "predict",
    "Prediction": "predict",
    "policy_pcr_digest": "predict",
    "predict_pcr": "predict",
    "DigestMismatch": "replay",
    "ExtendStep": "replay",
    "Replay": "replay",
    "cel_to_log": "replay",
    "check_event_digests": "replay",
    "initial_value": "replay",
    "replay_logs": "replay",
    "parse_tcg": "tcg",
}


__getattr__ = lazy_getattr(__name__, _SUBMODULE, globals())
