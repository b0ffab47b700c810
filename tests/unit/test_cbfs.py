"""CBFS reader/writer, cross-checked with coreboot's cbfstool."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_tools
from heads.adapters._run import run
from heads.core.cbfs import CbfsFile, build_cbfs, parse_cbfs
from heads.errors import FormatError

USER_FILES = [
    CbfsFile("heads/initrd/.gnupg/pubring.kbx", bytes(range(256)) * 5 + b"\x01\x02\x03"),
    CbfsFile("heads/initrd/etc/config.user", b'export CONFIG_BOOT_DEV="/dev/vda"\n'),
    CbfsFile("heads/initrd/x", b""),
]


def _cbfstool(*args: str | Path) -> str:
    return run(["cbfstool", *args], desc="cbfstool", timeout_s=30).stdout.decode()


def _cbfstool_image(tmp_path: Path, files: list[CbfsFile], size: int = 0x20000) -> Path:
    rom = tmp_path / "tool.rom"
    _cbfstool(rom, "create", "-m", "x86", "-s", hex(size))
    for i, f in enumerate(files):
        src = tmp_path / f"in{i}"
        src.write_bytes(f.data)
        _cbfstool(rom, "add", "-f", src, "-n", f.name, "-t", "raw")
    return rom


def test_build_is_byte_identical_to_cbfstool(tmp_path: Path) -> None:
    require_tools("cbfstool")
    rom = _cbfstool_image(tmp_path, USER_FILES)
    assert build_cbfs(USER_FILES) == rom.read_bytes()


def test_cbfstool_lists_and_extracts_what_we_wrote(tmp_path: Path) -> None:
    require_tools("cbfstool")
    rom = tmp_path / "ours.rom"
    rom.write_bytes(build_cbfs(USER_FILES, size=0x40000))
    listing = [line.split("\t") for line in _cbfstool(rom, "print", "-k").splitlines()[1:]]
    named = [(row[0], row[2], int(row[4], 16)) for row in listing if row[0] != "(empty)"]
    assert named == [(f.name, "raw", len(f.data)) for f in USER_FILES]
    for i, f in enumerate(USER_FILES):
        out = tmp_path / f"out{i}"
        _cbfstool(rom, "extract", "-n", f.name, "-f", out)
        assert out.read_bytes() == f.data


def test_parse_reads_cbfstool_image_in_order(tmp_path: Path) -> None:
    require_tools("cbfstool")
    rom = _cbfstool_image(tmp_path, USER_FILES)
    _cbfstool(rom, "remove", "-n", "heads/initrd/x")
    parsed = parse_cbfs(rom.read_bytes(), source=str(rom))
    assert [(f.name, f.data, f.type) for f in parsed] == [
        (f.name, f.data, 0x50) for f in USER_FILES[:2]
    ]


def test_parse_reports_compressed_file(tmp_path: Path) -> None:
    require_tools("cbfstool")
    rom = tmp_path / "c.rom"
    _cbfstool(rom, "create", "-m", "x86", "-s", "0x20000")
    text = tmp_path / "t"
    text.write_bytes(b"heads " * 2000)
    _cbfstool(rom, "add", "-f", text, "-n", "comp", "-t", "raw", "-c", "lzma")
    (f,) = parse_cbfs(rom.read_bytes())
    assert f.name == "comp"
    assert f.compression == 1  # CBFS_COMPRESS_LZMA
    assert len(f.data) < 12000


def test_build_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        build_cbfs([CbfsFile("big", b"x" * 5000)], size=4096)
    with pytest.raises(ValueError, match="repeated"):
        build_cbfs([CbfsFile("a", b""), CbfsFile("a", b"")])


def test_truncated_image_names_offset() -> None:
    image = build_cbfs(USER_FILES)
    with pytest.raises(FormatError, match=r"user\.rom, byte offset \d+: CBFS master header"):
        parse_cbfs(image[100:], source="user.rom")


names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)


@given(st.dictionaries(names, st.binary(max_size=300), max_size=6))
@settings(max_examples=60, deadline=None)
def test_round_trip(entries: dict[str, bytes]) -> None:
    files = [CbfsFile(n, d) for n, d in entries.items()]
    parsed = parse_cbfs(build_cbfs(files, size=0x4000))
    assert [(f.name, f.data) for f in parsed] == [(f.name, f.data) for f in files]


@given(st.binary(max_size=4096))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_give_files_or_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_cbfs(data)


@given(st.lists(st.tuples(st.integers(0, 0x1FFF), st.integers(0, 255)), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_corrupted_image_gives_files_or_format_error(edits: list[tuple[int, int]]) -> None:
    image = bytearray(build_cbfs(USER_FILES, size=0x2000))
    for pos, value in edits:
        image[pos] = value
    with contextlib.suppress(FormatError):
        parse_cbfs(bytes(image))
