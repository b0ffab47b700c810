"""The provisioning QR code decodes back to the otpauth URI with a real decoder (zbarimg)."""

from __future__ import annotations

from pathlib import Path

import segno

from heads.core.otp import totp_uri
from heads.core.qr import QUIET_ZONE, qr_matrix, render_half_blocks
from heads.core.secret import Secret
from qrscan import pixels_from_half_blocks, write_png, zbarimg

URI = totp_uri(Secret(bytes(range(20))), "Heads:test laptop", issuer="Heads")


def test_segno_png_decodes_to_uri(tmp_path: Path) -> None:
    png = tmp_path / "qr.png"
    segno.make(URI, error="m", micro=False).save(str(png), scale=6)
    assert zbarimg(png) == URI


def test_half_block_rendering_decodes_to_uri(tmp_path: Path) -> None:
    text = render_half_blocks(qr_matrix(URI))
    png = tmp_path / "terminal.png"
    write_png(pixels_from_half_blocks(text, invert=True), png)
    assert zbarimg(png) == URI


def test_non_inverted_rendering_decodes_to_uri(tmp_path: Path) -> None:
    text = render_half_blocks(qr_matrix(URI), invert=False)
    png = tmp_path / "terminal.png"
    write_png(pixels_from_half_blocks(text, invert=False), png)
    assert zbarimg(png) == URI


def test_rendering_has_quiet_zone_and_half_height() -> None:
    matrix = qr_matrix(URI)
    text = render_half_blocks(matrix)
    lines = text.split("\n")
    assert len(lines) == (len(matrix) + 1) // 2
    assert all(len(line) == len(matrix[0]) for line in lines)
    # Inverted: the light quiet zone is drawn as full blocks on the first rows.
    assert lines[0] == "\u2588" * len(matrix[0])
    assert all(not any(row) for row in matrix[:QUIET_ZONE])
