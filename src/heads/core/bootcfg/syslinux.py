"""SYSLINUX / ISOLINUX / EXTLINUX configuration parser.

Port of the syslinux part of Heads' ``kexec-parse-boot.sh`` (docs/heads-compat.md §Boot
configuration parsers), after the SYSLINUX wiki "Config" page: keywords are case-insensitive;
``label`` starts an entry; ``menu label`` names it (``^`` hotkey markers removed);
``kernel``/``linux`` give the image (``*.c32`` modules are skipped, except ``mboot.c32``: Xen,
its ``append`` split on ``---`` into the hypervisor's arguments and the modules); ``append``
gives the command line, whose ``initrd=`` is taken out as the initrd when there is no ``initrd``
line; ``include`` and ``menu include`` read another file (bounded depth); ``menu begin``/``menu
end`` nest submenus.  Relative paths are relative to the configuration's directory.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Final

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

__all__ = ["MAX_INCLUDE_DEPTH", "SyslinuxResult", "parse_syslinux"]

MAX_INCLUDE_DEPTH: Final = 8
MAX_LABELS: Final = 10_000
MAX_READS: Final = 64  # files read per parse, counting repeats: bounds include fan-out


@dataclass(frozen=True, slots=True)
class SyslinuxResult:
    entries: tuple[BootEntry, ...]
    dropped: tuple[DroppedEntry, ...]
    default_label: str | None
    files_read: tuple[str, ...]
    problems: tuple[str, ...] = ()


@dataclass(slots=True)
class _Label:
    name: str
    source: EntrySource
    cfg_dir: str
    submenu: tuple[str, ...]
    menu_label: str | None = None
    kernel: str | None = None
    append: str = ""
    initrd: str | None = None
    other: str | None = None  # localboot / config / com32 module: not bootable with kexec


@dataclass(slots=True)
class _State:
    files: BootFiles
    labels: list[_Label] = field(default_factory=list)
    menus: list[str] = field(default_factory=list)
    default: str | None = None
    reads: int = 0
    files_read: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)  # the files being read, outermost first


def _include(state: _State, path: str, depth: int, where: EntrySource) -> None:
    """Read an included file; a loop, a chain too deep or a broken file is reported and
    costs nothing else: the labels read before it stay."""
    what = f"{where.file}:{where.line}: {path}"
    if path in state.stack:
        chain = " -> ".join([*state.stack, path])
        state.problems.append(f"{what} is already being read (include loop {chain}); not read")
        return
    if depth > MAX_INCLUDE_DEPTH:
        state.problems.append(f"{what} would be included more than {MAX_INCLUDE_DEPTH} deep")
        return
    if state.reads >= MAX_READS:
        state.problems.append(f"{what}: more than {MAX_READS} files read; not read")
        return
    try:
        _run(state, path, depth, where)
    except FormatError as exc:
        state.problems.append(f"{exc.message}; not read")


def _run(state: _State, path: str, depth: int, where: EntrySource | None) -> None:
    state.reads += 1
    data = state.files.read(path)
    if data is None:
        if where is None:
            raise FormatError("no such file", source=path)
        state.problems.append(f"{where.file}:{where.line}: {path} does not exist; not read")
        return
    state.files_read.append(path)
    text = decode_config(data, path)
    state.stack.append(path)
    try:
        _lines(state, path, text, depth)
    finally:
        state.stack.pop()


def _lines(state: _State, path: str, text: str, depth: int) -> None:
    cfg_dir = posixpath.dirname(path)
    current: _Label | None = None
    in_help = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if in_help:
            in_help = line.lower() != "endtext"
            continue
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ") if " " in line else line.partition("\t")
        keyword, rest = word.lower(), rest.strip()
        if keyword == "menu":
            sub, _, value = rest.partition(" ")
            sub, value = sub.lower(), value.strip()
            if sub == "label" and current is not None:
                current.menu_label = value.replace("^", "")
            elif sub == "begin":
                state.menus.append(value.replace("^", ""))
                current = None
            elif sub == "title" and state.menus:
                # Inside `menu begin TAG`, the title is what the user sees.
                state.menus[-1] = value
            elif sub == "end":
                if state.menus:
                    state.menus.pop()
                current = None
            elif sub == "include":
                target = _resolve(value.split(" ")[0], cfg_dir)
                if target is not None:
                    _include(state, target, depth + 1, EntrySource(path, number))
            continue
        if keyword == "label":
            if len(state.labels) >= MAX_LABELS:
                raise FormatError(f"more than {MAX_LABELS} labels", source=path, line=number)
            current = _Label(rest, EntrySource(path, number), cfg_dir, tuple(state.menus))
            state.labels.append(current)
        elif keyword == "include":
            target = _resolve(rest.split(" ")[0], cfg_dir)
            if target is not None:
                _include(state, target, depth + 1, EntrySource(path, number))
        elif keyword == "default":
            state.default = rest
        elif keyword == "text" and rest.lower() == "help":
            in_help = True
        elif current is None:
            continue
        elif keyword in ("kernel", "linux"):
            current.kernel = rest
        elif keyword == "append":
            current.append = rest
        elif keyword == "initrd":
            current.initrd = rest
        elif keyword in (
            "localboot",
            "config",
            "com32",
            "boot",
            "bss",
            "pxe",
            "fdimage",
            "comboot",
        ):
            current.other = keyword


def _resolve(path: str, cfg_dir: str) -> str | None:
    return normalize_path(path, cfg_dir) if path else None


def _build(label: _Label) -> BootEntry | DroppedEntry:
    title = (label.menu_label if label.menu_label is not None else label.name).replace("|", "")

    def drop(reason: str) -> DroppedEntry:
        return DroppedEntry(title, label.source, reason)

    if text_problem(title) is not None:
        return drop(f"title {text_problem(title)}")
    if label.kernel is None:
        if label.other is not None:
            return drop(f"uses {label.other}, which kexec cannot do")
        return drop("no kernel")
    kernel_word, _, kernel_args = label.kernel.partition(" ")

    def path(raw: str, what: str) -> str | DroppedEntry:
        norm = _resolve(raw, label.cfg_dir)
        if norm is None:
            return drop(f"{what} {raw!r} climbs out of the boot directory")
        problem = path_problem(norm)
        return drop(f"{what} {raw!r} {problem}") if problem is not None else norm

    append = " ".join(f"{kernel_args} {label.append}".split())
    if text_problem(append) is not None:
        return drop(f"append {text_problem(append)}")
    if kernel_word.lower().endswith(".c32"):
        if posixpath.basename(kernel_word.lower()) != "mboot.c32":
            return drop(f"runs the SYSLINUX module {kernel_word}")
        # mboot.c32: "xen.gz args --- vmlinuz args --- initrd" (SYSLINUX mboot docs).
        parts = [p.strip() for p in f" {append} ".split(" --- ")]
        xen_word, _, xen_args = parts[0].partition(" ")
        xen = path(xen_word, "hypervisor")
        if isinstance(xen, DroppedEntry):
            return xen
        modules: list[MultibootModule] = []
        for part in parts[1:]:
            mword, _, margs = part.partition(" ")
            if not mword:
                continue
            mpath = path(mword, "module")
            if isinstance(mpath, DroppedEntry):
                return mpath
            modules.append(MultibootModule(mpath, margs.strip()))
        return BootEntry(
            title=title,
            kind=EntryKind.XEN,
            kernel=xen,
            cmdline=xen_args.strip(),
            modules=tuple(modules),
            submenu=label.submenu,
            source=label.source,
        )
    kernel = path(kernel_word, "kernel")
    if isinstance(kernel, DroppedEntry):
        return kernel
    words = append.split()
    initrd_spec = label.initrd
    if initrd_spec is None:
        found = [w for w in words if w.startswith("initrd=")]
        if found:
            initrd_spec = found[-1].removeprefix("initrd=")
    # The kernel gets its initrd from kexec, so `initrd=` leaves the command line (as Heads).
    words = [w for w in words if not w.startswith("initrd=")]
    initrds: list[str] = []
    for raw in (initrd_spec or "").replace(",", " ").split():
        resolved = path(raw, "initrd")
        if isinstance(resolved, DroppedEntry):
            return resolved
        initrds.append(resolved)
    return BootEntry(
        title=title,
        kind=EntryKind.ELF,
        kernel=kernel,
        initrds=tuple(initrds),
        cmdline=" ".join(words),
        submenu=label.submenu,
        source=label.source,
    )


def parse_syslinux(files: BootFiles, path: str) -> SyslinuxResult:
    """Parse the SYSLINUX-family configuration ``path`` (and what it includes).

    An included file that is missing, broken, already being read (a loop) or nested deeper
    than 8 is reported in ``problems``; the labels read before it stay.

    Raises:
        FormatError: the file itself is missing, too large, not UTF-8 or has NUL bytes, or
            holds more than 10000 labels; the message names the file and line.
    """
    state = _State(files)
    _run(state, path, 0, None)
    entries: list[BootEntry] = []
    dropped: list[DroppedEntry] = []
    for label in state.labels:
        built = _build(label)
        (entries if isinstance(built, BootEntry) else dropped).append(built)  # type: ignore[arg-type]  # the list matches the type just tested
    return SyslinuxResult(
        entries=tuple(entries),
        dropped=tuple(dropped),
        default_label=state.default,
        files_read=tuple(dict.fromkeys(state.files_read)),
        problems=tuple(state.problems),
    )
