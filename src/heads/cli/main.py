"""Entry point: builds the parser from the command groups, runs one, maps errors to exit codes.

This is the only place that prints an error or chooses an exit status (docs/architecture.md
§Errors).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Final

from heads import __version__
from heads.core.text import scrub
from heads.errors import ExitCode, HeadsError

__all__ = ["main"]

# Each group module defines register(subparsers); its parsers set `func` (args -> exit code).
_GROUPS: Final = ("tpm", "pcr", "boot", "totp", "hotp", "disk", "build", "qemu", "rom")

Handler = Callable[[argparse.Namespace], int]


def _wanted_groups(argv: Sequence[str]) -> tuple[str, ...]:
    """Only the group being run is imported (each pulls in heavy modules); all for help."""
    for arg in argv:
        if arg.startswith("-"):
            continue
        return (arg,) if arg in _GROUPS else _GROUPS
    return _GROUPS


def _build_parser(groups: Sequence[str] = _GROUPS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heads",
        description="Tamper-evident boot: TPM measurements, owner attestation, signed /boot.",
    )
    parser.add_argument("--version", action="version", version=f"heads {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug output and tracebacks")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for name in groups:
        try:
            module = importlib.import_module(f"heads.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"heads.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _render(err: HeadsError) -> None:
    # Messages name files and entries an attacker may have chosen (/boot): each line is
    # scrubbed of control characters so none can forge another line or hide text.
    print(f"error: {scrub(err.message)}", file=sys.stderr)
    for line in err.details:
        print(f"  {scrub(line)}", file=sys.stderr)
    if err.hint:
        print(f"hint: {scrub(err.hint)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(_wanted_groups(args_list))
    args = parser.parse_args(args_list)
    # Imported only now: --help and usage errors exit above without paying for it.
    import logging

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    try:
        return func(args)
    except HeadsError as err:
        if args.debug:
            traceback.print_exc()
        _render(err)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.ERROR
    except Exception:
        traceback.print_exc()
        print("error: internal error in heads (this is a bug; please report it)", file=sys.stderr)
        return ExitCode.BUG
