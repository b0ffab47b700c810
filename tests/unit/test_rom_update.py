"""Update policy: same chip and board, user files carried over, packages parsed defensively."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.cbfs import CbfsFile
from heads.core.flash_image import FlashImage, FlashLayout, new_flash_image
from heads.core.fmap import FmapArea
from heads.core.rom_update import (
    BOARD_FILE,
    board_of,
    build_package,
    carry_user_files,
    check_replacement,
    manifest_for,
    parse_package,
)
from heads.errors import FormatError, HashMismatchError, UsageError

SMALL = FlashLayout(0x10000, (FmapArea("FMAP", 0, 0x200), FmapArea("COREBOOT", 0x200, 0xFE00)))


def _image(*files: CbfsFile, layout: FlashLayout = SMALL) -> FlashImage:
    return new_flash_image(layout).with_files(files)


def test_board_file() -> None:
    assert board_of(_image()) is None
    assert board_of(_image(CbfsFile(BOARD_FILE, b"qemu-x86\n"))) == "qemu-x86"
    with pytest.raises(FormatError, match="does not hold one board name"):
        board_of(_image(CbfsFile(BOARD_FILE, b"two\nlines")))


def test_replacement_rules() -> None:
    board = CbfsFile(BOARD_FILE, b"a\n")
    check_replacement(_image(), _image())
    check_replacement(_image(board), _image(board))
    check_replacement(_image(), _image(board))  # nothing to compare with: size only
    with pytest.raises(UsageError, match="for board b but the chip holds a a image"):
        check_replacement(_image(board), _image(CbfsFile(BOARD_FILE, b"b\n")))
    bigger = FlashLayout(
        0x20000, (FmapArea("FMAP", 0, 0x200), FmapArea("COREBOOT", 0x200, 0x1FE00))
    )
    with pytest.raises(UsageError, match="131072 bytes but the chip holds 65536"):
        check_replacement(_image(board), _image(board, layout=bigger))


def test_carry_only_missing_raw_heads_files_in_order() -> None:
    current = _image(
        CbfsFile("heads/initrd/.gnupg/pubring.kbx", b"keys"),
        CbfsFile("heads/initrd/etc/config.user", b"old config"),
        CbfsFile("heads/other", b"serial"),
        CbfsFile("not-heads", b"x"),
        CbfsFile("heads/typed", b"stage", 0x10),
    )
    new = _image(CbfsFile("heads/initrd/etc/config.user", b"new config"))
    image, carried = carry_user_files(current, new, clean=False)
    assert carried == ["heads/initrd/.gnupg/pubring.kbx", "heads/other"]
    assert [f.name for f in image.files()] == [
        "heads/initrd/etc/config.user",
        "heads/initrd/.gnupg/pubring.kbx",
        "heads/other",
    ]
    config = image.file("heads/initrd/etc/config.user")
    assert config is not None
    assert config.data == b"new config"
    assert carry_user_files(current, new, clean=True) == (new, [])
    full = _image(CbfsFile("filler", bytes(0xFDD0)))  # fills the CBFS to its last byte
    with pytest.raises(UsageError, match=re.escape("cannot keep heads/initrd/.gnupg/pubring.kbx")):
        carry_user_files(current, full, clean=False)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_package_round_trip_and_refusals() -> None:
    rom = b"rom bytes" * 100
    data = build_package("b-1.rom", rom, b"SIG")
    assert build_package("b-1.rom", rom, b"SIG") == data  # fixed timestamps: reproducible
    contents = parse_package(data, source="p.zip")
    assert (contents.rom_name, contents.rom, contents.signature) == ("b-1.rom", rom, b"SIG")
    assert contents.manifest == f"{hashlib.sha256(rom).hexdigest()}  b-1.rom\n".encode()
    good = {"b-1.rom": rom, "sha256sum.txt": contents.manifest, "sha256sum.txt.asc": b"SIG"}
    with pytest.raises(HashMismatchError, match=re.escape("p.zip: b-1.rom has SHA-256")):
        parse_package(_zip({**good, "b-1.rom": rom + b"!"}), source="p.zip")
    for members, reason in [
        ({**good, "extra": b""}, "holds exactly one"),
        ({k: v for k, v in good.items() if k != "sha256sum.txt.asc"}, "holds exactly one"),
        ({**good, "sha256sum.txt": b"nonsense\n"}, "not one sha256sum line"),
        ({**good, "sha256sum.txt": contents.manifest.replace(b"b-1", b"b-2")}, "not one"),
    ]:
        with pytest.raises(FormatError, match=reason):
            parse_package(_zip(members), source="p.zip")
    with pytest.raises(FormatError, match="not a zip"):
        parse_package(b"PK\x03\x04 broken", source="p.zip")
    with pytest.raises(ValueError, match="plain"):
        manifest_for("../evil.rom", rom)


@given(st.binary(max_size=2000), st.integers(0, 2000), st.integers(0, 255))
@settings(max_examples=200, deadline=None)
def test_damaged_packages_give_format_or_hash_errors(noise: bytes, pos: int, value: int) -> None:
    data = bytearray(build_package("b-1.rom", b"rom" * 200, b"SIG"))
    if noise:
        data[pos % len(data)] = value
        data += noise[:50]
    with contextlib.suppress(FormatError, HashMismatchError):
        parse_package(bytes(data))
    with contextlib.suppress(FormatError, HashMismatchError):
        parse_package(noise)
