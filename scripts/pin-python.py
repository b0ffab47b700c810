#!/usr/bin/env python3
"""Rewrite requirements.lock and requirements-build.lock with the SHA-256 of what pip downloads.

Usage: .venv/bin/python scripts/pin-python.py

Each ``name==version`` line of the two files is downloaded once (``pip download --no-deps``:
the wheel pip picks for this interpreter, or the sdist when there is none) and written back as
``name==version --hash=sha256:...``, so that ``pip install --require-hashes`` installs exactly
those bytes on every machine.  The payload builder takes its Python inputs from the same pins.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
FILES = ("requirements-build.lock", "requirements.lock")
HEADER = {
    "requirements-build.lock": "# What builds heads itself (setuptools, for the editable install); installed first.\n",
    "requirements.lock": "# Every Python distribution of the virtual environment, by the SHA-256 of its download.\n",
}


def pins(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+==[^\s\\]+)", line)
        if m:
            out.append(m.group(1))
    return out


def digest(spec: str, dest: Path) -> str:
    before = set(dest.iterdir())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
         "-d", str(dest), spec],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    new = sorted(set(dest.iterdir()) - before)
    if len(new) != 1:
        sys.exit(f"{spec}: pip downloaded {len(new)} files, expected 1")
    return hashlib.sha256(new[0].read_bytes()).hexdigest()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in FILES:
            path = TOP / name
            lines = [HEADER[name]]
            for spec in sorted(pins(path), key=str.lower):
                lines.append(f"{spec} \\\n    --hash=sha256:{digest(spec, Path(tmp))}\n")
                for f in Path(tmp).iterdir():
                    f.unlink()
            path.write_text("".join(lines))
            print(f"{name}: {len(lines) - 1} pins")


if __name__ == "__main__":
    main()
