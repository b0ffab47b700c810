"""Pure pieces under the TPM layer: PCR lists, extend arithmetic, seal records, our CEL log."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.core.cel import CelRecord, parse_cel, replay_cel
from heads.core.digest import HashAlg, extend, extend_string, zero_digest
from heads.core.pcr import PcrIndex, PcrSelection, parse_pcr_list
from heads.core.sealing import SealRecord, changed_pcrs, policy_pcr, seal_policy_digest
from heads.core.secret import Secret
from heads.errors import FormatError, UsageError


def test_pcr_lists_and_ranges() -> None:
    assert parse_pcr_list("0,1,2,3,4,7") == (0, 1, 2, 3, 4, 7)
    assert parse_pcr_list("4-7, 0 ,7") == (0, 4, 5, 6, 7)
    assert str(PcrSelection.parse("SHA256:7,0")) == "sha256:0,7"


@pytest.mark.parametrize("bad", ["", "x", "1,,2", "5-3", "24", "-1", "0-24", "sha256:1"])
def test_bad_pcr_lists_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_pcr_list(bad)


def test_selection_bitmap_matches_tpms_pcr_select() -> None:
    assert PcrSelection.parse("sha256:0,1,2,3,4,7").bitmap() == bytes([0x9F, 0, 0])
    assert PcrSelection.parse("sha1:9,23").bitmap() == bytes([0, 0x02, 0x80])


def test_extend_string_is_heads_extend_ic() -> None:
    # tpmr extend -ix 4 -ic generic == extend with sha256("generic") (no newline)
    old = zero_digest(HashAlg.SHA256)
    assert (
        extend_string(HashAlg.SHA256, old, "generic")
        == hashlib.sha256(old + hashlib.sha256(b"generic").digest()).digest()
    )
    with pytest.raises(ValueError, match="20-byte"):
        extend(HashAlg.SHA1, old, old)


def test_secret_redacts_itself() -> None:
    s = Secret(b"hunter2")
    assert "hunter2" not in f"{s} {s!r} {[s]}"
    assert s == Secret(b"hunter2")
    assert s != Secret(b"hunter3")
    with pytest.raises(TypeError):
        hash(s)


@given(
    st.lists(st.integers(0, 23), min_size=1, max_size=24, unique=True),
    st.sampled_from([HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384]),
    st.booleans(),
)
def test_seal_record_round_trips(indices: list[int], alg: HashAlg, with_auth: bool) -> None:
    selection = PcrSelection(alg, tuple(PcrIndex(i) for i in sorted(indices)))
    values: dict[int, bytes] = {i: bytes([i]) * alg.digest_size for i in selection.indices}
    policy = hashlib.sha256(repr((indices, with_auth)).encode()).digest()
    record = SealRecord(selection, values, policy)
    assert SealRecord.from_bytes(record.to_bytes()) == record


@given(st.binary(max_size=400))
def test_seal_record_parser_rejects_garbage_with_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        SealRecord.from_bytes(data)


def test_changed_pcrs_names_exactly_the_moved_ones() -> None:
    sel = PcrSelection.parse("sha256:0,4,7")
    sealed = {0: b"\0" * 32, 4: b"\1" * 32, 7: b"\2" * 32}
    record = SealRecord(sel, sealed, b"\0" * 32)
    assert changed_pcrs(record, {**sealed, 4: rb"\9" * 32, 7: rb"\8" * 32}) == (4, 7)
    assert changed_pcrs(record, sealed) == ()


def test_policy_auth_value_changes_the_digest() -> None:
    sel = PcrSelection.parse("sha256:0")
    values = {0: b"\0" * 32}
    assert seal_policy_digest(sel, values, with_auth=False) == policy_pcr(b"\0" * 32, sel, values)
    assert seal_policy_digest(sel, values, with_auth=True) != seal_policy_digest(
        sel, values, with_auth=False
    )
    with pytest.raises(ValueError, match="PCR 0"):
        policy_pcr(b"\0" * 32, sel, {})


def _record(recnum: int, pcr: int, text: str) -> CelRecord:
    digests = {alg: alg.hash(text.encode()) for alg in (HashAlg.SHA256, HashAlg.SHA1)}
    return CelRecord(recnum, pcr, digests, kind="string", string=text, description="d")


def test_cel_round_trip_and_replay() -> None:
    records = [_record(0, 7, "a"), _record(1, 7, "b"), _record(2, 4, "generic")]
    data = "".join(r.to_json_line() for r in records).encode()
    assert parse_cel(data) == records
    state = replay_cel(records)
    expect = extend_string(
        HashAlg.SHA256, extend_string(HashAlg.SHA256, zero_digest(HashAlg.SHA256), "a"), "b"
    )
    assert state[HashAlg.SHA256][7] == expect
    assert state[HashAlg.SHA1][4] == extend_string(
        HashAlg.SHA1, zero_digest(HashAlg.SHA1), "generic"
    )


def test_cel_keeps_foreign_records_verbatim() -> None:
    line = {
        "recnum": 0,
        "pcr": 10,
        "digests": [{"hashAlg": "sha256", "digest": "00" * 32}],
        "content_type": "ima_template",
        "content": {"template_name": "ima-ng"},
    }
    (record,) = parse_cel(json.dumps(line).encode())
    assert json.loads(record.to_json_line()) == line


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{", "not a JSON record"),
        (b"[]", "not a JSON object"),
        (b'{"recnum":0,"pcr":24,"digests":[]}', "'pcr'"),
        (b'{"recnum":0,"pcr":1,"digests":[{"hashAlg":"sha256","digest":"00"}]}', "1 bytes"),
        (b'{"recnum":0,"pcr":1,"digests":[{"hashAlg":"md5","digest":"00"}]}', "md5"),
        (b'{"recnum":-1,"pcr":1,"digests":[]}', "recnum"),
    ],
)
def test_cel_errors_name_the_line(line: bytes, reason: str) -> None:
    good = _record(0, 7, "a").to_json_line().encode()
    with pytest.raises(FormatError, match="line 2") as info:
        parse_cel(good + line + b"\n", "log.jsonl")
    assert reason in info.value.message
    assert info.value.source == "log.jsonl"


@given(st.binary(max_size=600))
def test_cel_parser_gives_records_or_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_cel(data)
