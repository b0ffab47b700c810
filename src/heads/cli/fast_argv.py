"""The command lines of `heads pcr replay` and `heads boot verify`, read without argparse.

Building argparse's parser tree costs these two commands more than their own imports
(docs/architecture.md §Command start-up).  :func:`parse_fast` reads exactly the plain forms
of their command lines and returns None for everything else (help, version, abbreviated or
unknown options, a missing or doubtful value, anything argparse would refuse), which
:mod:`heads.cli.main` then gives to argparse: its messages and exit codes stay the only ones.
"""

from __future__ import annotations

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Sequence
else:
    # Attribute access is all the handlers use; argparse's own Namespace needs argparse.
    from types import SimpleNamespace as Namespace

__all__ = ["parse_fast"]

# Kept equal to heads.core.log_formats.FORMAT_CHOICES (a test compares them); not imported
# from there so that this module loads nothing.
_FORMATS = ("auto", "tcg", "coreboot", "cel")


def _options(
    words: Sequence[str],
    flags: dict[str, bool],
    valued: dict[str, str | None],
    choices: dict[str, tuple[str, ...]],
) -> list[str] | None:
    """Fill ``flags``/``valued`` from ``words`` and return the positionals, or None.

    None when ``words`` holds anything but the given long options (exact names, value as
    the next word or after ``=``), a value that looks like an option or is not among the
    option's ``choices`` (argparse checks each one given, not only the last), a ``-`` word, or
    positionals split by an option (argparse takes one run of them; what follows another
    option is an error it reports itself).
    """
    positionals: list[str] = []
    last = -1  # index of the previous positional
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-"):
            if positionals and last != i - 2:
                return None
            positionals.append(word)
            last = i - 1
            continue
        name, eq, value = word.partition("=")
        if name in flags and not eq:
            flags[name] = True
        elif name in valued:
            if not eq:
                if i == len(words) or words[i].startswith("-"):
                    return None
                value = words[i]
                i += 1
            if name in choices and value not in choices[name]:
                return None
            valued[name] = value
        else:
            return None
    return positionals


def _pcr_replay(words: Sequence[str], debug: bool) -> Namespace | None:
    flags = {"--json": False}
    valued: dict[str, str | None] = {"--format": "auto"}
    logs = _options(words, flags, valued, {"--format": _FORMATS})
    if not logs:
        return None
    from heads.cli.pcr_replay import replay

    return Namespace(
        debug=debug,
        group="pcr",
        pcr_command="replay",
        log=logs,
        format=valued["--format"],
        json=flags["--json"],
        func=replay,
        uses_logging=False,
    )


def _boot_verify(words: Sequence[str], debug: bool) -> Namespace | None:
    flags = {"--json": False, "--no-rollback": False}
    valued: dict[str, str | None] = {"--keyring": None, "--tcti": None}
    positionals = _options(words, flags, valued, {})
    if positionals is None or len(positionals) != 1 or valued["--keyring"] is None:
        return None
    from heads.cli.boot_trust import cmd_verify

    return Namespace(
        debug=debug,
        group="boot",
        boot_command="verify",
        bootdir=positionals[0],
        keyring=valued["--keyring"],
        no_rollback=flags["--no-rollback"],
        tcti=valued["--tcti"],
        json=flags["--json"],
        func=cmd_verify,
        uses_logging=False,
    )


def parse_fast(argv: Sequence[str]) -> Namespace | None:
    """The parsed command line, as argparse would give it, or None to let argparse parse it."""
    debug = False
    at = 0
    while at < len(argv) and argv[at] == "--debug":
        debug = True
        at += 1
    command = tuple(argv[at : at + 2])
    if command == ("pcr", "replay"):
        return _pcr_replay(argv[at + 2 :], debug)
    if command == ("boot", "verify"):
        return _boot_verify(argv[at + 2 :], debug)
    return None
