"""Pinned Debian packages: pins, cache verification, reading a real .deb, path resolution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import pinned_cache, require_tools
from heads.adapters import debian
from heads.adapters.debian import DebFile, DebFiles, DebPin
from heads.errors import HashMismatchError
from heads.flows.image_build import DEFAULT_LOCK, PayloadLock


def _cached(name: str) -> tuple[DebPin, Path]:
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    pin = next(d for d in lock.debs if d.name == name)
    return pin, pinned_cache() / "debs" / pin.filename


def test_pin_validation_and_file_name() -> None:
    pin = DebPin("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64", "a" * 64)
    assert pin.filename == "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
    with pytest.raises(ValueError, match="package name"):
        DebPin("../evil", "1", "amd64", "a" * 64)
    with pytest.raises(ValueError, match="version"):
        DebPin("x1", "1 2", "amd64", "a" * 64)
    with pytest.raises(ValueError, match="sha256"):
        DebPin("x1", "1", "amd64", "A" * 64)


def test_fetch_verifies_the_cached_file(tmp_path: Path) -> None:
    pin = DebPin("hello-heads", "1.0", "all", hashlib.sha256(b"right").hexdigest())
    (tmp_path / pin.filename).write_bytes(b"right")
    assert debian.fetch(pin, tmp_path) == tmp_path / pin.filename
    (tmp_path / pin.filename).write_bytes(b"wrong")
    with pytest.raises(HashMismatchError, match="hello-heads") as info:
        debian.fetch(pin, tmp_path)
    assert info.value.hint is not None


def test_read_files_of_a_real_package() -> None:
    require_tools("dpkg-deb")
    pin, path = _cached("busybox-static")
    assert debian.sha256_file(path) == pin.sha256
    files = DebFiles()
    files.add(pin.name, debian.read_files(path))
    busybox = files.get("/bin/busybox")
    assert busybox is not None
    assert busybox.kind == "file"
    assert busybox.data.startswith(b"\x7fELF")
    assert busybox.mode & 0o111
    assert files.origin("/bin/busybox") == "busybox-static"


def test_resolve_follows_symlinks_and_usrmerge() -> None:
    files = DebFiles()
    files.add(
        "libfoo1",
        [
            DebFile("/usr/lib/x86_64-linux-gnu", "dir", 0o755, b""),
            DebFile("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", "file", 0o644, b"FOO"),
            DebFile(
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1", "symlink", 0o777, b"", "libfoo.so.1.2.3"
            ),
            DebFile("/lib64", "symlink", 0o777, b"", "usr/lib/x86_64-linux-gnu"),
            DebFile("/loop", "symlink", 0o777, b"", "/loop"),
        ],
    )
    found = files.resolve("/usr/lib/x86_64-linux-gnu/libfoo.so.1")
    assert found is not None
    assert found.data == b"FOO"
    # /lib/... is /usr/lib/... on a merged-/usr system.
    merged = files.resolve("/lib/x86_64-linux-gnu/libfoo.so.1")
    assert merged is not None
    assert merged.data == b"FOO"
    via_parent = files.resolve("/lib64/libfoo.so.1")
    assert via_parent is not None
    assert via_parent.data == b"FOO"
    assert files.resolve("/loop") is None
    assert files.resolve("/nowhere/libfoo.so.1") is None


def test_available_asks_apt_for_the_exact_version() -> None:
    require_tools("apt-cache")
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    pin = next(d for d in lock.debs if d.name == "busybox-static")
    version, arch = debian.candidate_version(pin.name)
    assert debian.available(pin.name, version, arch)
    if version == pin.version:  # the pin itself, until a security update replaces it
        assert debian.available(pin.name, pin.version, pin.arch)
    assert not debian.available(pin.name, "1:1.35.0-4+deb12u99", pin.arch)
    assert not debian.available("heads-no-such-package", "1.0", "amd64")
    assert not debian.available(pin.name, pin.version, "arm64")
