"""Hostile inputs to the TOTP/HOTP flow's parsers: only FormatError (or a refusal) escapes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.errors import FormatError, MeasurementError
from heads.flows.totp import firmware_pcr4, parse_hotp_index, parse_legacy_counter


@given(st.binary(max_size=2048))
def test_firmware_pcr4_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(FormatError, MeasurementError):
        assert len(firmware_pcr4(data, source="fuzz")) == 32


@given(st.text(max_size=64))
def test_hotp_index_parser_only_raises_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        assert 0x01000000 <= parse_hotp_index(text, source="fuzz") <= 0x01FFFFFF


@given(st.text(max_size=64))
def test_legacy_counter_parser_only_raises_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        assert parse_legacy_counter(text, source="fuzz") >= 0


def test_hotp_index_round_trip_and_errors_name_the_file() -> None:
    assert parse_hotp_index("0x01abcdef\n", source="f") == 0x01ABCDEF
    with pytest.raises(FormatError, match=r"^/boot/x, line 1: expected one line"):
        parse_hotp_index("0x81000000\n", source="/boot/x")


def test_legacy_counter_accepts_heads_format() -> None:
    # unseal-hotp.sh writes the number followed by a newline.
    assert parse_legacy_counter("12\n", source="kexec_hotp_counter") == 12
    with pytest.raises(FormatError, match="decimal"):
        parse_legacy_counter("-1\n", source="kexec_hotp_counter")
    with pytest.raises(FormatError, match="decimal"):
        parse_legacy_counter("\u0661\n", source="kexec_hotp_counter")  # Arabic-Indic one
