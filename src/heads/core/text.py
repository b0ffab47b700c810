"""Showing untrusted text on a terminal or in a log: every control character made visible.

Whoever controls /boot chooses its file names, boot entry titles and the paths inside signed
files.  Printed raw, a name such as ``"zz: ok\\n  verdict:   OK\\x1b[8m"`` adds a line to a
report and hides what follows it; a right-to-left override (U+202E) makes ``gpj.exe`` read
as ``exe.jpg``.  :func:`shown` turns such a string into one line of plain printable text.

What is escaped: the Unicode categories Cc (C0 controls, DEL, C1 controls), Cf (format
characters: the bidi embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the
marks U+200E/U+200F/U+061C, zero-width characters, the BOM), Zl and Zp (U+2028, U+2029), Cs
(lone surrogates, which is how ``os.fsdecode`` carries bytes that are not UTF-8), and the
backslash itself, so that the escaping can be read back without ambiguity:

* ``\\\\`` for a backslash; ``\\n``, ``\\r``, ``\\t`` for those three;
* ``\\xNN`` for any other character below U+0080 (C0 and DEL), and for a byte 0x80-0xff that
  was not UTF-8 (the surrogate U+DC80-U+DCFF ``surrogateescape`` made of it);
* ``\\uNNNN`` / ``\\UNNNNNNNN`` for everything else escaped (C1 controls such as U+0085 are
  ``\\u0085``, so they never read like the raw byte 0x85).

Distinct inputs give distinct outputs, and the output holds no character of those categories.
JSON output needs none of this: ``json.dumps`` escapes control characters itself.
"""

from __future__ import annotations

import unicodedata

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = ["scrub", "shown", "shown_bytes"]

_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE_ESCAPE_LOW: Final = 0xDC80
_SURROGATE_ESCAPE_HIGH: Final = 0xDCFF


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x80:
        return f"\\x{code:02x}"
    if _SURROGATE_ESCAPE_LOW <= code <= _SURROGATE_ESCAPE_HIGH:
        return f"\\x{code - 0xDC00:02x}"  # the undecodable byte itself
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _needs_escape(ch: str) -> bool:
    return unicodedata.category(ch) in _ESCAPED_CATEGORIES


def shown(text: str) -> str:
    """``text`` with every control, format and separator character and ``\\`` escaped."""
    # isprintable() is False for every category escaped here (and a few harmless others, such
    # as non-ASCII spaces, which then take the slow path and come out unchanged).
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        "\\\\" if ch == "\\" else _escape(ch) if _needs_escape(ch) else ch for ch in text
    )


def shown_bytes(data: bytes) -> str:
    """:func:`shown` of bytes (a file name): UTF-8 where valid, ``\\xNN`` for other bytes."""
    return shown(data.decode("utf-8", "surrogateescape"))


def scrub(text: str) -> str:
    """``text`` with control, format and separator characters escaped, backslashes kept.

    For a line composed from parts that :func:`shown` already escaped: it leaves those parts
    as they are (so nothing is escaped twice) and still neutralises a part that was not, as a
    last barrier before a console.  Unlike :func:`shown` it cannot be read back unambiguously.
    """
    if text.isprintable():
        return text
    return "".join(_escape(ch) if _needs_escape(ch) else ch for ch in text)
