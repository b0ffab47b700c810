"""Archive one directory tree as newc: heads' deterministic writer vs GNU `cpio -o -H newc`.

Both read the same files from disk each round and produce the whole archive:

* heads: walk the tree (sorted), read every file, ``write_newc`` into memory (fixed owners,
  modes, mtime, inode numbers);
* GNU cpio 2.13: ``cpio -o -H newc --reproducible`` fed the sorted name list, output to a pipe;
  what a shell initramfs script (Heads' own build, dracut, initramfs-tools) would run.  It does
  not normalise owners, modes or mtimes; reproducible builds add a ``touch``/``find`` pass
  before it, which is not timed here.

Prints the archive sizes, the median times and the ratio.  Default tree: /usr/lib/python3.11
(thousands of files, about the initramfs's size).

    .venv/bin/python bench/cpio_build.py [--rounds N] [--tree DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import time
from pathlib import Path

from heads.core.cpio import CpioEntry, write_newc


def _entries(root: Path) -> list[CpioEntry]:
    out: list[CpioEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        if rel_dir != ".":
            out.append(CpioEntry.directory(rel_dir))
        for name in sorted(filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out.append(CpioEntry.symlink(rel, str(path.readlink())))
            elif path.is_file():
                executable = os.access(path, os.X_OK)
                out.append(CpioEntry.file(rel, path.read_bytes(), executable=executable))
    return out


def _ours(root: Path) -> tuple[float, int]:
    start = time.perf_counter()
    buf = io.BytesIO()
    n = write_newc(_entries(root), buf, mtime=1_700_000_000)
    return time.perf_counter() - start, n


def _names(root: Path) -> bytes:
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir != ".":
            names.append(rel_dir)
        names.extend((Path(dirpath) / f).relative_to(root).as_posix() for f in sorted(filenames))
    return ("\n".join(names) + "\n").encode()


def _gnu(root: Path) -> tuple[float, int]:
    start = time.perf_counter()
    # The name list is part of the job (a shell script runs `find`), so it is timed too.
    names = _names(root)
    proc = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--reproducible", "--quiet"],
        input=names,
        capture_output=True,
        cwd=root,
        check=True,
    )
    return time.perf_counter() - start, len(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tree", type=Path, default=Path("/usr/lib/python3.11"))
    args = ap.parse_args()
    files = sum(len(f) for _d, _s, f in os.walk(args.tree))
    ours: list[float] = []
    gnu: list[float] = []
    size_ours = size_gnu = 0
    for _ in range(args.rounds):  # interleaved, so both see the same machine load
        t, size_ours = _ours(args.tree)
        ours.append(t)
        t, size_gnu = _gnu(args.tree)
        gnu.append(t)
    mo, mg = statistics.median(ours), statistics.median(gnu)
    print(f"tree {args.tree}: {files} files; {args.rounds} rounds")
    print(f"heads write_newc : median {mo * 1000:8.1f} ms, archive {size_ours / 2**20:.1f} MiB")
    print(f"GNU cpio -o newc : median {mg * 1000:8.1f} ms, archive {size_gnu / 2**20:.1f} MiB")
    print(f"ratio heads/GNU  : {mo / mg:.2f}")


if __name__ == "__main__":
    main()
