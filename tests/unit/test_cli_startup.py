"""Commands pay only for what they run: building the parser (`heads --help`, and the first
step of every command) imports no flow, no adapter and none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import TESTDATA

# segno takes about 30 ms to import; the flows and adapters pull it and the TPM layer in.
HEAVY = ("segno", "heads.core.tpm2", "heads.flows", "heads.adapters")

_PROBE = """
import json, sys
from heads.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _imported(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return [m for m in modules if m == "heads.adapters" or m.startswith(HEAVY)]


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("--version",),
        ("tpm", "status", "--help"),
        ("pcr", "replay", "--help"),
        ("boot", "verify", "--help"),
        ("totp", "show", "--help"),
        ("hotp", "check", "--help"),
        ("build", "--help"),
        ("qemu", "demo", "--help"),
    ],
)
def test_building_the_parser_imports_nothing_heavy(argv: tuple[str, ...]) -> None:
    assert _imported(*argv) == []


def test_the_probe_sees_what_a_command_imports() -> None:
    # A command that runs imports what it needs: the check above is not vacuous.
    imported = _imported("tpm", "status", "--tcti", "x:")
    assert "heads.adapters.tpm" in imported
    assert "heads.core.tpm2.session" in imported


def test_replaying_a_log_never_loads_the_tpm_stack() -> None:
    log = TESTDATA / "eventlogs" / "tt-event.bin"
    assert not any(
        m.startswith(("heads.adapters.tpm", "heads.core.tpm2"))
        for m in _imported("pcr", "replay", str(log))
    )
