"""TCG binary logs: every real log parses; truncation, padding, garbage and hostile bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_eventlog_builder import (
    EV_EFI_ACTION,
    EV_SEPARATOR,
    Ev,
    agile_log,
    sha1_log,
    spec_id_event03,
)

from conftest import TESTDATA
from heads.core.digest import HashAlg
from heads.core.eventlog import MAX_LOG_BYTES, EventLog, LogFormat, parse_log, parse_tcg
from heads.errors import FormatError


def _logs() -> list[Path]:
    return sorted((TESTDATA / "eventlogs").glob("*.bin"))


def _expected() -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(
        (TESTDATA / "eventlogs" / "expected.json").read_bytes()
    )
    return data


@pytest.mark.parametrize("path", _logs(), ids=lambda p: p.name)
def test_every_real_log_parses_with_its_event_count_and_banks(path: Path) -> None:
    meta = _expected()[path.name]
    log = parse_log(path.read_bytes(), path.name)
    assert len(log.events) == meta["events"]
    assert [a.value for a in log.banks] == meta["banks"]
    expected_format = (
        LogFormat.TCG_SHA1 if str(meta["format"]).startswith("SHA1") else LogFormat.TCG_AGILE
    )
    assert log.format is expected_format


def test_malformed_spec_id_vendor_info_is_a_warning_not_a_failure() -> None:
    data = (TESTDATA / "eventlogs" / "tt-specid-vendordata.bin").read_bytes()
    log = parse_tcg(data, "specid.bin")
    assert len(log.events) == 1
    assert any("vendorInfoSize is 4" in str(w) for w in log.warnings)
    # The 4 vendor bytes outside the event look like the start of a next event: truncated.
    assert log.truncated
    assert any(w.offset == 69 and w.event_number == 1 for w in log.warnings)


def test_empty_file_is_an_empty_log() -> None:
    log = parse_tcg(b"", "empty")
    assert log.events == ()
    assert log.warnings
    assert "empty" in str(log.warnings[0])


@pytest.mark.parametrize("cut", [1, 11, 40, 100])
def test_log_that_stops_early_keeps_the_events_before_it(cut: int) -> None:
    data = (TESTDATA / "eventlogs" / "tt-event-arch-linux.bin").read_bytes()
    full = parse_tcg(data)
    last = full.events[-1]
    assert last.offset is not None
    short = data[: last.offset + cut]
    log = parse_tcg(short, "short.bin")
    assert log.truncated
    assert len(log.events) == len(full.events) - 1
    warning = log.warnings[-1]
    assert warning.offset == last.offset
    assert warning.event_number == last.number


def test_zero_padding_ends_a_preallocated_log() -> None:
    data = agile_log([Ev(2, EV_SEPARATOR, b"\0\0\0\0")]) + b"\0" * 500
    log = parse_tcg(data)
    assert len(log.events) == 2
    assert not log.truncated
    assert "zero padding" in str(log.warnings[-1])


def test_garbage_is_a_format_error_naming_offset_and_event() -> None:
    garbage = b"\x13\x37" * 40
    with pytest.raises(FormatError) as info:
        parse_tcg(garbage, "junk.bin")
    assert info.value.offset == 0
    assert "event 0" in info.value.message
    assert "junk.bin" in info.value.message


def test_undeclared_digest_algorithm_names_the_event_and_offset() -> None:
    good = agile_log([Ev(1, EV_SEPARATOR, b"\0\0\0\0")])
    bad = bytearray(good)
    first_event = len(spec_id_event03((HashAlg.SHA1, HashAlg.SHA256)))
    struct.pack_into("<H", bad, first_event + 12, 0x0013)  # an algorithm the header lacks
    with pytest.raises(FormatError) as info:
        parse_tcg(bytes(bad), "bad.bin")
    assert info.value.offset == first_event + 12
    assert "event 1" in info.value.message


def test_digest_count_larger_than_the_banks_is_rejected() -> None:
    good = agile_log([Ev(1, EV_SEPARATOR, b"\0\0\0\0")])
    bad = bytearray(good)
    first_event = len(spec_id_event03((HashAlg.SHA1, HashAlg.SHA256)))
    struct.pack_into("<I", bad, first_event + 8, 9)
    with pytest.raises(FormatError, match="digest count 9"):
        parse_tcg(bytes(bad))


def test_unknown_bank_declared_in_header_is_kept_but_not_replayed() -> None:
    data = agile_log(
        [Ev(4, EV_EFI_ACTION, b"x", extra=[(0x0027, b"\x11" * 48)])],
        extra_algs=[(0x0027, 48)],  # SHA3_384: heads does not replay it
    )
    log = parse_tcg(data)
    assert log.banks == (HashAlg.SHA1, HashAlg.SHA256)
    assert log.events[1].other_digests == ((0x0027, b"\x11" * 48),)
    assert any("0x0027" in str(w) for w in log.warnings)


def test_sha1_format_with_coreboot_event00_header() -> None:
    header = b"Spec ID Event00\0" + struct.pack("<IBBBBB", 0, 2, 1, 1, 0, 8) + b"coreboot"
    data = sha1_log([Ev(0, 3, header, digests={HashAlg.SHA1: b"\0" * 20})])
    data += sha1_log([Ev(2, 5, b"FMAP: FMAP")]) + b"\0" * 64
    log = parse_tcg(data, "tcpa.bin")
    assert log.format is LogFormat.TCG_SHA1
    assert log.spec_id is not None
    assert log.spec_id.signature == "Spec ID Event00"
    assert log.spec_id.vendor_info == b"coreboot"
    assert len(log.events) == 2


# --- hostile input --------------------------------------------------------------------------


def _result_or_format_error(data: bytes, fmt: str) -> EventLog | None:
    message = ""
    try:
        return parse_log(data, "fuzz", fmt)
    except FormatError as exc:
        message = exc.message
    assert message
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from(["auto", "tcg", "coreboot", "cel"]))
def test_arbitrary_bytes_give_a_log_or_a_format_error(data: bytes, fmt: str) -> None:
    _result_or_format_error(data, fmt)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_logs_give_a_log_or_a_format_error(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_logs()))
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _result_or_format_error(bytes(raw[:cut]), "auto")


_events = st.lists(
    st.builds(
        Ev,
        pcr=st.one_of(st.integers(0, 23), st.integers(24, 2**32 - 1)),
        etype=st.sampled_from([1, 3, 4, 5, 6, 0xD, 0x80000001, 0x80000003, 0x80000007]),
        data=st.binary(max_size=64),
        digests=st.none(),
    ),
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(_events)
def test_built_agile_logs_round_trip(events: list[Ev]) -> None:
    algs = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384)
    log = parse_tcg(agile_log(events, algs))
    assert not log.truncated
    assert len(log.events) == len(events) + 1
    for built, parsed in zip(events, log.events[1:], strict=True):
        assert (parsed.pcr, parsed.event_type, parsed.data) == (built.pcr, built.etype, built.data)
        assert dict(parsed.digests) == {a: built.digest(a) for a in algs}


@settings(max_examples=100, deadline=None)
@given(_events)
def test_built_sha1_logs_round_trip(events: list[Ev]) -> None:
    data = sha1_log(events)
    if not data or data.count(0) == len(data):
        return  # an all-zero log is padding by definition
    log = parse_tcg(data)
    assert log.format is LogFormat.TCG_SHA1
    got = [(e.pcr, e.event_type, e.data) for e in log.events]
    want = [(e.pcr, e.etype, e.data) for e in events]
    # A trailing run of all-zero events is indistinguishable from coreboot's padding.
    assert got == want[: len(got)]
    rest = sha1_log(events[len(got) :])
    assert rest.count(0) == len(rest)


def test_input_over_the_cap_is_refused_before_parsing() -> None:
    with pytest.raises(FormatError, match="larger than"):
        parse_log(b"\1" * (MAX_LOG_BYTES + 1), "huge.bin")


def test_many_tiny_events_parse_in_one_pass() -> None:
    # 32 768 header-only SHA-1 events: a parser that rescans the tail per event would crawl.
    one = struct.pack("<II20sI", 7, 5, b"\x01" * 20, 0)
    log = parse_tcg(one * 32768 + b"\0" * 4096)
    assert len(log.events) == 32768
    assert not log.truncated
