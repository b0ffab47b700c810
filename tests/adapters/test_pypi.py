"""Pinned Python distributions: cache and inputs verification, and reading wheels safely."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import pytest

from conftest import pinned_cache
from heads.adapters import pypi
from heads.core.payload_lock import PythonPin
from heads.errors import FormatError, HashMismatchError, ToolError
from heads.flows.image_build import DEFAULT_LOCK, PayloadLock


def _pin(name: str) -> PythonPin:
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    return next(p for p in lock.python if p.name == name)


def _cached(name: str) -> tuple[PythonPin, Path]:
    pin = _pin(name)
    return pin, pinned_cache() / "python" / pin.file


def _flip(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


# ------------------------------------------------------------------------------------- fetch


def test_fetch_refuses_a_tampered_cached_artifact(tmp_path: Path) -> None:
    pin, good = _cached("segno")
    cache = tmp_path / "python"
    cache.mkdir()
    shutil.copyfile(good, cache / pin.file)
    assert pypi.fetch(pin, cache) == cache / pin.file
    (cache / pin.file).write_bytes(_flip(good.read_bytes()))
    with pytest.raises(HashMismatchError, match=r"segno 1\.6\.6") as info:
        pypi.fetch(pin, cache)
    assert pin.sha256 in info.value.message
    assert info.value.hint is not None
    # Refused, not replaced: the file is still the tampered one.
    assert (cache / pin.file).read_bytes() != good.read_bytes()


def test_fetch_from_inputs_reads_only_the_inputs(tmp_path: Path) -> None:
    pin, good = _cached("segno")
    inputs = tmp_path / "inputs"
    (inputs / "python").mkdir(parents=True)
    empty_cache = tmp_path / "cache"
    with pytest.raises(ToolError, match=pin.file) as info:
        pypi.fetch(pin, empty_cache, inputs=inputs)
    assert info.value.hint is not None
    assert "--export-inputs" in info.value.hint
    assert not empty_cache.exists()  # nothing was downloaded instead
    shutil.copyfile(good, inputs / "python" / pin.file)
    assert pypi.fetch(pin, empty_cache, inputs=inputs) == inputs / "python" / pin.file
    (inputs / "python" / pin.file).write_bytes(_flip(good.read_bytes()))
    with pytest.raises(HashMismatchError, match="segno"):
        pypi.fetch(pin, empty_cache, inputs=inputs)


# ------------------------------------------------------------------------------------ wheels


def test_wheel_digest_ignores_zip_metadata(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": b"x = 1\n", "pkg-1.0.dist-info/METADATA": b"Name: pkg\n"}
    for name, date, method in (
        ("a.whl", (1980, 1, 1, 0, 0, 0), zipfile.ZIP_STORED),
        ("b.whl", (2024, 5, 6, 7, 8, 10), zipfile.ZIP_DEFLATED),
    ):
        with zipfile.ZipFile(tmp_path / name, "w", compression=method) as zf:
            zf.writestr(zipfile.ZipInfo("pkg/", date_time=date), b"")
            for member in sorted(files, reverse=name == "b.whl"):
                zf.writestr(zipfile.ZipInfo(member, date_time=date), files[member])
    a, b = pypi.wheel_files(tmp_path / "a.whl"), pypi.wheel_files(tmp_path / "b.whl")
    assert a == b == files
    assert pypi.wheel_sha256(a) == pypi.wheel_sha256(b)
    assert pypi.wheel_sha256({**a, "pkg/__init__.py": b"x = 2\n"}) != pypi.wheel_sha256(a)
    with zipfile.ZipFile(tmp_path / "bad.whl", "w") as zf:
        zf.writestr("../evil.py", b"")
    with pytest.raises(FormatError, match=re.escape("'../evil.py'")):
        pypi.wheel_files(tmp_path / "bad.whl")
    (tmp_path / "junk.whl").write_bytes(b"PK no zip")
    with pytest.raises(FormatError, match="unreadable wheel"):
        pypi.wheel_files(tmp_path / "junk.whl")
