"""GRUB Legacy (0.9x) ``grub.conf`` / ``menu.lst``.

GRUB Legacy manual, "Configuration" and "Command-line and menu entry commands": ``title``
starts an entry, which runs to the next ``title``; ``kernel FILE ARGS``, ``initrd FILE``,
``module FILE ARGS`` (a ``kernel`` followed by ``module`` lines is a multiboot kernel: Xen);
``root``/``rootnoverify`` choose the device (``(hd0,0)`` prefixes are dropped, as Heads does);
``chainloader`` entries cannot be kexec-ed.  ``#`` comments; keywords are case-sensitive.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Final

from heads.core.bootcfg.cmdline import strip_separator
from heads.core.bootcfg.entry import (
    BootEntry,
    DroppedEntry,
    EntryKind,
    EntrySource,
    MultibootModule,
    path_problem,
    text_problem,
)
from heads.core.bootcfg.grub_lexer import decode_config
from heads.core.bootcfg.tree import BootFiles, normalize_path
from heads.errors import FormatError

__all__ = ["MAX_TITLES", "LegacyResult", "is_legacy_config", "parse_grub_legacy"]

MAX_TITLES: Final = 10_000
_DEVICE: Final = re.compile(r"^\((?:hd|cd|fd)\d+(?:,\d+)?\)")


@dataclass(frozen=True, slots=True)
class LegacyResult:
    entries: tuple[BootEntry, ...]
    dropped: tuple[DroppedEntry, ...]


@dataclass(slots=True)
class _Title:
    title: str
    source: EntrySource
    kernel: tuple[str, str] | None = None
    initrds: list[str] = field(default_factory=list)
    modules: list[tuple[str, str]] = field(default_factory=list)
    other: str | None = None


def is_legacy_config(text: str) -> bool:
    """Whether ``text`` is GRUB Legacy syntax (``title`` lines and no ``menuentry``)."""
    lines = [ln.strip() for ln in text.split("\n")]
    has_title = any(ln.startswith(("title ", "title\t")) for ln in lines)
    return has_title and not any(ln.startswith("menuentry") for ln in lines)


def _build(item: _Title, cfg_dir: str) -> BootEntry | DroppedEntry:
    title = item.title.replace("|", "")

    def drop(reason: str) -> DroppedEntry:
        return DroppedEntry(title, item.source, reason)

    if text_problem(title) is not None:
        return drop(f"title {text_problem(title)}")
    if item.kernel is None:
        return drop(f"uses {item.other}, which kexec cannot do" if item.other else "no kernel")

    def path(raw: str, what: str) -> str | DroppedEntry:
        norm = normalize_path(_DEVICE.sub("", raw) or "/", cfg_dir)
        problem = "climbs out of the boot directory" if norm is None else path_problem(norm)
        if problem is not None or norm is None:
            return drop(f"{what} {raw!r} {problem}")
        return norm

    kernel = path(item.kernel[0], "kernel")
    if isinstance(kernel, DroppedEntry):
        return kernel
    args = " ".join(item.kernel[1].split())
    if text_problem(args) is not None:
        return drop(f"kernel arguments {text_problem(args)}")
    if item.modules:
        modules: list[MultibootModule] = []
        for raw, margs in item.modules:
            mpath = path(raw, "module")
            if isinstance(mpath, DroppedEntry):
                return mpath
            if text_problem(margs) is not None:
                return drop(f"module arguments {text_problem(margs)}")
            modules.append(MultibootModule(mpath, " ".join(margs.split())))
        return BootEntry(
            title, EntryKind.XEN, kernel, cmdline=args, modules=tuple(modules), source=item.source
        )
    initrds: list[str] = []
    for raw in item.initrds:
        resolved = path(raw, "initrd")
        if isinstance(resolved, DroppedEntry):
            return resolved
        initrds.append(resolved)
    return BootEntry(
        title,
        EntryKind.ELF,
        kernel,
        initrds=tuple(initrds),
        cmdline=strip_separator(args),
        source=item.source,
    )


def parse_grub_legacy(files: BootFiles, path: str) -> LegacyResult:
    """Entries of the GRUB Legacy configuration ``path``.

    Raises:
        FormatError: missing, too large, NUL bytes or invalid UTF-8, or more than 10000
            titles (naming the file and line).
    """
    data = files.read(path)
    if data is None:
        raise FormatError("no such file", source=path)
    text = decode_config(data, path)
    titles: list[_Title] = []
    current: _Title | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.replace("\t", " ").partition(" ")
        rest = rest.strip()
        if keyword == "title":
            if len(titles) >= MAX_TITLES:
                raise FormatError(f"more than {MAX_TITLES} titles", source=path, line=number)
            current = _Title(rest, EntrySource(path, number))
            titles.append(current)
        elif current is None:
            continue
        elif keyword == "kernel":
            words = [w for w in rest.split(" ") if w]
            while words and words[0].startswith("--"):  # kernel --type=netbsd ...
                words.pop(0)
            if words:
                current.kernel = (words[0], " ".join(words[1:]))
        elif keyword == "initrd":
            current.initrds.extend(w for w in rest.split(" ") if w)
        elif keyword in ("module", "modulenounzip"):
            mpath, _, margs = rest.partition(" ")
            current.modules.append((mpath, margs))
        elif keyword in ("chainloader", "halt", "reboot", "configfile"):
            current.other = keyword
    cfg_dir = posixpath.dirname(path)
    built = [_build(t, cfg_dir) for t in titles]
    return LegacyResult(
        entries=tuple(b for b in built if isinstance(b, BootEntry)),
        dropped=tuple(b for b in built if isinstance(b, DroppedEntry)),
    )
