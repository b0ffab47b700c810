"""The line renderer (serial consoles, tests) and the whiptail renderer (a real console).

The whiptail tests run Debian's whiptail on a pseudo-terminal and press keys, as an owner
would.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from heads.core.answers import ScriptedAnswers
from heads.core.dialogs import (
    DialogId,
    Tone,
    menu,
    message,
    passphrase,
    text_input,
    yesno,
)
from heads.core.secret import Secret
from heads.ui.line import LineRenderer
from heads.ui.renderer import UnansweredError
from heads.ui.whiptail import NEWT_COLORS, whiptail_argv
from pty_terminal import run_on_terminal

MAIN = menu(
    DialogId.MAIN_MENU,
    "qemu | Heads Boot Menu",
    "2026-11-30 04:00:00 UTC\nTOTP: 123456",
    (("d", "Default boot"), ("r", "Refresh TOTP/HOTP"), ("p", "Power Off")),
)


def _line(
    typed: str = "", answers: ScriptedAnswers | None = None
) -> tuple[LineRenderer, io.StringIO]:
    out = io.StringIO()
    return LineRenderer(out, io.StringIO(typed), answers), out


def test_line_renderer_prints_the_dialog_and_reads_a_number_or_a_key() -> None:
    renderer, out = _line("2\np\n")
    assert renderer.show(MAIN) == "r"
    assert renderer.show(MAIN) == "p"
    text = out.getvalue()
    assert text.startswith(
        "heads: dialog main-menu: qemu | Heads Boot Menu\n"
        "heads:   2026-11-30 04:00:00 UTC\n"
        "heads:   TOTP: 123456\n"
        "heads:   1) Default boot [d]\n"
        "heads:   2) Refresh TOTP/HOTP [r]\n"
        "heads:   3) Power Off [p]\n"
        "heads: choose 1-3 or a key (default d):\n"
        "heads: answer main-menu=r\n"
    )


def test_line_renderer_asks_again_until_a_choice_and_enter_takes_the_default() -> None:
    renderer, out = _line("9\nzz\n\n")
    assert renderer.show(MAIN) == "d"
    assert out.getvalue().count("heads: not one of the choices\n") == 2
    renderer, _out = _line("YES\n")
    assert renderer.show(yesno(DialogId.UPDATE_CHECKSUMS, "t", "x")) == "y"
    renderer, _out = _line("\n")
    assert renderer.show(text_input(DialogId.CHANGE_TIME, "t", "x", default="now")) == "now"


def test_line_renderer_never_prints_a_passphrase() -> None:
    renderer, out = _line("hunter2 secret\n")
    answer = renderer.show(passphrase(DialogId.TPM_OWNER_PASSPHRASE, "TPM owner", "type"))
    assert answer == Secret(b"hunter2 secret")
    assert "hunter2" not in out.getvalue()
    assert "heads: answer tpm-owner-passphrase=(hidden)\n" in out.getvalue()
    scripted = ScriptedAnswers([("tpm-owner-passphrase", "hunter2")])
    renderer, out = _line(answers=scripted)
    answer = renderer.show(passphrase(DialogId.TPM_OWNER_PASSPHRASE, "TPM owner", "type"))
    assert answer == Secret(b"hunter2")
    assert "hunter2" not in out.getvalue()


def test_scripted_boot_stops_at_an_unanswered_dialog() -> None:
    renderer, _out = _line(answers=ScriptedAnswers([("options", "x")]))
    with pytest.raises(UnansweredError, match=r"dialog main-menu .* has no scripted answer"):
        renderer.show(MAIN)
    renderer, _out = _line(answers=ScriptedAnswers([("main-menu", "q")]))
    with pytest.raises(UnansweredError, match="main-menu=q is not one of d, r, p"):
        renderer.show(MAIN)
    # A countdown that is not answered ends: its default is taken.
    auto = menu(
        DialogId.AUTO_BOOT, "Automatic boot", "", (("b", "boot"), ("m", "menu")), timeout_s=5
    )
    renderer, _out = _line(answers=ScriptedAnswers([("main-menu", "d")]))
    assert renderer.show(auto) == "b"
    # No console and no script: stop, never wait.
    with pytest.raises(UnansweredError, match="no console"):
        LineRenderer(io.StringIO()).show(MAIN)
    renderer, _out = _line("")
    with pytest.raises(UnansweredError, match="the console closed"):
        renderer.show(MAIN)


def test_line_renderer_cannot_be_made_to_forge_a_console_line() -> None:
    hostile = message(
        DialogId.SIGNED_LISTS,
        "title\rheads: kexec /vmlinuz",
        "ok\nheads: TOTP 000000 at 2026-01-01T00:00:00Z\x1b[8m\u202e\u2028heads: kexec",
    )
    renderer, out = _line("\n")
    renderer.show(hostile)
    text = out.getvalue()
    for ch in ("\x1b", "\r", "\u202e", "\u2028"):
        assert ch not in text
    assert not re.search(r"^heads: (kexec|TOTP \d)", text, re.MULTILINE)


def test_whiptail_argv_holds_no_answer_and_colours_follow_the_tone() -> None:
    argv = whiptail_argv(
        passphrase(DialogId.TPM_OWNER_PASSPHRASE, "TPM owner", "New passphrase"),
        output_fd=7,
        size=(80, 25),
    )
    assert argv[:5] == ["whiptail", "--title", "TPM owner", "--output-fd", "7"]
    assert argv[5] == "--passwordbox"
    argv = whiptail_argv(MAIN, output_fd=3, size=(80, 25))
    assert argv[argv.index("--default-item") + 1] == "d"
    assert argv[-6:] == ["d", "Default boot", "r", "Refresh TOTP/HOTP", "p", "Power Off"]
    argv = whiptail_argv(
        message(DialogId.BOOT_FAILED, "x\x1b[2J", "a\u202eb\nc"), output_fd=3, size=(80, 25)
    )
    assert "x\\x1b[2J" in argv
    assert "a\\u202eb\nc" in argv
    assert NEWT_COLORS[Tone.NORMAL] is None
    assert "root=white,red" in str(NEWT_COLORS[Tone.DANGER])
    assert "root=black,yellow" in str(NEWT_COLORS[Tone.WARNING])


_CHILD = """
import sys
from heads.core.dialogs import DialogId, menu, passphrase
from heads.core.secret import Secret
from heads.ui.whiptail import WhiptailRenderer

r = WhiptailRenderer()
which = sys.argv[2]
if which == "menu":
    d = menu(DialogId.MAIN_MENU, "Boot Menu", "TOTP: 123456",
             (("d", "Default boot"), ("r", "Refresh"), ("p", "Power Off")))
else:
    d = passphrase(DialogId.TPM_OWNER_PASSPHRASE, "TPM owner", "New passphrase")
a = r.show(d)
with open(sys.argv[1], "w") as f:
    f.write(a.reveal().decode() if isinstance(a, Secret) else a)
"""


def _on_a_terminal(tmp_path: Path, which: str, keys: list[bytes]) -> tuple[str, bytes]:
    """Run a renderer in a child on a pseudo-terminal, press ``keys``; (answer, screen)."""
    require_tools("whiptail")
    result = tmp_path / "answer"
    env = dict(os.environ, TERM="vt100", COLUMNS="80", LINES="25")
    _status, screen = run_on_terminal(
        [sys.executable, "-c", _CHILD, str(result), which],
        env,
        ready=b"<Ok>" if which == "menu" else b"<Cancel>",
        keys=keys,
    )
    return result.read_text(), screen


def test_whiptail_menu_on_a_terminal(tmp_path: Path) -> None:
    answer, screen = _on_a_terminal(tmp_path, "menu", [b"\x1b[B", b"\r"])  # Down, Enter
    assert answer == "r"
    assert b"Boot Menu" in screen
    assert b"TOTP: 123456" in screen


def test_whiptail_passphrase_is_read_from_its_pipe_and_never_shown(tmp_path: Path) -> None:
    answer, screen = _on_a_terminal(tmp_path, "passphrase", [b"s3cr3t-pw", b"\r"])
    assert answer == "s3cr3t-pw"
    assert b"s3cr3t-pw" not in screen
    assert b"*********" in screen
