"""What a renderer of the runtime's dialogs promises (docs/runtime-menus.md §Renderers)."""

from __future__ import annotations

from typing import Protocol

from heads.core.answers import ScriptedAnswers
from heads.core.dialogs import Dialog, Kind
from heads.core.secret import Secret
from heads.errors import HeadsError

__all__ = ["Renderer", "UnansweredError", "scripted_answer"]


class UnansweredError(HeadsError):
    """A scripted boot reached a dialog its answers do not cover (it stops; it never waits)."""


class Renderer(Protocol):
    """Shows a dialog and returns the answer: a choice key, a line of text, or a
    :class:`~heads.core.secret.Secret` for passphrase dialogs."""

    def show(self, dialog: Dialog) -> str | Secret: ...


def scripted_answer(answers: ScriptedAnswers | None, dialog: Dialog) -> str | Secret | None:
    """The scripted answer for ``dialog``, if the boot is scripted.

    Returns:
        The answer; the dialog's default when a countdown dialog is not answered (the
        countdown would have ended); None when the boot is not scripted.

    Raises:
        UnansweredError: a scripted boot has no answer for this dialog, or the answer is not
            one of its choices.
    """
    if answers is None:
        return None
    value = answers.take(dialog.id)
    if value is None:
        if dialog.timeout_s is not None and dialog.default is not None:
            return dialog.default
        raise UnansweredError(
            f"dialog {dialog.id} ({dialog.title}) has no scripted answer: stopping",
            hint=f"add --answer {dialog.id}=CHOICE (choices: {', '.join(dialog.keys) or 'text'})",
        )
    if dialog.kind is Kind.PASSPHRASE:
        return Secret(value.encode("utf-8"))
    if not dialog.accepts(value):
        raise UnansweredError(
            f"scripted answer {dialog.id}={value} is not one of {', '.join(dialog.keys)}"
        )
    return value
