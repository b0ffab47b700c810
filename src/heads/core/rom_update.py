"""What a firmware update may do: the same chip, the same board, the owner's files carried over.

Policy only, no I/O (docs/firmware-image.md §Flashing, §Update packages):

* the new image must be exactly the chip's size;
* the board is named by the raw CBFS file ``board`` (one line, e.g. ``qemu-x86-tpm2``); when the
  chip's current image names a board, the new image must name the same one.  An image without
  the file cannot be told apart from any other board's, so it is refused on a chip whose
  image has one; when neither names a board only the size check applies;
* unless the update is *clean*, every raw ``heads/*`` file of the current image (keyring,
  trustdb, ``config.user``, ...) that the new image lacks is added to it, as Heads'
  ``preserve_rom`` does; a file the new image carries itself is left as it is;
* an update package is a zip holding one ``*.rom``, ``sha256sum.txt`` (one ``sha256sum`` line
  for it) and ``sha256sum.txt.asc``, an OpenPGP detached signature over ``sha256sum.txt``.
"""

from __future__ import annotations

# zipfile decodes member names without the UTF-8 flag as cp437, looked up by name at run
# time: imported here so that the payload, which ships only what is imported, has it.
import encodings.cp437  # noqa: F401
import hashlib
import io
import lzma
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Final

from heads.core.cbfs import TYPE_RAW, CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.platform import BOARD_FILE
from heads.errors import FormatError, HashMismatchError, UsageError

__all__ = [
    "BOARD_FILE",
    "MANIFEST",
    "MANIFEST_SIGNATURE",
    "USER_PREFIX",
    "PackageContents",
    "board_of",
    "build_package",
    "carry_user_files",
    "check_replacement",
    "parse_package",
]

USER_PREFIX: Final = "heads/"
MANIFEST: Final = "sha256sum.txt"
MANIFEST_SIGNATURE: Final = "sha256sum.txt.asc"
MAX_PACKAGE_BYTES: Final = 80 * 1024 * 1024
_MAX_MEMBERS: Final = 16
_SHA256SUM_LINE: Final = re.compile(r"([0-9a-f]{64}) [ *]([A-Za-z0-9._+-]+\.rom)\n?")
_BOARD: Final = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_FIXED_TIME: Final = (1980, 1, 1, 0, 0, 0)
#: What zipfile raises for damaged, encrypted or oddly compressed members.
_ZIP_ERRORS: Final = (
    zipfile.BadZipFile,
    ValueError,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    lzma.LZMAError,
)


def board_of(image: FlashImage) -> str | None:
    """The board an image was built for (its ``board`` file), or None when it names none.

    Raises:
        FormatError: the file is there but is not one line naming a board.
    """
    f = image.file(BOARD_FILE)
    if f is None:
        return None
    text = f.content(source=image.source).decode("ascii", "replace").strip()
    if not _BOARD.fullmatch(text):
        raise FormatError(
            "the board file does not hold one board name", source=f"{image.source}: board"
        )
    return text


def check_replacement(current: FlashImage, new: FlashImage) -> None:
    """Refuse ``new`` on a chip holding ``current`` when the size or board differ.

    Raises:
        UsageError: another size, another board, or a board-less image on a board's chip.
    """
    if new.size != current.size:
        raise UsageError(
            f"{new.source} is {new.size} bytes but the chip holds {current.size}",
            hint="use the image built for this board",
        )
    have, want = board_of(current), board_of(new)
    if have is not None and want != have:
        raise UsageError(
            f"{new.source} is for board {want or '(unnamed)'} but the chip holds a {have} image",
            hint="use the image built for this board",
        )


def user_files(image: FlashImage) -> list[CbfsFile]:
    """The raw ``heads/*`` files of an image, in image order."""
    return [f for f in image.files() if f.type == TYPE_RAW and f.name.startswith(USER_PREFIX)]


def carry_user_files(
    current: FlashImage, new: FlashImage, *, clean: bool
) -> tuple[FlashImage, list[str]]:
    """``new`` with the current image's ``heads/*`` files it lacks, and their names.

    Raises:
        UsageError: they do not fit in the new image's CBFS.
    """
    if clean:
        return new, []
    carried: list[str] = []
    image = new
    for f in user_files(current):
        if new.file(f.name) is not None:
            continue
        stored = CbfsFile(f.name, f.data, f.type, attributes=f.attributes)
        try:
            image = image.with_file(stored)
        except ValueError as exc:
            raise UsageError(f"cannot keep {f.name}: {exc}") from None
        carried.append(f.name)
    return image, carried


@dataclass(frozen=True, slots=True)
class PackageContents:
    """An update package's members, before the signature is checked."""

    rom_name: str
    rom: bytes
    manifest: bytes
    signature: bytes


def build_package(rom_name: str, rom: bytes, signature: bytes) -> bytes:
    """The zip: the ROM, ``sha256sum.txt`` and its signature, with fixed timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in (
            (rom_name, rom),
            (MANIFEST, manifest_for(rom_name, rom)),
            (MANIFEST_SIGNATURE, signature),
        ):
            info = zipfile.ZipInfo(name, _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def manifest_for(rom_name: str, rom: bytes) -> bytes:
    """``sha256sum``'s line for the ROM (what is signed)."""
    if not _SHA256SUM_LINE.fullmatch(f"{'0' * 64}  {rom_name}\n"):
        raise ValueError(f"{rom_name!r} is not a plain *.rom file name")
    return f"{hashlib.sha256(rom).hexdigest()}  {rom_name}\n".encode()


def parse_package(data: bytes, *, source: str = "update package") -> PackageContents:
    """The members of an update package, the ROM checked against ``sha256sum.txt``.

    The signature over ``sha256sum.txt`` is the caller's to check (with gpgv).

    Raises:
        FormatError: not a zip, too large, members other than one ``*.rom``, the manifest and
            its signature, or a manifest that is not one sha256sum line for the ROM.
        HashMismatchError: the ROM's SHA-256 is not the one in ``sha256sum.txt``.
    """
    if len(data) > MAX_PACKAGE_BYTES:
        raise FormatError(f"larger than {MAX_PACKAGE_BYTES} bytes", source=source)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except _ZIP_ERRORS as exc:
        raise FormatError(f"not a zip file ({exc})", source=source) from None
    if len(infos) > _MAX_MEMBERS:
        raise FormatError(f"holds {len(infos)} members", source=source)
    names = [i.filename for i in infos]
    roms = [n for n in names if n.endswith(".rom")]
    expected = {MANIFEST, MANIFEST_SIGNATURE}
    if len(roms) != 1 or set(names) - set(roms) != expected or len(set(names)) != len(names):
        raise FormatError(
            f"holds {sorted(names)}; an update package holds exactly one *.rom, "
            f"{MANIFEST} and {MANIFEST_SIGNATURE}",
            source=source,
        )
    members: dict[str, bytes] = {}
    for info in infos:
        limit = MAX_PACKAGE_BYTES if info.filename == roms[0] else 64 * 1024
        if info.file_size > limit:
            raise FormatError(f"{info.filename} is {info.file_size} bytes", source=source)
        try:
            with zf.open(info) as member:
                body = member.read(limit + 1)
        except _ZIP_ERRORS as exc:
            raise FormatError(f"{info.filename} cannot be read ({exc})", source=source) from None
        if len(body) > limit:
            raise FormatError(f"{info.filename} is larger than it says", source=source)
        members[info.filename] = body
    manifest = members[MANIFEST]
    try:
        text = manifest.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("not ASCII", source=f"{source}: {MANIFEST}", line=1) from None
    m = _SHA256SUM_LINE.fullmatch(text)
    if m is None or m.group(2) != roms[0]:
        raise FormatError(
            f"not one sha256sum line for {roms[0]}", source=f"{source}: {MANIFEST}", line=1
        )
    actual = hashlib.sha256(members[roms[0]]).hexdigest()
    if actual != m.group(1):
        raise HashMismatchError(
            f"{source}: {roms[0]} has SHA-256 {actual}, {MANIFEST} says {m.group(1)}",
            hint="the package was damaged or altered: do not flash it",
        )
    return PackageContents(roms[0], members[roms[0]], manifest, members[MANIFEST_SIGNATURE])
