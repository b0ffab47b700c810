"""The quick command-line reader of `heads pcr replay` and `heads boot verify` agrees with
argparse: the same parsed values, or it leaves the command line to argparse; and through the
CLI the same output and exit status either way (docs/architecture.md §Command start-up)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import heads.cli.main as cli_main
from conftest import TESTDATA, Owner
from heads.cli.fast_argv import parse_fast
from heads.core.log_formats import FORMAT_CHOICES
from heads.flows.boot_signing import sign_boot

LOGS = sorted(str(p) for p in (TESTDATA / "eventlogs").glob("*.bin"))


def _argparse(argv: Sequence[str]) -> dict[str, object] | None:
    """What argparse parses ``argv`` to, or None when it refuses it (or prints help)."""
    parser = cli_main._build_parser(cli_main._wanted_group(argv))
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return dict(vars(parser.parse_args(argv)))
    except SystemExit:
        return None


def test_the_format_choices_are_the_parsers() -> None:
    from heads.cli import fast_argv

    assert fast_argv._FORMATS == FORMAT_CHOICES


@pytest.mark.parametrize(
    "argv",
    [
        ["pcr", "replay", "a.bin"],
        ["pcr", "replay", "--json", "a.bin", "b.bin"],
        ["pcr", "replay", "a.bin", "b.bin", "--format", "tcg", "--json"],
        ["pcr", "replay", "--format=cel", "a.bin", "--format", "auto"],
        ["--debug", "pcr", "replay", "a.bin"],
        ["boot", "verify", "/boot", "--keyring", "k.gpg"],
        ["boot", "verify", "--keyring=k.gpg", "--no-rollback", "--json", "/boot"],
        ["boot", "verify", "--tcti", "swtpm:port=2321", "/boot", "--keyring", "k.gpg"],
    ],
)
def test_plain_command_lines_are_read_as_argparse_reads_them(argv: list[str]) -> None:
    fast = parse_fast(argv)
    assert fast is not None
    assert dict(vars(fast)) == _argparse(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["pcr", "replay"],  # no LOG: argparse's usage error
        ["pcr", "replay", "a.bin", "--json", "b.bin"],  # LOGs split by an option
        ["pcr", "replay", "--format", "xml", "a.bin"],
        ["pcr", "replay", "--format"],
        ["pcr", "replay", "--js", "a.bin"],  # an abbreviation
        ["pcr", "replay", "--help"],
        ["pcr", "replay", "-h", "a.bin"],
        ["pcr", "replay", "--", "a.bin"],
        ["pcr", "replay", "-"],
        ["pcr", "replay", "a.bin", "--debug"],
        ["--version", "pcr", "replay", "a.bin"],
        ["boot", "verify", "/boot"],  # --keyring is required
        ["boot", "verify", "/boot", "/other", "--keyring", "k"],
        ["boot", "verify", "--keyring", "--json", "/boot"],
        ["boot", "verify", "/boot", "--keyring", "k", "--json=yes"],
        ["pcr", "log", "a.bin"],
        ["boot", "sign", "/boot"],
        [],
    ],
)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert parse_fast(argv) is None


_WORDS = st.sampled_from(
    [
        "pcr",
        "replay",
        "boot",
        "verify",
        "--debug",
        "--json",
        "--format",
        "--format=tcg",
        "--format=",
        "tcg",
        "cel",
        "xml",
        "--keyring",
        "--keyring=k",
        "--tcti",
        "--no-rollback",
        "--no",
        "--",
        "-",
        "-h",
        "a.bin",
        "b",
        "",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([["pcr", "replay"], ["boot", "verify"], ["--debug", "pcr", "replay"]]),
    st.lists(_WORDS, max_size=7),
)
def test_any_command_line_is_read_as_argparse_reads_it_or_left_to_it(
    command: list[str], rest: list[str]
) -> None:
    argv = [*command, *rest]
    fast = parse_fast(argv)
    if fast is not None:
        assert dict(vars(fast)) == _argparse(argv), argv


def _run(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, *, fast: bool
) -> tuple[object, str, str]:
    """Exit status (or SystemExit code), stdout and stderr of ``heads ARGV`` in this process."""
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(cli_main, "parse_fast", lambda _argv: None)
        out, err = io.StringIO(), io.StringIO()
        m.setattr(sys, "stdout", out)
        m.setattr(sys, "stderr", err)
        try:
            status: object = cli_main.main(argv)
        except SystemExit as exc:
            status = ("exit", exc.code)
    return status, out.getvalue(), err.getvalue()


def _same_both_ways(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[object, str, str]:
    quick = _run(argv, monkeypatch, fast=True)
    assert quick == _run(argv, monkeypatch, fast=False), argv
    return quick


@pytest.mark.parametrize(
    "argv",
    [
        ["pcr", "replay", LOGS[0]],
        ["pcr", "replay", "--json", *LOGS],
        ["pcr", "replay", *LOGS[:3], "--format", "tcg"],
        ["pcr", "replay", "--format=cel", LOGS[0]],  # a TCG log read as CEL: refused
        ["pcr", "replay", "--json", "no-such.bin"],
        ["pcr", "replay", "--json", str(TESTDATA)],  # a directory
        ["pcr", "replay"],
        ["pcr", "replay", LOGS[0], "--json", LOGS[1]],
        ["pcr", "replay", "--format", "xml", LOGS[0]],
    ],
)
def test_pcr_replay_prints_the_same_both_ways(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = _same_both_ways(argv, monkeypatch)
    # The cases differ: each one's outcome is checked, so a path that printed nothing for
    # every command line would not pass.
    if argv[2:3] == ["--format=cel"] or "no-such.bin" in argv or str(TESTDATA) in argv:
        assert status != 0
        assert err.startswith("error: ")
    elif status == 0:
        assert out
    else:
        assert status == ("exit", 2)
        assert "usage: heads" in err
        assert "error:" in err


@pytest.mark.gpg
def test_boot_verify_prints_the_same_both_ways(
    owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot = tmp_path / "boot"
    (boot / "grub").mkdir(parents=True)
    (boot / "vmlinuz").write_bytes(os.urandom(5000))
    (boot / "grub" / "grub.cfg").write_text("menuentry 'Debian' { linux /vmlinuz }\n")
    sign_boot(boot, gnupghome=owner.home, key=owner.fpr, tpm=None, rollback=False)
    good = ["boot", "verify", str(boot), "--keyring", str(owner.keyring), "--no-rollback"]
    status, out, _ = _same_both_ways(good, monkeypatch)
    assert status == 0
    assert out
    status, out, _ = _same_both_ways([*good, "--json"], monkeypatch)
    assert status == 0
    assert out.startswith("{")
    (boot / "vmlinuz").write_bytes(b"tampered")
    status, out, _ = _same_both_ways(good, monkeypatch)
    assert status == 3
    assert "vmlinuz" in out
    status, _, err = _same_both_ways([*good[:3], "--keyring", str(tmp_path / "none")], monkeypatch)
    assert status != 0
    assert err.startswith("error: ")
    status, _, err = _same_both_ways(["boot", "verify", str(boot)], monkeypatch)
    assert status == ("exit", 2)
    assert "--keyring" in err
