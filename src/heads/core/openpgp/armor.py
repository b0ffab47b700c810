"""ASCII armor (RFC 4880 §6): base64 between BEGIN/END lines, with a CRC-24 checksum.

Reading is strict about the frame (matching BEGIN and END labels, base64 that decodes) and
checks the CRC when one is present; armor headers (``Version:``, ``Comment:``) are skipped.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from heads.errors import FormatError

__all__ = ["MAX_ARMOR_BYTES", "armor", "crc24", "dearmor"]

MAX_ARMOR_BYTES: Final = 1024 * 1024
_CRC24_INIT: Final = 0xB704CE
_CRC24_POLY: Final = 0x1864CFB
_LINE: Final = 64


def crc24(data: bytes) -> int:
    """The armor checksum (RFC 4880 §6.1)."""
    crc = _CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc & 0xFFFFFF


def armor(label: str, data: bytes) -> bytes:
    """``data`` armored as ``-----BEGIN PGP <label>-----`` ... with its checksum."""
    body = base64.b64encode(data).decode("ascii")
    lines = [f"-----BEGIN PGP {label}-----", ""]
    lines += [body[i : i + _LINE] for i in range(0, len(body), _LINE)]
    lines.append("=" + base64.b64encode(crc24(data).to_bytes(3, "big")).decode("ascii"))
    lines.append(f"-----END PGP {label}-----")
    return ("\n".join(lines) + "\n").encode("ascii")


def dearmor(text: bytes, *, label: str, source: str) -> bytes:
    """The bytes inside the first ``label`` armor block of ``text``.

    Raises:
        FormatError: no such block, no END line, text that is not base64, or a checksum
            that differs (the message names the line).
    """
    if len(text) > MAX_ARMOR_BYTES:
        raise FormatError(f"larger than {MAX_ARMOR_BYTES} bytes", source=source)
    try:
        lines = text.decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError("armor that is not ASCII", source=source, offset=exc.start) from None
    begin = f"-----BEGIN PGP {label}-----"
    end = f"-----END PGP {label}-----"
    stripped = [line.strip() for line in lines]
    if begin not in stripped:
        raise FormatError(f"no '{begin}' line", source=source)
    start = stripped.index(begin) + 1
    pos = start
    # Armor headers run up to the first empty line; a block without headers may omit it.
    while pos < len(stripped) and ":" in stripped[pos]:
        pos += 1
    if pos < len(stripped) and not stripped[pos]:
        pos += 1
    body: list[str] = []
    checksum: str | None = None
    for number in range(pos, len(stripped)):
        line = stripped[number]
        if line == end:
            break
        if line.startswith("=") and checksum is None:
            checksum = line[1:]
            continue
        if checksum is not None or line.startswith("-----"):
            raise FormatError(
                f"unexpected line in the armor: {line[:40]!r}", source=source, line=number + 1
            )
        body.append(line)
    else:
        raise FormatError(f"no '{end}' line", source=source)
    try:
        data = base64.b64decode("".join(body), validate=True)
        crc = base64.b64decode(checksum, validate=True) if checksum is not None else None
    except (binascii.Error, ValueError):
        raise FormatError("armor body that is not base64", source=source, line=start + 1) from None
    if crc is not None and (len(crc) != 3 or int.from_bytes(crc, "big") != crc24(data)):
        raise FormatError("armor checksum differs: the text was altered", source=source)
    return data
