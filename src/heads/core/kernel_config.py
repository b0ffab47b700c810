"""Kernel configuration fragments and ``.config`` files: parse, merge, check.

A fragment (``payload/kernel/PLATFORM.fragment``) lists the options a platform's payload
kernel needs, one a line, in the kernel's own ``.config`` syntax::

    CONFIG_TCG_CRB=y
    # CONFIG_MODULES is not set
    CONFIG_LOCALVERSION="-heads"
    CONFIG_FAT_DEFAULT_CODEPAGE=437

Any other line starting with ``#`` is a comment, blank lines are ignored.  The builder starts
from ``make tinyconfig``, merges the fragment in (:func:`merge`), lets ``make olddefconfig``
settle dependencies, merges again (options that only appear once their parent is enabled) and
settles once more; then :func:`unmet` names every requested option the configuration system
dropped (docs/reproducible-builds.md §Kernel).  Pure text handling: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from heads.errors import FormatError

__all__ = ["KconfigOption", "Unmet", "merge", "parse_config", "parse_fragment", "unmet"]

_MAX_BYTES: Final = 4 << 20
_NAME: Final = r"CONFIG_[A-Za-z0-9_]+"
_SET_RE: Final = re.compile(rf"^({_NAME})=(.*)$")
_UNSET_RE: Final = re.compile(rf"^# ({_NAME}) is not set$")
# Values a fragment may ask for: y (no modules: the payload loads none), a decimal or hex
# number, or a double-quoted string without control characters.
_VALUE_RE: Final = re.compile(r'^(y|-?[0-9]+|0x[0-9a-fA-F]+|"(?:[^"\\\x00-\x1f\x7f]|\\["\\])*")$')


@dataclass(frozen=True, slots=True)
class KconfigOption:
    """One requested option: its name (``CONFIG_...``) and value, None for "is not set"."""

    name: str
    value: str | None
    line: int = 0

    def render(self) -> str:
        """The option as a ``.config`` line."""
        if self.value is None:
            return f"# {self.name} is not set"
        return f"{self.name}={self.value}"


@dataclass(frozen=True, slots=True)
class Unmet:
    """A requested option whose value the configuration system did not keep."""

    option: KconfigOption
    actual: str | None  # None: not set, or not visible in this configuration

    def __str__(self) -> str:
        want = "not set" if self.option.value is None else self.option.value
        got = "not set" if self.actual is None else self.actual
        return f"{self.option.name}: wanted {want}, got {got}"


def _text(data: bytes, source: str) -> list[str]:
    if len(data) > _MAX_BYTES:
        raise FormatError("larger than 4 MiB", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 (byte {exc.start})", source=source) from None
    return text.split("\n")


def parse_fragment(data: bytes, *, source: str) -> tuple[KconfigOption, ...]:
    """The options of a fragment, in file order.

    Raises:
        FormatError: a line that is neither an option, a comment nor blank; a value other
            than ``y``, a number or a quoted string (``m`` among them: modules are off); an
            option given twice.  The error names the line.
    """
    options: list[KconfigOption] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(_text(data, source), 1):
        line = raw.rstrip("\r").strip()
        if not line:
            continue
        unset = _UNSET_RE.match(line)
        if unset is not None:
            option = KconfigOption(unset.group(1), None, number)
        elif line.startswith("#"):
            if re.match(rf"^#\s*{_NAME}\b", line):
                raise FormatError(
                    "a disabled option must read `# CONFIG_NAME is not set`",
                    source=source,
                    line=number,
                )
            continue
        else:
            match = _SET_RE.match(line)
            if match is None:
                raise FormatError(
                    "not `CONFIG_NAME=value`, `# CONFIG_NAME is not set` or a comment",
                    source=source,
                    line=number,
                )
            value = match.group(2)
            if value == "m":
                raise FormatError(
                    f"{match.group(1)}=m: the payload kernel has no modules; use y",
                    source=source,
                    line=number,
                )
            if value == "n":
                raise FormatError(
                    f"write `# {match.group(1)} is not set` instead of =n",
                    source=source,
                    line=number,
                )
            if not _VALUE_RE.match(value):
                raise FormatError(
                    f"{match.group(1)}: value must be y, a number or a double-quoted string",
                    source=source,
                    line=number,
                )
            option = KconfigOption(match.group(1), value, number)
        if option.name in seen:
            raise FormatError(
                f"{option.name} is already set on line {seen[option.name]}",
                source=source,
                line=number,
            )
        seen[option.name] = number
        options.append(option)
    return tuple(options)


def parse_config(data: bytes, *, source: str) -> dict[str, str | None]:
    """The options of a ``.config`` as written by the kernel's configuration system.

    Comments other than ``# CONFIG_X is not set`` are skipped; a later line for the same
    option wins, as when the kernel reads the file.

    Raises:
        FormatError: a line that is not an option, a comment or blank (named by number).
    """
    values: dict[str, str | None] = {}
    for number, raw in enumerate(_text(data, source), 1):
        line = raw.rstrip("\r").strip()
        if not line:
            continue
        unset = _UNSET_RE.match(line)
        if unset is not None:
            values[unset.group(1)] = None
            continue
        if line.startswith("#"):
            continue
        match = _SET_RE.match(line)
        if match is None:
            raise FormatError("not a .config line", source=source, line=number)
        values[match.group(1)] = match.group(2)
    return values


def merge(config: bytes, options: Iterable[KconfigOption]) -> bytes:
    """``config`` with every line of the requested options removed and the options appended.

    Appending matters for choices (the compression, the slab allocator): the kernel takes the
    last ``=y`` member of a choice it reads, so the fragment's member wins over the default.
    """
    wanted = list(options)
    names = {o.name for o in wanted}
    kept: list[str] = []
    for raw in config.decode("utf-8", "replace").split("\n"):
        line = raw.strip()
        match = _SET_RE.match(line) or _UNSET_RE.match(line)
        if match is not None and match.group(1) in names:
            continue
        kept.append(raw)
    while kept and not kept[-1].strip():
        kept.pop()
    body = "\n".join(kept)
    tail = "\n".join(o.render() for o in wanted)
    return (body + "\n" + tail + "\n").encode() if body else (tail + "\n").encode()


def unmet(options: Iterable[KconfigOption], config: Mapping[str, str | None]) -> list[Unmet]:
    """Every requested option whose value ``config`` does not have (absent counts as not set)."""
    out: list[Unmet] = []
    for option in options:
        actual = config.get(option.name)
        if actual != option.value:
            out.append(Unmet(option, actual))
    return out
