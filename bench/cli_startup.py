"""Benchmark: how long a heads command takes to start, against a bare Python interpreter.

Each command runs as a user runs it: a whole process, through the ``heads`` console script
installed next to this interpreter (``python -m heads`` when there is none), doing no real
work (``--help``), so what is measured is the interpreter start plus the imports the command
pays for.  The target: no more than 50 ms over bare ``python -c pass``
(docs/architecture.md §Performance targets).  Runs are interleaved so drift affects every
command alike; heads' bytecode caches are written first, as an installed package has them.
Besides the wall-clock medians (the target), the CPU time (user + system) of each process is
printed: on a loaded machine it moves less than the wall clock.  With ``--instructions``,
each command also runs once under valgrind (callgrind), which counts the instructions it
executes: a figure the load does not move, to compare runs made at different times.

    .venv/bin/python bench/cli_startup.py [--runs 21] [--instructions]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import heads

COMMANDS = (
    ("heads --help", ["--help"]),
    ("heads tpm status --help", ["tpm", "status", "--help"]),
    ("heads pcr replay --help", ["pcr", "replay", "--help"]),
    ("heads boot verify --help", ["boot", "verify", "--help"]),
    ("heads build --help", ["build", "--help"]),
)
GOAL_MS = 50.0


def heads_command() -> list[str]:
    """How a user starts heads: the console script, else ``python -m heads``."""
    script = Path(sys.executable).with_name("heads")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "heads"]


def once(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def instructions(argv: list[str]) -> float:
    """Millions of instructions one run of ``argv`` executes (valgrind's callgrind)."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count: {done.stderr[-500:]}")
    return int(found.group(1)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind)"
    )
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    compileall.compile_dir(Path(heads.__file__).parent, quiet=1)
    launcher = heads_command()
    runs: list[tuple[str, list[str]]] = [("python -c pass", [sys.executable, "-c", "pass"])]
    runs += [(name, [*launcher, *argv]) for name, argv in COMMANDS]
    wall: dict[str, list[float]] = {name: [] for name, _ in runs}
    cpu: dict[str, list[float]] = {name: [] for name, _ in runs}
    load_before = os.getloadavg()[0]
    for _, argv in runs:  # warm the page cache
        once(argv)
    for _ in range(args.runs):
        for name, argv in runs:
            w, c = once(argv)
            wall[name].append(w)
            cpu[name].append(c)
    load_after = os.getloadavg()[0]
    base = statistics.median(wall["python -c pass"]) * 1000
    base_cpu = statistics.median(cpu["python -c pass"]) * 1000
    print(
        f"{args.runs} runs each, medians, via {Path(launcher[0]).name}; "
        f"{os.cpu_count()} CPUs, load {load_before:.1f} -> {load_after:.1f}"
    )
    print(f"goal: at most {GOAL_MS:.0f} ms over bare Python, whole process (wall clock)")
    worst = 0.0
    for name, _ in runs:
        ms = statistics.median(wall[name]) * 1000
        over = ms - base
        cpu_over = statistics.median(cpu[name]) * 1000 - base_cpu
        if name != "python -c pass":
            worst = max(worst, over)
        mark = "" if name == "python -c pass" else (" ok" if over <= GOAL_MS else " OVER GOAL")
        print(f"{name:28s} {ms:7.1f} ms  (+{over:5.1f} ms; CPU +{cpu_over:5.1f} ms){mark}")
    verdict = "met" if worst <= GOAL_MS else "NOT met"
    print(f"slowest command: +{worst:.1f} ms over bare Python (goal +{GOAL_MS:.0f} ms): {verdict}")
    if args.instructions:
        print("instructions executed, one run each (valgrind):")
        for name, argv in runs:
            print(f"{name:28s} {instructions(argv):7.1f} M")


if __name__ == "__main__":
    main()
