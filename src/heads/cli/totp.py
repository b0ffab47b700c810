"""`heads totp ...`: seal, show and wipe the TOTP secret that proves the firmware to the owner.

``show --json`` prints ``{"code", "time_utc", "seconds_left", "step", "valid_until_utc"}``.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from heads.cli.common import (
    add_json_option,
    add_tcti_option,
    open_tpm,
    print_json,
    read_secret_fd,
    tcti_from,
)
from heads.cli.tpm import pcr_selection_arg
from heads.core.platform import FIRMWARE_EVENT_LOG, PROFILES
from heads.errors import UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from datetime import datetime

    from heads.core.otp import TotpCode
    from heads.core.secret import Secret
    from heads.flows.totp import TotpProvisioning

__all__ = ["register"]

Handler = Callable[[argparse.Namespace], int]


def _owner_auth(args: argparse.Namespace) -> Secret | None:
    fd = getattr(args, "owner_passphrase_fd", None)
    return read_secret_fd(fd, "owner passphrase") if fd is not None else None


def _confirm(question: str, *, force: bool) -> None:
    if force:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} needs confirmation", hint="pass --force to do it anyway")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("cancelled; nothing was changed")


def _default_profile() -> str:
    # UEFI firmware exposes /sys/firmware/efi; coreboot boards running Heads do not.
    return "uefi" if Path("/sys/firmware/efi").is_dir() else "coreboot"


def _pcr4_arg(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hex") from None
    if len(value) != 32:
        raise argparse.ArgumentTypeError("PCR 4's sha256 value has 64 hex digits")
    return value


def _time_arg(text: str) -> datetime:
    from datetime import datetime

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-25T21:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give the time zone (e.g. a trailing Z for UTC)")
    return value


def _utf8_stdout() -> bool:
    return (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"


def _print_provisioning(prov: TotpProvisioning, *, qr: bool) -> None:
    from heads.core.otp import group_base32
    from heads.core.qr import qr_matrix, render_half_blocks

    # Shown once and never stored elsewhere: the owner scans it now or types the base32.
    if qr and _utf8_stdout():
        print(render_half_blocks(qr_matrix(prov.uri)))
        print()
    print(f"Scan the QR code, or add this key by hand ({prov.label}, TOTP, 6 digits, 30 s):")
    print(f"  {group_base32(prov.base32)}")
    print()
    print(f"Sealed to {prov.selection} (PCR 4: {prov.pcr4_source}).")
    if prov.pcr4_now_differs:
        print(
            "Note: PCR 4 was already extended in this boot, so codes appear after a reboot.",
        )


def _seal(args: argparse.Namespace) -> int:
    from heads.core.otp import DEFAULT_LABEL
    from heads.flows.totp import seal_totp, totp_exists

    owner_auth = _owner_auth(args)
    with open_tpm(tcti_from(args)) as tpm:
        if totp_exists(tpm):
            _confirm(
                "Replace the sealed TOTP secret? Your authenticator's entry will stop matching.",
                force=args.force,
            )
        prov = seal_totp(
            tpm,
            pcr4_firmware=args.pcr4,
            profile=args.profile or _default_profile(),
            label=args.label if args.label is not None else DEFAULT_LABEL,
            rng=os.urandom,
            event_log=Path(args.event_log) if args.event_log else FIRMWARE_EVENT_LOG,
            owner_auth=owner_auth,
        )
    _print_provisioning(prov, qr=not args.no_qr)
    return 0


def _code_json(code: TotpCode) -> dict[str, object]:
    return {
        "code": code.code,
        "time_utc": code.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds_left": code.seconds_left,
        "step": code.step,
        "valid_until_utc": code.valid_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _code_line(code: TotpCode) -> str:
    return f"TOTP {code.code}  {code.at:%Y-%m-%d %H:%M:%S} UTC  ({code.seconds_left:2d} s left)"


@contextmanager
def _keypress_mode() -> Iterator[None]:
    """Single key presses without Enter on a terminal (Heads' show_totp_until_esc)."""
    fd = sys.stdin.fileno()
    if not sys.stdin.isatty():
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _key_pressed(timeout_s: float) -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], timeout_s)
    if ready:
        os.read(sys.stdin.fileno(), 64)
        return True
    return False


def _show(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from heads.flows.totp import UnsealedSecretCache, show_totp

    if args.watch and args.json:
        raise UsageError("--watch and --json do not go together", hint="use one of them")
    cache = UnsealedSecretCache(selection=args.pcrs)
    with open_tpm(tcti_from(args)) as tpm:

        def now() -> datetime:
            return args.time if args.time is not None else datetime.now(UTC)

        code = show_totp(tpm, now=now(), cache=cache)
        if args.json:
            print_json(_code_json(code))
            return 0
        if not args.watch:
            print(_code_line(code))
            return 0
        # One unseal, then recompute from memory each second until a key press.
        with _keypress_mode():
            print("Press any key to stop.", file=sys.stderr)
            while True:
                sys.stdout.write("\r" + _code_line(code))
                sys.stdout.flush()
                if _key_pressed(1.0):
                    break
                code = show_totp(tpm, now=now(), cache=cache)
            sys.stdout.write("\n")
    return 0


def _wipe(args: argparse.Namespace) -> int:
    from heads.flows.totp import totp_exists, wipe_totp

    owner_auth = _owner_auth(args)
    with open_tpm(tcti_from(args)) as tpm:
        if not totp_exists(tpm):
            print("No TOTP secret is sealed; nothing to wipe.")
            return 0
        _confirm("Wipe the sealed TOTP secret?", force=args.force)
        wipe_totp(tpm, owner_auth=owner_auth)
    print("Wiped the TOTP secret (handle 0x81004d47).")
    return 0


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Handler,
    help_text: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    add_tcti_option(parser)
    parser.set_defaults(func=func)
    return parser


def register(parser: argparse.ArgumentParser) -> None:
    totp_sub = parser.add_subparsers(dest="totp_command", metavar="SUBCOMMAND", required=True)

    p = _add(totp_sub, "seal", _seal, "generate and seal a new TOTP secret; show its QR code")
    # The default (heads.core.otp.DEFAULT_LABEL) is filled in by _seal: it is not imported here.
    p.add_argument("--label", help="name in the authenticator app")
    p.add_argument("--force", action="store_true", help="replace an existing secret, no prompt")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="platform profile: which PCRs to seal to (default: uefi when booted by UEFI)",
    )
    p.add_argument(
        "--pcr4",
        type=_pcr4_arg,
        metavar="HEX",
        help="PCR 4's firmware-only sha256 value (default: replayed from the event log)",
    )
    p.add_argument("--event-log", help=f"firmware event log (default: {FIRMWARE_EVENT_LOG})")
    p.add_argument("--no-qr", action="store_true", help="print only the base32 secret")
    p.add_argument("--owner-passphrase-fd", type=int, help="TPM owner passphrase from FD")

    p = _add(totp_sub, "show", _show, "unseal the secret and print the current code")
    add_json_option(p)
    p.add_argument("--watch", action="store_true", help="refresh every second until a key press")
    p.add_argument(
        "--time", type=_time_arg, help="compute for this ISO 8601 time instead of the clock"
    )
    p.add_argument(
        "--pcrs",
        type=pcr_selection_arg,
        metavar="SEL",
        help="unseal with this PCR selection (e.g. sha256:0,1,2,3,4,7) instead of the seal "
        "record's (or, without one, shell Heads')",
    )

    p = _add(totp_sub, "wipe", _wipe, "remove the sealed TOTP secret")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--owner-passphrase-fd", type=int, help="TPM owner passphrase from FD")
