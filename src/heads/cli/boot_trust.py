"""`heads boot sign` and `heads boot verify`: the /boot signature and rollback counter.

Exit status of ``verify``: 0 when the signature, every file and the rollback counter hold,
3 otherwise (possible tampering); the report goes to stdout either way.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from heads.cli.common import add_json_option, add_tcti_option, print_json, read_secret_fd, tcti_from
from heads.errors import ExitCode, TpmNotFoundError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from typing import Final

    from heads.flows.boot_signing import Progress, RollbackCounter

__all__ = ["cmd_verify", "register_boot"]

_PROGRESS_AFTER_S: Final = 0.5
_BAR_WIDTH: Final = 30


class _ProgressBar:
    """A one-line bar on stderr, shown only on a terminal and only once hashing takes a moment."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or time.monotonic() - self.start < _PROGRESS_AFTER_S:
            return
        frac = done / total if total else 1.0
        filled = int(frac * _BAR_WIDTH)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {frac:4.0%} {done >> 20}/{total >> 20} MiB")
        sys.stderr.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


@contextlib.contextmanager
def _maybe_tpm(args: argparse.Namespace) -> Iterator[RollbackCounter | None]:
    if args.no_rollback:
        yield None
        return
    from heads.adapters.tpm import open_tpm

    with contextlib.ExitStack() as stack:
        try:
            tpm = stack.enter_context(open_tpm(tcti_from(args)))
        except TpmNotFoundError as err:
            raise TpmNotFoundError(
                err.message,
                rc=err.rc,
                hint=f"{err.hint}; or pass --no-rollback to skip the counter",
            ) from None
        yield tpm


def _cmd_sign(args: argparse.Namespace) -> int:
    pin = read_secret_fd(args.pin_fd, "PIN") if args.pin_fd is not None else None
    from heads.flows.boot_signing import sign_boot

    bar = _ProgressBar("hashing /boot")
    progress: Progress = bar
    try:
        with _maybe_tpm(args) as tpm:
            result = sign_boot(
                Path(args.bootdir),
                gnupghome=Path(args.gnupghome) if args.gnupghome else None,
                key=args.key,
                tpm=tpm,
                pin=pin,
                rollback=not args.no_rollback,
                progress=progress,
            )
    finally:
        bar.finish()
    if args.json:
        print_json(
            {
                "bootdir": str(result.bootdir),
                "fingerprint": result.fingerprint,
                "files_hashed": result.files_hashed,
                "signed_files": list(result.signed_files),
                "counter_index": None
                if result.counter_index is None
                else f"0x{result.counter_index:08x}",
                "counter_value": result.counter_value,
                "recovered": result.recovered,
            }
        )
        return ExitCode.OK
    if result.recovered:
        print(f"an interrupted signing was {result.recovered} first")
    print(f"signed {result.bootdir}: {result.files_hashed} files hashed, key {result.fingerprint}")
    if result.counter_index is not None:
        print(f"rollback counter 0x{result.counter_index:08x} is now {result.counter_value}")
    else:
        print("not bound to a TPM rollback counter (--no-rollback)")
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    """`heads boot verify` (also run by :mod:`heads.cli.fast_argv`, without argparse)."""
    from heads.flows.boot_signing import verify_boot

    bar = _ProgressBar("verifying /boot")
    try:
        with _maybe_tpm(args) as tpm:
            report = verify_boot(
                Path(args.bootdir), keyring=Path(args.keyring), tpm=tpm, progress=bar
            )
    finally:
        bar.finish()
    if args.json:
        print_json(report.to_json())
    else:
        sys.stdout.write(report.render_text())
    return ExitCode.OK if report.ok else ExitCode.VERIFICATION_FAILED


def register_boot(boot_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sign`` and ``verify`` to the ``heads boot`` group."""
    sign = boot_sub.add_parser(
        "sign",
        help="hash and sign every file in /boot, bound to the TPM rollback counter",
        description="Write kexec_hashes.txt, kexec_tree.txt, kexec_rollback.txt and kexec.sig "
        "(Heads formats) as one transaction: an interrupted signing leaves /boot as it was.",
    )
    sign.add_argument("bootdir", metavar="BOOTDIR", help="the mounted /boot (read-write)")
    sign.add_argument("--gnupghome", metavar="DIR", help="the owner's GnuPG home (default: gpg's)")
    sign.add_argument("--key", metavar="FPR", help="signing key (default: gpg's default key)")
    sign.add_argument(
        "--pin-fd",
        type=int,
        metavar="N",
        help="read the card PIN / key passphrase from this file descriptor "
        "(default: gpg-agent's pinentry asks)",
    )
    sign.add_argument(
        "--no-rollback",
        action="store_true",
        help="do not bind to (or increment) the TPM rollback counter",
    )
    add_tcti_option(sign)
    add_json_option(sign)
    sign.set_defaults(func=_cmd_sign)

    verify = boot_sub.add_parser(
        "verify",
        help="check the /boot signature, every file, and the rollback counter",
        description="Exit 0 when all hold, 3 otherwise.  --json gives the stable report "
        "(schema heads.boot-verification/1).",
    )
    verify.add_argument("bootdir", metavar="BOOTDIR", help="the mounted /boot")
    verify.add_argument(
        "--keyring",
        required=True,
        metavar="FILE",
        help="binary OpenPGP keyring with the owner's public key (gpg --export > FILE)",
    )
    verify.add_argument(
        "--no-rollback", action="store_true", help="do not check the TPM rollback counter"
    )
    add_tcti_option(verify)
    add_json_option(verify)
    # Nothing on the verify path logs at the WARNING level logging is set up with; only
    # --debug shows the records (heads.cli.main sets logging up for it).
    verify.set_defaults(func=cmd_verify, uses_logging=False)
