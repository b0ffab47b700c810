"""Boot timings of the QEMU platform against the floor of the same machine, in one run.

Creates and provisions a throwaway machine, boots it once to provision the TOTP secret, then
boots it N more times (TOTP shown, /boot verified, kexec into the demo OS).  In the same run
it boots the same kernel N times with a minimal busybox initramfs whose /init prints the init
marker and powers off: that is the floor, what firmware and kernel cost before any of our
code runs.  Prints, for each mark, the median seconds from QEMU start, then the two figures
tracked against their goals (docs/architecture.md §Performance targets):

* /init -> TOTP shown, goal at most 2 s under TCG;
* QEMU start -> TOTP shown over the floor (QEMU start -> /init of the minimal initramfs),
  goal at most 1.3x.

    .venv/bin/python bench/boot_timings.py [--boots N] [--payload out/payload]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
from pathlib import Path

from heads.core.cpio import CpioEntry, build_newc
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_platform import (
    boot_machine,
    cached_payload,
    create_machine,
    flash_size_for,
    provision_machine,
    write_payload,
)

MARKS = ("init", "python", "runtime", "totp", "kexec", "os")
GOAL_INIT_TO_TOTP_S = 2.0
GOAL_FLOOR_RATIO = 1.3
BUSYBOX = Path("/bin/busybox")
FLOOR_INIT = b"""#!/bin/busybox sh
/bin/busybox echo "heads: init"
/bin/busybox poweroff -f
"""


def floor_initramfs(path: Path) -> Path:
    """The smallest initramfs that reaches the init marker: busybox and a three-line /init."""
    entries = [
        CpioEntry.file("init", FLOOR_INIT, executable=True),
        CpioEntry.file("bin/busybox", BUSYBOX.read_bytes(), executable=True),
        CpioEntry.char_device("dev/console", 5, 1),
    ]
    path.write_bytes(gzip.compress(build_newc(entries, mtime=0), mtime=0))
    return path


def _median(runs: list[dict[str, float]], mark: str) -> float | None:
    values = [r[mark] for r in runs if mark in r]
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=3, help="measured boots of each kind")
    parser.add_argument("--payload", type=Path, default=Path("out/payload"))
    args = parser.parse_args()
    payload = cached_payload(args.payload, cache_dir=default_cache_dir(), say=print)
    size = payload.kernel.stat().st_size + payload.initramfs.stat().st_size
    with tempfile.TemporaryDirectory(prefix="heads-bench-boot-") as tmp:
        machine = create_machine(Path(tmp) / "m", flash_size=flash_size_for(size))
        provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs)
        first = boot_machine(machine)
        print(f"provisioning boot: {', '.join(f'{k} {v:.2f}' for k, v in first.marks.items())}")
        floor_initrd = floor_initramfs(Path(tmp) / "floor.cpio.gz")
        runs: list[dict[str, float]] = []
        floors: list[dict[str, float]] = []
        # Interleaved, so both kinds see the same machine load.
        for n in range(args.boots):
            result = boot_machine(machine)
            if not result.os_up:
                print(f"boot {n + 1} did not reach the OS: {result.transcript}")
                return 1
            runs.append(dict(result.marks))
            # The floor boots from the same flash image with its initramfs swapped in.
            write_payload(machine, kernel=payload.kernel, initramfs=floor_initrd)
            floor = boot_machine(machine)
            write_payload(machine, kernel=payload.kernel, initramfs=payload.initramfs)
            if "init" not in floor.marks:
                print(f"floor boot {n + 1} did not reach /init: {floor.transcript}")
                return 1
            floors.append(dict(floor.marks))
    print(f"payload: {size / 2**20:.1f} MiB (kernel + initramfs)")
    print(f"{'mark':<10} {'median s':>9}  (n={len(runs)}, seconds after QEMU start)")
    for mark in MARKS:
        value = _median(runs, mark)
        if value is not None:
            print(f"{mark:<10} {value:9.2f}")
    floor_init = _median(floors, "init")
    totp = _median(runs, "totp")
    init_to_totp = statistics.median(r["totp"] - r["init"] for r in runs if "init" in r)
    if floor_init is None or totp is None:
        print("no TOTP or /init mark in the measured boots")
        return 1
    print(f"floor (minimal initramfs, QEMU start -> /init): {floor_init:.2f} s")
    print(
        f"/init -> TOTP shown: {init_to_totp:.2f} s; goal {GOAL_INIT_TO_TOTP_S:.1f} s; "
        f"ratio {init_to_totp / GOAL_INIT_TO_TOTP_S:.2f}x"
    )
    print(
        f"QEMU start -> TOTP shown: {totp:.2f} s = {totp / floor_init:.2f}x the floor; "
        f"goal {GOAL_FLOOR_RATIO:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
