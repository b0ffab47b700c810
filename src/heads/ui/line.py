"""The line renderer: dialogs on a serial console, in logs and in tests.

Each dialog is printed as stable ``heads: `` lines (docs/runtime-menus.md §Line mode)::

    heads: dialog main-menu: qemu | Heads Boot Menu
    heads:   2026-11-30 04:10:00 UTC
    heads:   TOTP: 123456
    heads:   1) Default boot [d]
    heads:   2) Refresh TOTP/HOTP [r]
    heads: choose 1-2 or a key (default d):
    heads: answer main-menu=d

The answer is a number or a key (menus), ``y``/``n``, Enter for messages, or a line of text.
A passphrase is read without echo and never printed (its answer line says ``(hidden)``).
Every line goes through :func:`heads.core.text.scrub`: whatever reached a dialog's text
unescaped cannot forge a console line.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Iterator
from typing import Final, TextIO

from heads.core.answers import ScriptedAnswers
from heads.core.dialogs import Dialog, Kind, Tone
from heads.core.platform import CONSOLE_PREFIX
from heads.core.secret import Secret
from heads.core.text import scrub
from heads.ui.renderer import UnansweredError, scripted_answer

__all__ = ["LineRenderer"]

_TONE_MARK: Final = {Tone.NORMAL: "", Tone.WARNING: " [WARNING]", Tone.DANGER: " [DANGER]"}
#: An interactive console that keeps sending answers that are not choices is not a person.
_MAX_TRIES: Final = 100


class LineRenderer:
    """Prints dialogs as lines and reads answers from ``inp`` (or from scripted answers).

    Args:
        out: the console.
        inp: where answers are typed; None: only scripted answers (anything else stops).
        answers: a scripted boot's answers (None: nothing is scripted).
    """

    def __init__(
        self, out: TextIO, inp: TextIO | None = None, answers: ScriptedAnswers | None = None
    ) -> None:
        self.out = out
        self.inp = inp
        self.answers = answers

    def _say(self, text: str) -> None:
        for line in text.split("\n"):
            self.out.write(f"{CONSOLE_PREFIX}{scrub(line)}\n")
        self.out.flush()

    def show(self, dialog: Dialog) -> str | Secret:
        """Print ``dialog`` and return its answer.

        Raises:
            UnansweredError: a scripted boot has no answer for it, or the console closed.
        """
        self._print(dialog)
        scripted = scripted_answer(self.answers, dialog)
        if scripted is not None:
            self._answered(dialog, scripted)
            return scripted
        if self.inp is None:
            raise UnansweredError(f"dialog {dialog.id}: no console to answer it on")
        for _ in range(_MAX_TRIES):
            value = self._read(dialog)
            if value is not None:
                self._answered(dialog, value)
                return value
            self._say("not one of the choices")
        raise UnansweredError(f"dialog {dialog.id}: no valid answer after {_MAX_TRIES} tries")

    def _print(self, dialog: Dialog) -> None:
        self._say(f"dialog {dialog.id}: {dialog.title}{_TONE_MARK[dialog.tone]}")
        if dialog.text:
            self._say("\n".join(f"  {line}" for line in dialog.text.split("\n")))
        if dialog.kind is Kind.MENU:
            for number, choice in enumerate(dialog.choices, 1):
                self._say(f"  {number}) {choice.label} [{choice.key}]")
        prompt = {
            Kind.MENU: f"choose 1-{len(dialog.choices)} or a key",
            Kind.YESNO: "y or n",
            Kind.INPUT: "type a line",
            Kind.PASSPHRASE: "type the passphrase (not shown)",
            Kind.MESSAGE: "press Enter",
            Kind.PAGER: "press Enter",
        }[dialog.kind]
        if dialog.default and dialog.kind is not Kind.PASSPHRASE:
            prompt += f" (default {dialog.default})"
        if dialog.timeout_s is not None:
            prompt += f"; {dialog.default} in {dialog.timeout_s} s"
        self._say(prompt + ":")

    def _answered(self, dialog: Dialog, value: str | Secret) -> None:
        shown_value = "(hidden)" if isinstance(value, Secret) else value
        self._say(f"answer {dialog.id}={shown_value}")

    def _read(self, dialog: Dialog) -> str | Secret | None:
        """One answer typed on ``inp``; None when it is not a choice."""
        assert self.inp is not None  # noqa: S101 - checked by show()
        if dialog.kind is Kind.PASSPHRASE:
            with _no_echo(self.inp):
                line = self.inp.readline()
            self.out.write("\n")
            if not line:
                raise UnansweredError(f"dialog {dialog.id}: the console closed")
            return Secret(line.rstrip("\r\n").encode("utf-8"))
        if dialog.timeout_s is not None and not _ready(self.inp, dialog.timeout_s):
            return dialog.default
        line = self.inp.readline()
        if not line:
            raise UnansweredError(f"dialog {dialog.id}: the console closed")
        typed = line.strip()
        if dialog.kind is Kind.INPUT:
            return typed or (dialog.default or "")
        if not typed and dialog.default is not None:
            return dialog.default
        if dialog.kind is Kind.MENU and typed.isdigit() and 1 <= int(typed) <= len(dialog.choices):
            return dialog.choices[int(typed) - 1].key
        if dialog.kind is Kind.YESNO:
            typed = typed.lower()[:1]
        return typed if dialog.accepts(typed) else None


def _ready(inp: TextIO, timeout_s: int) -> bool:
    """Whether a line was typed within ``timeout_s`` (True when ``inp`` cannot be polled)."""
    try:
        fd = inp.fileno()
    except (OSError, ValueError):
        return True
    ready, _w, _x = select.select([fd], [], [], timeout_s)
    return bool(ready)


@contextlib.contextmanager
def _no_echo(inp: TextIO) -> Iterator[None]:
    """Turn the terminal's echo off while a passphrase is typed (a no-op if not a terminal)."""
    try:
        fd: int | None = inp.fileno()
    except (OSError, ValueError):
        fd = None
    if fd is None or not os.isatty(fd):
        yield
        return
    import termios  # noqa: PLC0415 - only on a terminal

    old = termios.tcgetattr(fd)
    new = list(old)
    new[3] = new[3] & ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, new)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, old)
