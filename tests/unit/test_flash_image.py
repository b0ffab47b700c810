"""FMAP images and CBFS edits, cross-checked with coreboot's fmaptool and cbfstool."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_tools
from heads.adapters._run import run
from heads.core.cbfs import (
    COMPRESS_LZMA,
    HASH_SHA256,
    CbfsFile,
    build_cbfs,
    make_file,
    parse_cbfs,
)
from heads.core.flash_image import FlashImage, FlashLayout, new_flash_image, standard_layout
from heads.core.fmap import FmapArea, parse_fmap
from heads.core.lz4 import lz4_frame_decompress
from heads.errors import FormatError

TEXT = b"export CONFIG_BOOT_DEV='/dev/vda1'\n" * 1500
SMALL = FlashLayout(
    0x10000,
    (FmapArea("FMAP", 0, 0x200), FmapArea("COREBOOT", 0x200, 0xFE00)),
)


def _tool(tool: str, *args: str | Path) -> str:
    return run([tool, *args], desc=tool, timeout_s=60).stdout.decode()


def _listing(rom: Path, *region: str) -> list[tuple[str, int, str, int, int]]:
    """``cbfstool print -k``: (name, offset, type, metadata size, data size) of each entry."""
    rows = [
        line.split("\t") for line in _tool("cbfstool", rom, "print", "-k", *region).splitlines()
    ]
    return [(r[0], int(r[1], 16), r[2], int(r[3], 16), int(r[4], 16)) for r in rows[1:]]


def _ours(image: FlashImage) -> list[tuple[str, int, str, int, int]]:
    return [(f.name, f.offset, "raw", f.metadata_size, len(f.data)) for f in image.files()]


def _fmap_rom(tmp_path: Path, layout: FlashLayout) -> Path:
    fmd = tmp_path / "layout.fmd"
    fmd.write_text(layout.to_fmd())
    _tool("fmaptool", fmd, tmp_path / "fmap.bin")
    rom = tmp_path / "tool.rom"
    _tool("cbfstool", rom, "create", "-M", tmp_path / "fmap.bin", "-r", "COREBOOT")
    return rom


def test_new_16mib_image_is_byte_identical_to_fmaptool_and_cbfstool(tmp_path: Path) -> None:
    require_tools("cbfstool", "fmaptool")
    layout = standard_layout(16 * 1024 * 1024)
    rom = _fmap_rom(tmp_path, layout)
    ours = new_flash_image(layout)
    assert layout.fmap().to_bytes() == (tmp_path / "fmap.bin").read_bytes()
    assert ours.data == rom.read_bytes()
    assert (ours.cbfs_start, ours.fmap_offset) == (0x310200, 0x310000)
    assert parse_fmap(ours.data, 0x310000) == layout.fmap()


def test_raw_adds_and_removes_match_cbfstool_byte_for_byte(tmp_path: Path) -> None:
    require_tools("cbfstool", "fmaptool")
    rom = _fmap_rom(tmp_path, SMALL)
    ours = new_flash_image(SMALL)
    steps: list[tuple[str, str, bytes]] = [
        ("add", "heads/initrd/.gnupg/pubring.kbx", bytes(range(256)) * 7),
        ("add", "heads/initrd/etc/config.user", b'export CONFIG_BOOT_DEV="/dev/vda"\n'),
        ("add", "heads/initrd/.gnupg/trustdb.gpg", b"\x01gpg" * 300),
        ("rm", "heads/initrd/.gnupg/pubring.kbx", b""),
        ("add", "small", b"fits in the hole"),
        ("rm", "heads/initrd/etc/config.user", b""),
        ("rm", "small", b""),
        ("add", "heads/initrd/etc/config.user", b"x" * 5000),
    ]
    for i, (op, name, data) in enumerate(steps):
        if op == "add":
            src = tmp_path / f"in{i}"
            src.write_bytes(data)
            _tool("cbfstool", rom, "add", "-r", "COREBOOT", "-f", src, "-n", name, "-t", "raw")
            ours = ours.with_file(CbfsFile(name, data))
        else:
            _tool("cbfstool", rom, "remove", "-r", "COREBOOT", "-n", name)
            ours = ours.without_file(name)
        assert ours.data == rom.read_bytes(), f"step {i}: {op} {name}"


def test_cbfstool_lists_and_extracts_what_we_wrote(tmp_path: Path) -> None:
    require_tools("cbfstool")
    files = [
        make_file("heads/initrd/etc/config.user", b"export CONFIG_X=1\n", hash_algorithm=2),
        make_file("payload/kernel", TEXT, compression=COMPRESS_LZMA, hash_algorithm=HASH_SHA256),
        make_file("plain.lzma", TEXT[:4000], compression=COMPRESS_LZMA),
    ]
    image = new_flash_image(standard_layout(4 * 1024 * 1024, me_size=0x1FF000)).with_files(files)
    rom = tmp_path / "ours.rom"
    rom.write_bytes(image.data)
    named = [row for row in _listing(rom, "-r", "COREBOOT") if row[0] != "(empty)"]
    assert named == _ours(image)
    verbose = _tool("cbfstool", rom, "print", "-v", "-v", "-r", "COREBOOT")
    assert verbose.count("valid") == 2
    assert "invalid" not in verbose
    for f, content in zip(files, [b"export CONFIG_X=1\n", TEXT, TEXT[:4000]], strict=True):
        out = tmp_path / "out"
        _tool("cbfstool", rom, "extract", "-r", "COREBOOT", "-n", f.name, "-f", out)
        assert out.read_bytes() == content


def test_we_read_what_cbfstool_wrote_with_lzma_lz4_and_hashes(tmp_path: Path) -> None:
    require_tools("cbfstool", "fmaptool")
    rom = _fmap_rom(tmp_path, standard_layout(4 * 1024 * 1024, me_size=0x1FF000))
    text = tmp_path / "text"
    text.write_bytes(TEXT)
    add: list[str | Path] = ["add", "-r", "COREBOOT", "-f", text, "-t", "raw"]
    _tool("cbfstool", rom, *add, "-n", "a.lzma", "-c", "lzma", "-A", "sha256")
    _tool("cbfstool", rom, *add, "-n", "b.lz4", "-c", "lz4")
    _tool("cbfstool", rom, *add, "-n", "c.raw", "-A", "sha256")
    _tool("cbfstool", rom, *add, "-n", "d.lz4", "-c", "lz4", "-A", "sha256")
    _tool("cbfstool", rom, "add-int", "-r", "COREBOOT", "-i", "0x12345678", "-n", "e.int")
    _tool("cbfstool", rom, "remove", "-r", "COREBOOT", "-n", "c.raw")
    image = FlashImage.from_bytes(rom.read_bytes(), source=str(rom))
    named = [row for row in _listing(rom, "-r", "COREBOOT") if row[0] != "(empty)"]
    assert named == _ours(image)
    for f in image.files():
        out = tmp_path / "out"
        _tool("cbfstool", rom, "extract", "-r", "COREBOOT", "-n", f.name, "-f", out)
        assert f.content() == out.read_bytes()
    lz4 = image.file("b.lz4")
    assert lz4 is not None
    assert lz4.compression_name == "LZ4"
    assert lz4.content() == TEXT
    hashed = image.file("a.lzma")
    assert hashed is not None
    assert hashed.hash is not None
    assert hashed.hash[0] == "sha256"
    # Lossless: an edit leaves every other byte where it was.
    again = FlashImage.from_bytes(image.with_file(CbfsFile("z", b"z")).without_file("z").data)
    assert again.files() == image.files()


def test_lz4_reads_the_lz4_tool(tmp_path: Path) -> None:
    require_tools("lz4")
    data = (bytes(range(200)) + TEXT) * 30  # several 64 KiB blocks, matches across them
    src = tmp_path / "in"
    src.write_bytes(data)
    for flags in ([], ["--content-size", "-BD", "--no-frame-crc"], ["-B4", "-BD", "-BX"]):
        _tool("lz4", "-q", "-f", *flags, src, tmp_path / "out.lz4")
        packed = (tmp_path / "out.lz4").read_bytes()
        assert lz4_frame_decompress(packed, limit=len(data)) == data
        with pytest.raises(FormatError, match="more than"):
            lz4_frame_decompress(packed, limit=len(data) - 1)


def _small_image() -> FlashImage:
    files = [
        CbfsFile("heads/initrd/etc/config.user", b"export CONFIG_TPM=y\n"),
        make_file("k", TEXT[:3000], compression=COMPRESS_LZMA, hash_algorithm=HASH_SHA256),
    ]
    return new_flash_image(SMALL).with_files(files)


def _hostile(image: bytes) -> str:
    with pytest.raises(FormatError) as info:
        FlashImage.from_bytes(image, source="evil.rom")
    assert info.value.message.startswith("evil.rom")
    return info.value.message


def test_hostile_images_name_place_and_reason() -> None:
    good = bytearray(_small_image().data)
    assert "not a coreboot image" in _hostile(bytes(0x1000))
    assert "describes a 65536-byte flash but the image is 65535" in _hostile(bytes(good[:-1]))
    with pytest.raises(FormatError, match="flash chip holds 131072"):
        FlashImage.from_bytes(bytes(good), expected_size=0x20000)
    overlap = bytearray(good)
    struct.pack_into("<II", overlap, 56, 0x100, 0x200)  # FMAP area now half inside COREBOOT
    assert "partly overlap" in _hostile(bytes(overlap))
    past = bytearray(good)
    struct.pack_into("<I", past, 56 + 42 + 4, 0x20000)
    assert "lies outside" in _hostile(bytes(past))
    renamed = bytearray(good)
    renamed[56 + 42 + 8 : 56 + 42 + 16] = b"BOOTBLK\0"
    assert "no COREBOOT region" in _hostile(bytes(renamed))
    length = bytearray(good)
    struct.pack_into(">I", length, 0x200 + 8, 0xFFFFF0)
    assert "byte offset 512: CBFS file data lies outside" in _hostile(bytes(length))
    tampered = bytearray(good)
    k = _small_image().file("k")
    assert k is not None
    tampered[0x200 + k.offset + k.metadata_size + 20] ^= 1
    assert "k: sha256 hash attribute does not match" in _hostile(bytes(tampered))


def test_repeated_name_is_refused() -> None:
    image = build_cbfs([CbfsFile("aa", b"1"), CbfsFile("bb", b"2")], size=0x1000)
    evil = image.replace(b"bb\0", b"aa\0")
    with pytest.raises(FormatError, match="'aa' appears twice"):
        parse_cbfs(evil, source="evil.rom")


def test_edits_refuse_what_does_not_fit_or_exists() -> None:
    image = _small_image()
    with pytest.raises(ValueError, match="already in the image"):
        image.with_file(CbfsFile("k", b""))
    with pytest.raises(ValueError, match="no free space"):
        image.with_file(CbfsFile("big", b"x" * 0x10000))
    with pytest.raises(KeyError):
        image.without_file("absent")
    replaced = image.with_file(CbfsFile("k", b"new"), replace=True)
    assert replaced.file("k") == CbfsFile("k", b"new", offset=replaced.file("k").offset)  # type: ignore[union-attr]


names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
ops = st.lists(
    st.tuples(st.booleans(), names, st.binary(max_size=2000), st.booleans()), max_size=12
)


@given(ops)
@settings(max_examples=60, deadline=None)
def test_edits_keep_the_model(steps: list[tuple[bool, str, bytes, bool]]) -> None:
    """Random adds and removes: the image always lists what a dict of files would hold."""
    image = new_flash_image(SMALL)
    model: dict[str, bytes] = {}
    for add, name, data, compress in steps:
        if add:
            f = make_file(name, data, compression=COMPRESS_LZMA if compress else 0)
            with contextlib.suppress(ValueError):
                image = image.with_file(f)
                assert name not in model
                model[name] = data
        elif name in model:
            image = image.without_file(name)
            del model[name]
        again = FlashImage.from_bytes(image.data)
        assert {f.name: f.content() for f in again.files()} == model
        assert again.data == image.data


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255)), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_damaged_images_give_files_or_format_error(edits: list[tuple[int, int]]) -> None:
    image = bytearray(_small_image().data)
    for pos, value in edits:
        image[pos % 0x400 if pos & 1 else pos] = value  # mostly the FMAP and headers
    with contextlib.suppress(FormatError):
        for f in FlashImage.from_bytes(bytes(image)).files():
            with contextlib.suppress(FormatError):
                assert len(f.content()) <= 0x10000 * 64


@given(st.binary(max_size=600), st.integers(0, 1 << 20))
@settings(max_examples=300, deadline=None)
def test_lz4_hostile_frames(tail: bytes, limit: int) -> None:
    frame = b"\x04\x22\x4d\x18\x60\x40\x82" + tail
    with contextlib.suppress(FormatError):
        assert len(lz4_frame_decompress(frame, limit=limit)) <= limit
