"""Scripted answers: ``ID=CHOICE`` on a command line and in the guest's answer file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.cli.main import main
from heads.core.answers import (
    ScriptedAnswers,
    format_answers,
    parse_answer,
    parse_answer_file,
)
from heads.errors import FormatError, UsageError


def test_answer_from_the_command_line() -> None:
    assert parse_answer("main-menu=d") == ("main-menu", "d")
    assert parse_answer("change-time=2030-01-02 03:04:05") == (
        "change-time",
        "2030-01-02 03:04:05",
    )
    with pytest.raises(UsageError, match="unknown dialog id 'main'"):
        parse_answer("main=d")
    with pytest.raises(UsageError, match="expected DIALOG-ID=CHOICE"):
        parse_answer("main-menu")


def test_answer_file_round_trip_and_errors() -> None:
    pairs = [("main-menu", "o"), ("options", "b"), ("main-menu", "p")]
    assert parse_answer_file(format_answers(pairs), source="f") == pairs
    text = b"# scripted\n\nmain-menu=d\r\n  # indented comment\nno-such=1\n"
    with pytest.raises(FormatError, match=r"answers, line 5: unknown dialog id 'no-such'"):
        parse_answer_file(text, source="answers")
    with pytest.raises(FormatError, match=r"answers, line 1: the answer holds a control char"):
        parse_answer_file(b"main-menu=d\x1b[2J\n", source="answers")
    with pytest.raises(FormatError, match="not UTF-8 at byte 10"):
        parse_answer_file(b"main-menu=\xff\n", source="answers")


def test_answers_to_one_dialog_are_used_in_order() -> None:
    answers = ScriptedAnswers([("main-menu", "o"), ("options", "r"), ("main-menu", "p")])
    assert answers.take("main-menu") == "o"
    assert answers.take("main-menu") == "p"
    assert answers.take("main-menu") is None
    assert answers.left() == {"options": 1}


@given(st.binary(max_size=512))
def test_answer_file_parser_never_crashes(data: bytes) -> None:
    try:
        pairs = parse_answer_file(data, source="fuzz")
    except FormatError as err:
        message = err.message
    else:
        assert all("\n" not in v for _k, v in pairs)
        return
    assert "fuzz" in message


@given(st.text(max_size=80))
def test_command_line_answer_parser_never_crashes(text: str) -> None:
    try:
        parse_answer(text)
    except UsageError as err:
        message = err.message
    else:
        return
    assert "--answer" in message


def test_cli_refuses_a_passphrase_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["qemu", "boot", str(tmp_path), "--answer", "tpm-owner-passphrase=hunter2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "a passphrase is never given on the command line" in err
    assert "hunter2" not in err
    assert "--answers FILE" in err


def test_cli_names_a_bad_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qemu", "boot", str(tmp_path), "--answer", "mainmenu=d"]) == 2
    assert "unknown dialog id 'mainmenu'" in capsys.readouterr().err
    bad = tmp_path / "answers"
    bad.write_text("main-menu=d\nmain-menu\n")
    assert main(["qemu", "boot", str(tmp_path), "--answers", str(bad)]) != 0
    assert f"{bad}, line 2: expected DIALOG-ID=CHOICE" in capsys.readouterr().err
