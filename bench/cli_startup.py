"""Benchmark: how long a heads command takes to start, against a bare Python interpreter.

Each command runs as a user runs it (a whole process) and does no real work (``--help``), so
what is measured is the interpreter start plus the imports the command pays for.  The target:
no more than 50 ms over bare ``python -c pass``.  Runs are interleaved so drift affects every
command alike.

    .venv/bin/python bench/cli_startup.py [--runs 21]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ("heads --help", ["-m", "heads", "--help"]),
    ("heads tpm status --help", ["-m", "heads", "tpm", "status", "--help"]),
    ("heads pcr replay --help", ["-m", "heads", "pcr", "replay", "--help"]),
    ("heads boot verify --help", ["-m", "heads", "boot", "verify", "--help"]),
    ("heads build --help", ["-m", "heads", "build", "--help"]),
)
GOAL_MS = 50.0


def once(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    bare = ["-c", "pass"]
    times: dict[str, list[float]] = {"python -c pass": []}
    times.update({name: [] for name, _ in COMMANDS})
    for argv in [bare] + [a for _, a in COMMANDS]:  # warm the page cache
        once(argv)
    for _ in range(args.runs):
        times["python -c pass"].append(once(bare))
        for name, argv in COMMANDS:
            times[name].append(once(argv))
    base = statistics.median(times["python -c pass"]) * 1000
    print(f"{args.runs} runs each, medians; goal: at most {GOAL_MS:.0f} ms over bare Python")
    for name, values in times.items():
        ms = statistics.median(values) * 1000
        over = ms - base
        mark = "" if name == "python -c pass" else (" ok" if over <= GOAL_MS else " OVER GOAL")
        print(f"{name:28s} {ms:7.1f} ms  (+{over:5.1f} ms){mark}")


if __name__ == "__main__":
    main()
