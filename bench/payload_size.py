"""The payload's size by component, against the flash budget.

Reads a built payload (``heads build --out DIR``): the kernel as shipped, and the initramfs
unpacked and grouped into components (each program, each shared library, the Python
interpreter, its standard library, each Python distribution, heads).  For each component it
prints the uncompressed size and what it weighs compressed on its own (zstd -19, so the
column adds up to a little more than the real initramfs, which is compressed as one stream),
then the total against the budget (12 MiB) and the stretch goal (8 MiB).

    .venv/bin/python bench/payload_size.py [--payload out/payload] [--top N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from heads.core.cpio import read_newc
from heads.core.payload_budget import DEFAULT_BUDGET, component_of

STRETCH = 8 * 2**20


def _zstd(data: bytes, *args: str) -> bytes:
    return subprocess.run(
        ["zstd", "-q", "-c", *args], input=data, capture_output=True, check=True
    ).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payload", type=Path, default=Path("out/payload"))
    parser.add_argument("--top", type=int, default=25, help="components listed (the rest summed)")
    args = parser.parse_args()
    manifest = json.loads((args.payload / "manifest.json").read_text())
    kernel = (args.payload / "vmlinuz").read_bytes()
    packed = (args.payload / manifest["initramfs"]["file"]).read_bytes()
    cpio = _zstd(packed, "-d")
    groups: dict[str, list[bytes]] = {}
    offset = 0
    for part in manifest["initramfs"]["parts"]:
        chunk = cpio[offset : offset + part["cpio_size"]]
        offset += part["cpio_size"]
        for member in read_newc(chunk, source="initramfs"):
            if member.mode & 0o170000 == 0o100000:  # regular files carry the bytes
                groups.setdefault(component_of(member.name), []).append(member.data)
    rows = []
    for name, blobs in groups.items():
        data = b"".join(blobs)
        rows.append((name, len(data), len(_zstd(data, "-19"))))
    rows.sort(key=lambda r: -r[2])
    total = len(kernel) + len(packed)
    mib = 2**20
    print(f"{'component':<34} {'unpacked':>10} {'alone, zstd':>12} {'share':>6}")
    print(f"{'kernel (as shipped)':<34} {len(kernel) / mib:9.2f}M {len(kernel) / mib:11.2f}M "
          f"{len(kernel) / total:6.1%}")  # fmt: skip
    rest = [0, 0]
    for i, (name, size, packed_size) in enumerate(rows):
        if i < args.top:
            print(f"{name:<34} {size / mib:9.2f}M {packed_size / mib:11.2f}M "
                  f"{packed_size / total:6.1%}")  # fmt: skip
        else:
            rest[0] += size
            rest[1] += packed_size
    if rest[0]:
        print(f"{f'{len(rows) - args.top} more':<34} {rest[0] / mib:9.2f}M {rest[1] / mib:11.2f}M")
    print(
        f"initramfs as shipped ({manifest['initramfs']['compression']}): "
        f"{len(packed) / mib:.2f} MiB, {len(cpio) / mib:.1f} MiB unpacked"
    )
    print(
        f"payload: {total / mib:.2f} MiB = {total / DEFAULT_BUDGET:.2f}x the "
        f"{DEFAULT_BUDGET / mib:.0f} MiB budget ({total / STRETCH:.2f}x the "
        f"{STRETCH / mib:.0f} MiB stretch goal)"
    )
    return 0 if total <= DEFAULT_BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
