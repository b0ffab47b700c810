"""Tokenizer for GRUB's configuration language (``grub.cfg``, ``loopback.cfg``).

GRUB's script syntax is shell-like (GRUB manual §"Shell-like scripting"; grub-core/script/
yylex.l): words separated by blanks, ``;`` or newlines; ``'single'`` quotes are literal;
``"double"`` quotes expand ``$var``/``${var}`` and honour ``\\$ \\" \\\\``; a backslash
before a newline continues the line; ``#`` at the start of a word comments to the end of the
line.  Words are kept as parts (literal text and variable references) so that expansion
happens later, against the interpreter's variables, and never through a shell.

An unquoted backslash before an ordinary character is kept (``CentOS\\x207`` stays as
written): configurations rely on it to pass ``\\x20`` escapes to dracut, which shell Heads
lost by running entries through ``eval echo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from heads.errors import FormatError

__all__ = [
    "MAX_TOKENS",
    "Literal",
    "Token",
    "TokenKind",
    "VarRef",
    "decode_config",
    "tokenize",
]

MAX_TOKENS: Final = 500_000
# After an unquoted backslash these characters lose their special meaning and the backslash
# goes; before any other character the backslash stays.
_ESCAPABLE: Final = frozenset(" \t$'\"\\;#{}|&<>")
_PLAIN_RUN: Final = re.compile(r"[^\s;#\\'\"$]+")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[?#@*]")
_BLANKS: Final = frozenset(" \t\r\f\v")


@dataclass(frozen=True, slots=True)
class Literal:
    """Literal text of a word; ``quoted`` text is never split into several arguments."""

    text: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class VarRef:
    """A ``$name`` or ``${name}`` reference; unquoted expansions split on blanks."""

    name: str
    quoted: bool


Part = Literal | VarRef


class TokenKind(Enum):
    WORD = "word"
    SEPARATOR = "separator"  # a newline or ';'
    ERROR = "error"  # text that is no word (``tokenize(recover=True)``); ``error`` says why


@dataclass(frozen=True, slots=True)
class Token:
    """A word (its parts) or a command separator, with its 1-based line number."""

    kind: TokenKind
    line: int
    parts: tuple[Part, ...] = ()
    error: str = ""

    @property
    def bare(self) -> str | None:
        """The word's text when it is one unquoted literal (keywords, braces), else ``None``."""
        if len(self.parts) == 1:
            part = self.parts[0]
            if isinstance(part, Literal) and not part.quoted:
                return part.text
        return None

    def source_text(self) -> str:
        """The word as written, approximately (for messages and notes)."""
        out = []
        for part in self.parts:
            out.append(part.text if isinstance(part, Literal) else "${" + part.name + "}")
        return "".join(out)


def decode_config(data: bytes, source: str) -> str:
    """Decode a configuration file as UTF-8, refusing NUL bytes.

    Raises:
        FormatError: NUL byte or invalid UTF-8, naming the line and byte offset.
    """
    nul = data.find(b"\0")
    if nul >= 0:
        raise FormatError(
            "NUL byte in a text configuration",
            source=source,
            line=data.count(b"\n", 0, nul) + 1,
            offset=nul,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"invalid UTF-8 ({exc.reason})",
            source=source,
            line=data.count(b"\n", 0, exc.start) + 1,
            offset=exc.start,
        ) from None
    return text.removeprefix("\ufeff")


class _LexError(FormatError):
    """A word that cannot be read; ``to_end``: it swallows the rest of the text (a quote)."""

    def __init__(self, reason: str, *, source: str, line: int, to_end: bool) -> None:
        super().__init__(reason, source=source, line=line)
        self.to_end = to_end


class _Lexer:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.tokens: list[Token] = []
        self.parts: list[Part] = []
        self.chunks: list[str] = []
        self.chunks_quoted: bool | None = None
        self.in_word = False
        self.word_line = 1

    def fail(self, reason: str, line: int, *, to_end: bool = False) -> _LexError:
        return _LexError(reason, source=self.source, line=line, to_end=to_end)

    def emit(self, token: Token) -> None:
        if len(self.tokens) >= MAX_TOKENS:
            raise self.fail(f"more than {MAX_TOKENS} tokens", self.line)
        self.tokens.append(token)

    def add(self, part: Part) -> None:
        if not self.in_word:
            self.in_word = True
            self.word_line = self.line
        if isinstance(part, Literal):
            # Adjacent literal text of one kind is joined once, at the end (linear time).
            if self.chunks_quoted is not None and self.chunks_quoted != part.quoted:
                self.flush_literal()
            self.chunks.append(part.text)
            self.chunks_quoted = part.quoted
            return
        self.flush_literal()
        self.parts.append(part)

    def flush_literal(self) -> None:
        if self.chunks_quoted is not None:
            self.parts.append(Literal("".join(self.chunks), self.chunks_quoted))
        self.chunks = []
        self.chunks_quoted = None

    def end_word(self) -> None:
        if self.in_word:
            self.flush_literal()
            self.emit(Token(TokenKind.WORD, self.word_line, tuple(self.parts)))
        self.parts = []
        self.chunks = []
        self.chunks_quoted = None
        self.in_word = False

    def variable(self, quoted: bool) -> None:
        """At a ``$``: add the reference (or a literal ``$`` when no name follows)."""
        text, start = self.text, self.pos + 1
        if start < len(text) and text[start] == "{":
            close = text.find("}", start + 1)
            if close < 0 or "\n" in text[start:close]:
                raise self.fail("unterminated ${...}", self.line)
            name = text[start + 1 : close]
            if not _NAME.fullmatch(name):
                raise self.fail(f"bad variable name {name!r}", self.line)
            self.add(VarRef(name, quoted))
            self.pos = close + 1
            return
        match = _NAME.match(text, start)
        if match is None:
            self.add(Literal("$", quoted))
            self.pos = start
            return
        self.add(VarRef(match.group(), quoted))
        self.pos = match.end()

    def double_quoted(self) -> None:
        text, opened = self.text, self.line
        self.pos += 1
        self.add(Literal("", quoted=True))
        while True:
            if self.pos >= len(text):
                raise self.fail("unterminated double quote", opened, to_end=True)
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return
            if c == "$":
                self.variable(quoted=True)
                continue
            if c == "\\" and self.pos + 1 < len(text):
                nxt = text[self.pos + 1]
                if nxt == "\n":
                    self.line += 1
                elif nxt in '$"\\':
                    self.add(Literal(nxt, quoted=True))
                else:
                    self.add(Literal("\\" + nxt, quoted=True))
                self.pos += 2
                continue
            if c == "\n":
                self.line += 1
            end = self.pos + 1
            while end < len(text) and text[end] not in '"$\\\n':
                end += 1
            self.add(Literal(text[self.pos : end], quoted=True))
            self.pos = end

    def run(self, *, recover: bool) -> list[Token]:
        while self.pos < len(self.text):
            if not recover:
                self.step()
                continue
            try:
                self.step()
            except _LexError as exc:
                self.skip_bad_word(exc)
        self.end_word()
        self.emit(Token(TokenKind.SEPARATOR, self.line))
        return self.tokens

    def skip_bad_word(self, exc: _LexError) -> None:
        """Drop the word being read, leave an ERROR token, go on after its line (or stop)."""
        self.parts, self.chunks, self.chunks_quoted, self.in_word = [], [], None, False
        self.emit(Token(TokenKind.ERROR, exc.line or self.line, error=exc.reason))
        end = -1 if exc.to_end else self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def step(self) -> None:
        """Read one character, or one run of them (a quoted string, a variable, a plain run)."""
        text = self.text
        c = text[self.pos]
        if c in _BLANKS:
            self.end_word()
            self.pos += 1
        elif c in "\n;":
            self.end_word()
            self.emit(Token(TokenKind.SEPARATOR, self.line))
            if c == "\n":
                self.line += 1
            self.pos += 1
        elif c == "#" and not self.in_word:
            end = text.find("\n", self.pos)
            self.pos = len(text) if end < 0 else end
        elif c == "\\":
            nxt = text[self.pos + 1] if self.pos + 1 < len(text) else ""
            if nxt == "\n":
                self.line += 1
            elif nxt in _ESCAPABLE and nxt:
                self.add(Literal(nxt, quoted=True))
            else:
                self.add(Literal("\\" + nxt, quoted=False))
            self.pos += 2
        elif c == "'":
            close = text.find("'", self.pos + 1)
            if close < 0:
                raise self.fail("unterminated single quote", self.line, to_end=True)
            body = text[self.pos + 1 : close]
            self.add(Literal(body, quoted=True))
            self.line += body.count("\n")
            self.pos = close + 1
        elif c == '"':
            self.double_quoted()
        elif c == "$":
            self.variable(quoted=False)
        else:
            match = _PLAIN_RUN.match(text, self.pos)
            end = match.end() if match else self.pos + 1
            self.add(Literal(text[self.pos : end], quoted=False))
            self.pos = end


def tokenize(text: str, source: str = "grub.cfg", *, recover: bool = False) -> list[Token]:
    """Split GRUB script text into words and separators (always ends with a separator).

    With ``recover``, a word that cannot be read becomes an ``ERROR`` token (its ``error``
    says why) and reading goes on after its line, as GRUB goes on after a line it cannot
    parse; an unterminated quote swallows the rest of the text, as in GRUB.

    Raises:
        FormatError: unterminated quote or ``${``, a bad variable name (unless ``recover``),
            or too many tokens; the message names ``source`` and the line.
    """
    return _Lexer(text, source).run(recover=recover)
