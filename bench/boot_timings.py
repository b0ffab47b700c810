"""Boot timings of the QEMU platform, read from the console transcript of each boot.

Creates and provisions a throwaway machine, boots it once to provision the TOTP secret, then
boots it N more times (TOTP shown, /boot verified, kexec into the demo OS) and prints, for each
mark, the median seconds from QEMU start: first line of /init, Python up, runtime imported,
TOTP shown, kexec, OS marker.  Shell Heads cannot run here, so there is no tool to compare
with: the figure is tracked against its own goal (docs/architecture.md §Performance targets:
TOTP shown within 6 s under TCG).

    .venv/bin/python bench/boot_timings.py [--boots N] [--payload out/payload]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_platform import (
    boot_machine,
    cached_payload,
    create_machine,
    provision_machine,
)

MARKS = ("init", "python", "runtime", "totp", "kexec", "os")
GOAL_TOTP_S = 6.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=3, help="measured boots (after the first)")
    parser.add_argument("--payload", type=Path, default=Path("out/payload"))
    args = parser.parse_args()
    payload = cached_payload(args.payload, cache_dir=default_cache_dir(), say=print)
    size = payload.kernel.stat().st_size + payload.initramfs.stat().st_size
    with tempfile.TemporaryDirectory(prefix="heads-bench-boot-") as tmp:
        machine = create_machine(Path(tmp) / "m")
        provision_machine(machine, os_kernel=payload.kernel)
        first = boot_machine(machine, kernel=payload.kernel, initrd=payload.initramfs)
        print(f"provisioning boot: {', '.join(f'{k} {v:.2f}' for k, v in first.marks.items())}")
        runs = []
        for n in range(args.boots):
            result = boot_machine(machine, kernel=payload.kernel, initrd=payload.initramfs)
            if not result.os_up:
                print(f"boot {n + 1} did not reach the OS: {result.transcript}")
                return 1
            runs.append(result.marks)
    print(f"payload: {size / 2**20:.1f} MiB (kernel + initramfs)")
    print(f"{'mark':<10} {'median s':>9}  (n={len(runs)}, seconds after QEMU start)")
    for mark in MARKS:
        values = [r[mark] for r in runs if mark in r]
        if values:
            print(f"{mark:<10} {statistics.median(values):9.2f}")
    totp = statistics.median(r["totp"] for r in runs)
    print(f"TOTP shown: {totp:.2f} s; goal {GOAL_TOTP_S:.0f} s; ratio {totp / GOAL_TOTP_S:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
