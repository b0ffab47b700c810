"""Benchmark: the LUKS header listing Heads measures into PCR 6, heads vs shell Heads' way.

Shell Heads (``qubes-measure-luks.sh``) runs ``cryptsetup luksHeaderBackup`` per device into
a file and ``sha256sum`` over the files; heads reads the header area itself and hashes it
(``heads.flows.disk_key.read_listing``).  Both on the same LUKS2 image (16 MiB header area),
interleaved in one run, warm page cache; prints medians and the ratio.  The outputs must be
the same bytes (checked).

    .venv/bin/python bench/luks_measure.py [--runs 9] [--luks1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from heads.adapters.cryptsetup import format_luks
from heads.core.secret import Secret
from heads.flows.disk_key import DiskTarget, read_listing


def timed(fn: Callable[[], bytes], runs: int) -> tuple[list[float], bytes]:
    out, result = [], b""
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        out.append(time.perf_counter() - t0)
    return out, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--luks1", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-luks-") as tmp:
        image = Path(tmp) / "disk.img"
        with image.open("wb") as f:
            f.truncate(32 << 20)
        format_luks(image, Secret(b"bench passphrase"), version=1 if args.luks1 else 2)
        device = "/dev/bench-" + Path(tmp).name
        backup = Path("/tmp/lukshdr-" + device.replace("/", "_"))  # noqa: S108 - Heads' path

        def shell_heads() -> bytes:
            backup.unlink(missing_ok=True)
            subprocess.run(
                ["cryptsetup", "luksHeaderBackup", str(image), "--header-backup-file",
                 str(backup)],
                check=True,
            )  # fmt: skip
            out = subprocess.run(["sha256sum", str(backup)], check=True, capture_output=True)
            backup.unlink()
            return out.stdout

        def ours() -> bytes:
            return read_listing([DiskTarget(device, image)])[0]

        shell_t, ours_t = [], []
        for _ in range(args.runs):
            t, a = timed(shell_heads, 1)
            shell_t += t
            t, b = timed(ours, 1)
            ours_t += t
            if a != b:
                raise SystemExit(f"listings differ:\n{a!r}\n{b!r}")
        s, o = statistics.median(shell_t), statistics.median(ours_t)
        print(f"luksHeaderBackup + sha256sum: {s * 1000:8.1f} ms (median of {args.runs})")
        print(f"heads read_listing:           {o * 1000:8.1f} ms")
        print(f"ratio: heads is {s / o:.2f}x the speed of shell Heads' sequence")


if __name__ == "__main__":
    main()
