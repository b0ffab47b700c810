"""Entry point: builds the parser from the command groups, runs one, maps errors to exit codes.

This is the only place that prints an error or chooses an exit status (docs/architecture.md
§Errors).  Start-up is kept short (docs/architecture.md §Performance targets): the group
list below is all ``heads --help`` needs, and only the group being run is imported.  The
plain command lines of `heads pcr replay` and `heads boot verify`, which are timed against
single-purpose tools, skip argparse altogether (:mod:`heads.cli.fast_argv`).
"""

from __future__ import annotations

import sys

from heads import __version__
from heads.cli.fast_argv import parse_fast

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from heads.errors import HeadsError

    Handler = Callable[[argparse.Namespace], int]

__all__ = ["main"]

# Each group is a module heads.cli.<name> with register(parser) adding its arguments and
# subcommands; its parsers set `func` (args -> exit code).  The one-line help lives here so
# that `heads --help` lists every group without importing any of them.
GROUPS = {
    "tpm": "inspect and drive the TPM 2.0",
    "pcr": "replay, list, check and predict PCRs from event logs",
    "boot": "sign and verify /boot, list and boot its entries",
    "totp": "TOTP code that proves the firmware to your phone",
    "hotp": "HOTP code checked by a USB security token",
    "disk": "the disk unlock key sealed in the TPM",
    "build": "build the boot payload (kernel, initramfs, manifest)",
    "qemu": "boot the payload in QEMU with a software TPM",
    "rom": "firmware image: files, config, keys, packages, flashing",
}


def _wanted_group(argv: Sequence[str]) -> str | None:
    """The group the command line runs (the first word that is not an option), if any.

    None when the top-level help comes first (``heads --help tpm`` lists every group).
    """
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if arg.startswith("-"):
            continue
        return arg if arg in GROUPS else None
    return None


def _build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``wanted``, or of every group (for the list) when none is wanted.

    Only ``wanted``'s module is imported.  Each parser argparse creates costs a fraction of a
    millisecond (it looks up translations), so a command does not create the others.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="heads",
        description="Tamper-evident boot: TPM measurements, owner attestation, signed /boot.",
    )
    parser.add_argument("--version", action="version", version=f"heads {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug output and tracebacks")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for name, help_text in GROUPS.items():
        if wanted is None:
            sub.add_parser(name, help=help_text)
        elif name == wanted:
            import importlib

            group = sub.add_parser(name, help=help_text)
            importlib.import_module(f"heads.cli.{name}").register(group)
    return parser


def _render(err: HeadsError) -> None:
    from heads.core.text import scrub

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
    parser: argparse.ArgumentParser | None = None
    args = parse_fast(args_list)
    if args is None:
        parser = _build_parser(_wanted_group(args_list))
        args = parser.parse_args(args_list)
    from heads.errors import ExitCode, HeadsError

    # Importing logging takes longer than some commands' whole work (`heads pcr replay`): a
    # command that never logs says so (uses_logging=False) and skips it; --debug still sets
    # it up.
    if args.debug or getattr(args, "uses_logging", True):
        import logging

        logging.basicConfig(
            level=logging.DEBUG if args.debug else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        # Only argparse leaves a command without a handler (`heads` alone).
        if parser is not None:
            parser.print_help(sys.stderr)
        return ExitCode.USAGE
    try:
        return func(args)
    except HeadsError as err:
        if args.debug:
            import traceback

            traceback.print_exc()
        _render(err)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.ERROR
    except Exception:
        import traceback

        traceback.print_exc()
        print("error: internal error in heads (this is a bug; please report it)", file=sys.stderr)
        return ExitCode.BUG
