"""OS initrds as distributions build them (GNU cpio, gzip, xz, lzma, zstd; an uncompressed
early archive before the main one) and the crypttab overrides taken from them
(docs/disk-key.md §Crypttab overrides)."""

from __future__ import annotations

import contextlib
import gzip
import lzma
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_tools
from heads.core.cpio import CpioEntry, build_newc
from heads.core.disk_key import (
    CrypttabOverride,
    crypttab_overrides,
    format_overrides,
    parse_overrides,
)
from heads.core.initrd import ZstdMissingError, read_initrd
from heads.errors import FormatError

CRYPTTAB = b"# <target> <source> <key> <options>\n\nluks-1234 UUID=1234 none luks,discard\n"
EXPECTED = b"/cryptroot/crypttab:luks-1234 UUID=1234 /secret.key luks,discard\n"


def _gnu_cpio(root: Path) -> bytes:
    """``find . | cpio -o -H newc`` in ``root``, as initramfs-tools and dracut do."""
    require_tools("cpio")
    names = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    return subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc"],
        cwd=root,
        input=names,
        check=True,
        capture_output=True,
    ).stdout


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "cryptroot").mkdir(parents=True)
    (root / "cryptroot" / "crypttab").write_bytes(CRYPTTAB)
    (root / "bin").mkdir()
    (root / "bin" / "init").write_bytes(b"#!/bin/sh\n" + bytes(range(256)) * 64)
    return root


def _tool(argv: list[str], data: bytes) -> bytes:
    require_tools(argv[0])
    return subprocess.run(argv, input=data, check=True, capture_output=True).stdout


def _early() -> bytes:
    # The microcode archive: uncompressed, padded as dracut pads it.
    archive = build_newc(
        [CpioEntry.file("kernel/x86/microcode/GenuineIntel.bin", b"\x01" * 1000)], mtime=0
    )
    return archive + bytes(-len(archive) % 512)


def _overrides(data: bytes, *, zstd: bool = False) -> bytes:
    unzstd = (lambda d: _tool(["zstd", "-d", "-c", "-q"], d)) if zstd else None
    contents = read_initrd(data, source="initrd.img", zstd=unzstd)
    files = [(m.name, m.data) for m in contents.members if m.name.endswith("crypttab")]
    return format_overrides(crypttab_overrides(files, source="initrd.img"))


@pytest.mark.parametrize(
    ("compress", "parts"),
    [
        (None, ("cpio",)),
        (["gzip", "-9", "-n", "-c"], ("gzip", "cpio")),
        (["xz", "--check=crc32", "-c"], ("xz", "cpio")),
        (["lzma", "-c"], ("lzma", "cpio")),
    ],
)
def test_compressed_initrds_give_heads_overrides(
    tmp_path: Path, compress: list[str] | None, parts: tuple[str, ...]
) -> None:
    archive = _gnu_cpio(_tree(tmp_path))
    data = _tool(compress, archive) if compress else archive
    assert read_initrd(data, source="initrd.img").parts == parts
    assert _overrides(data) == EXPECTED


def test_early_microcode_then_compressed_main(tmp_path: Path) -> None:
    main = _tool(["xz", "--check=crc32", "-c"], _gnu_cpio(_tree(tmp_path)))
    data = _early() + main
    contents = read_initrd(data, source="initrd.img")
    assert contents.parts == ("cpio", "xz", "cpio")
    assert "kernel/x86/microcode/GenuineIntel.bin" in [m.name for m in contents.members]
    assert _overrides(data) == EXPECTED


def test_zstd_needs_the_tool(tmp_path: Path) -> None:
    data = _early() + _tool(["zstd", "-q", "-c"], _gnu_cpio(_tree(tmp_path)))
    assert _overrides(data, zstd=True) == EXPECTED
    with pytest.raises(ZstdMissingError) as missing:
        read_initrd(data, source="initrd.img")
    assert missing.value.offset == len(_early())


def test_two_gzip_streams_and_several_archives_in_one(tmp_path: Path) -> None:
    first = build_newc([CpioEntry.file("etc/crypttab", b"data UUID=9 none\n")], mtime=0)
    second = _gnu_cpio(_tree(tmp_path))
    data = gzip.compress(first + second, mtime=0) + gzip.compress(b"\0" * 8 + first, mtime=0)
    contents = read_initrd(data, source="initrd.img")
    assert contents.parts == ("gzip", "cpio", "cpio", "gzip", "cpio")
    assert _overrides(data) == (
        b"/etc/crypttab:data UUID=9 /secret.key\n" + EXPECTED + b"/etc/crypttab:data UUID=9 "
        b"/secret.key\n"
    )


def test_key_field_rewritten_in_place() -> None:
    files = [
        ("etc/crypttab", b"a\tUUID=1\tnone\tluks\n  b /dev/sda2 /root/key luks,none \n# c\n"),
        ("./cryptroot/crypttab", b"c UUID=3\n"),
    ]
    assert crypttab_overrides(files, source="x") == (
        CrypttabOverride("/etc/crypttab", "a UUID=1 /secret.key luks"),
        CrypttabOverride("/etc/crypttab", "b /dev/sda2 /secret.key luks,none"),
        CrypttabOverride("/cryptroot/crypttab", "c UUID=3 /secret.key"),
    )
    # What is written reads back the same (the boot's reader).
    assert parse_overrides(format_overrides(crypttab_overrides(files, source="x"))) == (
        crypttab_overrides(files, source="x")
    )


def test_hostile_crypttab_is_refused_with_its_name() -> None:
    with pytest.raises(FormatError, match=r"initrd.img: /etc/crypttab") as err:
        crypttab_overrides([("etc/crypttab", b"a b \x1b[2J none\n")], source="initrd.img")
    assert err.value.line == 1
    with pytest.raises(FormatError, match="cannot name"):
        crypttab_overrides([("etc/crypt tab", b"a b none\n")], source="initrd.img")


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        (b"\0\0\0\0garbage!", 4, "neither a cpio archive"),
        (gzip.compress(b"x" * 100)[:-12], 0, "truncated"),
        (b"\x1f\x8b\x08\x00" + b"\xff" * 20, 0, "does not decompress"),
        (lzma.compress(b"070701", format=lzma.FORMAT_XZ), 0, "archive ends before"),
        (b"", 0, "empty initrd"),
    ],
)
def test_damaged_initrds_name_the_offset(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(FormatError, match=reason) as err:
        read_initrd(data, source="initrd.img")
    assert err.value.offset is not None
    assert "initrd.img" in str(err.value.source)
    if reason != "archive ends before":
        assert err.value.offset == offset


def test_compressed_data_inside_compressed_data_is_refused() -> None:
    data = gzip.compress(gzip.compress(b"x", mtime=0), mtime=0)
    with pytest.raises(FormatError, match="gzip data inside compressed data"):
        read_initrd(data, source="initrd.img")


_VALID = _early() + gzip.compress(
    build_newc([CpioEntry.file("etc/crypttab", b"a UUID=1 none\n")], mtime=0), mtime=0
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_raise_only_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        read_initrd(data, source="fuzz")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.integers(0, len(_VALID)))
def test_fuzz_damaged_initrd_raises_only_format_error(at: int, byte: int, cut: int) -> None:
    data = bytearray(_VALID[:cut] if cut else _VALID)
    if at < len(data):
        data[at] = byte
    try:
        contents = read_initrd(bytes(data), source="fuzz")
    except FormatError:
        return
    files = [(m.name, m.data) for m in contents.members if "crypttab" in m.name]
    with contextlib.suppress(FormatError):
        crypttab_overrides(files, source="fuzz")
