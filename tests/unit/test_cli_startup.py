"""Commands pay only for what they run: building the parser (`heads --help`, every command's
``--help``, and the first step of every command) imports no flow, no adapter, none of the
heavy core modules and none of the slow standard modules (docs/architecture.md §Performance
targets)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import TESTDATA

# What a --help must not import: segno takes about 30 ms; the flows and adapters pull in the
# TPM layer and the payload builder; the event-log and TPM core modules define many
# dataclasses (each one compiles code when imported); hashlib loads OpenSSL; json, datetime
# and dataclasses are only needed by commands that run; typing alone is a tenth of a --help's
# instructions (the start-up modules test a local TYPE_CHECKING instead).
HEAVY = (
    "typing",
    "segno",
    "heads.flows",
    "heads.adapters",
    "heads.core.tpm2",
    "heads.core.eventlog",
    "heads.core.digest",
    "heads.core.pcr",
    "heads.core.secret",
    "heads.core.otp",
    "heads.core.cel",
    "dataclasses",
    "hashlib",
    "_hashlib",
    "ssl",
    "json",
    "datetime",
    "subprocess",
    "logging",
)


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY)))


# json is imported only after the modules are listed: the probe must not add to them.
_PROBE = """
import sys
from heads.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
modules = sorted(sys.modules)
import json
print(json.dumps(modules), file=sys.stderr)
"""


def _imported(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return _heavy(modules)


# Walks every command of every group in one process (one interpreter start, not sixty): runs
# its --help, then notes which modules are loaded.  A module that one --help loads stays
# loaded, so the first command that loads it is the one named.
_EVERY_HELP = """
import argparse, contextlib, io, sys
from heads.cli.main import GROUPS, _build_parser, main

def commands(parser, path):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))

seen = {}
for group in [None, *GROUPS]:
    tree = _build_parser(group)
    for path in commands(tree, ()):
        if group is not None and path[:1] != (group,) or path in seen:
            continue
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main([*path, "--help"])
            except SystemExit:
                pass
        seen[path] = {"modules": sorted(sys.modules), "help": out.getvalue()}
import json
print(json.dumps([[list(p), v] for p, v in seen.items()]))
"""


def _every_help() -> list[tuple[tuple[str, ...], list[str], str]]:
    done = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP], capture_output=True, text=True, check=True
    )
    rows = json.loads(done.stdout)
    return [(tuple(path), v["modules"], v["help"]) for path, v in rows]


def test_no_help_imports_anything_heavy() -> None:
    rows = _every_help()
    paths = {path for path, _, _ in rows}
    # The walk reached the top level, every group and the commands inside them.
    assert {(), ("tpm",), ("build",), ("pcr", "replay"), ("boot", "verify")} <= paths
    assert ("rom", "flash") in paths or any(p[:1] == ("rom",) and len(p) == 2 for p in paths)
    assert len(paths) > 40
    for path, modules, help_text in rows:
        assert help_text.startswith("usage: heads"), path
        assert _heavy(modules) == [], f"heads {' '.join(path)} --help imports {_heavy(modules)}"


@pytest.mark.parametrize(
    "argv",
    [
        ("--version",),
        ("tpm", "status", "--help"),
        ("pcr", "replay", "--help"),
        ("boot", "verify", "--help"),
        ("build", "--help"),
        ("no-such-command",),
    ],
)
def test_building_the_parser_imports_nothing_heavy(argv: tuple[str, ...]) -> None:
    assert _imported(*argv) == []


def test_the_top_level_help_lists_every_group() -> None:
    # The group list is kept in heads.cli.main so that `heads --help` imports no group.
    rows = {path: help_text for path, _, help_text in _every_help()}
    from heads.cli.main import GROUPS

    for name, help_text in GROUPS.items():
        assert name in rows[()]
        assert help_text in rows[()]


def test_the_probe_sees_what_a_command_imports() -> None:
    # A command that runs imports what it needs: the checks above are not vacuous.
    imported = _imported("tpm", "status", "--tcti", "x:")
    assert "heads.adapters.tpm" in imported
    assert "heads.core.tpm2.session" in imported


def test_replaying_a_log_never_loads_the_tpm_stack() -> None:
    log = TESTDATA / "eventlogs" / "tt-event.bin"
    imported = _imported("pcr", "replay", str(log))
    assert "heads.core.eventlog.replay" in imported
    assert not any(m.startswith(("heads.adapters.tpm", "heads.core.tpm2")) for m in imported)
    # The replay needs neither the PCR comparison nor the prediction code.
    assert "heads.core.eventlog.compare" not in imported
    assert "heads.core.eventlog.predict" not in imported
    # Nor OpenSSL for a log without an SM3 bank, nor json for its --json output.
    assert not {"hashlib", "_hashlib", "json"} & set(imported)
    json_out = _imported("pcr", "replay", "--json", str(log))
    assert not {"hashlib", "_hashlib", "json"} & set(json_out)
