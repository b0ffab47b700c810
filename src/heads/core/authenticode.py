"""The Authenticode hash of a PE/COFF image: what UEFI firmware measures for an EFI application.

OVMF extends PCR 4 with this hash of the kernel it starts (docs/pcr-layout.md).  The hash
covers the image as the PE/COFF specification's "Calculating the PE Image Hash" lays out:

* the headers up to ``SizeOfHeaders``, without the ``CheckSum`` field and without the
  certificate-table entry of the data directory;
* each section's raw data, in the order of ``PointerToRawData``;
* whatever follows the sections, except the certificate table (the signature) at the end.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from heads.errors import FormatError

__all__ = ["authenticode_sha256"]

_PE_MAGIC: Final = b"PE\0\0"
_OPT_PE32_PLUS: Final = 0x20B
_SECTION_SIZE: Final = 40
_SECURITY_DIRECTORY: Final = 4
_MAX_SECTIONS: Final = 96


def authenticode_sha256(image: bytes, *, source: str = "PE image") -> bytes:
    """SHA-256 Authenticode digest of ``image``.

    Raises:
        FormatError: not a PE/COFF image, or a header points outside the file.
    """

    def fail(offset: int, reason: str) -> FormatError:
        return FormatError(reason, source=source, offset=offset)

    if len(image) < 0x40 or image[:2] != b"MZ":
        raise fail(0, "no MZ header: not a PE image")
    (pe,) = struct.unpack_from("<I", image, 0x3C)
    if pe + 24 > len(image) or image[pe : pe + 4] != _PE_MAGIC:
        raise fail(0x3C, "no PE signature where the MZ header points")
    coff = pe + 4
    (sections,) = struct.unpack_from("<H", image, coff + 2)
    (opt_size,) = struct.unpack_from("<H", image, coff + 16)
    opt = coff + 20
    if sections > _MAX_SECTIONS or opt + opt_size + sections * _SECTION_SIZE > len(image):
        raise fail(coff, "section table runs past the end of the image")
    (magic,) = struct.unpack_from("<H", image, opt)
    plus = magic == _OPT_PE32_PLUS
    checksum = opt + 64
    (headers_size,) = struct.unpack_from("<I", image, opt + 60)
    count_at = opt + (108 if plus else 92)
    if count_at + 4 > opt + opt_size or headers_size > len(image):
        raise fail(opt, "optional header is too short or SizeOfHeaders is out of range")
    (dir_count,) = struct.unpack_from("<I", image, count_at)
    digest = hashlib.sha256()
    cert_size = 0
    if dir_count > _SECURITY_DIRECTORY:
        cert = count_at + 4 + 8 * _SECURITY_DIRECTORY
        if cert + 8 > headers_size:
            raise fail(cert, "certificate table entry lies outside the headers")
        (cert_size,) = struct.unpack_from("<I", image, cert + 4)
        digest.update(image[:checksum])
        digest.update(image[checksum + 4 : cert])
        digest.update(image[cert + 8 : headers_size])
    else:
        digest.update(image[:checksum])
        digest.update(image[checksum + 4 : headers_size])
    hashed = headers_size
    table = opt + opt_size
    raw = [
        struct.unpack_from("<II", image, table + i * _SECTION_SIZE + 16) for i in range(sections)
    ]
    for size, pointer in sorted(raw, key=lambda s: s[1]):
        if not size:
            continue
        if pointer + size > len(image):
            raise fail(table, f"a section's raw data ({pointer:#x}+{size:#x}) is past the end")
        digest.update(image[pointer : pointer + size])
        hashed += size
    if len(image) > hashed + cert_size:
        digest.update(image[hashed : len(image) - cert_size])
    return digest.digest()
