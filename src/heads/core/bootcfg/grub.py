"""GRUB configuration parser and safe evaluator (``grub.cfg``, ``loopback.cfg``, ``grub.conf``).

Port of what ``kexec-parse-boot.sh`` extracts (docs/heads-compat.md §Boot configuration
parsers), done properly: the script is tokenized (:mod:`.grub_lexer`), parsed into statements,
and *interpreted* over a small model of GRUB — variables, ``if``/``elif``/``else`` with
``[``/``test``, functions, ``source``/``configfile``, ``load_env``, ``search``, ``blscfg`` —
without ever running a shell.  Menu entries are evaluated the way GRUB does when one is chosen:
their body runs against the variables as they stand at the end of the configuration.

Conditions that depend on the machine (``loadfont``, ``hwmatch``, a variable set by
``probe``...) cannot be decided here.  Both branches are then taken, every entry defined under
such a condition carries a note saying so, and variables assigned there are marked uncertain
(entries whose command line uses them say so too).  Unknown commands are skipped and counted.

One construct never costs the other entries.  GRUB reads a configuration one command at a
time and goes on after one it cannot parse or that fails (grub-core/normal/main.c,
grub-core/script/execute.c); so does this parser: a syntax error drops its command (and the
rest of its line), an unknown block command (``foo ARGS { ... }``) is skipped with its block,
an include loop is not followed, a recursion or an expansion beyond the bounds fails its
command; each is recorded in ``problems`` and everything else is kept.  ``hiddenentry``
(GRUB 2.12: an entry kept out of the menu, chosen by hotkey) is listed, marked ``hidden``.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from heads.core.bootcfg import bls
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
from heads.core.bootcfg.grub_lexer import Literal, Token, TokenKind, decode_config, tokenize
from heads.core.bootcfg.tree import BootFiles, normalize_path
from heads.errors import FormatError

__all__ = [
    "BOOT_DEVICE",
    "HIDDEN_NOTE",
    "MAX_CALL_DEPTH",
    "MAX_EVAL_DEPTH",
    "MAX_INCLUDE_DEPTH",
    "MAX_NESTING",
    "MAX_STEPS",
    "DroppedEntry",
    "GrubContext",
    "GrubResult",
    "parse_grub",
]

BOOT_DEVICE: Final = "heads-boot"  # the device name we give the boot directory's filesystem
ISO_DEVICE: Final = "heads-iso-device"  # the device holding the ISO file (ISO boot)
MAX_NESTING: Final = 64
MAX_INCLUDE_DEPTH: Final = 8
MAX_CALL_DEPTH: Final = 32
MAX_STEPS: Final = 200_000
MAX_VALUE_CHARS: Final = 64 * 1024
MAX_SOURCES: Final = 64  # source/configfile runs per parse, counting repeats (fan-out bound)
# Blocks, function calls and sourced files nested inside each other, at run time (each level
# costs a few Python frames: this keeps the interpreter far from Python's recursion limit).
MAX_EVAL_DEPTH: Final = 64
MAX_PROBLEMS: Final = 100
_MACHINE: Final = "depends on the machine"
HIDDEN_NOTE: Final = "hidden from GRUB's menu (hiddenentry)"
_ASSIGNMENT: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_DEVICE_PREFIX: Final = re.compile(r"\(([^()]*)\)")
_GRUBENV_HEADER: Final = "# GRUB Environment Block"

# Commands that cannot change which entries exist or what they boot.
_NO_EFFECT: Final = frozenset(
    {
        "insmod", "export", "save_env", "terminal_output", "terminal_input", "terminal",
        "loadfont", "font", "play", "clear", "echo", "background_image", "background_color",
        "sleep", "gfxterm", "set_background", "keystatus", "cutmem", "badram", "serial",
        "videoinfo", "lsfonts", "true", "false", "[", "test", "rmmod", "unset_env",
        "timeout", "default", "fallback", "hiddenmenu", "title", "splashimage", "color",
        "gfxpayload", "password", "password_pbkdf2", "tr", "regexp", "smbios",
    }
)  # fmt: skip
_LINUX: Final = frozenset({"linux", "linuxefi", "linux16", "kernel"})
_INITRD: Final = frozenset({"initrd", "initrdefi", "initrd16"})
_MULTIBOOT: Final = frozenset({"multiboot", "multiboot2"})
_MODULE: Final = frozenset({"module", "module2"})
_NOT_KEXECABLE: Final = frozenset(
    {"chainloader", "fwsetup", "halt", "reboot", "exit", "appleloader"}
)
_KEYWORDS_END: Final = frozenset({"then", "elif", "else", "fi", "do", "done"})


@dataclass(frozen=True, slots=True)
class GrubContext:
    """What the parser knows about the machine and the media.

    Attributes:
        platform: GRUB's ``grub_platform``.  ``pc`` by default: kexec starts the kernel
            through its legacy boot protocol, not as an EFI application.
        cpu: ``grub_cpu``.
        iso_path: the ISO's path on its device when parsing a ``loopback.cfg`` (ISO boot).
        iso_device_uuid: filesystem UUID of the device holding the ISO.
        boot_uuid: filesystem UUID of the boot directory's partition, when known.
        boot_label: its filesystem label, when known.
    """

    platform: str = "pc"
    cpu: str = "x86_64"
    iso_path: str | None = None
    iso_device_uuid: str | None = None
    boot_uuid: str | None = None
    boot_label: str | None = None


@dataclass(frozen=True, slots=True)
class GrubResult:
    """Entries in menu order, entries dropped, commands skipped, files read."""

    entries: tuple[BootEntry, ...]
    dropped: tuple[DroppedEntry, ...]
    skipped_commands: Mapping[str, int]
    files_read: tuple[str, ...]
    problems: tuple[str, ...] = ()


# --- syntax tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Command:
    """A command; ``block`` is the ``{ ... }`` GRUB passes to a block command (``foo x { }``)."""

    words: tuple[Token, ...]
    line: int
    file: str
    block: tuple[_Node, ...] | None = None


@dataclass(frozen=True, slots=True)
class _If:
    branches: tuple[tuple[tuple[_Node, ...], tuple[_Node, ...]], ...]
    else_body: tuple[_Node, ...] | None
    line: int


@dataclass(frozen=True, slots=True)
class _Function:
    name: str
    body: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Menu:
    submenu: bool
    args: tuple[Token, ...]
    body: tuple[_Node, ...]
    line: int
    file: str
    hidden: bool = False  # hiddenentry: kept out of GRUB's menu


@dataclass(frozen=True, slots=True)
class _Loop:
    keyword: str
    line: int


@dataclass(frozen=True, slots=True)
class _Broken:
    """A top-level command GRUB cannot parse: skipped, reported when the script runs."""

    message: str
    line: int
    file: str


_Node = _Command | _If | _Function | _Menu | _Loop | _Broken


class _SyntaxError(FormatError):
    """The statement being parsed is broken; parsing goes on at token ``resume``."""

    def __init__(self, reason: str, *, source: str, line: int, resume: int) -> None:
        super().__init__(reason, source=source, line=line)
        self.resume = resume


class _Parser:
    def __init__(self, tokens: list[Token], source: str) -> None:
        self.tokens = tokens
        self.source = source
        self.pos = 0

    def fail(self, reason: str, line: int, *, resume: int | None = None) -> _SyntaxError:
        """A syntax error; parsing resumes at ``resume``, else after the current line."""
        if resume is None:
            resume = self.after_line(self.pos)
        return _SyntaxError(reason, source=self.source, line=line, resume=resume)

    def after_line(self, pos: int) -> int:
        """The first token after the line of token ``pos`` (GRUB drops the rest of a line)."""
        if pos >= len(self.tokens):
            return len(self.tokens)
        line = self.tokens[pos].line
        while pos < len(self.tokens) and self.tokens[pos].line <= line:
            pos += 1
        return pos

    def peek(self) -> Token | None:
        if self.pos >= len(self.tokens):
            return None
        tok = self.tokens[self.pos]
        if tok.kind is TokenKind.ERROR:
            raise self.fail(tok.error, tok.line)
        return tok

    def skip_separators(self) -> None:
        while (tok := self.peek()) is not None and tok.kind is TokenKind.SEPARATOR:
            self.pos += 1

    def script(self) -> tuple[_Node, ...]:
        """Every top-level statement; one GRUB cannot parse costs only itself (and its line).

        GRUB's ``normal`` module reads a configuration one command at a time and goes on after
        a command it cannot parse (grub-core/normal/main.c, ``read_config_file``): so do we.
        """
        nodes: list[_Node] = []
        while True:
            start = self.pos
            try:
                self.skip_separators()
                if self.peek() is None:
                    return tuple(nodes)
                nodes.append(self.statement(0, frozenset()))
            except _SyntaxError as exc:
                nodes.append(_Broken(exc.message, exc.line or 0, self.source))
                self.pos = max(exc.resume, start + 1)

    def block(
        self, ends: frozenset[str], depth: int, opener: str, line: int
    ) -> tuple[str, tuple[_Node, ...]]:
        """Statements up to one of ``ends`` (consumed, returned)."""
        if depth > MAX_NESTING:
            raise self.fail(f"blocks nested deeper than {MAX_NESTING}", line)
        nodes: list[_Node] = []
        while True:
            self.skip_separators()
            tok = self.peek()
            if tok is None:
                raise self.fail(
                    f"unterminated {opener} (no {'/'.join(sorted(ends))})",
                    line,
                    resume=len(self.tokens),
                )
            bare = tok.bare
            if bare is not None and bare in ends:
                self.pos += 1
                return bare, tuple(nodes)
            nodes.append(self.statement(depth, ends))

    def statement(self, depth: int, ends: frozenset[str]) -> _Node:
        tok = self.tokens[self.pos]
        bare = tok.bare
        if bare == "if":
            return self.if_statement(depth)
        if bare == "function":
            return self.function(depth)
        if bare in ("menuentry", "submenu", "hiddenentry"):
            return self.menu(depth, submenu=bare == "submenu", hidden=bare == "hiddenentry")
        if bare in ("for", "while", "until"):
            return self.loop(bare, depth)
        if bare in _KEYWORDS_END or bare in ("{", "}"):
            raise self.fail(f"unexpected {bare!r}", tok.line)
        words: list[Token] = []
        while (cur := self.peek()) is not None and cur.kind is TokenKind.WORD:
            # `... fi; }` and `{ linux /a }`: a closing brace ends the enclosing block.
            if cur.bare == "}" and "}" in ends and words:
                break
            self.pos += 1
            if cur.bare == "{" and words:
                # grub-core/script/parser.y: `grubcmd: word arguments0 block0`; any command
                # may take a block (GRUB_COMMAND_FLAG_BLOCKS); what it does with it is its own.
                name = words[0].source_text()
                _, body = self.block(frozenset({"}"}), depth + 1, f"{name} block", tok.line)
                return _Command(tuple(words), tok.line, self.source, body)
            words.append(cur)
        return _Command(tuple(words), tok.line, self.source)

    def if_statement(self, depth: int) -> _If:
        line = self.tokens[self.pos].line
        self.pos += 1
        branches: list[tuple[tuple[_Node, ...], tuple[_Node, ...]]] = []
        else_body: tuple[_Node, ...] | None = None
        while True:
            _, cond = self.block(frozenset({"then"}), depth + 1, "if", line)
            end, body = self.block(frozenset({"elif", "else", "fi"}), depth + 1, "if", line)
            branches.append((cond, body))
            if end == "elif":
                continue
            if end == "else":
                _, else_body = self.block(frozenset({"fi"}), depth + 1, "if", line)
            return _If(tuple(branches), else_body, line)

    def expect_open_brace(self, what: str, line: int) -> None:
        before = self.pos
        self.skip_separators()
        tok = self.peek()
        if tok is None or tok.bare != "{":
            raise self.fail(f"{what} without '{{'", line, resume=before)
        self.pos += 1

    def function(self, depth: int) -> _Function:
        line = self.tokens[self.pos].line
        self.pos += 1
        tok = self.peek()
        if tok is None or tok.kind is not TokenKind.WORD or tok.bare is None:
            raise self.fail("function without a name", line)
        self.pos += 1
        self.expect_open_brace(f"function {tok.bare}", line)
        _, body = self.block(frozenset({"}"}), depth + 1, f"function {tok.bare}", line)
        return _Function(tok.bare, body)

    def menu(self, depth: int, *, submenu: bool, hidden: bool) -> _Menu:
        line = self.tokens[self.pos].line
        what = "submenu" if submenu else "hiddenentry" if hidden else "menuentry"
        self.pos += 1
        args: list[Token] = []
        while (tok := self.peek()) is not None and tok.kind is TokenKind.WORD and tok.bare != "{":
            args.append(tok)
            self.pos += 1
        self.expect_open_brace(what, line)
        _, body = self.block(frozenset({"}"}), depth + 1, what, line)
        return _Menu(submenu, tuple(args), body, line, self.source, hidden)

    def loop(self, keyword: str, depth: int) -> _Loop:
        line = self.tokens[self.pos].line
        self.pos += 1
        # Loops are skipped, but their extent must be found: nested loops end at their own done.
        nesting = 0
        at_start = True
        while (tok := self.peek()) is not None:
            self.pos += 1
            if tok.kind is TokenKind.SEPARATOR:
                at_start = True
                continue
            if at_start and tok.bare in ("for", "while", "until"):
                nesting += 1
                if nesting > MAX_NESTING:
                    raise self.fail(f"loops nested deeper than {MAX_NESTING}", tok.line)
            elif at_start and tok.bare == "done":
                if nesting == 0:
                    return _Loop(keyword, line)
                nesting -= 1
            at_start = tok.bare in ("do", "then", "else")
        raise self.fail(f"unterminated {keyword} (no done)", line, resume=len(self.tokens))


def _parse_script(data: bytes, source: str) -> tuple[_Node, ...]:
    text = decode_config(data, source)
    return _Parser(tokenize(text, source, recover=True), source).script()


# --- interpreter ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    title: str
    submenu: tuple[str, ...]
    body: tuple[_Node, ...]
    source: EntrySource
    notes: list[str]
    cfg_dir: str
    hidden: bool = False


@dataclass(slots=True)
class _EntryState:
    kernel: tuple[str, list[str]] | None = None
    initrds: list[str] = field(default_factory=list)
    multiboot: tuple[str, list[str]] | None = None
    modules: list[tuple[str, list[str]]] = field(default_factory=list)
    unbootable: str | None = None


class _ExhaustedError(FormatError):
    """The step budget is spent: nothing more runs (not a problem of one command)."""


class _Interp:
    def __init__(self, files: BootFiles, ctx: GrubContext) -> None:
        self.files = files
        self.ctx = ctx
        self.env: dict[str, str] = {
            "grub_platform": ctx.platform,
            "grub_cpu": ctx.cpu,
            "root": BOOT_DEVICE,
            "feature_menuentry_id": "y",
            "feature_default_font_path": "y",
            "feature_all_video_module": "y",
            "feature_platform_search_hint": "y",
            "feature_timeout_style": "y",
            "feature_nativedisk_cmd": "y",
            "feature_200_final": "y",
        }
        if ctx.iso_path is not None:
            self.env["iso_path"] = ctx.iso_path
        self.uncertain: set[str] = set()
        self.used_uncertain: set[str] = set()
        self.uncertain_hits = 0
        self.args_uncertain = False
        self.functions: dict[str, tuple[_Node, ...]] = {}
        self.bls_dropped: list[DroppedEntry] = []
        self.order: list[_Pending | BootEntry] = []
        self.cond_notes: list[str] = []
        self.unknown_depth = 0
        self.submenu: list[str] = []
        self.skipped: Counter[str] = Counter()
        self.files_read: list[str] = []
        self.include_stack: list[str] = []
        self.problems: list[str] = []
        self.more_problems = 0
        self.depth = 0
        self.steps = 0
        self.sources = 0
        self.parsed: dict[str, tuple[_Node, ...]] = {}
        self.call_depth = 0
        self.cfg_dir = "/"
        self.entry: _EntryState | None = None

    def problem(self, text: str) -> None:
        """Record something that was skipped (the first MAX_PROBLEMS; the rest are counted)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1

    # -- variables and expansion --

    def set_var(self, name: str, value: str, where: _Command) -> None:
        if len(value) > MAX_VALUE_CHARS:
            raise FormatError(
                f"variable {name} grows beyond {MAX_VALUE_CHARS} characters",
                source=where.file,
                line=where.line,
            )
        self.env[name] = value
        if self.unknown_depth:
            self.uncertain.add(name)
        else:
            self.uncertain.discard(name)

    def lookup(self, name: str, args: Sequence[str]) -> str:
        if name.isdigit():
            # `$1`...: a positional parameter; `$99999...` (any length) names none.
            digits = name.lstrip("0")
            index = int(digits) if 0 < len(digits) <= 9 else 0
            return args[index - 1] if 0 < index <= len(args) else ""
        if name == "#":
            return str(len(args))
        if name in ("@", "*"):
            return " ".join(args)
        if name == "?":
            return "0"
        if name in self.uncertain:
            self.used_uncertain.add(name)
            self.uncertain_hits += 1
        return self.env.get(name, "")

    def expand(self, tok: Token, args: Sequence[str]) -> list[str]:
        """The argument(s) a word becomes: unquoted expansions split on blanks (as GRUB).

        Raises:
            FormatError: the word expands to more than MAX_VALUE_CHARS characters.
        """
        fields: list[str] = []
        current: list[str] | None = None  # chunks of the field being built
        size = 0
        for part in tok.parts:
            text = part.text if isinstance(part, Literal) else self.lookup(part.name, args)
            size += len(text)
            if size > MAX_VALUE_CHARS:
                # `$a$a$a...` with a large $a: bounded like a variable's value.
                raise FormatError(
                    f"command expands to more than {MAX_VALUE_CHARS} characters",
                    source=self.current_file(),
                    line=tok.line,
                )
            if isinstance(part, Literal) or part.quoted:
                current = _join_chunks(current, text)
                continue
            pieces = text.split()
            if not pieces:
                continue
            if text[:1].isspace() and current is not None:
                fields.append("".join(current))
                current = None
            for i, piece in enumerate(pieces):
                if i > 0 and current is not None:
                    fields.append("".join(current))
                    current = None
                current = _join_chunks(current, piece)
            if text[-1:].isspace() and current is not None:
                fields.append("".join(current))
                current = None
        if current is not None:
            fields.append("".join(current))
        return fields

    def expand_all(self, words: Sequence[Token], args: Sequence[str]) -> list[str]:
        out: list[str] = []
        size = 0
        for tok in words:
            fields = self.expand(tok, args)
            size += sum(len(f) for f in fields)
            if size > MAX_VALUE_CHARS:
                raise FormatError(
                    f"command expands to more than {MAX_VALUE_CHARS} characters",
                    source=self.current_file(),
                    line=tok.line,
                )
            out.extend(fields)
        return out

    # -- paths --

    def resolve(self, path: str) -> tuple[str | None, str]:
        """A GRUB path as a path in the boot tree, or ``None`` and why not."""
        device = None
        match = _DEVICE_PREFIX.match(path)
        if match:
            device = match.group(1)
            path = path[match.end() :]
        if device not in (None, "", BOOT_DEVICE) and not _is_disk_name(device):
            return None, f"is on another device ({device})"
        if not path:
            return None, "names a device, not a file"
        norm = normalize_path(path, self.cfg_dir)
        if norm is None:
            return None, "climbs out of the boot directory"
        return norm, ""

    # -- execution --

    def step(self, where: _Node) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            file = where.file if isinstance(where, _Command | _Menu | _Broken) else None
            line = getattr(where, "line", None)
            raise _ExhaustedError(
                f"configuration runs more than {MAX_STEPS} commands (recursion?); "
                "the rest was not run",
                source=file or self.current_file(),
                line=line,
            )

    def current_file(self) -> str:
        return self.include_stack[-1] if self.include_stack else "grub.cfg"

    def run_block(self, nodes: Sequence[_Node], args: Sequence[str]) -> bool | None:
        if self.depth >= MAX_EVAL_DEPTH:
            raise FormatError(
                f"blocks, function calls and sourced files nested deeper than {MAX_EVAL_DEPTH}",
                source=self.current_file(),
                line=getattr(nodes[0], "line", None) if nodes else None,
            )
        self.depth += 1
        try:
            status: bool | None = True
            for node in nodes:
                status = self.run_node(node, args)
            return status
        finally:
            self.depth -= 1

    def run_node(self, node: _Node, args: Sequence[str]) -> bool | None:
        """Run one statement.  As in GRUB, a command that fails costs only itself: the
        problem is recorded and the next command runs (grub-core/script/execute.c runs every
        command of a list whatever the previous one returned)."""
        self.step(node)
        try:
            return self.run_statement(node, args)
        except _ExhaustedError:
            raise
        except FormatError as exc:
            self.problem(exc.message)
            return None

    def run_statement(self, node: _Node, args: Sequence[str]) -> bool | None:
        if isinstance(node, _Broken):
            self.problem(node.message)
            return None
        if isinstance(node, _Command):
            if node.block is not None:
                return self.run_block_command(node, args)
            return self.run_command(node, args)
        if isinstance(node, _If):
            self.run_if(node, args)
            return True
        if isinstance(node, _Function):
            self.functions[node.name] = node.body
            return True
        if isinstance(node, _Menu):
            self.run_menu(node, args)
            return True
        self.skipped[node.keyword] += 1
        return None

    def run_if(self, node: _If, args: Sequence[str]) -> None:
        undecided = False
        for cond, body in node.branches:
            status = self.run_block(cond, args)
            if not undecided and status is True:
                self.run_block(body, args)
                return
            if not undecided and status is False:
                continue
            undecided = True
            note = _condition_text(cond) if status is None else f"not {_earlier(node)}"
            self.run_uncertain(body, args, f"only if `{note}` ({_MACHINE})")
        if node.else_body is not None:
            if undecided:
                self.run_uncertain(
                    node.else_body, args, f"only if an earlier condition fails ({_MACHINE})"
                )
            else:
                self.run_block(node.else_body, args)

    def run_uncertain(self, body: Sequence[_Node], args: Sequence[str], note: str) -> None:
        self.cond_notes.append(note)
        self.unknown_depth += 1
        try:
            self.run_block(body, args)
        finally:
            self.unknown_depth -= 1
            self.cond_notes.pop()

    def run_block_command(self, node: _Command, args: Sequence[str]) -> bool | None:
        """``foo ARGS { ... }`` for a ``foo`` heads does not know: skipped and reported."""
        argv = self.expand_all(node.words, args)
        name = argv[0] if argv else node.words[0].source_text()
        self.skipped[name] += 1
        self.problem(
            f"{node.file}:{node.line}: block command {name!r} is not known; "
            "it and its block were skipped"
        )
        return None

    def run_menu(self, node: _Menu, args: Sequence[str]) -> None:
        before = set(self.used_uncertain)
        argv = self.expand_all(node.args, args)
        title = _menu_title(argv)
        notes = list(self.cond_notes)
        for name in sorted(self.used_uncertain - before):
            notes.append(f"title uses ${name}, which {_MACHINE}")
        if node.submenu:
            self.submenu.append(title)
            try:
                self.run_block(node.body, args)
            finally:
                self.submenu.pop()
            return
        if node.hidden:
            notes.insert(0, HIDDEN_NOTE)
        pending = _Pending(
            title=title,
            submenu=tuple(self.submenu),
            body=node.body,
            source=EntrySource(node.file, node.line),
            notes=notes,
            cfg_dir=self.cfg_dir,
            hidden=node.hidden,
        )
        self.order.append(pending)

    def run_command(self, node: _Command, args: Sequence[str]) -> bool | None:
        if not node.words:
            return True
        hits = self.uncertain_hits
        argv = self.expand_all(node.words, args)
        self.args_uncertain = self.uncertain_hits != hits
        if not argv:
            return True
        name, rest = argv[0], argv[1:]
        assignment = _ASSIGNMENT.fullmatch(name)
        if assignment and not rest:
            self.set_var(assignment.group(1), assignment.group(2), node)
            return True
        handler = _COMMANDS.get(name)
        if handler is not None:
            return handler(self, node, rest)
        body = self.functions.get(name)
        if body is not None:
            return self.call(name, body, rest, node)
        if self.entry is not None and name in _NOT_KEXECABLE:
            self.entry.unbootable = f"runs {name}, which kexec cannot do"
            return True
        if name not in _NO_EFFECT:
            self.skipped[name] += 1
        return None

    def call(
        self, name: str, body: tuple[_Node, ...], argv: list[str], node: _Command
    ) -> bool | None:
        if self.call_depth >= MAX_CALL_DEPTH:
            raise FormatError(
                f"function calls nested deeper than {MAX_CALL_DEPTH} (recursive {name}?)",
                source=node.file,
                line=node.line,
            )
        self.call_depth += 1
        try:
            return self.run_block(body, argv)
        finally:
            self.call_depth -= 1

    # -- built-in commands --

    def cmd_set(self, node: _Command, argv: list[str]) -> bool | None:
        for item in argv:
            match = _ASSIGNMENT.fullmatch(item)
            if match:
                self.set_var(match.group(1), match.group(2), node)
        return True

    def cmd_unset(self, node: _Command, argv: list[str]) -> bool | None:
        for name in argv:
            self.env.pop(name, None)
            if self.unknown_depth:
                self.uncertain.add(name)
        return True

    def cmd_test(self, node: _Command, argv: list[str]) -> bool | None:
        if self.args_uncertain:
            return None
        words = argv[:-1] if argv and argv[-1] == "]" else argv
        return _Test(self, words).evaluate()

    def cmd_true(self, node: _Command, argv: list[str]) -> bool | None:
        return True

    def cmd_false(self, node: _Command, argv: list[str]) -> bool | None:
        return False

    def cmd_search_uuid(self, node: _Command, argv: list[str]) -> bool | None:
        # search.fs_uuid UUID [VAR]
        return self.cmd_search(node, argv, mode="uuid", positional_var=True)

    def cmd_search_label(self, node: _Command, argv: list[str]) -> bool | None:
        return self.cmd_search(node, argv, mode="label", positional_var=True)

    def cmd_search_file(self, node: _Command, argv: list[str]) -> bool | None:
        return self.cmd_search(node, argv, mode="file", positional_var=True)

    def cmd_search(
        self, node: _Command, argv: list[str], mode: str = "file", *, positional_var: bool = False
    ) -> bool | None:
        var = "root"
        targets: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg in ("-f", "--file"):
                mode = "file"
            elif arg in ("-u", "--fs-uuid"):
                mode = "uuid"
            elif arg in ("-l", "--label"):
                mode = "label"
            elif arg.startswith("--set="):
                var = arg.removeprefix("--set=")
            elif arg in ("-s", "--set"):
                if i + 1 < len(argv) and not argv[i + 1].startswith("-") and len(argv) - i > 2:
                    var = argv[i + 1]
                    i += 1
            elif arg.startswith(("--hint", "-h")):
                if "=" not in arg:
                    i += 1
            elif not arg.startswith("-"):
                targets.append(arg)
            i += 1
        if not targets:
            return None
        target = targets[0]
        if positional_var and len(targets) > 1:
            var = targets[1]
        device = self.search_device(mode, target)
        if device is None:
            # Not in this tree: GRUB would look on the machine's other disks.  On failure it
            # leaves the variable as it was; either way its value is not known here.
            self.uncertain.add(var)
            return None
        self.set_var(var, device, node)
        return True

    def search_device(self, mode: str, target: str) -> str | None:
        if mode == "file":
            if self.ctx.iso_path is not None and target == self.ctx.iso_path:
                return ISO_DEVICE
            resolved, _ = self.resolve(target)
            return BOOT_DEVICE if resolved is not None and self.files.is_file(resolved) else None
        known = self.ctx.boot_uuid if mode == "uuid" else self.ctx.boot_label
        # Without partition information, paths stay relative to the boot directory (as Heads).
        if known is None or known.lower() == target.lower():
            return BOOT_DEVICE
        return f"{mode}={target}"

    def cmd_probe(self, node: _Command, argv: list[str]) -> bool | None:
        var = None
        device = argv[-1] if argv else ""
        for i, arg in enumerate(argv):
            if arg.startswith("--set="):
                var = arg.removeprefix("--set=")
            elif arg in ("-s", "--set") and i + 1 < len(argv):
                var = argv[i + 1]
        want_uuid = "-u" in argv or "--fs-uuid" in argv
        device = device.strip("()")
        value: str | None = None
        if want_uuid and device == ISO_DEVICE:
            value = self.ctx.iso_device_uuid
        elif want_uuid and device == BOOT_DEVICE:
            value = self.ctx.boot_uuid
        if var is not None:
            self.set_var(var, value or "", node)
            if value is None:
                self.uncertain.add(var)
        return None if value is None else True

    def cmd_load_env(self, node: _Command, argv: list[str]) -> bool | None:
        path = None
        names: list[str] = []
        i = 0
        while i < len(argv):
            if argv[i] in ("-f", "--file") and i + 1 < len(argv):
                path = argv[i + 1]
                i += 1
            elif argv[i].startswith("--file="):
                path = argv[i].removeprefix("--file=")
            elif not argv[i].startswith("-"):
                names.append(argv[i])
            i += 1
        if path is None:
            path = self.env.get("prefix", "") + "/grubenv"
        resolved, _ = self.resolve(path)
        data = self.files.read(resolved, limit=64 * 1024) if resolved else None
        if data is None or resolved is None:
            return False
        self.files_read.append(resolved)
        for key, value in parse_grubenv(data, resolved).items():
            if not names or key in names:
                self.set_var(key, value, node)
        return True

    def cmd_source(self, node: _Command, argv: list[str]) -> bool | None:
        if not argv:
            return False
        where = f"{node.file}:{node.line}: {argv[0]}"
        resolved, why = self.resolve(argv[0])
        if resolved is None:
            self.problem(f"{where} {why}; not read")
            return False
        # A loop (a file that sources itself, directly or not) or a chain too deep is not
        # followed: what the files defined before it stays, the loop is reported.
        if resolved in self.include_stack:
            chain = " -> ".join([*self.include_stack, resolved])
            self.problem(f"{where} is already being read (include loop {chain}); not read again")
            return False
        if len(self.include_stack) >= MAX_INCLUDE_DEPTH:
            self.problem(f"{where} would be included more than {MAX_INCLUDE_DEPTH} deep; not read")
            return False
        self.sources += 1
        if self.sources > MAX_SOURCES:
            self.problem(f"{where}: more than {MAX_SOURCES} source/configfile commands; not read")
            return False
        data = self.files.read(resolved)
        if data is None:
            self.problem(f"{where} does not exist; not read")
            return False
        self.run_file(resolved, data)
        return True

    def cmd_blscfg(self, node: _Command, argv: list[str]) -> bool | None:
        result = bls.parse_bls(self.files, variables=self.env)
        self.files_read.extend(result.files_read)
        for text in result.problems:
            self.problem(text)
        self.order.extend(result.entries)
        self.bls_dropped.extend(result.dropped)
        return True

    def cmd_linux(self, node: _Command, argv: list[str]) -> bool | None:
        if self.entry is None or not argv:
            return None
        self.entry.kernel = (argv[0], argv[1:])
        return True

    def cmd_initrd(self, node: _Command, argv: list[str]) -> bool | None:
        if self.entry is None:
            return None
        self.entry.initrds.extend(a for a in argv if not a.startswith("--"))
        return True

    def cmd_multiboot(self, node: _Command, argv: list[str]) -> bool | None:
        files = [a for a in argv if not a.startswith("--")]
        if self.entry is None or not files:
            return None
        first = argv.index(files[0])
        self.entry.multiboot = (files[0], argv[first + 1 :])
        return True

    def cmd_module(self, node: _Command, argv: list[str]) -> bool | None:
        # `module --nounzip /x` (Heads drops the option too).
        rest = list(argv)
        while rest and rest[0].startswith("--"):
            rest.pop(0)
        if self.entry is None or not rest:
            return None
        self.entry.modules.append((rest[0], rest[1:]))
        return True

    # -- files and entries --

    def run_file(self, path: str, data: bytes) -> None:
        nodes = self.parsed.get(path)
        if nodes is None:
            nodes = self.parsed[path] = _parse_script(data, path)
        self.files_read.append(path)
        saved_dir = self.cfg_dir
        self.include_stack.append(path)
        self.cfg_dir = posixpath.dirname(path)
        try:
            self.run_block(nodes, ())
        finally:
            self.include_stack.pop()
            self.cfg_dir = saved_dir

    def finish(self) -> GrubResult:
        # Entries are evaluated with a budget of their own: a script that spent its budget
        # still has its entries evaluated.
        self.steps = 0
        entries: list[BootEntry] = []
        dropped: list[DroppedEntry] = list(self.bls_dropped)
        for item in self.order:
            if isinstance(item, BootEntry):
                entries.append(item)
                continue
            built = self.evaluate_entry(item)
            if isinstance(built, BootEntry):
                entries.append(built)
            else:
                dropped.append(built)
        return GrubResult(
            entries=tuple(entries),
            dropped=tuple(dropped),
            skipped_commands=dict(sorted(self.skipped.items())),
            files_read=tuple(dict.fromkeys(self.files_read)),
            problems=tuple(self.problems)
            + ((f"... and {self.more_problems} more problems",) if self.more_problems else ()),
        )

    def evaluate_entry(self, pending: _Pending) -> BootEntry | DroppedEntry:
        saved_env, saved_uncertain = dict(self.env), set(self.uncertain)
        self.used_uncertain = set()
        self.entry = _EntryState()
        self.cfg_dir = pending.cfg_dir
        try:
            self.run_block(pending.body, ())
            state = self.entry
        except _ExhaustedError as exc:
            return DroppedEntry(pending.title, pending.source, f"not evaluated: {exc.reason}")
        finally:
            self.entry = None
            self.env, self.uncertain = saved_env, saved_uncertain
        notes = list(pending.notes)
        notes.extend(f"uses ${name}, which {_MACHINE}" for name in sorted(self.used_uncertain))
        return _build_entry(self, pending, state, tuple(notes))


def _build_entry(
    interp: _Interp, pending: _Pending, state: _EntryState, notes: tuple[str, ...]
) -> BootEntry | DroppedEntry:
    def drop(reason: str) -> DroppedEntry:
        return DroppedEntry(pending.title, pending.source, reason)

    title = pending.title.replace("|", "")
    if text_problem(title) is not None:
        return drop(f"title {text_problem(title)}")
    if state.unbootable is not None and state.kernel is None and state.multiboot is None:
        return drop(state.unbootable)

    def path(raw: str, what: str) -> str | DroppedEntry:
        saved = interp.cfg_dir
        interp.cfg_dir = pending.cfg_dir
        try:
            resolved, why = interp.resolve(raw)
        finally:
            interp.cfg_dir = saved
        if resolved is None:
            return drop(f"{what} {raw!r} {why}")
        problem = path_problem(resolved)
        if problem is not None:
            return drop(f"{what} {raw!r} {problem}")
        return resolved

    def words(args: Sequence[str], what: str) -> str | DroppedEntry:
        text = " ".join(a for a in args if a)
        problem = text_problem(text)
        return drop(f"{what} {problem}") if problem is not None else text

    if state.multiboot is not None:
        kernel = path(state.multiboot[0], "hypervisor")
        cmdline = words(state.multiboot[1], "hypervisor arguments")
        modules: list[MultibootModule] = []
        for raw, margs in state.modules:
            mpath = path(raw, "module")
            mtext = words(margs, "module arguments")
            if isinstance(mpath, DroppedEntry):
                return mpath
            if isinstance(mtext, DroppedEntry):
                return mtext
            modules.append(MultibootModule(mpath, strip_separator(mtext)))
        if isinstance(kernel, DroppedEntry):
            return kernel
        if isinstance(cmdline, DroppedEntry):
            return cmdline
        return BootEntry(
            title=title,
            kind=EntryKind.XEN,
            kernel=kernel,
            cmdline=cmdline,
            modules=tuple(modules),
            submenu=pending.submenu,
            source=pending.source,
            notes=notes,
            hidden=pending.hidden,
        )
    if state.kernel is None:
        return drop("no linux or multiboot command")
    kernel = path(state.kernel[0], "kernel")
    if isinstance(kernel, DroppedEntry):
        return kernel
    initrds: list[str] = []
    for raw in state.initrds:
        resolved = path(raw, "initrd")
        if isinstance(resolved, DroppedEntry):
            return resolved
        initrds.append(resolved)
    cmdline = words(state.kernel[1], "command line")
    if isinstance(cmdline, DroppedEntry):
        return cmdline
    return BootEntry(
        title=title,
        kind=EntryKind.ELF,
        kernel=kernel,
        initrds=tuple(initrds),
        cmdline=strip_separator(cmdline),
        submenu=pending.submenu,
        source=pending.source,
        notes=notes,
        hidden=pending.hidden,
    )


def _join_chunks(chunks: list[str] | None, text: str) -> list[str]:
    if chunks is None:
        return [text]
    chunks.append(text)
    return chunks


def _is_disk_name(device: str) -> bool:
    # (hd0,gpt2), (hd0,msdos1), (cd0), (hd0): Heads strips these; they are the boot disk.
    return re.fullmatch(r"(hd|cd|fd)\d+(,[a-z]*\d+)*", device) is not None


def _menu_title(argv: Sequence[str]) -> str:
    # The title is the first argument that is not an option or an option's value.
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg in ("--class", "--id", "--hotkey", "--users"):
            skip_next = True
            continue
        if arg.startswith("--"):
            continue
        return arg
    return ""


def _condition_text(cond: Sequence[_Node]) -> str:
    parts = []
    for node in cond:
        if isinstance(node, _Command):
            parts.append(" ".join(tok.source_text() for tok in node.words))
    return "; ".join(parts)


def _earlier(node: _If) -> str:
    return _condition_text(node.branches[0][0])


class _Test:
    """``[ ... ]`` / ``test ...`` with three outcomes: True, False, None (undecidable)."""

    _UNARY_FILE: Final = frozenset({"-e", "-f", "-d", "-s"})
    _INT_OPS: Final = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
    _STR_OPS: Final = frozenset({"=", "==", "!=", "<", ">"})
    _MAX_PARENS: Final = 32

    def __init__(self, interp: _Interp, words: Sequence[str]) -> None:
        self.interp = interp
        self.words = list(words)
        self.pos = 0
        self.parens = 0

    def evaluate(self) -> bool | None:
        if not self.words:
            return False
        try:
            result = self.or_expr()
        except IndexError:
            return None
        return result if self.pos == len(self.words) else None

    def or_expr(self) -> bool | None:
        left = self.and_expr()
        while self.pos < len(self.words) and self.words[self.pos] == "-o":
            self.pos += 1
            right = self.and_expr()
            left = True if True in (left, right) else (None if None in (left, right) else False)
        return left

    def and_expr(self) -> bool | None:
        left = self.not_expr()
        while self.pos < len(self.words) and self.words[self.pos] == "-a":
            self.pos += 1
            right = self.not_expr()
            left = False if False in (left, right) else (None if None in (left, right) else True)
        return left

    def not_expr(self) -> bool | None:
        negate = False
        while self.words[self.pos] == "!":  # `! ! ! x`: counted, not recursed into
            self.pos += 1
            negate = not negate
        inner = self.primary()
        return None if inner is None else inner != negate

    def primary(self) -> bool | None:
        words, pos = self.words, self.pos
        if words[pos] == "(":
            if self.parens >= self._MAX_PARENS:
                raise IndexError("parentheses nested too deeply")  # undecidable, as a bad test
            self.pos += 1
            self.parens += 1
            try:
                inner = self.or_expr()
            finally:
                self.parens -= 1
            if self.pos < len(words) and words[self.pos] == ")":
                self.pos += 1
            return inner
        if pos + 2 < len(words) and words[pos + 1] in self._STR_OPS | self._INT_OPS:
            left, op, right = words[pos], words[pos + 1], words[pos + 2]
            self.pos += 3
            return self.binary(left, op, right)
        if words[pos] in self._UNARY_FILE | {"-n", "-z"} and pos + 1 < len(words):
            op, arg = words[pos], words[pos + 1]
            self.pos += 2
            if op == "-n":
                return arg != ""
            if op == "-z":
                return arg == ""
            return self.file_test(op, arg)
        self.pos += 1
        return words[pos] != ""

    def binary(self, left: str, op: str, right: str) -> bool | None:
        if op in self._STR_OPS:
            if op in ("=", "=="):
                return left == right
            if op == "!=":
                return left != right
            return left < right if op == "<" else left > right
        try:
            a, b = int(left), int(right)
        except ValueError:
            return False
        return {
            "-eq": a == b,
            "-ne": a != b,
            "-lt": a < b,
            "-le": a <= b,
            "-gt": a > b,
            "-ge": a >= b,
        }[op]

    def file_test(self, op: str, arg: str) -> bool | None:
        resolved, _ = self.interp.resolve(arg)
        if resolved is None:
            return None
        files = self.interp.files
        if op == "-d":
            return files.is_dir(resolved)
        if op == "-s":
            size = files.size(resolved)
            return size is not None and size > 0
        if op == "-f":
            return files.is_file(resolved)
        return files.is_file(resolved) or files.is_dir(resolved)


_COMMANDS: Final = {
    "set": _Interp.cmd_set,
    "unset": _Interp.cmd_unset,
    "[": _Interp.cmd_test,
    "test": _Interp.cmd_test,
    "true": _Interp.cmd_true,
    "false": _Interp.cmd_false,
    "search": _Interp.cmd_search,
    "search.file": _Interp.cmd_search_file,
    "search.fs_uuid": _Interp.cmd_search_uuid,
    "search.fs_label": _Interp.cmd_search_label,
    "probe": _Interp.cmd_probe,
    "load_env": _Interp.cmd_load_env,
    "source": _Interp.cmd_source,
    "configfile": _Interp.cmd_source,
    "blscfg": _Interp.cmd_blscfg,
    **dict.fromkeys(_LINUX, _Interp.cmd_linux),
    **dict.fromkeys(_INITRD, _Interp.cmd_initrd),
    **dict.fromkeys(_MULTIBOOT, _Interp.cmd_multiboot),
    **dict.fromkeys(_MODULE, _Interp.cmd_module),
}


def parse_grubenv(data: bytes, source: str) -> dict[str, str]:
    """Variables of a GRUB environment block (``grubenv``: ``name=value`` lines, ``#`` pad).

    Raises:
        FormatError: the block is not UTF-8 or contains NUL bytes.
    """
    text = decode_config(data, source)
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(line)
        if match:
            out[match.group(1)] = match.group(2).replace("\\n", "\n").replace("\\\\", "\\")
    return out


def parse_grub(files: BootFiles, path: str, ctx: GrubContext | None = None) -> GrubResult:
    """Parse and evaluate the GRUB configuration ``path`` of the tree ``files``.

    Args:
        files: the boot directory.
        path: the configuration inside it (``/grub/grub.cfg``).
        ctx: machine and media facts; defaults describe a kexec boot of an unknown disk.

    Commands that cannot be parsed or run (and sourced files that cannot be read) are
    skipped and listed in ``problems`` with their file and line.

    Raises:
        FormatError: the file is missing, too large, not text or holds too many tokens; the
            message names the file (and line).
    """
    ctx = ctx or GrubContext()
    data = files.read(path)
    if data is None:
        raise FormatError("no such file", source=path)
    interp = _Interp(files, ctx)
    interp.env["prefix"] = f"({BOOT_DEVICE}){posixpath.dirname(path)}"
    interp.env["cmdpath"] = interp.env["prefix"]
    try:
        interp.run_file(path, data)
    except _ExhaustedError as exc:
        interp.problem(exc.message)
    return interp.finish()
