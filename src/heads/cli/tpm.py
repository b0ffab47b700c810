"""`heads tpm ...`: inspect and drive the TPM.

JSON output (``--json``) is stable; the shapes are documented in docs/json.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from heads.cli.common import (
    add_json_option,
    add_tcti_option,
    open_tpm,
    pcr_index,
    print_json,
    read_secret_fd,
    read_secret_stdin,
    tcti_from,
)
from heads.errors import UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from heads.adapters.tpm import LockoutState, TpmInfo
    from heads.core.digest import HashAlg
    from heads.core.pcr import PcrSelection
    from heads.core.secret import Secret

__all__ = ["pcr_selection_arg", "register"]

Handler = Callable[[argparse.Namespace], int]


def _handle(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a handle (e.g. 0x81004d47)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range")
    return value


def _lockout_json(state: LockoutState) -> dict[str, object]:
    return {
        "failed_tries": state.failed_tries,
        "max_tries": state.max_tries,
        "tries_left": state.tries_left,
        "in_lockout": state.in_lockout,
        "recovery_interval_s": state.recovery_interval_s,
        "lockout_recovery_s": state.lockout_recovery_s,
        "wait_s": state.wait_s,
    }


def _info_json(tcti: str, info: TpmInfo) -> dict[str, object]:
    return {
        "tcti": tcti,
        "manufacturer": info.manufacturer,
        "vendor": info.vendor,
        "firmware_version": info.firmware_version,
        "spec_revision": info.spec_revision,
        "banks": [b.value for b in info.banks],
        "endorsement_key": info.endorsement_key,
        "lockout": _lockout_json(info.lockout),
        "objects": {f"0x{h:08x}": name for h, name in sorted(info.objects.items())},
    }


def _status(args: argparse.Namespace) -> int:
    tcti = tcti_from(args)
    with open_tpm(tcti) as tpm:
        info = tpm.info()
    if args.json:
        print_json(_info_json(tcti, info))
        return 0
    lock = info.lockout
    print(f"TPM:           {info.manufacturer} {info.vendor} (firmware {info.firmware_version})")
    print(f"spec revision: {info.spec_revision}")
    print(f"PCR banks:     {', '.join(b.value for b in info.banks)}")
    print(f"endorsement:   {'EK present' if info.endorsement_key else 'no EK persisted'}")
    if lock.in_lockout:
        print(f"lockout:       LOCKED OUT: wait up to {lock.wait_s} s (or reset the TPM)")
    else:
        print(
            f"lockout:       {lock.failed_tries} failed of {lock.max_tries} allowed "
            f"({lock.tries_left} left; one forgiven every {lock.recovery_interval_s} s)"
        )
    if info.objects:
        for handle, name in sorted(info.objects.items()):
            print(f"object:        0x{handle:08x} {name}")
    else:
        print("objects:       none of heads' objects exist (not provisioned)")
    return 0


def _pcrs(args: argparse.Namespace) -> int:
    from heads.core.digest import HashAlg
    from heads.core.pcr import PCR_COUNT

    with open_tpm(tcti_from(args)) as tpm:
        banks = tpm.banks()
        if args.bank:
            try:
                wanted = [HashAlg.from_name(args.bank)]
            except ValueError as exc:
                hint = "banks: " + ", ".join(b.value for b in banks)
                raise UsageError(str(exc), hint=hint) from None
        else:
            wanted = list(banks)
        values = {alg: tpm.read_pcrs(alg, range(PCR_COUNT)) for alg in wanted}
    if args.json:
        print_json(
            {alg.value: {str(i): v.hex() for i, v in pcrs.items()} for alg, pcrs in values.items()}
        )
        return 0
    for alg, pcrs in values.items():
        print(f"{alg.value}:")
        for index, value in pcrs.items():
            print(f"  {index:2d}: {value.hex()}")
    return 0


def _digest_arg(text: str) -> tuple[HashAlg, bytes]:
    from heads.core.digest import HashAlg

    bank, sep, hex_value = text.rpartition(":")
    try:
        value = bytes.fromhex(hex_value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: digest is not hex") from None
    if sep:
        try:
            alg = HashAlg.from_name(bank)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    else:
        sizes = {a.digest_size: a for a in (HashAlg.SHA1, HashAlg.SHA256)}
        if len(value) not in sizes:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give BANK:HEX, or 40 (sha1) or 64 (sha256) hex digits"
            )
        alg = sizes[len(value)]
    if len(value) != alg.digest_size:
        raise argparse.ArgumentTypeError(f"a {alg.value} digest has {alg.digest_size} bytes")
    return alg, value


def _extend(args: argparse.Namespace) -> int:
    from heads.flows.measure import (
        EventLogWriter,
        default_log_path,
        measure_digests,
        measure_file,
        measure_string,
    )

    log = EventLogWriter(Path(args.log) if args.log else default_log_path())
    with open_tpm(tcti_from(args)) as tpm:
        if args.string is not None:
            record = measure_string(tpm, log, args.pcr, args.string, description=args.description)
        elif args.file is not None:
            record = measure_file(tpm, log, args.pcr, Path(args.file), description=args.description)
        else:
            digests = dict(args.digest)
            if len(digests) != len(args.digest):
                raise UsageError("two --digest values for the same bank")
            record = measure_digests(tpm, log, args.pcr, digests, description=args.description)
        after = {alg: tpm.read_pcrs(alg, [args.pcr])[args.pcr] for alg in record.digests}
    for alg, value in after.items():
        print(f"PCR {args.pcr} {alg.value}: {value.hex()}")
    print(f"logged as record {record.recnum} in {log.path}", file=sys.stderr)
    return 0


def _pcr_values(items: list[str], alg: HashAlg) -> dict[int, bytes]:
    values: dict[int, bytes] = {}
    for item in items:
        index_s, sep, hex_value = item.partition("=")
        try:
            index = int(index_s, 10)
            value = bytes.fromhex(hex_value)
        except ValueError:
            raise UsageError(f"bad --pcr-value {item!r}", hint="write it as 4=<hex>") from None
        if not sep or len(value) != alg.digest_size:
            raise UsageError(f"bad --pcr-value {item!r}: needs {alg.digest_size} bytes of hex")
        values[index] = value
    return values


def _seal(args: argparse.Namespace) -> int:
    from heads.core.digest import HashAlg
    from heads.core.pcr import PcrSelection, parse_pcr_list

    selection = PcrSelection(HashAlg.SHA256, parse_pcr_list(args.pcrs))
    values = _pcr_values(args.pcr_value, selection.alg)
    stray = set(values) - set(selection.indices)
    if stray:
        raise UsageError(f"--pcr-value for PCRs {sorted(stray)} outside --pcrs {args.pcrs}")
    if sys.stdin.isatty():
        print("reading the secret from standard input (end with Ctrl-D)...", file=sys.stderr)
    secret = read_secret_stdin("secret")
    auth = read_secret_fd(args.passphrase_fd) if args.passphrase_fd is not None else None
    owner = _owner_auth(args)
    with open_tpm(tcti_from(args)) as tpm:
        record = tpm.seal(
            args.handle, secret, selection, pcr_values=values, auth=auth, owner_auth=owner
        )
    given = ", ".join(str(i) for i in sorted(values)) or "none"
    print(
        f"sealed {len(secret)} bytes at 0x{args.handle:08x} to {selection}"
        f"{' + passphrase' if auth else ''} (given values for PCRs: {given}; "
        f"policy {record.policy.hex()})",
        file=sys.stderr,
    )
    return 0


def pcr_selection_arg(text: str) -> PcrSelection:
    """argparse type: ``sha256:0,1,2,3,4,7``, or a bare list/range (``0-7``) meaning sha256."""
    from heads.core.digest import HashAlg
    from heads.core.pcr import PcrSelection, parse_pcr_list

    try:
        if ":" in text:
            return PcrSelection.parse(text)
        return PcrSelection(HashAlg.SHA256, parse_pcr_list(text))
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _unseal(args: argparse.Namespace) -> int:
    if sys.stdout.isatty():
        raise UsageError(
            "refusing to print a secret on a terminal", hint="redirect standard output to a pipe"
        )
    auth = read_secret_fd(args.passphrase_fd) if args.passphrase_fd is not None else None
    with open_tpm(tcti_from(args)) as tpm:
        secret = tpm.unseal(args.handle, auth=auth, selection=args.pcrs)
    sys.stdout.buffer.write(secret.reveal())
    sys.stdout.buffer.flush()
    return 0


def _counter(args: argparse.Namespace) -> int:
    with open_tpm(tcti_from(args)) as tpm:
        if args.action == "create":
            index = tpm.nv_counter_create(owner_auth=_owner_auth(args))
            value = tpm.nv_counter_read(index)
        else:
            if args.id is None:
                raise UsageError(f"counter {args.action} needs the counter ID (e.g. 0x0123abcd)")
            index = args.id
            value = (
                tpm.nv_counter_increment(index)
                if args.action == "increment"
                else tpm.nv_counter_read(index)
            )
    if args.json:
        print_json({"id": f"0x{index:08x}", "value": value})
    else:
        print(f"0x{index:08x}: {value}")
    return 0


def _owner_auth(args: argparse.Namespace) -> Secret | None:
    fd = getattr(args, "owner_passphrase_fd", None)
    return read_secret_fd(fd, "owner passphrase") if fd is not None else None


def _reset(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "heads tpm reset destroys every sealed secret and counter in the TPM",
                hint="pass --yes to confirm",
            )
        answer = input("Erase the TPM's owner hierarchy (all sealed secrets, counters)? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("not reset", file=sys.stderr)
            return 1
    with open_tpm(tcti_from(args)) as tpm:
        tpm.reset(owner_auth=_owner_auth(args))
        lock = tpm.lockout_state()
    print(
        f"TPM cleared and owned; dictionary-attack protection: {lock.max_tries} tries, "
        f"one forgiven every {lock.recovery_interval_s} s; primary key at 0x81000000",
        file=sys.stderr,
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from heads.flows.tpm_demo import run_tpm_demo

    return run_tpm_demo(print)


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Handler,
    help_text: str,
    *,
    json: bool = False,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    add_tcti_option(parser)
    if json:
        add_json_option(parser)
    parser.set_defaults(func=func)
    return parser


def register(parser: argparse.ArgumentParser) -> None:
    tpm_sub = parser.add_subparsers(dest="tpm_command", metavar="SUBCOMMAND", required=True)

    _add(tpm_sub, "status", _status, "vendor, banks, lockout state, heads' objects", json=True)

    p = _add(tpm_sub, "pcrs", _pcrs, "read PCRs of every bank (or one)", json=True)
    p.add_argument("--bank", help="only this bank (sha1, sha256, ...)")

    p = _add(tpm_sub, "extend", _extend, "extend a PCR and record it in the event log")
    p.add_argument("pcr", type=pcr_index, metavar="PCR")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--string", help="extend with SHA(STRING) (no trailing newline)")
    what.add_argument("--file", help="extend with SHA(bytes of FILE)")
    what.add_argument(
        "--digest",
        type=_digest_arg,
        action="append",
        help="extend with this digest as is: [BANK:]HEX; repeat for several banks",
    )
    p.add_argument("--description", default="", help="free text stored in the event log")
    p.add_argument("--log", help="event log path (default: $HEADS_EVENT_LOG or /run/heads/...)")

    p = _add(tpm_sub, "seal", _seal, "seal the secret on stdin to sha256 PCRs")
    p.add_argument("--handle", type=_handle, required=True, help="persistent handle 0x81xxxxxx")
    p.add_argument("--pcrs", required=True, help="PCR list, e.g. 0,1,2,3,4,7")
    p.add_argument(
        "--pcr-value",
        action="append",
        default=[],
        metavar="N=HEX",
        help="seal PCR N to this value instead of its current one (repeatable)",
    )
    p.add_argument("--passphrase-fd", type=int, help="also require the passphrase read from FD")
    p.add_argument("--owner-passphrase-fd", type=int, help="TPM owner passphrase from FD")

    p = _add(tpm_sub, "unseal", _unseal, "unseal a secret to stdout (raw bytes)")
    p.add_argument("--handle", type=_handle, required=True)
    p.add_argument("--passphrase-fd", type=int, help="the passphrase, read from FD")
    p.add_argument(
        "--pcrs",
        type=pcr_selection_arg,
        metavar="SEL",
        help="unseal with this PCR selection (e.g. sha256:0,1,2,3,4,7) instead of the seal "
        "record's (or, without one, shell Heads' for the handle)",
    )

    p = _add(tpm_sub, "counter", _counter, "monotonic NV counters (rollback protection)", json=True)
    p.add_argument("action", choices=("create", "read", "increment"))
    p.add_argument("id", nargs="?", type=_handle, help="counter ID (NV index), e.g. 0x0123abcd")
    p.add_argument("--owner-passphrase-fd", type=int, help="TPM owner passphrase from FD")

    p = _add(tpm_sub, "reset", _reset, "clear the TPM and take ownership (destroys secrets)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--owner-passphrase-fd", type=int, help="new owner passphrase from FD")

    p = tpm_sub.add_parser("demo", help="seal/unseal/extend walkthrough on a fresh swtpm")
    p.set_defaults(func=_demo)
