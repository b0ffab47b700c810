"""Firmware image work: heads vs the tools a Heads user runs (cbfstool, flashrom).

Two jobs on a 16 MiB image with the standard FMAP layout, each round from the same start:

* edit: replace ``config.user`` and add a 1 MiB LZMA-compressed file, then list the CBFS.
  heads: ``FlashImage`` in memory, image read from and written to disk; cbfstool 4.15: the
  four commands Heads' scripts run (``remove``, ``add``, ``add -c lzma``, ``print``);
* flash: write a changed image to flashrom's dummy chip (W25Q128FV, file-backed) and verify.
  heads: ``flows.firmware.flash`` (reads the chip first, writes with ``--noverify``, reads the
  whole chip back and compares); flashrom alone: ``-w`` (its own verification) as Heads'
  ``flash.sh`` runs it, without the read of the current image Heads does first.

Prints the medians, heads' write and read-back times, and the ratios.

    .venv/bin/python bench/rom_flash.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from heads.core.cbfs import COMPRESS_LZMA, CbfsFile, make_file
from heads.core.flash_image import FlashImage, new_flash_image, standard_layout
from heads.flows.firmware import flash

CONFIG = "heads/initrd/etc/config.user"


def _payload() -> bytes:
    return b"".join(b"heads payload line %d\n" % i for i in range(50_000))[: 1 << 20]


def _ours_edit(rom: Path) -> float:
    start = time.perf_counter()
    image = FlashImage.from_bytes(rom.read_bytes())
    image = image.with_file(CbfsFile(CONFIG, b"export CONFIG_TPM=y\n"), replace=True)
    image = image.with_file(make_file("payload/initrd", _payload(), compression=COMPRESS_LZMA))
    image.files()
    rom.write_bytes(image.data)
    return time.perf_counter() - start


def _cbfstool_edit(rom: Path, tmp: Path) -> float:
    cfg, data = tmp / "cfg", tmp / "data"
    cfg.write_bytes(b"export CONFIG_TPM=y\n")
    data.write_bytes(_payload())
    start = time.perf_counter()
    for args in (
        ["remove", "-r", "COREBOOT", "-n", CONFIG],
        ["add", "-r", "COREBOOT", "-f", str(cfg), "-n", CONFIG, "-t", "raw"],
        [
            "add",
            "-r",
            "COREBOOT",
            "-f",
            str(data),
            "-n",
            "payload/initrd",
            "-t",
            "raw",
            "-c",
            "lzma",
        ],
        ["print", "-r", "COREBOOT"],
    ):
        subprocess.run(["cbfstool", str(rom), *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base = new_flash_image(standard_layout(16 << 20)).with_file(CbfsFile(CONFIG, b"x=1\n"))
    changed = base.with_file(CbfsFile("payload/kernel", os.urandom(4 << 20)))
    ours_edit, tool_edit, ours_flash, tool_flash, writes, verifies = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="heads-bench-rom-") as tmp_name:
        tmp = Path(tmp_name)
        rom, chip, new = tmp / "a.rom", tmp / "chip.bin", tmp / "new.rom"
        new.write_bytes(changed.data)
        programmer = f"dummy:emulate=W25Q128FV,image={chip}"
        for _ in range(args.rounds):
            rom.write_bytes(base.data)
            ours_edit.append(_ours_edit(rom))
            rom.write_bytes(base.data)
            tool_edit.append(_cbfstool_edit(rom, tmp))
            chip.write_bytes(base.data)
            start = time.perf_counter()
            report = flash(programmer, changed, clean=True)
            ours_flash.append(time.perf_counter() - start)
            writes.append(report.write_s)
            verifies.append(report.verify_s)
            chip.write_bytes(base.data)
            start = time.perf_counter()
            subprocess.run(
                ["flashrom", "-p", programmer, "-w", str(new)], check=True, capture_output=True
            )
            tool_flash.append(time.perf_counter() - start)
    med = statistics.median
    print(
        f"edit   heads {med(ours_edit):.3f} s  cbfstool {med(tool_edit):.3f} s  "
        f"ratio heads/cbfstool {med(ours_edit) / med(tool_edit):.2f}"
    )
    print(
        f"flash  heads {med(ours_flash):.3f} s (write {med(writes):.3f} s, read-back "
        f"{med(verifies):.3f} s)  flashrom -w {med(tool_flash):.3f} s  "
        f"ratio {med(ours_flash) / med(tool_flash):.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
