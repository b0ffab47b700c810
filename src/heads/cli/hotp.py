"""`heads hotp ...`: program a USB security token with the sealed secret and check its verdict.

``check --json`` prints ``{"result", "counter", "counter_index"}``; the exit status is 0 when
the token verified the code and 3 when it refused it (possible tampering).
"""

from __future__ import annotations

import argparse
import sys
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
from heads.errors import UsageError, VerificationError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from heads.core.secret import Secret

__all__ = ["register"]


def _admin_pin(args: argparse.Namespace) -> Secret:
    if args.admin_pin_fd is not None:
        return read_secret_fd(args.admin_pin_fd, "Admin PIN")
    if not sys.stdin.isatty():
        raise UsageError("the token's Admin PIN is needed", hint="pass --admin-pin-fd FD")
    import getpass

    from heads.core.secret import Secret

    pin = getpass.getpass("Security token Admin PIN: ").encode()
    if not pin:
        raise UsageError("empty Admin PIN")
    return Secret(pin)


def _owner_auth(args: argparse.Namespace) -> Secret | None:
    fd = args.owner_passphrase_fd
    return read_secret_fd(fd, "owner passphrase") if fd is not None else None


def _seal(args: argparse.Namespace) -> int:
    from heads.adapters.token import HotpVerificationToken
    from heads.flows.totp import HOTP_INDEX_FILE, UnsealedSecretCache, seal_hotp

    token = HotpVerificationToken()
    info = token.info()
    retries = "unknown" if info.pin_retries is None else str(info.pin_retries)
    print(f"{info.brand} (serial {info.serial or 'unknown'}): {retries} PIN tries left.")
    admin_pin = _admin_pin(args)
    owner_auth = _owner_auth(args)
    with open_tpm(tcti_from(args)) as tpm:
        prov = seal_hotp(
            tpm,
            token,
            admin_pin=admin_pin,
            boot_dir=Path(args.boot_dir),
            cache=UnsealedSecretCache(selection=args.pcrs),
            owner_auth=owner_auth,
        )
    print(
        f"Programmed the token; next HOTP counter {prov.next_counter} "
        f"(TPM NV counter 0x{prov.counter_index:08x}, named in {HOTP_INDEX_FILE})."
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from heads.adapters.token import HotpCheck, HotpVerificationToken
    from heads.flows.totp import NotProvisionedError, UnsealedSecretCache, check_hotp

    token = HotpVerificationToken()
    with open_tpm(tcti_from(args)) as tpm:
        result = check_hotp(
            tpm,
            token,
            boot_dir=Path(args.boot_dir),
            cache=UnsealedSecretCache(selection=args.pcrs),
            owner_auth=_owner_auth(args),
        )
    if args.json:
        print_json(
            {
                "result": result.check.value,
                "counter": result.counter,
                "counter_index": f"0x{result.counter_index:08x}",
            }
        )
    if result.check is HotpCheck.NOT_PROGRAMMED:
        raise NotProvisionedError(
            "the security token's HOTP slot is not programmed",
            hint="program it: heads hotp seal",
        )
    if result.check is HotpCheck.INVALID:
        raise VerificationError(
            f"the security token refused the HOTP code for counter {result.counter}",
            hint="the firmware may have changed since the token was programmed, or the token "
            "belongs to another machine; compare the TOTP code with your phone",
        )
    if not args.json:
        print(f"HOTP: verified by the security token (counter {result.counter}).")
    return 0


def _add_pcrs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pcrs",
        type=pcr_selection_arg,
        metavar="SEL",
        help="unseal the secret with this PCR selection (e.g. sha256:0,1,2,3,4,7) instead of "
        "the seal record's (or, without one, shell Heads')",
    )


def register(parser: argparse.ArgumentParser) -> None:
    hotp_sub = parser.add_subparsers(dest="hotp_command", metavar="SUBCOMMAND", required=True)

    help_text = "program the token's HOTP slot with the sealed secret"
    p = hotp_sub.add_parser("seal", help=help_text, description=help_text)
    add_tcti_option(p)
    p.add_argument("--boot-dir", default="/boot", help="where the counter index is recorded")
    p.add_argument("--admin-pin-fd", type=int, help="the token's Admin PIN from FD")
    p.add_argument("--owner-passphrase-fd", type=int, help="TPM owner passphrase from FD")
    _add_pcrs_option(p)
    p.set_defaults(func=_seal)

    help_text = "compute the next HOTP code and have the token verify it"
    p = hotp_sub.add_parser("check", help=help_text, description=help_text)
    add_tcti_option(p)
    add_json_option(p)
    p.add_argument("--boot-dir", default="/boot", help="where the counter index is recorded")
    p.add_argument("--owner-passphrase-fd", type=int, help="TPM owner passphrase from FD")
    _add_pcrs_option(p)
    p.set_defaults(func=_check)
