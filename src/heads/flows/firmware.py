"""Firmware image work: read/write image files, config and keys in an image, flash, packages.

The policy lives in ``heads.core`` (:mod:`~heads.core.flash_image`, :mod:`~heads.core.rom_update`,
:mod:`~heads.core.heads_config`); this module reads and writes the files, runs flashrom and gpg,
and says what state the chip is in whenever a flash does not complete (docs/firmware-image.md).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from heads.adapters.atomic import write_atomic
from heads.adapters.flashrom import Flashrom
from heads.adapters.gpg import GpgVerdict, Signer, verify_detached
from heads.adapters.gpg_keyring import KeyInfo, KeyringFiles, import_keys, list_keys
from heads.core.cbfs import TYPE_RAW, CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.heads_config import HeadsConfig, parse_config
from heads.core.rom_update import (
    PackageContents,
    board_of,
    build_package,
    carry_user_files,
    check_replacement,
    manifest_for,
    parse_package,
)
from heads.errors import FlashError, SignatureError, UsageError, VerificationError

__all__ = [
    "CONFIG_FILE",
    "PUBRING_FILE",
    "TRUSTDB_FILE",
    "FlashReport",
    "PackageCheck",
    "flash",
    "image_config",
    "image_keyring",
    "image_keys",
    "make_package",
    "read_chip",
    "read_image_file",
    "read_package",
    "verify_package",
    "with_config",
    "with_keys",
    "write_image_file",
]

CONFIG_FILE: Final = "heads/initrd/etc/config.user"
PUBRING_FILE: Final = "heads/initrd/.gnupg/pubring.kbx"
LEGACY_PUBRING_FILE: Final = "heads/initrd/.gnupg/pubring.gpg"
TRUSTDB_FILE: Final = "heads/initrd/.gnupg/trustdb.gpg"
_MAX_FILE: Final = 80 * 1024 * 1024


def _read_bounded(path: Path, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{what} {path} is not a regular file")
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > _MAX_FILE:
                raise UsageError(f"{what} {path} is larger than {_MAX_FILE} bytes")
            chunks.append(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_image_file(path: Path, *, expected_size: int | None = None) -> FlashImage:
    """Parse a firmware image file.

    Raises:
        UsageError: the file cannot be read.
        FormatError: it is not a valid image (see :meth:`FlashImage.from_bytes`).
    """
    data = _read_bounded(path, "the firmware image")
    return FlashImage.from_bytes(data, source=str(path), expected_size=expected_size)


def write_image_file(path: Path, image: FlashImage) -> None:
    """Write an image file atomically (the old file stays whole until the rename)."""
    write_atomic(path, image.to_bytes())


def read_small_file(path: Path, what: str) -> bytes:
    return _read_bounded(path, what)


# -- configuration ---------------------------------------------------------------------------


def image_config(image: FlashImage) -> HeadsConfig:
    """The image's ``config.user`` (an empty configuration when it has none)."""
    f = image.file(CONFIG_FILE)
    source = f"{image.source}: {CONFIG_FILE}"
    if f is None:
        return HeadsConfig(source=source)
    return parse_config(f.content(source=image.source), source=source)


def with_config(image: FlashImage, config: HeadsConfig) -> FlashImage:
    """The image with ``config`` as its ``config.user`` (removed when it is empty)."""
    data = config.to_bytes()
    if not data:
        return image.without_file(CONFIG_FILE) if image.file(CONFIG_FILE) is not None else image
    try:
        return image.with_file(CbfsFile(CONFIG_FILE, data), replace=True)
    except ValueError as exc:
        raise UsageError(f"cannot write {CONFIG_FILE}: {exc}") from None


# -- keys ----------------------------------------------------------------------------------


def image_keyring(image: FlashImage) -> KeyringFiles:
    """The keyring files of the image (``pubring.kbx``, or the legacy ``pubring.gpg``)."""
    ring = image.file(PUBRING_FILE)
    name = "pubring.kbx"
    if ring is None:
        ring = image.file(LEGACY_PUBRING_FILE)
        name = "pubring.gpg"
    trust = image.file(TRUSTDB_FILE)
    return KeyringFiles(
        ring.content(source=image.source) if ring is not None else None,
        trust.content(source=image.source) if trust is not None else None,
        name,
    )


def image_keys(image: FlashImage) -> list[KeyInfo]:
    return list_keys(image_keyring(image))


def with_keys(image: FlashImage, key_data: bytes, *, replace: bool) -> tuple[FlashImage, list[str]]:
    """The image with the keys of ``key_data`` added (or replacing the keyring), ultimately
    trusted as Heads does; returns the fingerprints imported."""
    files, fprs = import_keys(image_keyring(image), key_data, replace=replace)
    ring_name = f"heads/initrd/.gnupg/{files.pubring_name}"
    updated = image
    for name in (PUBRING_FILE, LEGACY_PUBRING_FILE, TRUSTDB_FILE):
        if updated.file(name) is not None:
            updated = updated.without_file(name)
    if files.pubring is None:
        raise UsageError("gpg left no keyring after the import")
    try:
        updated = updated.with_file(CbfsFile(ring_name, files.pubring))
        if files.trustdb is not None:
            updated = updated.with_file(CbfsFile(TRUSTDB_FILE, files.trustdb))
    except ValueError as exc:
        raise UsageError(f"the keyring does not fit in the image: {exc}") from None
    return updated, fprs


# -- flashing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlashReport:
    """What a flash did: the bytes written, what was carried over, the timings, the backup."""

    size: int
    sha256: str
    board: str | None
    carried: tuple[str, ...]
    backup: Path | None
    write_s: float
    verify_s: float
    unchanged: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        return {
            "size": self.size,
            "sha256": self.sha256,
            "board": self.board,
            "carried": list(self.carried),
            "backup": str(self.backup) if self.backup is not None else None,
            "write_seconds": round(self.write_s, 3),
            "verify_seconds": round(self.verify_s, 3),
            "unchanged": self.unchanged,
        }


def read_chip(programmer: str) -> FlashImage:
    """The chip's current image, parsed.

    Raises:
        FlashError: flashrom failed.
        FormatError: the chip does not hold a coreboot image heads can read.
    """
    data = Flashrom(programmer).read()
    return FlashImage.from_bytes(data, source=f"the flash chip ({programmer})")


def _first_difference(a: bytes, b: bytes) -> int:
    if len(a) != len(b):
        return min(len(a), len(b))
    lo, hi = 0, len(a)
    while hi - lo > 4096:  # bisect on slices: memcmp speed instead of a Python loop
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    return next(i for i in range(lo, hi) if a[i] != b[i])


def flash(
    programmer: str,
    new: FlashImage,
    *,
    clean: bool = False,
    backup: Path | None = None,
) -> FlashReport:
    """Write ``new`` to the chip, keeping the current image's ``heads/*`` files unless
    ``clean``, then read the whole chip back and compare.

    The current image is read first (and saved to ``backup`` when given), the new one is
    checked against it (size, board), and nothing is written when that fails.

    Raises:
        UsageError: another size or board, or the user files do not fit (chip untouched).
        FlashError: flashrom failed writing: the message says the chip may hold part of the
            new image and where the backup is.
        VerificationError: the chip read back differs from the image (exit 3), with the first
            differing offset and the backup.
    """
    tool = Flashrom(programmer)
    chip_size = tool.chip_size()
    current_bytes = tool.read()
    if len(current_bytes) != chip_size:
        raise FlashError(f"flashrom read {len(current_bytes)} bytes from a {chip_size}-byte chip")
    if backup is not None:
        write_atomic(backup, current_bytes)
    current = FlashImage.from_bytes(current_bytes, source=f"the flash chip ({programmer})")
    check_replacement(current, new)
    image, carried = carry_user_files(current, new, clean=clean)
    data = image.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    saved = f"the previous image is saved in {backup}" if backup else "no backup was saved"
    if data == current_bytes:
        return FlashReport(
            len(data), digest, board_of(image), tuple(carried), backup, 0.0, 0.0, True
        )
    started = time.monotonic()
    try:
        tool.write(data)
    except FlashError as exc:
        raise FlashError(
            "flashrom failed while writing: the chip may hold part of the new image and "
            "part of the old one, and may not boot",
            hint=f"do not power off; run the flash again ({saved})",
            details=(exc.message, *exc.details),
        ) from None
    write_s = time.monotonic() - started
    started = time.monotonic()
    try:
        readback = tool.read()
    except FlashError as exc:
        raise FlashError(
            "the chip was written but could not be read back: its state is unknown",
            hint=f"do not power off; read it with heads rom read, or flash again ({saved})",
            details=(exc.message, *exc.details),
        ) from None
    verify_s = time.monotonic() - started
    if readback != data:
        at = _first_difference(readback, data)
        raise VerificationError(
            f"the chip read back differs from the image written, first at byte offset {at:#x}:"
            " the chip holds neither the old nor the new image",
            hint=f"do not power off; flash again ({saved})",
        )
    return FlashReport(
        len(data), digest, board_of(image), tuple(carried), backup, write_s, verify_s
    )


# -- update packages ------------------------------------------------------------------------


def make_package(image_path: Path, out: Path, signer: Signer) -> tuple[str, str]:
    """Write an update package for the image file: returns (ROM name, signer fingerprint).

    Raises:
        UsageError/FormatError: the image cannot be read or is not an image.
        GpgError/AuthError: signing failed.
    """
    image = read_image_file(image_path)
    rom_name = image_path.name if image_path.name.endswith(".rom") else image_path.name + ".rom"
    try:
        manifest = manifest_for(rom_name, image.to_bytes())
    except ValueError as exc:
        raise UsageError(str(exc), hint="name the image like board-version.rom") from None
    signature, fingerprint = signer.sign(manifest)
    write_atomic(out, build_package(rom_name, image.to_bytes(), signature))
    return rom_name, fingerprint


def read_package(path: Path) -> PackageContents:
    return parse_package(_read_bounded(path, "the update package"), source=str(path))


@dataclass(frozen=True, slots=True)
class PackageCheck:
    rom_name: str
    sha256: str
    fingerprint: str | None
    image: FlashImage


def verify_package(path: Path, keyring: Path) -> PackageCheck:
    """Check an update package: the ROM's hash against ``sha256sum.txt``, the signature over
    it with ``keyring``, and the ROM is a readable image.

    Raises:
        HashMismatchError: the ROM's hash differs (exit 3).
        SignatureError: the signature is not a good one from a key in ``keyring`` (exit 3).
        FormatError: the package or the ROM in it is malformed.
    """
    contents = read_package(path)
    result = verify_detached(contents.signature, contents.manifest, keyring)
    if result.verdict is not GpgVerdict.GOOD:
        raise SignatureError(
            f"{path}: the signature over sha256sum.txt is not good: {result.verdict.value}",
            hint="flash only packages signed by a key in the firmware keyring",
        )
    image = FlashImage.from_bytes(contents.rom, source=f"{path}: {contents.rom_name}")
    return PackageCheck(
        contents.rom_name,
        hashlib.sha256(contents.rom).hexdigest(),
        result.fingerprint,
        image,
    )


def user_file_names(image: FlashImage) -> list[str]:
    return [f.name for f in image.files() if f.type == TYPE_RAW and f.name.startswith("heads/")]
