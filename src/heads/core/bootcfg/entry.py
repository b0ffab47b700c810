"""The boot-entry model and Heads' one-line interchange format.

Every boot-loader parser (GRUB, BLS, SYSLINUX) yields :class:`BootEntry`.  An entry serialises to
the line format shell Heads writes into ``kexec_default.N.txt`` and ``kexec_menu.txt``
(docs/heads-compat.md §Boot entries; produced by ``kexec-parse-boot.sh``, consumed by
``kexec-boot.sh``)::

    <name>|elf|kernel <path>[|initrd <path>]...[|append <cmdline>]
    <name>|xen|kernel <xen path> <xen args>|module <vmlinuz> <args>|module <initrd>

Paths are relative to the boot directory and start with ``/``.  The line cannot carry a ``|``
or a newline anywhere, nor whitespace inside a path, so the model refuses them: parsers check
with :func:`path_problem` / :func:`text_problem` first and report entries they cannot express.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from heads.errors import FormatError

__all__ = [
    "MAX_LINE_BYTES",
    "BootEntry",
    "DroppedEntry",
    "EntryKind",
    "EntrySource",
    "MultibootModule",
    "parse_entry_line",
    "path_problem",
    "text_problem",
]

MAX_LINE_BYTES: Final = 64 * 1024
_FORBIDDEN_TEXT: Final = frozenset("|\n\r\0")


class EntryKind(Enum):
    """How kexec loads the entry (the ``kexectype`` field)."""

    ELF = "elf"  # a Linux bzImage/ELF kernel + initrds + command line
    XEN = "xen"  # a multiboot2 hypervisor; modules carry dom0's kernel and initrd
    MULTIBOOT = "multiboot"  # accepted by kexec-boot.sh, never produced by Heads' parsers


@dataclass(frozen=True, slots=True)
class MultibootModule:
    """One ``module``/``module2`` of a multiboot entry: a file and its argument string."""

    path: str
    args: str = ""

    def __post_init__(self) -> None:
        _check_path(self.path)
        _check_text(self.args, "module arguments")


@dataclass(frozen=True, slots=True)
class EntrySource:
    """Where an entry was defined (for messages and ``--json``)."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class DroppedEntry:
    """A menu entry that cannot be booted with kexec (or is missing files), and why."""

    title: str
    source: EntrySource
    reason: str


@dataclass(frozen=True, slots=True)
class BootEntry:
    """One bootable choice.

    Attributes:
        title: the entry's name as the menu shows it (``|`` removed, as Heads does).
        kind: elf, xen or multiboot.
        kernel: the kernel (elf) or hypervisor (xen/multiboot) path, relative to the boot dir.
        initrds: initrd paths in load order (elf only; several are concatenated).
        cmdline: the kernel command line (elf) or the hypervisor's arguments (xen/multiboot).
        modules: multiboot modules (xen: dom0 kernel with its command line, then its initrd).
        submenu: the submenu titles enclosing the entry, outermost first.
        source: the configuration file and line that defined it.
        notes: facts about how the entry was derived (conditions that depend on the machine,
            variables whose value could not be known, a hidden entry); empty when nothing is
            worth saying.
        hidden: the boot loader keeps the entry out of its menu (GRUB's ``hiddenentry``: it is
            chosen by hotkey or id).  Listed like the others, and marked.
    """

    title: str
    kind: EntryKind
    kernel: str
    initrds: tuple[str, ...] = ()
    cmdline: str = ""
    modules: tuple[MultibootModule, ...] = ()
    # Where the entry sits and why it looks as it does are not part of what it boots (nor of
    # its line): equality is the line's content.
    submenu: tuple[str, ...] = field(default=(), compare=False)
    source: EntrySource | None = field(default=None, compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)
    hidden: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        _check_text(self.title, "title")
        _check_path(self.kernel)
        for path in self.initrds:
            _check_path(path)
        _check_text(self.cmdline, "command line")
        if self.kind is EntryKind.ELF and self.modules:
            raise ValueError("an elf entry has no multiboot modules")
        if self.kind is not EntryKind.ELF and self.initrds:
            raise ValueError("a multiboot entry carries its initrd as a module")

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the entry loads, in the order kexec-boot.sh -f lists them."""
        return (self.kernel, *self.initrds, *(m.path for m in self.modules))

    @property
    def display_title(self) -> str:
        """The title with its submenu path (``Advanced options > Ubuntu, with Linux 6.1``)."""
        return " > ".join((*self.submenu, self.title))

    def to_line(self) -> str:
        """Heads' one-line format, without the trailing newline."""
        fields = [self.title, self.kind.value]
        if self.kind is EntryKind.ELF:
            fields.append(f"kernel {self.kernel}")
            fields.extend(f"initrd {path}" for path in self.initrds)
            if self.cmdline:
                fields.append(f"append {self.cmdline}")
        else:
            fields.append(_join("kernel", self.kernel, self.cmdline))
            fields.extend(_join("module", m.path, m.args) for m in self.modules)
        return "|".join(fields)


def _join(key: str, path: str, args: str) -> str:
    return f"{key} {path} {args}" if args else f"{key} {path}"


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot go in a one-line field, or ``None`` when it can."""
    bad = _FORBIDDEN_TEXT.intersection(text)
    if bad:
        return "contains " + ", ".join(sorted(repr(c) for c in bad))
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a boot-entry path, or ``None`` when it can."""
    if not path.startswith("/"):
        return "is not an absolute path inside the boot directory"
    if any(c.isspace() or ord(c) < 0x20 or c in "|,\x7f" for c in path):
        # ',' separates initrds in one field of the line format (kexec-parse-boot.sh).
        return "contains whitespace, '|', ',' or a control character"
    if any(part == ".." for part in path.split("/")):
        return "contains '..'"
    return None


def _check_text(text: str, what: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(f"{what} {problem}")


def _check_path(path: str) -> None:
    problem = path_problem(path)
    if problem is not None:
        raise ValueError(f"path {path!r} {problem}")


def parse_entry_line(
    line: str, *, source: str = "boot entry", line_no: int | None = None
) -> BootEntry:
    """Parse one line of Heads' boot-entry format (a trailing newline is allowed).

    Args:
        line: the line.
        source: the file it came from, for error messages.
        line_no: its 1-based line number, for error messages.

    Raises:
        FormatError: the line is not in the format (named by ``source`` and ``line_no``).
    """

    def fail(reason: str) -> FormatError:
        return FormatError(reason, source=source, line=line_no)

    if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        raise fail(f"boot entry longer than {MAX_LINE_BYTES} bytes")
    text = line.removesuffix("\n")
    if "\n" in text or "\r" in text or "\0" in text:
        raise fail("boot entry contains a newline, carriage return or NUL")
    fields = text.split("|")
    if len(fields) < 3:
        raise fail("boot entry needs at least name|kind|kernel")
    title, kind_text, *rest = fields
    try:
        kind = EntryKind(kind_text)
    except ValueError:
        raise fail(f"unknown entry kind {kind_text!r} (expected elf, xen or multiboot)") from None
    kernel: str | None = None
    kernel_args = ""
    initrds: list[str] = []
    modules: list[MultibootModule] = []
    append: str | None = None
    for field_text in rest:
        key, _, value = field_text.partition(" ")
        if key == "kernel":
            if kernel is not None:
                raise fail("boot entry has two kernel fields")
            kernel, _, kernel_args = value.partition(" ")
        elif key == "initrd":
            if kind is not EntryKind.ELF:
                raise fail(f"{kind.value} entry has an initrd field (use module)")
            # kexec-parse-boot.sh may write a comma-separated list of initrds in one field.
            initrds.extend(p for p in value.replace(",", " ").split(" ") if p)
        elif key == "module":
            if kind is EntryKind.ELF:
                raise fail("elf entry has a module field")
            mpath, _, margs = value.partition(" ")
            modules.append(_module(mpath, margs, fail))
        elif key == "append":
            if append is not None:
                raise fail("boot entry has two append fields")
            append = value
        else:
            raise fail(f"unknown field {key!r}")
    if kernel is None or not kernel:
        raise fail("boot entry has no kernel")
    if kind is EntryKind.ELF:
        if kernel_args:
            raise fail("elf kernel field has arguments (they belong in append)")
        cmdline = append or ""
    else:
        if append is not None:
            raise fail(f"{kind.value} entry has an append field")
        cmdline = kernel_args
    for path in (kernel, *initrds):
        problem = path_problem(path)
        if problem is not None:
            raise fail(f"path {path!r} {problem}")
    return BootEntry(
        title=title,
        kind=kind,
        kernel=kernel,
        initrds=tuple(initrds),
        cmdline=cmdline,
        modules=tuple(modules),
    )


def _module(path: str, args: str, fail: Callable[[str], FormatError]) -> MultibootModule:
    problem = path_problem(path)
    if problem is not None:
        raise fail(f"module path {path!r} {problem}")
    return MultibootModule(path, args)
