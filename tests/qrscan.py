"""Read a QR code back the way a phone would: our text rendering -> PNG -> zbarimg."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from conftest import require

__all__ = ["pixels_from_half_blocks", "write_png", "zbarimg"]

_TOP = {" ": False, "\u2580": True, "\u2584": False, "\u2588": True}
_BOTTOM = {" ": False, "\u2580": False, "\u2584": True, "\u2588": True}


def zbarimg(png: Path) -> str:
    """The text of the one QR code in ``png``, decoded by zbar."""
    if shutil.which("zbarimg") is None:
        require("zbarimg is not installed (apt-get install zbar-tools)")
    out = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(png)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.rstrip("\n")


def write_png(pixels: list[list[bool]], path: Path, scale: int = 6) -> None:
    """A grayscale PNG (RFC 2083) with True = black, each pixel scaled up."""
    rows = []
    for row in pixels:
        line = bytes(0 if px else 255 for px in row for _ in range(scale))
        rows.extend([b"\x00" + line] * scale)  # filter type 0 per scanline
    height = len(pixels) * scale
    width = len(pixels[0]) * scale

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def pixels_from_half_blocks(text: str, *, invert: bool = True) -> list[list[bool]]:
    """Our terminal rendering as pixels (True = dark), as a camera sees the screen.

    With ``invert`` the drawn cells are lit (light-on-dark console), so dark pixels are the
    undrawn ones.
    """
    pixels: list[list[bool]] = []
    for line in text.split("\n"):
        pixels.append([_TOP[ch] != invert for ch in line])
        pixels.append([_BOTTOM[ch] != invert for ch in line])
    return pixels
