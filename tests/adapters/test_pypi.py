"""Pinned Python distributions: cache and inputs verification, safe sdist extraction, and a
compiled extension built twice in different places is the same wheel."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from conftest import pinned_cache, require_tools
from heads.adapters import pypi
from heads.core.payload_lock import PythonPin
from heads.errors import FormatError, HashMismatchError, ToolError
from heads.flows.image_build import DEFAULT_LOCK, PayloadLock, default_cache_dir

TOP = "pkg-1.0"


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


# ---------------------------------------------------------------------------- sdist members


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _sdist(path: Path, members: list[tarfile.TarInfo]) -> Path:
    """A tar.gz sdist: a top directory with a setup.py, then ``members`` in order."""
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(_member(TOP, tarfile.DIRTYPE))
        setup = b"from setuptools import setup\nsetup(name='pkg', version='1.0')\n"
        info = _member(f"{TOP}/setup.py")
        info.size = len(setup)
        tar.addfile(info, io.BytesIO(setup))
        for m in members:
            data = b"payload\n" if m.isfile() else b""
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data else None)
    return path


HOSTILE = {
    "parent": ([_member("../evil")], "'../evil'"),
    "parent-inside": ([_member(f"{TOP}/../../evil")], f"'{TOP}/../../evil'"),
    "absolute": ([_member("/tmp/heads-evil")], "'/tmp/heads-evil'"),
    "symlink-up": (
        [_member(f"{TOP}/link", tarfile.SYMTYPE, "../../../etc/passwd")],
        f"'{TOP}/link'",
    ),
    "symlink-absolute": ([_member(f"{TOP}/link", tarfile.SYMTYPE, "/etc")], f"'{TOP}/link'"),
    "hardlink-up": ([_member(f"{TOP}/hard", tarfile.LNKTYPE, "../outside")], f"'{TOP}/hard'"),
    "fifo": ([_member(f"{TOP}/fifo", tarfile.FIFOTYPE)], f"'{TOP}/fifo'"),
    "device": ([_member(f"{TOP}/null", tarfile.CHRTYPE)], f"'{TOP}/null'"),
    # Each link on its own stays inside, but followed one through the other they leave the
    # tree: `up` is the archive's root, so `up/../..` is two levels above it (the system's
    # temporary directory, where the next member would be written).
    "symlink-chain": (
        [
            _member(f"{TOP}/up", tarfile.SYMTYPE, ".."),
            _member(f"{TOP}/esc", tarfile.SYMTYPE, "up/../.."),
            _member(f"{TOP}/esc/heads-evil"),
        ],
        f"'{TOP}/esc'",
    ),
    # A file written through a link to a directory lands wherever the link points.
    "through-symlink": (
        [
            _member(f"{TOP}/dir", tarfile.SYMTYPE, "."),
            _member(f"{TOP}/dir/evil"),
        ],
        f"'{TOP}/dir/evil'",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_build_wheel_refuses_a_hostile_sdist(tmp_path: Path, case: str) -> None:
    members, named = HOSTILE[case]
    sdist = _sdist(tmp_path / "pkg-1.0.tar.gz", members)
    out = tmp_path / "out"
    with pytest.raises(FormatError, match=re.escape(named)) as info:
        pypi.build_wheel(sdist, out, source_date_epoch=1_700_000_000)
    assert info.value.source == str(sdist)
    assert not (tmp_path / "evil").exists()
    assert not Path(tempfile.gettempdir(), "heads-evil").exists()
    assert not any(out.iterdir())


def test_zip_sdist_with_a_member_outside_is_refused(tmp_path: Path) -> None:
    sdist = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(sdist, "w") as zf:
        zf.writestr(f"{TOP}/setup.py", b"")
        zf.writestr("../evil", b"payload\n")
    with pytest.raises(FormatError, match=re.escape("'../evil'")):
        pypi.build_wheel(sdist, tmp_path / "out", source_date_epoch=0)
    assert not (tmp_path / "evil").exists()


def test_sdist_links_that_stay_inside_are_extracted(tmp_path: Path) -> None:
    sdist = _sdist(
        tmp_path / "pkg-1.0.tar.gz",
        [
            _member(f"{TOP}/lib", tarfile.DIRTYPE),
            _member(f"{TOP}/lib/libfoo.so.1.2"),
            _member(f"{TOP}/lib/libfoo.so.1", tarfile.SYMTYPE, "libfoo.so.1.2"),
            _member(f"{TOP}/lib/libfoo.so", tarfile.SYMTYPE, "libfoo.so.1"),
            _member(f"{TOP}/README", tarfile.SYMTYPE, "lib/../setup.py"),
            _member(f"{TOP}/copy", tarfile.LNKTYPE, f"{TOP}/lib/libfoo.so.1.2"),
        ],
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    tree = pypi._extract_sdist(sdist, dest)
    assert tree == dest / TOP
    assert (tree / "lib" / "libfoo.so").read_bytes() == b"payload\n"
    assert (tree / "copy").read_bytes() == b"payload\n"
    assert (tree / "README").read_bytes().startswith(b"from setuptools")


def test_sdist_without_one_top_directory_is_refused(tmp_path: Path) -> None:
    sdist = tmp_path / "flat-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.addfile(_member("setup.py"), io.BytesIO(b""))
        tar.addfile(_member("other.py"), io.BytesIO(b""))
    with pytest.raises(FormatError, match="one top-level directory"):
        pypi.build_wheel(sdist, tmp_path / "out", source_date_epoch=0)
    (tmp_path / "junk-1.0.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(FormatError, match="unreadable sdist"):
        pypi.build_wheel(tmp_path / "junk-1.0.tar.gz", tmp_path / "out", source_date_epoch=0)


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


@pytest.mark.slow
def test_a_compiled_extension_built_twice_in_different_places_is_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tools("gcc", "pkg-config")
    pin = _pin("tpm2-pytss")
    assert not pin.is_wheel
    sdist = pypi.fetch(pin, default_cache_dir() / "python")
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    wheels: list[dict[str, bytes]] = []
    for build_root, out in (
        (tmp_path / "a", tmp_path / "out-a"),
        (tmp_path / "b" / "much" / "deeper" / "build" / "root", tmp_path / "x" / "y" / "out-b"),
    ):
        # The build directory itself (pypi.build_wheel's temporary directory) moves too.
        build_root.mkdir(parents=True)
        monkeypatch.setattr(tempfile, "tempdir", str(build_root))
        wheel = pypi.build_wheel(sdist, out, source_date_epoch=lock.source_date_epoch)
        assert wheel.parent == out
        assert not any(build_root.iterdir()), "the build directory was not removed"
        wheels.append(pypi.wheel_files(wheel))
    first, second = wheels
    assert sorted(first) == sorted(second)
    different = sorted(name for name in first if first[name] != second[name])
    assert different == []
    assert first == second
    shared = [name for name in first if name.endswith(".so")]
    assert shared, sorted(first)
    for name in shared:
        data = first[name]
        assert data.startswith(b"\x7fELF")
        assert str(tmp_path).encode() not in data, name
        assert b"/tmp/" not in data, name
        assert b"heads-wheel-" not in data, name
