"""The boot runtime works without what the payload leaves out (docs/disk-key.md §cryptsetup
in the payload): the stdlib modules of ``STDLIB_LEFT_OUT`` and the host-only build modules.

Each check runs in a fresh interpreter whose import system refuses those modules, as the
payload's would (they are not in its stdlib zip nor in heads-site)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from heads.flows.image_build import HOST_ONLY_MODULES, STDLIB_LEFT_OUT

SRC = Path(__file__).resolve().parents[2] / "src"

_CHECK = r"""
import importlib, importlib.abc, json, pkgutil, sys
blocked = set(json.loads(sys.argv[1]))
wanted = json.loads(sys.argv[2])

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
for name in blocked:
    sys.modules.pop(name, None)
import heads.runtime
names = [m.name for m in pkgutil.walk_packages(heads.runtime.__path__, "heads.runtime.")]
names = [n for n in names if not n.endswith("__main__")] + wanted
for name in names:
    importlib.import_module(name)
from heads.core.qr import qr_matrix
matrix = qr_matrix("otpauth://totp/heads?secret=JBSWY3DPEHPK3PXP")
print(json.dumps({"loaded": sorted(blocked & set(sys.modules)), "rows": len(matrix)}))
"""


def _run(blocked: set[str], wanted: list[str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _CHECK, json.dumps(sorted(blocked)), json.dumps(wanted)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(SRC)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_runtime_and_qr_work_without_left_out_modules() -> None:
    blocked = set(STDLIB_LEFT_OUT) | set(HOST_ONLY_MODULES)
    result = _run(blocked, ["heads.flows.disk_key", "heads.adapters.cryptsetup"])
    assert result["loaded"] == []
    assert isinstance(result["rows"], int)
    assert result["rows"] > 20


def test_the_check_sees_a_missing_module() -> None:
    # The same check fails when the runtime needs a refused module: it can fail.
    with pytest.raises(AssertionError, match="No module named 'json'"):
        _run({"json"}, [])


def test_left_out_modules_are_not_imported_by_name_in_the_runtime() -> None:
    runtime = SRC / "heads" / "runtime"
    for path in runtime.rglob("*.py"):
        text = path.read_text()
        for name in STDLIB_LEFT_OUT | HOST_ONLY_MODULES:
            assert f"import {name}\n" not in text, (path, name)
            assert f"from {name} import" not in text, (path, name)
