"""`heads pcr replay`, and the warnings and notes every `heads pcr` command prints.

A module of its own, free of argparse, so that the quick command-line reader
(:mod:`heads.cli.fast_argv`) can run it without building the parser (docs/architecture.md
§Command start-up).  The command's output is described in :mod:`heads.cli.pcr`.
"""

from __future__ import annotations

import sys

from heads.cli.json_output import print_json
from heads.core.text import shown
from heads.errors import ExitCode

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from argparse import Namespace

    from heads.core.eventlog.model import EventLog
    from heads.core.eventlog.replay import Replay

__all__ = ["notes", "replay", "warn"]


def warn(log: EventLog) -> None:
    for w in log.warnings:
        print(f"warning: {log.source}: {w}", file=sys.stderr)


def notes(replay: Replay) -> None:
    """Digests that do not match their payload, and events the replay left out."""
    seen: set[tuple[str, int]] = set()
    for m in replay.mismatches:
        key = (m.event.source, m.event.number)
        if key in seen:
            continue
        seen.add(key)
        print(f"note: {m}", file=sys.stderr)
    for notice in replay.notices:
        print(f"note: {notice}", file=sys.stderr)


def replay(args: Namespace) -> int:
    from heads.core.eventlog.replay import replay_logs
    from heads.core.path_text import posix_path_text
    from heads.flows.log_files import read_log

    several = len(args.log) > 1
    results: list[dict[str, object]] = []
    for path in args.log:
        log = read_log(posix_path_text(path), args.format)
        warn(log)
        replayed = replay_logs([log], record_steps=False)
        notes(replayed)
        if args.json:
            results.append({"path": path, "pcrs": replayed.to_json()})
            continue
        if several:
            print(f"== {shown(path)}")
        if not log.events:
            print(f"{shown(log.source)}: no events")
        for alg, bank in replayed.pcrs.items():
            for pcr, value in bank.items():
                print(f"{alg.value:<8} PCR {pcr:>2}: {value.hex()}")
        for alg, pcr in sorted(replayed.incomplete, key=lambda x: (x[0].value, x[1])):
            print(f"{alg.value:<8} PCR {pcr:>2}: (some events carry no {alg.value} digest)")
    if args.json:
        print_json({"logs": results} if several else results[0]["pcrs"])
    return ExitCode.OK
