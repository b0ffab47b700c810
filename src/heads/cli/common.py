"""Pieces every command group shares: TCTI option, JSON output, secrets from file descriptors.

Command modules import only this module, light ``heads.core`` modules and ``heads.errors``
at their top: the flows, adapters and core modules a command needs (the TPM layer, event
logs, hashlib, json, dataclasses, the payload builder...) are imported when it runs, so
``heads --help`` and every other command start in tens of milliseconds
(docs/architecture.md §Performance targets; a test checks that building the parser imports
none of them).
"""

from __future__ import annotations

import os
import sys

from heads.cli.json_output import print_json
from heads.core import platform
from heads.errors import UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    import argparse
    from contextlib import AbstractContextManager
    from typing import Final

    from heads.adapters.tpm import Tpm
    from heads.core.secret import Secret

__all__ = [
    "DEFAULT_TCTI",
    "add_json_option",
    "add_tcti_option",
    "open_tpm",
    "pcr_index",
    "print_json",
    "read_secret_fd",
    "read_secret_stdin",
    "tcti_from",
]

DEFAULT_TCTI: Final = platform.DEFAULT_TCTI
_MAX_SECRET_BYTES: Final = 4096


def open_tpm(tcti: str) -> AbstractContextManager[Tpm]:
    """:func:`heads.adapters.tpm.open_tpm`, imported on first use (tpm2-pytss is heavy)."""
    from heads.adapters.tpm import open_tpm as connect

    return connect(tcti)


def add_tcti_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tcti",
        metavar="TCTI",
        help=f"TPM to use (default: $HEADS_TCTI or {DEFAULT_TCTI}); "
        "e.g. swtpm:host=127.0.0.1,port=2321",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output (stable)")


def tcti_from(args: argparse.Namespace) -> str:
    """--tcti, else $HEADS_TCTI, else the kernel's resource manager."""
    value = getattr(args, "tcti", None) or os.environ.get("HEADS_TCTI") or DEFAULT_TCTI
    return str(value)


def _read_all(fd: int, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError as exc:
            raise UsageError(
                f"cannot read {what} from file descriptor {fd}: {exc.strerror}"
            ) from None
        if not chunk:
            break
        total += len(chunk)
        if total > _MAX_SECRET_BYTES:
            raise UsageError(f"{what} is longer than {_MAX_SECRET_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def read_secret_fd(fd: int, what: str = "passphrase") -> Secret:
    """Read a passphrase from an open file descriptor; one trailing newline is dropped."""
    from heads.core.secret import Secret

    data = _read_all(fd, what)
    if data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise UsageError(f"empty {what} on file descriptor {fd}")
    return Secret(data)


def read_secret_stdin(what: str = "secret") -> Secret:
    """Read raw secret bytes from stdin (kept exactly as given)."""
    from heads.core.secret import Secret

    data = _read_all(sys.stdin.fileno(), what)
    if not data:
        raise UsageError(f"no {what} on standard input")
    return Secret(data)


def pcr_index(text: str) -> int:
    """argparse type: a PCR index 0-23."""
    import argparse

    from heads.core.pcr import PCR_COUNT

    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a PCR index") from None
    if not 0 <= value < PCR_COUNT:
        raise argparse.ArgumentTypeError(f"PCR {value} is outside 0-{PCR_COUNT - 1}")
    return value
