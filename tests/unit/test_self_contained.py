"""The repository stands on its own: no file refers to material outside it, and the real inputs
the tests read are in tests/data, each listed with its sha256 in tests/data/SOURCES.md."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import TESTDATA

ROOT = Path(__file__).resolve().parents[2]

# Built by concatenation so that this file does not match itself.
NEEDLES = (
    ".." + "/shared",
    "shared" + "/testdata",
    "shared" + "/lab",
    "DESIGN" + ".md",
    "HEADS_REFERENCE" + ".md",
    "STYLE" + ".md",
)

# Not part of the tree when git is absent and the checkout is walked instead.
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "out",
    "build",
    "__pycache__",
    ".cache",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
}


def _tree_files() -> list[Path]:
    """Every file git tracks; without git (or outside a clone), the walked checkout."""
    git = shutil.which("git")
    if git is not None:
        listed = subprocess.run(
            [git, "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=False
        )
        if listed.returncode == 0:
            names = listed.stdout.decode("utf-8", "surrogateescape").split("\0")
            return [ROOT / name for name in names if name]
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        files.extend(Path(dirpath) / name for name in filenames)
    return files


def _offences(name: str, data: bytes) -> list[str]:
    """`name:line: needle` for each needle on each line of `data`."""
    if not any(needle.encode() in data for needle in NEEDLES):
        return []
    return [
        f"{name}:{number}: {needle}"
        for number, line in enumerate(data.splitlines(), start=1)
        for needle in NEEDLES
        if needle.encode() in line
    ]


def test_the_check_finds_each_needle() -> None:
    for needle in NEEDLES:
        assert _offences("x", b"first\nsee " + needle.encode() + b"\n") == [f"x:2: {needle}"]
    assert _offences("x", b"docs/pcr-layout.md tests/data/eventlogs\n") == []


def test_no_file_refers_outside_the_repository() -> None:
    files = [p for p in _tree_files() if p.is_file()]
    assert ROOT / "tests" / "conftest.py" in files
    offences: list[str] = []
    for path in files:
        offences += _offences(str(path.relative_to(ROOT)), path.read_bytes())
    assert not offences, "files that refer to material outside the repository:\n" + "\n".join(
        offences
    )


def test_sources_lists_every_test_data_file_with_its_sha256() -> None:
    sources = (TESTDATA / "SOURCES.md").read_text(encoding="utf-8")
    listed = {
        m.group(2): m.group(1)
        for m in re.finditer(r"^([0-9a-f]{64})  (\S+)$", sources, re.MULTILINE)
    }
    on_disk = {
        p.relative_to(TESTDATA).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in TESTDATA.rglob("*")
        if p.is_file() and p.name != "SOURCES.md"
    }
    assert listed == on_disk
