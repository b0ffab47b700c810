"""`heads pcr ...`: replay event logs, list their events, check them against the TPM, predict.

Commands and their stable JSON shapes (``--json``; keys sorted, hex in lower case):

``heads pcr replay LOG [LOG ...] [--format auto|tcg|coreboot|cel] [--json]``
    Every PCR the log extends, per bank::

        {"sha1": {"0": "<hex>", ...}, "sha256": {"0": "<hex>", ...}}

    Several logs are replayed each on its own (as separate machines' logs, in one process):
    the text output gives each log's values under a ``== LOG`` line, the JSON output is
    ``{"logs": [{"path": str, "pcrs": <the object above>}, ...]}`` in the order given.

    A bank some event gives no digest for is left out for that PCR.  Warnings (truncated
    log, malformed header) and notes (digests that do not match their payload, events for a
    PCR that does not exist, which are not extended) go to stderr.

``heads pcr log LOG [--format ...] [--json]``
    The decoded events::

        {"path": str, "format": "tcg-agile"|"tcg-sha1"|"coreboot"|"cbmem-text"|"cel",
         "banks": ["sha1", ...], "truncated": bool, "warnings": [str, ...],
         "spec_id": null | {"signature": str, "platform_class": int, "version": "2.0.2",
                            "uintn_size": int, "algorithms": [{"id": "0x000b", "size": 32}],
                            "vendor_info": "<hex>"},
         "startup_locality": null | int, "hcrtm": bool,
         "events": [{"number": int, "offset": int|null, "line": int|null, "pcr": int,
                     "type": int|null, "type_name": "EV_...", "digests": {"sha256": "<hex>"},
                     "data_size": int, "description": str, "summary": str,
                     "decoded": {...}, "extended": bool,
                     "digest_matches_payload": true|false|null}]}

``heads pcr check [--log LOG ...] [--format ...] [--pcrs LIST] [--tcti T] [--json]``
    Default logs: the kernel's firmware log (or `cbmem -L` when that is missing or empty,
    as on coreboot boards) and our runtime log.  Exit 0 when every
    compared PCR matches, 3 otherwise::

        {"ok": bool,
         "logs": [{"path": str, "format": str, "events": int, "truncated": bool,
                   "warnings": [str]}],
         "notices": [str],          # events not extended (PCR >= 24), as `replay` notes them
         "pcrs": [{"bank": "sha256", "pcr": 4, "tpm": "<hex>", "replayed": "<hex>"|null,
                   "status": "match"|"log-ahead"|"log-incomplete"|"not-logged"|
                             "bank-incomplete",
                   "events": int, "explanation": str,
                   "first_unexplained_event": {"log": str, "number": int,
                        "offset": int|null, "line": int|null, "type": str,
                        "description": str},            # only for "log-ahead"
                   "suspects": [str]}]}                 # only when some exist

``heads pcr predict PCR [--log LOG ...|--no-log] [--bank B] [--string S|--file F|--digest HEX]...
[--policy LIST [--others log|tpm]] [--json]``
    The value PCR will hold after the firmware log's events plus the extends, in the order
    given (Heads' ``calcfuturepcr``)::

        {"bank": "sha256", "pcr": 4, "firmware": "<hex>",
         "extends": [{"kind": "string"|"data"|"digest", "label": str, "digest": "<hex>",
                      "after": "<hex>"}],
         "value": "<hex>",
         "policy": {"selection": "sha256:0,4", "digest": "<hex>",
                    "values": {"0": "<hex>", ...}}}     # only with --policy

Errors name the file, the byte offset (or line) and the event number.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from heads.cli import pcr_replay
from heads.cli.common import add_json_option, add_tcti_option, pcr_index, print_json, tcti_from
from heads.core.log_formats import FORMAT_CHOICES
from heads.core.platform import FIRMWARE_EVENT_LOG
from heads.errors import ExitCode, MeasurementError, UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from heads.core.digest import HashAlg
    from heads.core.eventlog.model import EventLog
    from heads.core.eventlog.predict import Measurement

# The event-log modules are imported by each command from their own submodules, not from the
# heads.core.eventlog package: `replay` needs neither the comparison nor the prediction code.

__all__ = ["register"]

Handler = Callable[[argparse.Namespace], int]


def _bank(text: str) -> HashAlg:
    from heads.core.digest import HashAlg

    try:
        return HashAlg.from_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- log -----------------------------------------------------------------------------------


def _log_json(log: EventLog) -> dict[str, object]:
    from heads.core.eventlog.events import (
        decode_event,
        decode_startup_locality,
        event_summary,
        event_type_name,
    )
    from heads.core.eventlog.model import EV_NO_ACTION
    from heads.core.eventlog.replay import has_payload_digest, replay_logs
    from heads.core.pcr import PCR_COUNT

    replay = replay_logs([log])
    mismatched = {(m.event.number, m.alg) for m in replay.mismatches}
    spec: dict[str, object] | None = None
    if log.spec_id is not None:
        s = log.spec_id
        spec = {
            "signature": s.signature,
            "platform_class": s.platform_class,
            "version": ".".join(str(v) for v in s.version),
            "uintn_size": s.uintn_size,
            "algorithms": [{"id": f"0x{a:04x}", "size": n} for a, n in s.algorithms],
            "vendor_info": s.vendor_info.hex(),
        }
    events = []
    for ev in log.events:
        extended = ev.event_type != EV_NO_ACTION and 0 <= ev.pcr < PCR_COUNT
        checkable = has_payload_digest(ev)
        matches: bool | None = None
        if checkable:
            matches = not any((ev.number, a) in mismatched for a in ev.digests)
        events.append(
            {
                "number": ev.number,
                "offset": ev.offset,
                "line": ev.line,
                "pcr": ev.pcr,
                "type": ev.event_type,
                "type_name": event_type_name(ev.event_type),
                "digests": {a.value: d.hex() for a, d in ev.digests.items()}
                | {f"0x{a:04x}": d.hex() for a, d in ev.other_digests},
                "data_size": len(ev.data),
                "description": ev.description,
                "summary": event_summary(ev),
                "decoded": decode_event(ev),
                "extended": extended,
                "digest_matches_payload": matches,
            }
        )
    locality = next(
        (loc for ev in log.events if (loc := decode_startup_locality(ev)) is not None), None
    )
    return {
        "path": log.source,
        "format": log.format.value,
        "banks": [a.value for a in log.banks],
        "truncated": log.truncated,
        "warnings": [str(w) for w in log.warnings],
        "spec_id": spec,
        "startup_locality": locality,
        "hcrtm": replay.hcrtm,
        "events": events,
    }


def _log(args: argparse.Namespace) -> int:
    from heads.core.digest import HashAlg
    from heads.core.eventlog.events import event_summary, event_type_name
    from heads.core.eventlog.replay import replay_logs
    from heads.flows.log_files import read_log

    log = read_log(Path(args.log), args.format)
    if args.json:
        print_json(_log_json(log))
        return ExitCode.OK
    pcr_replay.warn(log)
    pcr_replay.notes(replay_logs([log]))
    print(f"{log.source}: {log.format.value}, {len(log.events)} events, banks "
          f"{', '.join(a.value for a in log.banks) or 'none'}")  # fmt: skip
    primary = HashAlg.SHA256 if HashAlg.SHA256 in log.banks else None
    for ev in log.events:
        alg = primary or next(iter(ev.digests), None)
        value = ev.digests.get(alg) if alg is not None else None
        digest = value.hex()[:16] if value is not None else ""
        where = f"@{ev.offset}" if ev.offset is not None else (f"L{ev.line}" if ev.line else "")
        name = event_type_name(ev.event_type) if ev.event_type is not None else "-"
        print(f"{ev.number:>4} {where:>8} PCR {ev.pcr:>2} {name:<34} {digest:<16} "
              f"{event_summary(ev)[:100]}")  # fmt: skip
    return ExitCode.OK


# -- check ---------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from heads.adapters.tpm import open_tpm
    from heads.core.pcr import parse_pcr_list
    from heads.flows.pcr_check import FIRMWARE_LOG_PATH, check_pcrs, default_logs, read_log

    logs = [read_log(Path(p), args.format) for p in args.log] if args.log else default_logs()
    if not logs:
        raise UsageError(
            f"no event log found ({FIRMWARE_LOG_PATH} is missing or empty, no `cbmem -L` log, "
            "no heads measurement log)",
            hint="give the logs with --log (a firmware log, `cbmem -L` output, our log)",
        )
    pcrs = parse_pcr_list(args.pcrs) if args.pcrs else None
    with open_tpm(tcti_from(args)) as tpm:
        result = check_pcrs(tpm, logs, pcrs)
    if args.json:
        print_json(result.to_json())
        return ExitCode.OK if not result.comparison.differing else ExitCode.VERIFICATION_FAILED
    for log in result.logs:
        pcr_replay.warn(log)
    pcr_replay.notes(result.replay)
    for r in result.comparison.results:
        mark = "ok " if r.matches else "BAD"
        print(f"{mark} {r.alg.value:<7} PCR {r.pcr:>2} {r.tpm.hex()[:16]}  {r.explanation}")
    differing = result.comparison.differing
    if differing:
        raise MeasurementError(
            f"{len(differing)} PCR value(s) differ from the event logs",
            details=tuple(f"{r.alg.value} PCR {r.pcr}: {r.explanation}" for r in differing[:16]),
            hint="a difference means something was measured that the logs do not show",
        )
    return ExitCode.OK


# -- predict -------------------------------------------------------------------------------


class _ExtendAction(argparse.Action):
    """Collects --string/--file/--digest in command-line order into ``args.extends``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, "extends", None) or [])
        items.append((self.metavar, str(values)))
        namespace.extends = items


def _measurements(items: Sequence[tuple[str, str]]) -> list[Measurement]:
    from heads.core.eventlog.predict import Measurement
    from heads.flows.pcr_check import read_measurement_file

    out: list[Measurement] = []
    for kind, value in items:
        if kind == "STRING":
            out.append(Measurement.string(value))
        elif kind == "FILE":
            out.append(read_measurement_file(Path(value)))
        else:
            out.append(Measurement.digest(value))
    return out


def _predict(args: argparse.Namespace) -> int:
    from heads.adapters.tpm import open_tpm
    from heads.core.eventlog.replay import replay_logs
    from heads.core.pcr import PcrSelection, parse_pcr_list
    from heads.flows.pcr_check import (
        FIRMWARE_LOG_PATH,
        predict_from_logs,
        predicted_policy,
        read_firmware_log,
        read_log,
    )

    if args.no_log and args.log:
        raise UsageError("--no-log and --log exclude each other")
    logs: list[EventLog] = []
    if not args.no_log:
        if args.log:
            logs = [read_log(Path(p), args.format) for p in args.log]
        else:
            firmware = read_firmware_log()
            if firmware is None:
                raise UsageError(
                    f"no firmware log: {FIRMWARE_LOG_PATH} is missing or empty and "
                    "`cbmem -L` gives none",
                    hint="give the firmware log with --log (e.g. `cbmem -L` output), or --no-log",
                )
            logs = [firmware]
        for log in logs:
            pcr_replay.warn(log)
    prediction = predict_from_logs(
        logs, args.bank, args.pcr, _measurements(getattr(args, "extends", None) or [])
    )
    out = prediction.to_json()
    policy_line = ""
    if args.policy:
        selection = PcrSelection(args.bank, parse_pcr_list(args.policy))
        if args.others == "tpm":
            with open_tpm(tcti_from(args)) as tpm:
                digest, values = predicted_policy(selection, prediction, tpm)
        else:
            replay = replay_logs(logs) if logs else None
            digest, values = predicted_policy(selection, prediction, replay)
        out["policy"] = {
            "selection": str(selection),
            "digest": digest.hex(),
            "values": {str(i): v.hex() for i, v in sorted(values.items())},
        }
        policy_line = f"PolicyPCR({selection}) digest: {digest.hex()}"
    if args.json:
        print_json(out)
        return ExitCode.OK
    print(f"{args.bank.value} PCR {args.pcr} after the firmware: {prediction.firmware_value.hex()}")
    for m, d, after in prediction.steps:
        print(f"  + {m.kind} {m.label[:60]!r} ({d.hex()[:16]}...) -> {after.hex()}")
    print(f"{args.bank.value} PCR {args.pcr} predicted: {prediction.value.hex()}")
    if policy_line:
        print(policy_line)
    return ExitCode.OK


# -- registration --------------------------------------------------------------------------


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMAT_CHOICES,
        default="auto",
        help="log format (default: detect): tcg = binary_bios_measurements, coreboot = CBMEM "
        "table or `cbmem -L` text, cel = heads' own log",
    )


def register(parser: argparse.ArgumentParser) -> None:
    pcr_sub = parser.add_subparsers(dest="pcr_command", metavar="SUBCOMMAND", required=True)

    p = pcr_sub.add_parser("replay", help="PCR values a log replays to")
    p.add_argument("log", metavar="LOG", nargs="+", help="one or more logs, each replayed alone")
    _add_format(p)
    add_json_option(p)
    # Neither replay nor log logs anything: they skip setting up logging (heads.cli.main).
    p.set_defaults(func=pcr_replay.replay, uses_logging=False)

    p = pcr_sub.add_parser("log", help="the events of a log, decoded")
    p.add_argument("log", metavar="LOG")
    _add_format(p)
    add_json_option(p)
    p.set_defaults(func=_log, uses_logging=False)

    p = pcr_sub.add_parser(
        "check", help="compare the TPM's PCRs with the logs and explain every difference"
    )
    p.add_argument(
        "--log",
        action="append",
        metavar="LOG",
        help=f"a log to replay (repeatable; default {FIRMWARE_EVENT_LOG} and heads' own log)",
    )
    _add_format(p)
    p.add_argument("--pcrs", help="only these PCRs (e.g. 0-7,9); default: logged PCRs and 0-7")
    add_tcti_option(p)
    add_json_option(p)
    p.set_defaults(func=_check)

    p = pcr_sub.add_parser(
        "predict", help="PCR value after the firmware log plus given extends (calcfuturepcr)"
    )
    p.add_argument("pcr", type=pcr_index, metavar="PCR")
    p.add_argument("--log", action="append", metavar="LOG", help="firmware log (repeatable)")
    p.add_argument("--no-log", action="store_true", help="start from the PCR's reset value")
    _add_format(p)
    # A string default goes through type=_bank like a given one (argparse), so HashAlg is
    # imported only when `predict` runs.
    p.add_argument("--bank", type=_bank, default="sha256", help="bank (default sha256)")
    p.add_argument("--string", action=_ExtendAction, metavar="STRING", help="extend H(STRING)")
    p.add_argument("--file", action=_ExtendAction, metavar="FILE", help="extend H(FILE bytes)")
    p.add_argument("--digest", action=_ExtendAction, metavar="HEX", help="extend HEX as is")
    p.add_argument(
        "--policy",
        metavar="LIST",
        help="also compute the PolicyPCR digest over these PCRs (e.g. 0,1,2,3,4,7)",
    )
    p.add_argument(
        "--others",
        choices=("log", "tpm"),
        default="log",
        help="where the other policy PCRs' values come from (default: the log replay)",
    )
    add_tcti_option(p)
    add_json_option(p)
    p.set_defaults(func=_predict, extends=[])
