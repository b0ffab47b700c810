"""Replay every test event log: heads vs Debian's `tpm2_eventlog` (tpm2-tools), same run.

For each round, the real logs in tests/data/eventlogs (the tpm2-tools and tpm2-tss fixtures listed
in tests/data/SOURCES.md) are replayed:

* heads, in-process: read + parse + replay (what `heads pcr check` and the boot runtime do);
* heads, one `heads pcr replay --json` process per log (what a shell user pays);
* heads, one `heads pcr replay --json LOG...` process for all the logs (the target: at least
  5x faster than one `tpm2_eventlog` per log, docs/architecture.md §Performance targets);
* `tpm2_eventlog LOG`, one process per log (parse, print YAML, replay), the tool a user would
  otherwise run;
* the start every heads command pays before its own code runs: the interpreter plus the
  ``import re`` of pip's console script (``python -c "import re"``), printed as the best
  ratio any Python command could reach here.

`heads` is the console script next to this interpreter (``python -m heads`` when there is
none), with heads' bytecode caches written first, as an installed package has them.  Prints
the medians of the whole-set times, the ratios and the load average.  Logs `tpm2_eventlog`
fails on are reported (and still timed: the time to fail).  With ``--instructions``, the
instructions executed by the one heads call and by the `tpm2_eventlog` processes are also
counted (valgrind): a ratio the machine's load does not move.

    .venv/bin/python bench/eventlog_replay.py [--rounds N] [--instructions]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import heads
from cli_startup import instructions  # the same valgrind count
from heads.core.eventlog import parse_log, replay_logs

LOGS = Path(__file__).resolve().parents[1] / "tests" / "data" / "eventlogs"
GOAL = 5.0


def heads_command() -> list[str]:
    """How a user starts heads: the console script, else ``python -m heads``."""
    script = Path(sys.executable).with_name("heads")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "heads"]


HEADS = heads_command()


def _ours_in_process(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        replay_logs([parse_log(p.read_bytes(), str(p))]).to_json()
    return time.perf_counter() - start


def _ours_cli(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        subprocess.run(
            [*HEADS, "pcr", "replay", "--json", str(p)],
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - start


def _ours_cli_once(paths: list[Path]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [*HEADS, "pcr", "replay", "--json", *map(str, paths)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def _python_start() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import re"], check=True, capture_output=True)
    return time.perf_counter() - start


def _tool(paths: list[Path], failures: set[str]) -> float:
    start = time.perf_counter()
    for p in paths:
        rc = subprocess.run(["tpm2_eventlog", str(p)], check=False, capture_output=True)
        if rc.returncode != 0:
            failures.add(f"{p.name} (rc {rc.returncode})")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cli-rounds", type=int, default=3)
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind)"
    )
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        print("--instructions needs valgrind (Debian package valgrind)")
        return 1
    if shutil.which("tpm2_eventlog") is None:
        print("tpm2_eventlog is not installed (Debian package tpm2-tools)")
        return 1
    compileall.compile_dir(Path(heads.__file__).parent, quiet=1)
    load_before = os.getloadavg()[0]
    paths = sorted(LOGS.glob("*.bin"))
    size = sum(p.stat().st_size for p in paths)
    failures: set[str] = set()
    ours: list[float] = []
    tool: list[float] = []
    once: list[float] = []
    start: list[float] = []
    for _ in range(args.rounds):  # interleaved, so drift affects every side alike
        ours.append(_ours_in_process(paths))
        tool.append(_tool(paths, failures))
        once.append(_ours_cli_once(paths))
        start.append(_python_start())
    cli = [_ours_cli(paths) for _ in range(args.cli_rounds)]
    ours_ms = statistics.median(ours) * 1e3
    tool_ms = statistics.median(tool) * 1e3
    cli_ms = statistics.median(cli) * 1e3
    once_ms = statistics.median(once) * 1e3
    start_ms = statistics.median(start) * 1e3
    load_after = os.getloadavg()[0]
    print(
        f"{len(paths)} logs, {size} bytes, {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"load {load_before:.1f} -> {load_after:.1f}"
    )
    print(f"heads in-process (parse+replay)      median {ours_ms:9.2f} ms")
    print(f"tpm2_eventlog, one process per log   median {tool_ms:9.2f} ms")
    print(
        f"heads CLI, one process per log       median {cli_ms:9.2f} ms ({args.cli_rounds} rounds)"
    )
    print(f"heads CLI, one process for all logs  median {once_ms:9.2f} ms")
    print(f"python -c 'import re' (the start)    median {start_ms:9.2f} ms")
    print(f"ratio tpm2_eventlog / heads in-process: {tool_ms / ours_ms:.1f}x")
    ratio = tool_ms / once_ms
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"ratio tpm2_eventlog / heads CLI, one call: {ratio:.2f}x (goal {GOAL:.0f}x): {verdict}")
    print(f"ratio tpm2_eventlog / heads CLI:        {tool_ms / cli_ms:.2f}x")
    print(
        f"ratio tpm2_eventlog / the start alone:   {tool_ms / start_ms:.2f}x "
        "(the most any Python command can reach)"
    )
    if args.instructions:
        ours_mi = instructions([*HEADS, "pcr", "replay", "--json", *map(str, paths)])
        tool_mi = sum(instructions(["tpm2_eventlog", str(p)]) for p in paths)
        bare_mi = instructions([sys.executable, "-c", "pass"])
        print(
            f"instructions: heads CLI, one call {ours_mi:.1f} M (python -c pass {bare_mi:.1f} M); "
            f"tpm2_eventlog, one per log {tool_mi:.1f} M; ratio {tool_mi / ours_mi:.2f}x"
        )
    if failures:
        print(f"tpm2_eventlog failed on: {', '.join(sorted(failures))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
