"""One entry point for every log format: detect it, parse it, get an :class:`EventLog`."""

from __future__ import annotations

from heads.core.eventlog.coreboot import (
    looks_like_cb_table,
    looks_like_cbmem_text,
    parse_cb_table,
    parse_cbmem_text,
)
from heads.core.eventlog.model import MAX_LOG_BYTES, EventLog, LogFormat
from heads.core.eventlog.replay import cel_to_log
from heads.core.eventlog.tcg import parse_tcg
from heads.core.log_formats import FORMAT_CHOICES
from heads.errors import FormatError

__all__ = ["FORMAT_CHOICES", "detect_format", "parse_log"]


def _has_spec_id(data: bytes) -> bool:
    return len(data) >= 48 and data[4:8] == b"\x03\0\0\0" and data[32:45] == b"Spec ID Event"


def detect_format(data: bytes) -> LogFormat:
    """Guess the format from the first bytes (never raises)."""
    head = data[:64].lstrip()
    if head.startswith(b"{"):
        return LogFormat.CEL
    if looks_like_cbmem_text(data):
        return LogFormat.COREBOOT_TEXT
    if _has_spec_id(data):
        return LogFormat.TCG_AGILE if data[32:48] == b"Spec ID Event03\0" else LogFormat.TCG_SHA1
    if looks_like_cb_table(data):
        return LogFormat.COREBOOT_CB
    return LogFormat.TCG_SHA1


def parse_log(data: bytes, source: str = "<event log>", fmt: str = "auto") -> EventLog:
    """Parse a TCG binary log, a coreboot log (CBMEM table or `cbmem -L` text) or our CEL log.

    ``fmt`` is one of :data:`FORMAT_CHOICES`.

    Raises:
        FormatError: the input is not a log of that format; the message names the byte
            offset (or line) and the event number.
        ValueError: ``fmt`` is not a known name (a programming error).
    """
    if fmt not in FORMAT_CHOICES:
        raise ValueError(f"unknown log format {fmt!r}")
    if len(data) > MAX_LOG_BYTES:
        raise FormatError(f"log is larger than {MAX_LOG_BYTES} bytes", source=source)
    detected = detect_format(data)
    if fmt == "cel" or (fmt == "auto" and detected is LogFormat.CEL):
        # Only our own log needs the CEL parser (and json): firmware logs do not load it.
        from heads.core.cel import parse_cel  # noqa: PLC0415 - CEL logs only

        return cel_to_log(parse_cel(data, source), source)
    if fmt == "coreboot" or (
        fmt == "auto" and detected in (LogFormat.COREBOOT_CB, LogFormat.COREBOOT_TEXT)
    ):
        if detected is LogFormat.COREBOOT_TEXT:
            return parse_cbmem_text(data, source)
        if _has_spec_id(data):
            # coreboot's TCG-format logs (Spec ID Event00/03) are TCG logs.
            return parse_tcg(data, source)
        return parse_cb_table(data, source)
    return parse_tcg(data, source)
