"""The ``--json`` output every command shares: sorted keys, two-space indent, a final newline.

Apart from :mod:`heads.cli.common` (which re-exports it) so that the commands the quick
command-line reader runs (:mod:`heads.cli.fast_argv`) need neither argparse nor the rest.

The text is exactly ``json.dumps(obj, indent=2, sort_keys=True)``, written here for the values
commands print (dicts with text keys, lists, text, numbers, booleans, None) because importing
:mod:`json` compiles its decoder's regular expressions, which costs a short command such as
``heads pcr replay`` more than printing its result (docs/architecture.md §Command start-up).
Anything else (a key that is not text, a value json converts or refuses) goes to
:mod:`json` itself, so what it accepts, converts or raises is unchanged.
"""

from __future__ import annotations

import math
import sys

try:
    # The C escaper json itself uses for ensure_ascii output; importing it loads no Python.
    from _json import encode_basestring_ascii as _quote
except ImportError:  # pragma: no cover - an interpreter without the C accelerator
    from json.encoder import encode_basestring_ascii as _quote

__all__ = ["json_text", "print_json"]

_INDENT = "  "


class _UnsupportedError(Exception):
    """A value this writer leaves to :mod:`json`."""


def print_json(obj: object) -> None:
    sys.stdout.write(json_text(obj) + "\n")


def json_text(obj: object) -> str:
    """``json.dumps(obj, indent=2, sort_keys=True)``, without importing json for plain values."""
    parts: list[str] = []
    try:
        _write(obj, parts, "\n")
    except (_UnsupportedError, RecursionError):
        import json  # only for values this writer does not handle

        return json.dumps(obj, indent=2, sort_keys=True)
    return "".join(parts)


def _write(obj: object, parts: list[str], newline: str) -> None:
    if isinstance(obj, str):
        parts.append(_quote(obj))
    elif obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, int):
        parts.append(int.__repr__(obj))
    elif isinstance(obj, float):
        parts.append(_float(obj))
    elif isinstance(obj, dict):
        _write_dict(obj, parts, newline)
    elif isinstance(obj, list | tuple):
        _write_list(obj, parts, newline)
    else:
        raise _UnsupportedError


def _write_dict(obj: dict[object, object], parts: list[str], newline: str) -> None:
    if not obj:
        parts.append("{}")
        return
    keys = [key for key in obj if isinstance(key, str)]
    if len(keys) != len(obj):
        raise _UnsupportedError  # json converts numbers, booleans and None to text keys
    inner = newline + _INDENT
    parts.append("{")
    for i, key in enumerate(sorted(keys)):
        parts.append(("," if i else "") + inner + _quote(key) + ": ")
        _write(obj[key], parts, inner)
    parts.append(newline + "}")


def _write_list(obj: list[object] | tuple[object, ...], parts: list[str], newline: str) -> None:
    if not obj:
        parts.append("[]")
        return
    inner = newline + _INDENT
    parts.append("[")
    for i, item in enumerate(obj):
        parts.append(("," if i else "") + inner)
        _write(item, parts, inner)
    parts.append(newline + "]")


def _float(value: float) -> str:
    # As json: repr, except the three values JSON has no number for, spelt as JavaScript does.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
