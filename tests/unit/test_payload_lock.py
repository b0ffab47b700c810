"""The payload lock: consistent with requirements.lock, canonical, and strict on hostile input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from heads.core.payload_lock import (
    DebPin,
    LockChange,
    PayloadLock,
    PythonPin,
    normalize_dist,
    parse_requirement_hashes,
)
from heads.errors import FormatError
from heads.flows.image_build import DEFAULT_LOCK

REQUIREMENTS = DEFAULT_LOCK.parents[1] / "requirements.lock"
SHA = "ab" * 32


def _lock() -> PayloadLock:
    return PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source=str(DEFAULT_LOCK))


# ------------------------------------------------------------------ the lock in the repository


def test_every_python_pin_is_what_requirements_lock_pins() -> None:
    lock = _lock()
    req = parse_requirement_hashes(REQUIREMENTS.read_text(), source=str(REQUIREMENTS))
    assert lock.python
    for pin in lock.python:
        assert normalize_dist(pin.name) in req, f"{pin.name} is not in requirements.lock"
        version, hashes = req[normalize_dist(pin.name)]
        assert pin.version == version, pin.name
        assert pin.sha256 in hashes, f"{pin.file}: its sha256 is not a hash requirements.lock has"
        assert pin.file.startswith((pin.name.replace("-", "_"), pin.name)), pin.file


def test_the_debian_kernel_source_is_pinned() -> None:
    lock = _lock()
    kernel = [d for d in lock.debs if d.name == lock.kernel]
    assert len(kernel) == 1
    assert lock.kernel_pin == kernel[0]
    assert lock.kernel.startswith("linux-source-")
    assert lock.kernel_metapackage == "linux-source"
    # No prebuilt kernel is pinned any more: the payload's kernel is compiled from the source.
    assert not [d.name for d in lock.debs if d.name.startswith("linux-image-")]


def test_a_lock_whose_kernel_is_not_a_source_package_is_refused() -> None:
    obj = json.loads(DEFAULT_LOCK.read_bytes())
    image = {"name": "linux-image-6.1.0-57-cloud-amd64", "version": "6.1.192-3"}
    obj["debian"].append({**image, "arch": "amd64", "sha256": SHA})
    obj["kernel"] = image["name"]
    with pytest.raises(FormatError, match=r"lock\.json: kernel package linux-image-6\.1\.0-57"):
        PayloadLock.from_bytes(json.dumps(obj).encode(), source="lock.json")


def test_the_lock_round_trips_byte_identically() -> None:
    data = DEFAULT_LOCK.read_bytes()
    lock = PayloadLock.from_bytes(data, source="lock")
    assert lock.to_bytes() == data
    again = PayloadLock.from_bytes(lock.to_bytes(), source="again")
    assert again == lock
    assert again.digest() == lock.digest()


def test_with_debs_records_each_change_and_keeps_the_rest() -> None:
    lock = _lock()
    old = next(d for d in lock.debs if d.name == "busybox-static")
    new = DebPin(old.name, "1:9.9-9", old.arch, SHA)
    changed = lock.with_debs([new if d is old else d for d in lock.debs])
    assert changed.changes == (
        LockChange(f"busybox-static {old.version}", "busybox-static 1:9.9-9"),
    )
    assert str(changed.changes[0]) == f"busybox-static {old.version} -> busybox-static 1:9.9-9"
    assert changed.python == lock.python
    assert changed.kernel == lock.kernel
    assert changed.digest() != lock.digest()
    # A dropped and an added package are recorded as such.
    kernel = next(d for d in lock.debs if d.name == lock.kernel)
    other = DebPin("linux-source-9.9", "9.9.9-1", "all", SHA)
    moved = lock.with_debs([*(d for d in lock.debs if d is not kernel), other], kernel=other.name)
    assert moved.kernel == other.name
    assert {str(c) for c in moved.changes} == {
        f"{kernel.name} {kernel.version} -> -",
        f"- -> {other.name} {other.version}",
    }
    # Changes do not take part in equality: the same pins are the same lock.
    assert lock.with_debs(lock.debs) == lock
    assert lock.with_debs(lock.debs).changes == ()


def test_parse_requirement_hashes_reads_continuations_and_comments() -> None:
    text = (
        "# a comment\n"
        "Foo.Bar==1.0 \\\n"
        f"    --hash=sha256:{'a' * 64} \\\n"
        f"    --hash=sha256:{'b' * 64}\n"
        "\n"
        f"baz==2 --hash=sha256:{'c' * 64}  # trailing\n"
    )
    assert parse_requirement_hashes(text, source="r") == {
        "foo-bar": ("1.0", frozenset({"a" * 64, "b" * 64})),
        "baz": ("2", frozenset({"c" * 64})),
    }
    with pytest.raises(FormatError, match="line 2"):
        parse_requirement_hashes("ok==1 --hash=sha256:" + "a" * 64 + "\nnohash==1\n", source="r")
    with pytest.raises(FormatError, match="r, line 1"):
        parse_requirement_hashes("unpinned>=1 --hash=sha256:" + "a" * 64, source="r")


# ---------------------------------------------------------------------------- hostile input

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["amd64", SHA, "x.whl", "linux-image-1", "1:2-3"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = ("format", "source_date_epoch", "kernel", "kernel_metapackage", "extra_modules")


def _parse(data: bytes) -> None:
    error: FormatError | None = None
    try:
        PayloadLock.from_bytes(data, source="fuzz.json")
    except FormatError as exc:
        error = exc
    assert error is None or error.source == "fuzz.json"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
@example(b"[" * 20_000)
@example(b'{"format": 2, "debian": [], "python": [], "source_date_epoch": Infinity}')
@example(b'{"format": 2, "debian": [], "python": [], "source_date_epoch": 1e400}')
@example(b'{"format": 2, "debian": [], "python": [], "source_date_epoch": "' + b"9" * 5000 + b'"}')
@example(b'{"format": 2, "debian": "abc", "python": []}')
@example(b'{"format": 2, "debian": [[]], "python": []}')
@example(b"\xff\xfe{}")
def test_arbitrary_bytes_parse_or_raise_format_error(data: bytes) -> None:
    _parse(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_locks_parse_or_raise_format_error(data: st.DataObject) -> None:
    obj: dict[str, Any] = json.loads(DEFAULT_LOCK.read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(["top", "debian", "python"]))
        if where == "top":
            key = data.draw(st.sampled_from([*_FIELDS, "debian", "python", "other"]))
            if data.draw(st.booleans()):
                obj.pop(key, None)
            else:
                obj[key] = data.draw(_json)
        else:
            pins = obj.get(where)
            if not isinstance(pins, list) or not pins:
                continue
            i = data.draw(st.integers(0, len(pins) - 1))
            if not isinstance(pins[i], dict):
                pins[i] = data.draw(_json)
                continue
            field = data.draw(st.sampled_from(["name", "version", "arch", "sha256", "file"]))
            pins[i][field] = data.draw(_json)
    _parse(json.dumps(obj).encode())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
@example("a==1 --hash=sha256:" + "a" * 64 + " \\")
@example("\\\n\\\n--hash=sha256:" + "a" * 64)
@example("a==1 " + " --hash=sha256:" * 5000)
def test_requirement_files_parse_or_raise_format_error(text: str) -> None:
    parsed: dict[str, tuple[str, frozenset[str]]] = {}
    error: FormatError | None = None
    try:
        parsed = parse_requirement_hashes(text, source="req")
    except FormatError as exc:
        error = exc
    assert error is None or error.source == "req"
    for name, (version, hashes) in parsed.items():
        assert name == normalize_dist(name)
        assert version
        assert hashes


_NOT_SHA = st.text(max_size=70).filter(
    lambda s: len(s) != 64 or any(c not in "0123456789abcdef" for c in s)
)


@pytest.mark.parametrize("name", ["../evil", "a/b", "a/../b", "..", ".hidden", "/abs", ""])
def test_pins_refuse_path_names(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        DebPin(name, "1.0-1", "amd64", SHA)
    with pytest.raises(ValueError, match="name"):
        PythonPin(name, "1.0", "x-1.0.whl", SHA)


@pytest.mark.parametrize(
    "file",
    [
        "../x-1.0.whl",
        "a/x-1.0.whl",
        "x..whl",
        "x/../../y.whl",
        "/x.whl",
        "x-1.0.exe",
        "x.whl/",
        "x-1.0.tar.gz",
        "x-1.0.zip",
    ],
)
def test_python_pins_refuse_path_file_names(file: str) -> None:
    with pytest.raises(ValueError, match="file name"):
        PythonPin("x", "1.0", file, SHA)


@pytest.mark.parametrize("version", ["1/2", "../1", "1 2"])
def test_pins_refuse_path_versions(version: str) -> None:
    with pytest.raises(ValueError, match="version"):
        DebPin("x1", version, "amd64", SHA)
    with pytest.raises(ValueError, match="version"):
        PythonPin("x", version, "x-1.0.whl", SHA)


@settings(max_examples=300, deadline=None)
@given(_NOT_SHA)
@example("A" * 64)
@example("g" * 64)
@example("a" * 63)
@example("a" * 64 + "\n")
def test_pins_refuse_a_sha256_that_is_not_64_lower_case_hex(sha: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        DebPin("x1", "1.0-1", "amd64", sha)
    with pytest.raises(ValueError, match="sha256"):
        PythonPin("x", "1.0", "x-1.0.whl", sha)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
@example("a..b", "1..2", "x..whl")
@example("x1", "1:1.0/..", "a.whl")
@example("x1\n", "1\n", "a.whl\n")
def test_an_accepted_pin_names_a_file_in_its_directory(name: str, version: str, file: str) -> None:
    makers: list[Callable[[], str]] = [
        lambda: DebPin(name, version, "amd64", SHA).filename,
        lambda: DebPin("x1", "1", name, SHA).filename,
        lambda: PythonPin(name, version, file, SHA).file,
    ]
    for make in makers:
        try:
            filename = make()
        except ValueError:
            continue
        assert "/" not in filename
        assert not any(c in filename for c in "\0\n\r\t ")
        assert PurePosixPath(filename).name == filename
        assert filename not in ("", ".", "..")
        assert not filename.startswith(".")


def test_an_oversized_lock_is_refused() -> None:
    with pytest.raises(FormatError, match="larger than 1 MiB"):
        PayloadLock.from_bytes(b" " * ((1 << 20) + 1), source="big.json")
