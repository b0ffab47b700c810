"""Scripted answers to the runtime's dialogs (docs/runtime-menus.md §Scripted boots).

An answer names a dialog by its stable id and gives the choice's key (or the text, for input
and passphrase dialogs): ``main-menu=d``.  Several answers to the same dialog are used in
order.  On the host they come from ``heads qemu boot --answer ID=CHOICE``; the guest reads the
same pairs, one per line, from the answer file (fw_cfg ``opt/heads/answers``)::

    # comment
    main-menu=o
    options=b

Pure: parsing and the queue; no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Final

from heads.core.dialogs import DialogId
from heads.errors import FormatError, UsageError

__all__ = ["ScriptedAnswers", "format_answers", "parse_answer", "parse_answer_file"]

_IDS: Final = frozenset(d.value for d in DialogId)
_MAX_FILE_BYTES: Final = 64 * 1024
_MAX_VALUE: Final = 4096


def _split(text: str) -> tuple[str, str] | str:
    """``(id, value)``, or the reason the text is not ``ID=VALUE``."""
    if "=" not in text:
        return "expected DIALOG-ID=CHOICE"
    dialog_id, value = text.split("=", 1)
    dialog_id = dialog_id.strip()
    if dialog_id not in _IDS:
        return f"unknown dialog id {dialog_id!r}"
    if len(value) > _MAX_VALUE:
        return f"answer longer than {_MAX_VALUE} characters"
    if any(not ch.isprintable() for ch in value):
        return "the answer holds a control character"
    return dialog_id, value


def parse_answer(text: str) -> tuple[str, str]:
    """One ``ID=CHOICE`` from a command line.

    Raises:
        UsageError: not ``ID=CHOICE``, or an unknown dialog id.
    """
    parsed = _split(text)
    if isinstance(parsed, str):
        raise UsageError(
            f"--answer {text!r}: {parsed}", hint="dialog ids: " + ", ".join(sorted(_IDS))
        )
    return parsed


def parse_answer_file(data: bytes, *, source: str) -> list[tuple[str, str]]:
    """The answer file: ``ID=CHOICE`` lines, blank lines and ``#`` comments.

    Raises:
        FormatError: too large, not UTF-8, or a line that is not a known ``ID=CHOICE``.
    """
    if len(data) > _MAX_FILE_BYTES:
        raise FormatError(f"larger than {_MAX_FILE_BYTES} bytes", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 at byte {exc.start}", source=source) from None
    out: list[tuple[str, str]] = []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.rstrip("\r")
        if not stripped.strip() or stripped.lstrip().startswith("#"):
            continue
        parsed = _split(stripped)
        if isinstance(parsed, str):
            raise FormatError(parsed, source=source, line=number)
        out.append(parsed)
    return out


def format_answers(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The answer file for ``pairs`` (what :func:`parse_answer_file` reads back)."""
    return "".join(f"{k}={v}\n" for k, v in pairs).encode("utf-8")


class ScriptedAnswers:
    """The answers of a scripted boot, consumed in order per dialog id."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._queues: dict[str, deque[str]] = {}
        for dialog_id, value in pairs:
            self._queues.setdefault(dialog_id, deque()).append(value)
        self.given = len(pairs)

    def take(self, dialog_id: str) -> str | None:
        """The next answer for ``dialog_id``; None when none is left."""
        queue = self._queues.get(dialog_id)
        if not queue:
            return None
        return queue.popleft()

    def left(self) -> dict[str, int]:
        """Answers not used yet, by dialog id."""
        return {k: len(q) for k, q in self._queues.items() if q}
