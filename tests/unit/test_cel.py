"""Our CEL measurement log: hostile lines are refused with the file and line, never a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from heads.adapters.tpm import open_tpm
from heads.cli.main import main
from heads.core.cel import (
    MAX_JSON_DEPTH,
    MAX_LINE_BYTES,
    MAX_NUMBER_CHARS,
    CelRecord,
    parse_cel,
)
from heads.core.digest import HashAlg
from heads.errors import ExitCode, FormatError
from heads.testing.swtpm import Swtpm

_DIGEST = '[{"hashAlg":"sha256","digest":"' + "00" * 32 + '"}]'


def _line(recnum: int | str = 0, pcr: int | str = 7, extra: str = "") -> str:
    return f'{{"recnum":{recnum},"pcr":{pcr},"digests":{_DIGEST}{extra}}}\n'


def _error(data: bytes) -> FormatError:
    with pytest.raises(FormatError) as err:
        parse_cel(data, "m.cel")
    assert err.value.source == "m.cel"
    return err.value


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (_line(recnum="1" * 5000), "5000 digits"),
        (_line(extra=',"x":' + "9" * 5000), "5000 digits"),
        (_line(extra=',"x":1.' + "5" * 5000), "characters"),
        (_line(extra=',"x":NaN'), "NaN is not a JSON number"),
        (_line(extra=',"x":-Infinity'), "-Infinity is not a JSON number"),
        (_line(extra=',"x":' + "[" * 100_000 + "]" * 100_000), "nested deeper"),
        (_line(extra=',"x":"' + "a" * MAX_LINE_BYTES + '"'), "longer than"),
    ],
    ids=["recnum", "int", "float", "nan", "infinity", "nesting", "line"],
)
def test_absurd_numbers_nesting_and_lines_are_format_errors(bad: str, reason: str) -> None:
    err = _error((_line() + "\n" + bad).encode())
    assert err.line == 3
    assert reason in err.message


def test_limits_leave_real_records_alone() -> None:
    nested = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)  # in the record, in content
    number = "9" * MAX_NUMBER_CHARS
    brackets_in_strings = '"' + "[{" * 100 + '\\"' + "]" * 50 + '"'
    (a, b) = parse_cel(
        (
            _line(recnum=2**64 - 1)
            + _line(
                recnum=1,
                extra=f',"content_type":"other","content":{{"n":{nested},"big":{number},'
                f'"text":{brackets_in_strings},"f":1.5e300}}',
            )
        ).encode()
    )
    assert a.recnum == 2**64 - 1
    assert b.content_type == "other"


def test_round_trip_of_what_we_write() -> None:
    record = CelRecord(
        3, 4, {HashAlg.SHA256: b"\1" * 32}, kind="string", string="x" * 100_000, description="d"
    )
    assert parse_cel(record.to_json_line().encode()) == [record]


def test_lone_surrogates_are_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "m.cel.jsonl"
    log.write_text(
        _line(
            extra=r',"content_type":"heads","content":{"type":"file","path":"\ud800",'
            r'"description":"\udfff"}'
        )
    )
    assert main(["pcr", "log", str(log)]) == ExitCode.OK
    assert "\\udfff: file \\ud800" in capsys.readouterr().out
    assert main(["pcr", "log", "--json", str(log)]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["events"][0]["description"] == (
        "\\udfff: file \\ud800"
    )


def test_replay_of_a_5000_digit_number_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "x.cel"
    log.write_text(_line() + _line(recnum="1" * 5000))
    for fmt in ("auto", "cel"):
        assert main(["pcr", "replay", "--format", fmt, str(log)]) == ExitCode.ERROR
        err = capsys.readouterr().err
        assert err.startswith(f"error: {log}, line 2: ")
        assert "5000 digits" in err
        assert "Traceback" not in err


@pytest.mark.swtpm
def test_extend_refuses_a_damaged_log_before_touching_the_tpm(
    swtpm: Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "m.cel.jsonl"
    log.write_text(_line() + _line(recnum=1, pcr="9" * 5000))
    with open_tpm(swtpm.tcti) as tpm:
        before = tpm.read_pcrs(HashAlg.SHA256, [7])
    argv = ["tpm", "extend", "7", "--string", "x", "--log", str(log), "--tcti", swtpm.tcti]
    assert main(argv) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert f"{log}, line 2" in err
    assert "Traceback" not in err
    with open_tpm(swtpm.tcti) as tpm:
        assert tpm.read_pcrs(HashAlg.SHA256, [7]) == before
    assert log.read_text().count("\n") == 2


@pytest.mark.swtpm
@pytest.mark.parametrize(
    "bad",
    [_line(recnum="1" * 5000) + _line(recnum=1), _line() + "[" * 100_000 + "]" * 100_000 + "\n"],
    ids=["earlier-line", "nested-last-line"],
)
def test_extend_refuses_any_damaged_line_before_touching_the_tpm(
    swtpm: Swtpm, tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "m.cel.jsonl"
    log.write_text(bad)
    with open_tpm(swtpm.tcti) as tpm:
        before = tpm.read_pcrs(HashAlg.SHA256, [7])
    argv = ["tpm", "extend", "7", "--string", "x", "--log", str(log), "--tcti", swtpm.tcti]
    assert main(argv) == ExitCode.ERROR
    assert "Traceback" not in capsys.readouterr().err
    with open_tpm(swtpm.tcti) as tpm:
        assert tpm.read_pcrs(HashAlg.SHA256, [7]) == before


@pytest.mark.swtpm
def test_extend_refuses_a_string_that_is_not_utf8_before_touching_the_tpm(
    swtpm: Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "m.cel.jsonl"
    with open_tpm(swtpm.tcti) as tpm:
        before = tpm.read_pcrs(HashAlg.SHA256, [7])
    # What Python makes of the argument bytes b"\xff" (os.fsdecode: a lone surrogate).
    text = os.fsdecode(b"\xff")
    argv = ["tpm", "extend", "7", "--string", text, "--log", str(log), "--tcti", swtpm.tcti]
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "not valid UTF-8" in err
    assert "Traceback" not in err
    with open_tpm(swtpm.tcti) as tpm:
        assert tpm.read_pcrs(HashAlg.SHA256, [7]) == before
    assert not log.exists()
