"""Boot Loader Specification Type #1 entries (``loader/entries/*.conf``).

UAPI.1 Boot Loader Specification: one ``key value`` per line, ``#`` comments; ``linux``,
``initrd`` (repeatable), ``options`` (repeatable: all lines are joined with spaces, where
Heads' ``kexec-parse-bls.sh`` kept only the last), ``title``, ``version``, ``machine-id``,
``sort-key``.  Paths are relative to the root of the partition holding the entry.  GRUB's
``blscfg`` (and Heads) expand ``$kernelopts`` and other variables from ``grubenv`` in options;
GRUB's script expands them in ``initrd`` too, where an unset one (Fedora's ``$tuned_initrd``)
is nothing and adds no initrd.  An entry file that cannot be read is reported and the others
are kept.

Order (spec, "Sorting"): entries with a ``sort-key`` first, by sort-key, then machine-id, then
version newest first; then the rest; ties by file name, newest version-looking name first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from heads.core.bootcfg.entry import (
    BootEntry,
    DroppedEntry,
    EntryKind,
    EntrySource,
    path_problem,
    text_problem,
)
from heads.core.bootcfg.grub_lexer import decode_config
from heads.core.bootcfg.tree import BootFiles, normalize_path
from heads.errors import FormatError

__all__ = [
    "BLS_DIRS",
    "MAX_BLS_ENTRIES",
    "BlsResult",
    "compare_versions",
    "parse_bls",
    "parse_bls_entry",
]

BLS_DIRS: Final = ("/loader/entries", "/boot/loader/entries")
MAX_BLS_ENTRIES: Final = 1000
MAX_ENTRY_BYTES: Final = 64 * 1024
_VAR: Final = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_SEGMENT: Final = re.compile(r"[0-9]+|[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class BlsResult:
    entries: tuple[BootEntry, ...]
    dropped: tuple[DroppedEntry, ...]
    files_read: tuple[str, ...]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Parsed:
    file: str
    sort_key: str | None
    machine_id: str
    version: str
    entry: BootEntry | DroppedEntry


def compare_versions(a: str, b: str) -> int:
    """rpmvercmp-style comparison: digit runs numerically, letter runs as text (-1, 0, 1)."""
    sa, sb = _SEGMENT.findall(a), _SEGMENT.findall(b)
    for x, y in zip(sa, sb, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            # As rpmvercmp: leading zeros dropped, the longer run is larger, else text order
            # (no int(): a version is text from the disk, of any length).
            nx, ny = x.lstrip("0"), y.lstrip("0")
            if len(nx) != len(ny):
                return 1 if len(nx) > len(ny) else -1
            if nx != ny:
                return 1 if nx > ny else -1
            continue
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        return 1 if str(x) > str(y) else -1
    return (len(sa) > len(sb)) - (len(sa) < len(sb))


def _expand(text: str, variables: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), text)


def parse_bls_entry(
    data: bytes, source: str, variables: Mapping[str, str] | None = None
) -> tuple[BootEntry | DroppedEntry, dict[str, str]]:
    """One entry file -> the entry (or why it cannot be booted) and its plain keys.

    Raises:
        FormatError: NUL bytes or invalid UTF-8 (naming the file and line).
    """
    text = decode_config(data, source)
    keys: dict[str, str] = {}
    initrds: list[tuple[str, int]] = []
    options: list[str] = []
    linux: tuple[str, int] | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ") if " " in line else line.partition("\t")
        value = value.strip()
        if key == "initrd":
            # GRUB's blscfg hands the line to its script, which expands variables: an unset
            # `$tuned_initrd` is empty and names no file.
            initrds.extend((v, number) for v in _expand(value, variables or {}).split())
        elif key == "options":
            options.append(value)
        elif key == "linux":
            linux = (value, number)
        else:
            keys.setdefault(key, value)
    title = keys.get("title") or keys.get("version") or source.rsplit("/", 1)[-1]
    title = title.replace("|", "")
    where = EntrySource(source, 1)

    def drop(reason: str) -> DroppedEntry:
        return DroppedEntry(title, where, reason)

    if text_problem(title) is not None:
        return drop(f"title {text_problem(title)}"), keys
    if linux is None:
        if "efi" in keys:
            return drop("EFI program entry (kexec loads Linux kernels only)"), keys
        return drop("no linux line"), keys

    def resolve(path: str, line: int, what: str) -> str | DroppedEntry:
        norm = normalize_path(path)
        if norm is None:
            return drop(f"{what} {path!r} (line {line}) climbs out of the partition")
        problem = path_problem(norm)
        if problem is not None:
            return drop(f"{what} {path!r} (line {line}) {problem}")
        return norm

    kernel = resolve(linux[0], linux[1], "linux")
    if isinstance(kernel, DroppedEntry):
        return kernel, keys
    resolved: list[str] = []
    for initrd_path, initrd_line in initrds:
        r = resolve(initrd_path, initrd_line, "initrd")
        if isinstance(r, DroppedEntry):
            return r, keys
        resolved.append(r)
    cmdline = " ".join(_expand(" ".join(options), variables or {}).split())
    if text_problem(cmdline) is not None:
        return drop(f"options {text_problem(cmdline)}"), keys
    entry = BootEntry(
        title=title,
        kind=EntryKind.ELF,
        kernel=kernel,
        initrds=tuple(resolved),
        cmdline=cmdline,
        source=EntrySource(source, linux[1]),
    )
    return entry, keys


def _order(a: _Parsed, b: _Parsed) -> int:
    if (a.sort_key is None) != (b.sort_key is None):
        return -1 if a.sort_key is not None else 1
    if a.sort_key is not None and b.sort_key is not None and a.sort_key != b.sort_key:
        return -1 if a.sort_key < b.sort_key else 1
    if a.machine_id != b.machine_id:
        return -1 if a.machine_id < b.machine_id else 1
    by_version = compare_versions(b.version, a.version)
    if by_version:
        return by_version
    return compare_versions(b.file, a.file)


def parse_bls(files: BootFiles, *, variables: Mapping[str, str] | None = None) -> BlsResult:
    """All BLS entries of the tree, in specification order.

    Args:
        files: the boot partition.
        variables: values for ``$name`` in ``options`` (``kernelopts`` from grubenv).

    An entry file larger than 64 KiB, not UTF-8 or with NUL bytes is left out and reported
    in ``problems``, as are the entries beyond the first 1000.
    """
    parsed: list[_Parsed] = []
    read: list[str] = []
    problems: list[str] = []
    for path in files.walk():
        directory, _, name = path.rpartition("/")
        if directory not in BLS_DIRS or not name.endswith(".conf"):
            continue
        if len(parsed) >= MAX_BLS_ENTRIES:
            problems.append(f"{directory}: more than {MAX_BLS_ENTRIES} entries; the rest not read")
            break
        try:
            data = files.read(path, limit=MAX_ENTRY_BYTES)
            if data is None:
                continue
            entry, keys = parse_bls_entry(data, path, variables)
        except FormatError as exc:
            problems.append(f"{exc.message}; entry not read")
            continue
        read.append(path)
        parsed.append(
            _Parsed(
                path,
                keys.get("sort-key"),
                keys.get("machine-id", ""),
                keys.get("version", ""),
                entry,
            )
        )
    parsed.sort(key=functools.cmp_to_key(_order))
    return BlsResult(
        entries=tuple(p.entry for p in parsed if isinstance(p.entry, BootEntry)),
        dropped=tuple(p.entry for p in parsed if isinstance(p.entry, DroppedEntry)),
        files_read=tuple(read),
        problems=tuple(problems),
    )
