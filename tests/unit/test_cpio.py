"""The newc writer and reader: round trips, GNU cpio agreement, hostile input."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_tools
from heads.adapters._run import run
from heads.core.cpio import CpioEntry, Kind, build_newc, read_newc, write_newc
from heads.errors import FormatError

MTIME = 1_700_000_000


def _sample() -> list[CpioEntry]:
    return [
        CpioEntry.file("usr/bin/tool", b"#!/bin/sh\necho hi\n", executable=True),
        CpioEntry.file("etc/config", b"a=1\n"),
        CpioEntry.file("empty", b""),
        CpioEntry.file("odd-size", b"x" * 5),
        CpioEntry.symlink("bin/sh", "/bin/busybox"),
        CpioEntry.char_device("dev/console", 5, 1),
        CpioEntry.char_device("dev/null", 1, 3, perm=0o666),
        CpioEntry.directory("proc"),
    ]


def test_members_sorted_with_parents_and_fixed_metadata() -> None:
    members = read_newc(build_newc(_sample(), mtime=MTIME))
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {"usr", "usr/bin", "etc", "bin", "dev"} <= set(names)
    assert [m.ino for m in members] == list(range(1, len(members) + 1))
    for m in members:
        assert (m.uid, m.gid, m.mtime) == (0, 0, MTIME)
        assert m.nlink == (2 if m.kind is Kind.DIRECTORY else 1)
    by_name = {m.name: m for m in members}
    assert by_name["usr/bin/tool"].mode == stat.S_IFREG | 0o755
    assert by_name["etc/config"].mode == stat.S_IFREG | 0o644
    assert by_name["bin/sh"].mode == stat.S_IFLNK | 0o777
    assert by_name["bin/sh"].data == b"/bin/busybox"
    console = by_name["dev/console"]
    assert console.mode == stat.S_IFCHR | 0o600
    assert (console.rdevmajor, console.rdevminor) == (5, 1)


def test_input_order_does_not_matter() -> None:
    entries = _sample()
    assert build_newc(entries, mtime=MTIME) == build_newc(entries[::-1], mtime=MTIME)


def test_write_newc_returns_the_byte_count() -> None:
    buf = io.BytesIO()
    n = write_newc(_sample(), buf, mtime=MTIME)
    assert n == len(buf.getvalue())
    assert n % 4 == 0


def test_gnu_cpio_lists_and_extracts_what_we_wrote(tmp_path: Path) -> None:
    require_tools("cpio")
    archive = build_newc(_sample(), mtime=MTIME)
    listing = run(["cpio", "-t", "--quiet"], desc="list", stdin=archive).stdout.decode()
    expected = sorted(m.name for m in read_newc(archive))
    assert sorted(listing.split()) == expected
    verbose = run(["cpio", "-tv", "--quiet"], desc="list", stdin=archive).stdout.decode()
    console = next(line for line in verbose.splitlines() if line.endswith("dev/console"))
    assert console.startswith("crw-------")
    assert "5,   1" in console
    # Extraction of device nodes needs CAP_MKNOD; extract everything else.
    out = tmp_path / "x"
    out.mkdir()
    run(
        ["cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"],
        desc="extract",
        stdin=archive,
        cwd=out,
    )
    assert (out / "usr/bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.access(out / "usr/bin/tool", os.X_OK)
    assert (out / "etc/config").stat().st_mode & 0o777 == 0o644
    assert (out / "odd-size").read_bytes() == b"xxxxx"
    assert (out / "bin/sh").readlink() == Path("/bin/busybox")
    assert int((out / "empty").stat().st_mtime) == MTIME


def test_gnu_cpio_archive_reads_back(tmp_path: Path) -> None:
    require_tools("cpio")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"hello")
    (tmp_path / "d" / "l").symlink_to("f")
    names = b"d\nd/f\nd/l\n"
    archive = run(
        ["cpio", "-o", "-H", "newc", "--quiet"], desc="create", stdin=names, cwd=tmp_path
    ).stdout
    members = {m.name: m for m in read_newc(archive)}
    assert members["d/f"].data == b"hello"
    assert members["d/l"].kind is Kind.SYMLINK
    assert members["d/l"].data == b"f"
    assert members["d"].kind is Kind.DIRECTORY


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "root"),
        ("a/../b", ".."),
        ("TRAILER!!!", "not allowed"),
        ("a\0b", "not allowed"),
        ("x" * 5000, "longer"),
    ],
)
def test_bad_paths_are_refused(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        CpioEntry.file(bad, b"")


def test_duplicates_and_files_as_parents_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        build_newc([CpioEntry.file("a", b""), CpioEntry.file("/a", b"1")], mtime=0)
    with pytest.raises(ValueError, match="not a directory"):
        build_newc([CpioEntry.file("a", b""), CpioEntry.file("a/b", b"")], mtime=0)


def test_paths_are_normalised() -> None:
    assert CpioEntry.file("/usr//bin/./x", b"").path == "usr/bin/x"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"070702" + d[6:], "bad magic"),
        (lambda d: d[:20] + b"zz" + d[22:], "hex"),
        (lambda d: d[:-200], "TRAILER|ends|past"),
        (lambda d: d + b"junk", "after the trailer"),
        (lambda d: d[:102] + b"00000001" + d[110:], "check field"),
    ],
)
def test_corrupt_archives_raise_format_error_with_offset(mutate: object, reason: str) -> None:
    data = build_newc(_sample(), mtime=MTIME)
    assert callable(mutate)
    with pytest.raises(FormatError, match=reason) as info:
        read_newc(mutate(data), source="initrd.cpio")
    assert info.value.source == "initrd.cpio"
    assert info.value.offset is not None


def test_member_cap() -> None:
    data = build_newc([CpioEntry.file(f"f{i}", b"") for i in range(5)], mtime=0)
    with pytest.raises(FormatError, match="more than 3"):
        read_newc(data, max_members=3)


_names = st.lists(
    st.text(alphabet="abcdefgh-_.0123", min_size=1, max_size=6).filter(
        lambda s: s not in (".", "..")
    ),
    min_size=1,
    max_size=3,
).map("/".join)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        _names,
        st.one_of(
            st.binary(max_size=64).map(lambda b: ("file", b)),
            st.text(alphabet="abc/", min_size=1, max_size=8).map(lambda t: ("link", t)),
        ),
        max_size=12,
    ),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_round_trip(spec: dict[str, tuple[str, object]], mtime: int) -> None:
    # Drop names that are a prefix directory of another name: files cannot hold files.
    dirs = {"/".join(n.split("/")[:i]) for n in spec for i in range(1, n.count("/") + 1)}
    entries = []
    for name, (kind, value) in spec.items():
        if name in dirs:
            continue
        if kind == "file":
            assert isinstance(value, bytes)
            entries.append(CpioEntry.file(name, value, executable=len(value) % 2 == 1))
        else:
            assert isinstance(value, str)
            entries.append(CpioEntry.symlink(name, value))
    data = build_newc(entries, mtime=mtime)
    back = {m.name: m for m in read_newc(data)}
    for e in entries:
        m = back[e.path]
        assert m.kind is e.kind
        assert m.data == e.data
        assert m.mode & 0o7777 == e.perm
        assert m.mtime == mtime
    assert build_newc(entries, mtime=mtime) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        read_newc(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_archives_parse_or_raise_format_error(data: st.DataObject) -> None:
    archive = bytearray(build_newc(_sample(), mtime=MTIME))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(archive) - 1))
        archive[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(archive)))
    with contextlib.suppress(FormatError):
        read_newc(bytes(archive[:cut]))
