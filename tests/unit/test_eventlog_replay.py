"""Replay: every real log to its expected PCRs, start values per the spec, CEL merge."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_eventlog_builder import (
    EV_EFI_ACTION,
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    EV_SEPARATOR,
    Ev,
    agile_log,
    fold,
    h,
    startup_locality,
)

from conftest import TESTDATA
from heads.core.cel import CelRecord
from heads.core.digest import HashAlg
from heads.core.eventlog import cel_to_log, parse_log, parse_tcg, replay_logs

Z32 = b"\0" * 32


def _cases() -> list[tuple[str, str, dict[str, dict[str, str]]]]:
    meta = json.loads((TESTDATA / "eventlogs" / "expected.json").read_bytes())
    out = []
    for name, entry in sorted(meta.items()):
        out.append((name, "expected", entry["expected"]["pcrs"] or {}))
        out.append((name, "replay", entry["replay"]["pcrs"]))
    return out


@pytest.mark.parametrize(
    ("name", "which", "pcrs"), _cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_real_log_replays_to_its_expected_values(
    name: str, which: str, pcrs: dict[str, dict[str, str]]
) -> None:
    """`expected` are the values from the log's source (tpm2-tools / tpm2-tss fixtures);
    `replay` is the independent replay of every PCR the log extends."""
    data = (TESTDATA / "eventlogs" / name).read_bytes()
    got = replay_logs([parse_log(data, name)]).to_json()
    if which == "replay":
        assert got == pcrs
    for bank, values in pcrs.items():
        for pcr, value in values.items():
            assert got[bank][pcr] == value, f"{name} {bank} PCR {pcr}"


def test_hcrtm_log_pcr0_starts_at_locality_4() -> None:
    data = (TESTDATA / "eventlogs" / "tss-binary-measurements-hcrtm.bin").read_bytes()
    replay = replay_logs([parse_tcg(data)])
    assert replay.hcrtm
    assert replay.start[HashAlg.SHA1][0] == b"\0" * 19 + b"\x04"
    # tpm2-tss's check_eventlog_pcr0 value, which tpm2-tools 5.4 gets wrong.
    assert replay.pcrs[HashAlg.SHA1][0].hex() == "15f4e6ca457d1af6bc49511a93ba3500ad69acc5"


@pytest.mark.parametrize("locality", [0, 3, 4])
def test_startup_locality_sets_pcr0_start(locality: int) -> None:
    sep = Ev(0, EV_SEPARATOR, b"\0\0\0\0")
    log = parse_tcg(agile_log([startup_locality(locality), sep]))
    replay = replay_logs([log])
    start = b"\0" * 31 + bytes([locality])
    assert replay.startup_locality == locality
    assert replay.pcrs[HashAlg.SHA256][0] == fold(
        HashAlg.SHA256, start, [sep.digest(HashAlg.SHA256)]
    )
    # Neither the Spec ID header nor the StartupLocality event is extended.
    assert [ev.number for ev, _why in replay.skipped] == [0, 1]


def test_hcrtm_event_wins_over_startup_locality() -> None:
    hc = Ev(0, EV_EFI_HCRTM_EVENT, b"HCRTM")
    log = parse_tcg(agile_log([startup_locality(3), hc]))
    replay = replay_logs([log])
    assert replay.start[HashAlg.SHA256][0] == b"\0" * 31 + b"\x04"
    # The H-CRTM event's digest is what _TPM_Hash_End extended from 0..04.
    assert replay.pcrs[HashAlg.SHA256][0] == h(
        HashAlg.SHA256, replay.start[HashAlg.SHA256][0] + h(HashAlg.SHA256, b"HCRTM")
    )


def test_no_action_and_pcrs_beyond_23_are_never_extended() -> None:
    events = [
        Ev(5, EV_NO_ACTION, b"SP800-155 Event\0" + b"\x01" * 30),
        Ev(24, EV_EFI_ACTION, b"beyond"),
        Ev(0xFFFFFFFF, EV_EFI_ACTION, b"way beyond"),
        Ev(5, EV_EFI_ACTION, b"real"),
    ]
    replay = replay_logs([parse_tcg(agile_log(events))])
    assert set(replay.pcrs[HashAlg.SHA256]) == {5}
    assert replay.pcrs[HashAlg.SHA256][5] == fold(HashAlg.SHA256, Z32, [h(HashAlg.SHA256, b"real")])
    reasons = [why for _ev, why in replay.skipped]
    assert sum("PCR" in r and "does not exist" in r for r in reasons) == 2


def test_pcrs_17_to_22_start_at_all_ones() -> None:
    replay = replay_logs([parse_tcg(agile_log([Ev(17, EV_EFI_ACTION, b"x")]))])
    assert replay.start[HashAlg.SHA256][17] == b"\xff" * 32


def test_digest_not_matching_payload_is_replayed_and_reported() -> None:
    bogus = {HashAlg.SHA1: b"\x01" * 20, HashAlg.SHA256: b"\x02" * 32}
    ev = Ev(4, EV_EFI_ACTION, b"Calling EFI Application", digests=bogus)
    replay = replay_logs([parse_tcg(agile_log([ev]), "x.bin")])
    assert replay.pcrs[HashAlg.SHA256][4] == fold(HashAlg.SHA256, Z32, [b"\x02" * 32])
    assert {m.alg for m in replay.mismatches} == {HashAlg.SHA1, HashAlg.SHA256}
    assert "event 1 at byte offset" in str(replay.mismatches[0])


def test_arch_log_reports_event_24_mismatch() -> None:
    data = (TESTDATA / "eventlogs" / "tt-event-arch-linux.bin").read_bytes()
    replay = replay_logs([parse_tcg(data)])
    assert {m.event.number for m in replay.mismatches} == {24}


def test_missing_bank_digest_makes_that_pcr_incomplete() -> None:
    ev = Ev(7, EV_EFI_ACTION, b"only sha256", banks=[HashAlg.SHA256])
    replay = replay_logs([parse_tcg(agile_log([ev, Ev(3, EV_EFI_ACTION, b"ok")]))])
    assert (HashAlg.SHA1, 7) in replay.incomplete
    assert 7 not in replay.pcrs[HashAlg.SHA1]
    assert 7 in replay.pcrs[HashAlg.SHA256]
    assert 3 in replay.pcrs[HashAlg.SHA1]


def test_every_extend_is_traceable_to_its_event() -> None:
    data = (TESTDATA / "eventlogs" / "tt-event-bootorder.bin").read_bytes()
    replay = replay_logs([parse_tcg(data)])
    for alg, bank in replay.pcrs.items():
        for pcr, value in bank.items():
            steps = replay.steps_for(alg, pcr)
            assert steps[0].before == replay.start[alg][pcr]
            for a, b in itertools.pairwise(steps):
                assert a.after == b.before
            assert steps[-1].after == value
            assert all(s.event.pcr == pcr and s.event.digests[alg] == s.digest for s in steps)


def _cel(records: list[tuple[int, str]]) -> bytes:
    out = ""
    for i, (pcr, text) in enumerate(records):
        digests = {a: h(a, text.encode()) for a in (HashAlg.SHA256, HashAlg.SHA1)}
        out += CelRecord(i, pcr, digests, "string", text, description="test").to_json_line()
    return out.encode()


def test_cel_log_continues_the_firmware_log() -> None:
    fw_data = (TESTDATA / "eventlogs" / "tt-event-arch-linux.bin").read_bytes()
    firmware = parse_log(fw_data, "fw")
    ours = parse_log(_cel([(4, "generic"), (7, "/etc/config.user")]), "ours.cel")
    merged = replay_logs([firmware, ours])
    fw_only = replay_logs([firmware])
    for alg in (HashAlg.SHA1, HashAlg.SHA256):
        assert merged.pcrs[alg][4] == fold(alg, fw_only.pcrs[alg][4], [h(alg, b"generic")])
        assert merged.pcrs[alg][7] == fold(alg, fw_only.pcrs[alg][7], [h(alg, b"/etc/config.user")])
        assert merged.pcrs[alg][0] == fw_only.pcrs[alg][0]
    last = merged.steps_for(HashAlg.SHA256, 4)[-1]
    assert last.event.source == "ours.cel"
    assert "generic" in last.event.description


@settings(max_examples=50, deadline=None)
# PCRs 17-22 start at all ones (tested above); the runtime extends only 0-15.
@given(st.lists(st.tuples(st.integers(0, 15), st.text(max_size=20)), max_size=12))
def test_our_log_round_trips_and_replays_like_step_by_step_extends(
    records: list[tuple[int, str]],
) -> None:
    log = parse_log(_cel(records), "ours.cel") if records else cel_to_log([])
    assert [(e.pcr, e.digests[HashAlg.SHA256]) for e in log.events] == [
        (pcr, h(HashAlg.SHA256, t.encode())) for pcr, t in records
    ]
    replay = replay_logs([log])
    expected: dict[int, bytes] = {}
    for pcr, text in records:
        expected[pcr] = h(HashAlg.SHA256, expected.get(pcr, Z32) + h(HashAlg.SHA256, text.encode()))
    assert dict(replay.pcrs.get(HashAlg.SHA256, {})) == expected


def test_sha1_only_log_replays_sha1_only(tmp_path: Path) -> None:
    data = (TESTDATA / "eventlogs" / "tt-event-uefi-sha1-log.bin").read_bytes()
    replay = replay_logs([parse_tcg(data)])
    assert list(replay.pcrs) == [HashAlg.SHA1]


def test_untouched_pcr0_still_reports_its_locality_start() -> None:
    log = parse_tcg(agile_log([startup_locality(3), Ev(4, EV_EFI_ACTION, b"x")]))
    replay = replay_logs([log])
    assert 0 not in replay.pcrs[HashAlg.SHA256]
    assert replay.value(HashAlg.SHA256, 0) == b"\0" * 31 + b"\x03"
    assert replay.value(HashAlg.SHA256, 9) == Z32


@pytest.mark.parametrize("path", sorted((TESTDATA / "eventlogs").glob("*.bin")), ids=str)
def test_a_replay_without_steps_gives_the_same_values(path: Path) -> None:
    log = parse_log(path.read_bytes(), str(path))
    full = replay_logs([log])
    quick = replay_logs([log], record_steps=False)
    assert quick.steps == ()
    assert (quick.pcrs, quick.start, quick.incomplete) == (full.pcrs, full.start, full.incomplete)
    assert (quick.mismatches, quick.skipped) == (full.mismatches, full.skipped)
    assert quick.to_json() == full.to_json()
    assert full.steps or not any(full.pcrs.values())
