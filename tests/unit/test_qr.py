"""The provisioning QR code decodes back to the otpauth URI with a real decoder (zbarimg)."""

from __future__ import annotations

import shutil
import struct
import subprocess  # noqa: TID251 - zbarimg is the independent decoder, not a heads adapter
import zlib
from pathlib import Path

import segno

from conftest import require
from heads.core.otp import totp_uri
from heads.core.qr import QUIET_ZONE, qr_matrix, render_half_blocks
from heads.core.secret import Secret

URI = totp_uri(Secret(bytes(range(20))), "Heads:test laptop", issuer="Heads")


def _zbarimg(png: Path) -> str:
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


def _png(pixels: list[list[bool]], path: Path, scale: int = 6) -> None:
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


def _pixels_from_half_blocks(text: str, *, invert: bool) -> list[list[bool]]:
    """Our terminal rendering as pixels, as a camera sees a light-on-dark screen."""
    top = {" ": False, "\u2580": True, "\u2584": False, "\u2588": True}
    bottom = {" ": False, "\u2580": False, "\u2584": True, "\u2588": True}
    pixels: list[list[bool]] = []
    for line in text.split("\n"):
        # Drawn cells are lit (light) when inverted; dark pixels are the undrawn ones.
        pixels.append([top[ch] != invert for ch in line])
        pixels.append([bottom[ch] != invert for ch in line])
    return pixels


def test_segno_png_decodes_to_uri(tmp_path: Path) -> None:
    png = tmp_path / "qr.png"
    segno.make(URI, error="m", micro=False).save(str(png), scale=6)
    assert _zbarimg(png) == URI


def test_half_block_rendering_decodes_to_uri(tmp_path: Path) -> None:
    text = render_half_blocks(qr_matrix(URI))
    png = tmp_path / "terminal.png"
    _png(_pixels_from_half_blocks(text, invert=True), png)
    assert _zbarimg(png) == URI


def test_non_inverted_rendering_decodes_to_uri(tmp_path: Path) -> None:
    text = render_half_blocks(qr_matrix(URI), invert=False)
    png = tmp_path / "terminal.png"
    _png(_pixels_from_half_blocks(text, invert=False), png)
    assert _zbarimg(png) == URI


def test_rendering_has_quiet_zone_and_half_height() -> None:
    matrix = qr_matrix(URI)
    text = render_half_blocks(matrix)
    lines = text.split("\n")
    assert len(lines) == (len(matrix) + 1) // 2
    assert all(len(line) == len(matrix[0]) for line in lines)
    # Inverted: the light quiet zone is drawn as full blocks on the first rows.
    assert lines[0] == "\u2588" * len(matrix[0])
    assert all(not any(row) for row in matrix[:QUIET_ZONE])
