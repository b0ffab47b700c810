"""Explaining differences between the TPM and the logs."""

from __future__ import annotations

from test_eventlog_builder import EV_EFI_ACTION, EV_SEPARATOR, Ev, agile_log, fold, h

from heads.core.digest import HashAlg
from heads.core.eventlog import Replay, compare_pcrs, parse_tcg, replay_logs

S256 = HashAlg.SHA256
S1 = HashAlg.SHA1
Z = b"\0" * 32

EVENTS = [
    Ev(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option"),
    Ev(4, EV_SEPARATOR, b"\0\0\0\0"),
    Ev(4, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
    Ev(7, EV_SEPARATOR, b"\0\0\0\0"),
]


def _replay() -> Replay:
    return replay_logs([parse_tcg(agile_log(EVENTS), "fw.bin")])


def _digests(pcr: int) -> list[bytes]:
    return [e.digest(S256) for e in EVENTS if e.pcr == pcr]


def test_matching_pcrs_match() -> None:
    replay = _replay()
    tpm = {S256: {4: fold(S256, Z, _digests(4)), 7: fold(S256, Z, _digests(7)), 0: Z}}
    result = compare_pcrs(replay, tpm)
    assert not result.differing
    assert result.to_json()["ok"] is True


def test_tpm_behind_the_log_names_the_first_event_it_lacks() -> None:
    replay = _replay()
    tpm = {S256: {4: fold(S256, Z, _digests(4)[:1])}}
    (r,) = compare_pcrs(replay, tpm).results
    assert r.kind == "log-ahead"
    assert r.first_unexplained is not None
    assert r.first_unexplained.number == 2  # the separator: event 1 reached the TPM
    assert "byte offset" in r.explanation
    assert r.to_json()["first_unexplained_event"]["number"] == 2  # type: ignore[index]


def test_tpm_with_unlogged_extends_says_the_log_is_incomplete() -> None:
    replay = _replay()
    extra = fold(S256, fold(S256, Z, _digests(4)), [h(S256, b"generic")])
    (r,) = compare_pcrs(replay, {S256: {4: extra}}).results
    assert r.kind == "log-incomplete"
    assert r.first_unexplained is None
    assert "incomplete" in r.explanation


def test_extended_pcr_without_events_is_not_logged() -> None:
    (r,) = compare_pcrs(_replay(), {S256: {5: h(S256, Z + h(S256, b"x"))}}).results
    assert r.kind == "not-logged"


def test_altered_event_is_named_as_a_suspect() -> None:
    bad = list(EVENTS)
    bad[0] = Ev(4, EV_EFI_ACTION, bad[0].data, digests={S1: b"\1" * 20, S256: b"\2" * 32})
    replay = replay_logs([parse_tcg(agile_log(bad), "fw.bin")])
    truth = fold(S256, Z, _digests(4))  # what the TPM saw: the real payload hashes
    (r,) = compare_pcrs(replay, {S256: {4: truth}}).results
    assert r.kind == "log-incomplete"
    assert r.suspects
    assert r.suspects[0].event.number == 1


def test_one_bank_matching_points_at_the_other_banks_digests() -> None:
    bad = list(EVENTS)
    bad[1] = Ev(4, EV_SEPARATOR, b"\0\0\0\0", digests={S256: b"\7" * 32})
    replay = replay_logs([parse_tcg(agile_log(bad), "fw.bin")])
    tpm = {
        S1: {4: fold(S1, b"\0" * 20, [e.digest(S1) for e in EVENTS if e.pcr == 4])},
        S256: {4: fold(S256, Z, _digests(4))},
    }
    results = {r.alg: r for r in compare_pcrs(replay, tpm).results}
    assert results[S1].matches
    assert not results[S256].matches
    assert "sha1 bank matches" in results[S256].explanation


def test_bank_without_digests_is_reported_not_guessed() -> None:
    events = [Ev(4, EV_EFI_ACTION, b"x", banks=[S256])]
    replay = replay_logs([parse_tcg(agile_log(events))])
    (r,) = compare_pcrs(replay, {S1: {4: b"\0" * 20}}).results
    assert r.kind == "bank-incomplete"
