"""`heads pcr replay|log|check|predict`, run in-process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_eventlog_builder import EV_EFI_ACTION, Ev, agile_log

from conftest import TESTDATA
from heads.adapters.tpm import open_tpm
from heads.cli.main import main
from heads.core.digest import HashAlg
from heads.testing.swtpm import Swtpm


def _logs() -> list[Path]:
    return sorted((TESTDATA / "eventlogs").glob("*.bin"))


def _expected() -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(
        (TESTDATA / "eventlogs" / "expected.json").read_bytes()
    )
    return data


@pytest.mark.parametrize("path", _logs(), ids=lambda p: p.name)
def test_replay_json_is_every_pcr_the_log_extends(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pcr", "replay", "--json", str(path)]) == 0
    got = json.loads(capsys.readouterr().out)
    replay = _expected()[path.name]["replay"]
    assert isinstance(replay, dict)
    assert got == replay["pcrs"]


@pytest.mark.parametrize("path", _logs(), ids=lambda p: p.name)
def test_log_decodes_every_event(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pcr", "log", "--json", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["events"]) == _expected()[path.name]["events"]
    assert all("error" not in ev["decoded"] for ev in out["events"])
    assert main(["pcr", "log", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.count("\n") == len(out["events"]) + 1


def test_log_json_flags_the_mismatching_event(capsys: pytest.CaptureFixture[str]) -> None:
    path = TESTDATA / "eventlogs" / "tt-event-arch-linux.bin"
    assert main(["pcr", "log", "--json", str(path)]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    flagged = [ev["number"] for ev in events if ev["digest_matches_payload"] is False]
    assert flagged == [24]
    assert events[8]["digest_matches_payload"] is True  # a separator
    assert events[0]["extended"] is False  # the Spec ID header


def test_replay_text_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    path = TESTDATA / "eventlogs" / "tt-specid-vendordata.bin"
    assert main(["pcr", "replay", str(path)]) == 0
    captured = capsys.readouterr()
    assert "no events" not in captured.out  # it has the header event
    assert "vendorInfoSize" in captured.err


def test_garbage_log_error_names_offset_and_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "garbage.bin"
    bad.write_bytes(b"\xde\xad\xbe\xef" * 20)
    assert main(["pcr", "replay", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "byte offset 0" in err
    assert "event 0" in err
    assert "Traceback" not in err


def test_missing_log_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pcr", "log", str(tmp_path / "nope.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_predict_string_file_digest_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "config.user"
    f.write_bytes(b"CONFIG_X=y\n")
    args = ["pcr", "predict", "7", "--no-log", "--json"]
    args += ["--string", "/etc/config.user", "--file", str(f), "--digest", "11" * 32]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    sha = hashlib.sha256
    want = b"\0" * 32
    for d in (sha(b"/etc/config.user").digest(), sha(b"CONFIG_X=y\n").digest(), b"\x11" * 32):
        want = sha(want + d).digest()
    assert out["value"] == want.hex()
    assert [e["kind"] for e in out["extends"]] == ["string", "data", "digest"]


def test_predict_from_a_firmware_log_with_policy(capsys: pytest.CaptureFixture[str]) -> None:
    path = TESTDATA / "eventlogs" / "tt-event-arch-linux.bin"
    args = ["pcr", "predict", "4", "--log", str(path), "--string", "generic"]
    assert main([*args, "--policy", "0,4,7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    fw4 = _expected()[path.name]["replay"]["pcrs"]["sha256"]["4"]  # type: ignore[index]
    assert out["firmware"] == fw4
    assert out["policy"]["selection"] == "sha256:0,4,7"
    assert out["policy"]["values"]["4"] == out["value"]
    assert len(out["policy"]["digest"]) == 64
    assert main([*args, "--bank", "sha1"]) == 0
    assert "sha1 PCR 4 predicted" in capsys.readouterr().out


def test_predict_refuses_our_own_log_as_firmware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cel = tmp_path / "m.cel.jsonl"
    cel.write_text(
        '{"recnum":0,"pcr":4,"digests":[{"hashAlg":"sha256","digest":"' + "00" * 32 + '"}]}\n'
    )
    assert main(["pcr", "predict", "4", "--log", str(cel)]) == 2
    assert "not a firmware log" in capsys.readouterr().err


@pytest.mark.swtpm
def test_check_exit_codes_and_json(
    swtpm: Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cel = tmp_path / "m.cel.jsonl"
    d256 = hashlib.sha256(b"generic").digest()
    d1 = hashlib.sha1(b"generic").digest()  # noqa: S324 - the TPM's SHA-1 bank
    cel.write_text(
        json.dumps(
            {
                "recnum": 0,
                "pcr": 4,
                "digests": [
                    {"hashAlg": "sha256", "digest": d256.hex()},
                    {"hashAlg": "sha1", "digest": d1.hex()},
                ],
                "content_type": "heads",
                "content": {"type": "string", "string": "generic"},
            }
        )
        + "\n"
    )
    base = ["pcr", "check", "--tcti", swtpm.tcti, "--log", str(cel)]
    # Nothing extended yet: the log is ahead of the TPM.
    assert main([*base, "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    pcr4 = [p for p in out["pcrs"] if p["pcr"] == 4]
    assert {p["status"] for p in pcr4} == {"log-ahead"}
    assert pcr4[0]["first_unexplained_event"]["number"] == 0
    with open_tpm(swtpm.tcti) as tpm:
        tpm.extend_digests(4, {HashAlg.SHA256: d256, HashAlg.SHA1: d1})
    assert main(base) == 0
    assert "BAD" not in capsys.readouterr().out
    with open_tpm(swtpm.tcti) as tpm:
        tpm.extend_digests(5, {HashAlg.SHA256: d256, HashAlg.SHA1: d1})
    assert main(base) == 3
    captured = capsys.readouterr()
    assert "PCR 5" in captured.err
    assert "no log records it" in captured.err


def _beyond_pcr_23_log(tmp_path: Path) -> Path:
    path = tmp_path / "beyond.bin"
    path.write_bytes(
        agile_log([Ev(0xFFFFFFFF, EV_EFI_ACTION, b"way beyond"), Ev(5, EV_EFI_ACTION, b"real")])
    )
    return path


def test_an_event_for_pcr_0xffffffff_is_reported_not_silently_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _beyond_pcr_23_log(tmp_path)
    for command in (["replay"], ["replay", "--json"], ["log"]):
        assert main(["pcr", *command, str(path)]) == 0
        captured = capsys.readouterr()
        assert (
            f"note: {path}: event 1 at byte offset 69 (EV_EFI_ACTION, PCR 0xffffffff) was not "
            "extended: PCR 4294967295 does not exist" in captured.err
        ), command
        assert "event 2" not in captured.err
    assert main(["pcr", "replay", "--json", str(path)]) == 0
    assert set(json.loads(capsys.readouterr().out)["sha256"]) == {"5"}


@pytest.mark.swtpm
def test_check_json_lists_events_for_pcrs_that_do_not_exist(
    swtpm: Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _beyond_pcr_23_log(tmp_path)
    argv = ["pcr", "check", "--tcti", swtpm.tcti, "--log", str(path), "--pcrs", "5"]
    assert main([*argv, "--json"]) == 3
    (notice,) = json.loads(capsys.readouterr().out)["notices"]
    assert "PCR 0xffffffff" in notice
    assert main(argv) == 3
    assert "PCR 0xffffffff) was not extended" in capsys.readouterr().err


def test_replay_of_several_logs_in_one_call_replays_each_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = _logs()
    assert main(["pcr", "replay", "--json", *map(str, paths)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [entry["path"] for entry in got["logs"]] == [str(p) for p in paths]
    for path, entry in zip(paths, got["logs"], strict=True):
        replay = _expected()[path.name]["replay"]
        assert isinstance(replay, dict)
        assert entry["pcrs"] == replay["pcrs"], path.name
    assert main(["pcr", "replay", *map(str, paths[:2])]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"== {paths[0]}\n")
    assert f"\n== {paths[1]}\n" in text
