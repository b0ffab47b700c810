"""The whiptail renderer: the runtime's dialogs on a real console, as Heads' text boards draw
them (Debian's ``whiptail``; docs/runtime-menus.md §Renderers).

The integrity state is the colour (``NEWT_COLORS``): normal, yellow for a warning, red for
danger.  The answer comes back on a pipe (``--output-fd``), never through argv, so a
passphrase typed into ``--passwordbox`` is never on a command line; argv holds only the
dialog's own text, escaped (:func:`heads.core.text.scrub`).
"""

from __future__ import annotations

import os
import select
import shutil
import sys
from collections.abc import Mapping
from typing import Final, TextIO

from heads.core.answers import ScriptedAnswers
from heads.core.dialogs import NO, OK, YES, Dialog, Kind, Tone
from heads.core.secret import Secret
from heads.core.text import scrub
from heads.ui.renderer import scripted_answer

__all__ = ["NEWT_COLORS", "WhiptailRenderer", "whiptail_argv"]

_WARNING: Final = "black,yellow"
_DANGER: Final = "white,red"
#: NEWT_COLORS per tone (unset for the normal tone: newt's default blue).
NEWT_COLORS: Final[Mapping[Tone, str | None]] = {
    Tone.NORMAL: None,
    Tone.WARNING: ";".join(
        f"{part}={_WARNING}"
        for part in ("root", "window", "border", "title", "textbox", "listbox", "label")
    )
    + ";actlistbox=yellow,black;button=black,white;actbutton=white,black",
    Tone.DANGER: ";".join(
        f"{part}={_DANGER}"
        for part in ("root", "window", "border", "title", "textbox", "listbox", "label")
    )
    + ";actlistbox=red,white;button=black,white;actbutton=white,black",
}


def whiptail_argv(
    dialog: Dialog, *, output_fd: int, size: tuple[int, int], whiptail: str = "whiptail"
) -> list[str]:
    """whiptail's command line for ``dialog`` (never a secret: answers come on ``output_fd``)."""
    cols, rows = size
    height = max(10, min(rows - 2, 30))
    width = max(40, min(cols - 4, 100))
    text = scrub_lines(dialog.text) or " "
    argv = [whiptail, "--title", scrub_lines(dialog.title), "--output-fd", str(output_fd)]
    if dialog.kind is Kind.MENU:
        if dialog.default is not None:
            argv += ["--default-item", dialog.default]
        argv += ["--menu", text, str(height), str(width), str(max(1, height - 8))]
        for choice in dialog.choices:
            argv += [choice.key, scrub_lines(choice.label)]
    elif dialog.kind is Kind.YESNO:
        if dialog.default == NO:
            argv.append("--defaultno")
        argv += ["--yesno", text, str(height), str(width)]
    elif dialog.kind is Kind.INPUT:
        argv += ["--inputbox", text, str(height), str(width), dialog.default or ""]
    elif dialog.kind is Kind.PASSPHRASE:
        argv += ["--passwordbox", text, str(height), str(width)]
    elif dialog.kind is Kind.PAGER:
        argv += ["--scrolltext", "--msgbox", text, str(height), str(width)]
    else:
        argv += ["--msgbox", text, str(height), str(width)]
    return argv


def scrub_lines(text: str) -> str:
    """``text`` with every line scrubbed, newlines kept (whiptail wraps and breaks on them)."""
    return "\n".join(scrub(line) for line in text.split("\n"))


class WhiptailRenderer:
    """Draws dialogs with whiptail on the controlling terminal.

    Args:
        answers: a scripted boot's answers (used instead of drawing, as the line renderer).
        whiptail: the program.
        tty: the terminal (for the auto-boot countdown's key press).
    """

    def __init__(
        self,
        answers: ScriptedAnswers | None = None,
        *,
        whiptail: str = "whiptail",
        tty: TextIO | None = None,
    ) -> None:
        self.answers = answers
        self.whiptail = whiptail
        self.tty = tty if tty is not None else sys.stdin

    @staticmethod
    def available(whiptail: str = "whiptail") -> bool:
        return shutil.which(whiptail) is not None

    def show(self, dialog: Dialog) -> str | Secret:
        """Draw ``dialog``; return the answer.

        Raises:
            UnansweredError: a scripted boot has no answer for it.
            ToolError: whiptail failed (the runtime falls back to the recovery path).
        """
        scripted = scripted_answer(self.answers, dialog)
        if scripted is not None:
            return scripted
        if dialog.timeout_s is not None and dialog.default is not None:
            # whiptail has no countdown: Heads prints the line and waits for a key press.
            sys.stdout.write(f"\n{scrub(dialog.text)}\n")
            sys.stdout.flush()
            if not _key_pressed(self.tty, dialog.timeout_s):
                return dialog.default
        while True:
            code, raw = self._run(dialog)
            answer = self._interpret(dialog, code, raw)
            if answer is not None:
                return answer

    def _interpret(self, dialog: Dialog, code: int, raw: bytes) -> str | Secret | None:
        if dialog.kind is Kind.YESNO:
            return YES if code == 0 else NO
        if dialog.kind in (Kind.MESSAGE, Kind.PAGER):
            return OK
        if code != 0:
            return None  # Esc / Cancel: ask again (there is always a "return" choice)
        if dialog.kind is Kind.PASSPHRASE:
            return Secret(raw.rstrip(b"\n"))
        text = raw.decode("utf-8", "replace").strip()
        if dialog.kind is Kind.INPUT:
            return text
        return text if dialog.accepts(text) else None

    def _run(self, dialog: Dialog) -> tuple[int, bytes]:
        from heads.adapters.whiptail import run_whiptail  # noqa: PLC0415 - on a console only

        size = shutil.get_terminal_size((80, 25))
        return run_whiptail(
            lambda fd: whiptail_argv(dialog, output_fd=fd, size=(size.columns, size.lines))[1:],
            env={"NEWT_COLORS": NEWT_COLORS[dialog.tone]},
            whiptail=self.whiptail,
        )


def _key_pressed(tty: TextIO, timeout_s: int) -> bool:
    try:
        fd = tty.fileno()
    except (OSError, ValueError):
        return False
    ready, _w, _x = select.select([fd], [], [], timeout_s)
    if ready:
        os.read(fd, 1024)
    return bool(ready)
