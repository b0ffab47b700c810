"""Our own measurement log: TCG Canonical Event Log records as JSON lines.

Every extend heads makes is appended here (docs/pcr-layout.md §The CEL log) so the PCRs it
touches replay from logs like the firmware's do.  One JSON object per line, in the shape of the
TCG CEL JSON encoding::

    {"recnum": 0, "pcr": 7,
     "digests": [{"hashAlg": "sha256", "digest": "<hex>"}, {"hashAlg": "sha1", "digest": "<hex>"}],
     "content_type": "heads",
     "content": {"type": "string", "string": "generic", "description": "boot mode"}}

``content.type`` is ``string`` (digest = H(string)), ``file`` (digest = H(file bytes); ``path``
names the file) or ``digest`` (a digest given as is).  ``description`` is free text.
Records this module does not know (other content types) are kept verbatim on parse.

The log is input like any other: a line is at most :data:`MAX_LINE_BYTES`, a number at most
:data:`MAX_NUMBER_CHARS` characters (Python refuses to convert integers of more than 4300
digits, deep inside :mod:`json`), JSON nests at most :data:`MAX_JSON_DEPTH` deep, and
``NaN``/``Infinity`` (not JSON, RFC 8259 §6) are refused; every refusal is a
:class:`~heads.errors.FormatError` naming the file and the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from heads.core.digest import HashAlg, extend, zero_digest
from heads.errors import FormatError

__all__ = [
    "CONTENT_TYPE",
    "MAX_JSON_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_LOG_BYTES",
    "MAX_NUMBER_CHARS",
    "CelRecord",
    "parse_cel",
    "replay_cel",
]

CONTENT_TYPE: Final = "heads"
MAX_LOG_BYTES: Final = 16 * 1024 * 1024
# A record is a few hundred bytes.  The longest heads writes holds a string and a description
# from the command line (at most 128 KiB each, Linux's MAX_ARG_STRLEN), JSON-escaped.
MAX_LINE_BYTES: Final = 1024 * 1024
# recnum and pcr are at most 20 digits (a u64); a float written by another tool, a few more.
MAX_NUMBER_CHARS: Final = 40
MAX_JSON_DEPTH: Final = 32
_KINDS: Final = frozenset({"string", "file", "digest"})
# What matters for nesting: an escape (its character is never a quote), a quote, a bracket.
_DEPTH_TOKEN: Final = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


@dataclass(frozen=True, slots=True)
class CelRecord:
    """One extend: the PCR, one digest per bank, and what was measured."""

    recnum: int
    pcr: int
    digests: Mapping[HashAlg, bytes]
    kind: str = "digest"
    string: str | None = None
    path: str | None = None
    description: str = ""
    content_type: str = CONTENT_TYPE
    raw_content: Mapping[str, object] = field(default_factory=dict)

    def to_json_line(self) -> str:
        content: dict[str, object]
        if self.content_type == CONTENT_TYPE:
            content = {"type": self.kind}
            if self.string is not None:
                content["string"] = self.string
            if self.path is not None:
                content["path"] = self.path
            if self.description:
                content["description"] = self.description
        else:
            content = dict(self.raw_content)
        obj = {
            "recnum": self.recnum,
            "pcr": self.pcr,
            "digests": [{"hashAlg": a.value, "digest": d.hex()} for a, d in self.digests.items()],
            "content_type": self.content_type,
            "content": content,
        }
        return json.dumps(obj, sort_keys=False, separators=(",", ":")) + "\n"


def _fail(source: str, line: int, reason: str) -> FormatError:
    return FormatError(reason, source=source, line=line, hint="the measurement log is damaged")


def _parse_line(obj: object, source: str, line: int) -> CelRecord:
    if not isinstance(obj, dict):
        raise _fail(source, line, "record is not a JSON object")
    recnum, pcr, digests = obj.get("recnum"), obj.get("pcr"), obj.get("digests")
    if not isinstance(recnum, int) or isinstance(recnum, bool) or recnum < 0:
        raise _fail(source, line, "'recnum' must be a non-negative integer")
    if not isinstance(pcr, int) or isinstance(pcr, bool) or not 0 <= pcr < 24:
        raise _fail(source, line, "'pcr' must be an integer 0-23")
    if not isinstance(digests, list) or not digests:
        raise _fail(source, line, "'digests' must be a non-empty list")
    parsed: dict[HashAlg, bytes] = {}
    for item in digests:
        if not isinstance(item, dict):
            raise _fail(source, line, "each digest must be an object")
        alg_name, hex_digest = item.get("hashAlg"), item.get("digest")
        if not isinstance(alg_name, str) or not isinstance(hex_digest, str):
            raise _fail(source, line, "digest entries need 'hashAlg' and 'digest' strings")
        try:
            alg = HashAlg.from_name(alg_name)
            value = bytes.fromhex(hex_digest)
        except ValueError as exc:
            raise _fail(source, line, f"bad digest entry: {exc}") from None
        if len(value) != alg.digest_size:
            raise _fail(source, line, f"{alg.value} digest has {len(value)} bytes")
        if alg in parsed:
            raise _fail(source, line, f"two {alg.value} digests in one record")
        parsed[alg] = value
    content_type = obj.get("content_type", CONTENT_TYPE)
    content = obj.get("content", {})
    if not isinstance(content_type, str) or not isinstance(content, dict):
        raise _fail(source, line, "'content_type' must be a string and 'content' an object")
    if content_type != CONTENT_TYPE:
        return CelRecord(recnum, pcr, parsed, content_type=content_type, raw_content=content)
    kind = content.get("type", "digest")
    string, path, desc = content.get("string"), content.get("path"), content.get("description", "")
    if kind not in _KINDS:
        raise _fail(source, line, f"unknown content type {kind!r}")
    if (string is not None and not isinstance(string, str)) or (
        path is not None and not isinstance(path, str)
    ):
        raise _fail(source, line, "'string' and 'path' must be strings")
    if not isinstance(desc, str):
        raise _fail(source, line, "'description' must be a string")
    if kind == "string" and string is None:
        raise _fail(source, line, "a string record needs 'string'")
    return CelRecord(recnum, pcr, parsed, kind, string, path, desc)


class _RefusedError(Exception):
    """Raised from inside json.loads by the hooks below; becomes a FormatError."""


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _RefusedError(f"a number of {len(text)} digits (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _RefusedError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return float(text)


def _no_constant(text: str) -> object:
    raise _RefusedError(f"{text} is not a JSON number")


def _json_depth(raw: bytes) -> int:
    """How deep the arrays and objects of ``raw`` nest (brackets inside strings ignored)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than the limit: the usual case, no scan
    depth = deepest = 0
    in_string = False
    for match in _DEPTH_TOKEN.finditer(raw):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _load_line(raw: bytes, source: str, line: int) -> object:
    """One line as a JSON value, every hostile shape refused before or while decoding."""
    if len(raw) > MAX_LINE_BYTES:
        raise _fail(source, line, f"record is longer than {MAX_LINE_BYTES} bytes")
    if _json_depth(raw) > MAX_JSON_DEPTH:
        raise _fail(source, line, f"JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_int=_bounded_int,
            parse_float=_bounded_float,
            parse_constant=_no_constant,
        )
    except _RefusedError as exc:
        raise _fail(source, line, f"not a measurement record: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(source, line, f"not a JSON record ({exc})") from None
    except RecursionError:  # pragma: no cover - the depth check above comes first
        raise _fail(source, line, "JSON nested too deeply") from None


def parse_cel(data: bytes, source: str = "<event log>") -> list[CelRecord]:
    """Parse our JSON-lines log.  Blank lines are skipped.

    This is the one reader of the log: whoever appends to a log (``heads tpm extend --log``)
    calls it on the whole file first, so a damaged log is refused before the TPM is touched.

    Raises:
        FormatError: naming the line and the reason (not JSON, an oversized line or number,
            nesting, a record that is not a measurement).
    """
    if len(data) > MAX_LOG_BYTES:
        raise FormatError(f"log is larger than {MAX_LOG_BYTES} bytes", source=source)
    records: list[CelRecord] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        records.append(_parse_line(_load_line(raw, source, lineno), source, lineno))
    return records


def replay_cel(
    records: Iterable[CelRecord],
    start: Mapping[HashAlg, Mapping[int, bytes]] | None = None,
) -> dict[HashAlg, dict[int, bytes]]:
    """Extend each record's digests onto ``start`` (zeros when absent); return every PCR touched."""
    state: dict[HashAlg, dict[int, bytes]] = {
        alg: dict(pcrs) for alg, pcrs in (start or {}).items()
    }
    for rec in records:
        for alg, digest in rec.digests.items():
            bank = state.setdefault(alg, {})
            bank[rec.pcr] = extend(alg, bank.get(rec.pcr, zero_digest(alg)), digest)
    return state
