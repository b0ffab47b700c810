"""QR codes drawn with text: two module rows per line using Unicode half blocks.

Provisioning shows the ``otpauth://`` URI once, as a QR code on the console (seal-totp.sh
pipes it to ``qrenc``).  segno builds the symbol (ISO/IEC 18004); this module only turns its
module matrix into lines of ``█ ▀ ▄`` and spaces, so a 41x41 symbol fits in 25 lines.

Consoles usually draw light text on a dark background, so by default the *light* modules are
drawn with block characters (``invert=True``); a scanner then sees dark modules where the
symbol has them.  The quiet zone of 4 modules (ISO/IEC 18004 §6.3.8) is part of the output.
"""

from __future__ import annotations

from collections.abc import Sequence

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = ["QUIET_ZONE", "qr_matrix", "render_half_blocks"]

QUIET_ZONE: Final = 4
# Index: (top is drawn, bottom is drawn).
_GLYPHS: Final = {
    (False, False): " ",
    (True, False): "\u2580",  # ▀ upper half block
    (False, True): "\u2584",  # ▄ lower half block
    (True, True): "\u2588",  # █ full block
}


def qr_matrix(text: str) -> tuple[tuple[bool, ...], ...]:
    """The module matrix of the QR code for ``text``, with the quiet zone; True = dark.

    Error correction level M at least (segno raises it when that costs no extra size), so a
    phone still reads a code from a slightly blurry screen.

    Raises:
        ValueError: ``text`` is too long for any QR code version (a programming error: URIs
            are far below the 2331-byte limit).
    """
    # Imported here: segno costs 30 ms, and most commands that import this module show no code.
    import segno  # noqa: PLC0415

    try:
        code = segno.make(text, error="m", micro=False)
    except segno.DataOverflowError as exc:
        raise ValueError(f"too long for a QR code: {exc}") from None
    return tuple(
        tuple(bool(module) for module in row) for row in code.matrix_iter(border=QUIET_ZONE)
    )


def render_half_blocks(matrix: Sequence[Sequence[bool]], *, invert: bool = True) -> str:
    """Lines of half-block characters showing ``matrix`` (True = dark module).

    With ``invert`` (for light-on-dark consoles) a light module is drawn; without it a dark
    module is drawn.  An odd last row is paired with a light row (quiet zone).
    """
    rows = [list(r) for r in matrix]
    if len(rows) % 2:
        rows.append([False] * (len(rows[0]) if rows else 0))
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        lines.append(
            "".join(_GLYPHS[(t != invert, b != invert)] for t, b in zip(top, bottom, strict=True))
        )
    return "\n".join(lines)
