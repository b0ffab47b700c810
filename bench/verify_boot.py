"""Benchmark: verify a signed /boot with heads vs `sha256sum -c kexec_hashes.txt`.

The /boot: 3 kernels of 10 MB, 3 initrds of 70 MB and 300 small files (grub modules, ~250 MB in
all, as in docs/architecture.md §Performance targets).  Both sides run in this process's run,
interleaved, with a warm page cache (a boot verifies a /boot just read from disk by the
firmware's neighbour anyway; a cold cache would measure the disk).  Ours includes the gpgv
signature check and the tree scan, i.e. more work than `sha256sum -c`; the shell Heads sequence
(gpgv + sha256sum -c + find | sort -z) is printed too.  Ours is timed twice: in this process,
and as a user runs it (`heads boot verify --no-rollback` through the console script next to
this interpreter, a whole process: interpreter start, imports and all, with heads' bytecode
caches written first as an installed package has them); the target is the whole process at
least 4x faster than `sha256sum -c` (docs/architecture.md §Performance targets).

    .venv/bin/python bench/verify_boot.py [--runs 5] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import heads
from heads.flows.boot_signing import sign_boot, verify_boot
from heads.testing.gpghome import GpgHome, export_public_keyring, make_owner_key

MB = 1_000_000
GOAL = 4.0


def heads_command() -> list[str]:
    """How a user starts heads: the console script, else ``python -m heads``."""
    script = Path(sys.executable).with_name("heads")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "heads"]


HEADS = heads_command()


def make_boot(root: Path, scale: float) -> None:
    (root / "grub" / "x86_64-efi").mkdir(parents=True)
    for i in range(3):
        (root / f"vmlinuz-6.1.0-{i}-amd64").write_bytes(os.urandom(int(10 * MB * scale)))
        (root / f"initrd.img-6.1.0-{i}-amd64").write_bytes(os.urandom(int(70 * MB * scale)))
    for i in range(300):
        size = 2_000 + (i * 7919) % 60_000
        (root / "grub" / "x86_64-efi" / f"mod{i:03d}.mod").write_bytes(os.urandom(size))


def timed(fn: Callable[[], None], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply kernel/initrd sizes")
    args = parser.parse_args()
    compileall.compile_dir(Path(heads.__file__).parent, quiet=1)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp, GpgHome() as home:
        boot = Path(tmp) / "boot"
        make_boot(boot, args.scale)
        fpr = make_owner_key(home.path)
        keyring = export_public_keyring(home.path, Path(tmp) / "pubring.gpg")
        sign_boot(boot, gnupghome=home.path, key=fpr, tpm=None, rollback=False)
        total = sum(f.stat().st_size for f in boot.rglob("*") if f.is_file())

        def ours() -> None:
            report = verify_boot(boot, keyring=keyring, tpm=None)
            if not report.ok:
                raise SystemExit(report.render_text())

        def ours_process() -> None:
            subprocess.run(
                [*HEADS, "boot", "verify", "--no-rollback", "--keyring", str(keyring), str(boot)],
                check=True,
                stdout=subprocess.DEVNULL,
            )

        def sha256sum_c() -> None:
            subprocess.run(["sha256sum", "-c", "--quiet", "kexec_hashes.txt"], cwd=boot, check=True)

        def shell_heads() -> None:
            subprocess.run(
                [
                    "sh",
                    "-c",
                    f"sha256sum kexec*.txt | gpgv -q --keyring {keyring} kexec.sig - 2>/dev/null"
                    " && sha256sum -c --quiet kexec_hashes.txt"
                    " && find ./ ! -path './kexec*' -print0 | sort -z | cmp -s - kexec_tree.txt",
                ],
                cwd=boot,
                check=True,
                env={**os.environ, "LC_ALL": "C"},
            )

        ours()  # warm the page cache and the imports
        sha256sum_c()
        t_ours: list[float] = []
        t_proc: list[float] = []
        t_sum: list[float] = []
        t_shell: list[float] = []
        for _ in range(args.runs):  # interleaved, so drift affects both sides alike
            t_ours += timed(ours, 1)
            t_proc += timed(ours_process, 1)
            t_sum += timed(sha256sum_c, 1)
            t_shell += timed(shell_heads, 1)

    m_ours = statistics.median(t_ours)
    m_proc = statistics.median(t_proc)
    m_sum = statistics.median(t_sum)
    m_shell = statistics.median(t_shell)
    load_after = os.getloadavg()[0]
    print(
        f"/boot: {total / MB:.0f} MB in 306 files, {os.cpu_count()} CPUs, {args.runs} runs, "
        f"load {load_before:.1f} -> {load_after:.1f}"
    )
    print(f"heads verify_boot (gpgv + scan + hashes)   median {m_ours * 1000:8.1f} ms")
    print(f"heads boot verify, whole process           median {m_proc * 1000:8.1f} ms")
    print(f"sha256sum -c kexec_hashes.txt              median {m_sum * 1000:8.1f} ms")
    print(f"shell Heads (gpgv + sha256sum -c + tree)   median {m_shell * 1000:8.1f} ms")
    print(f"ratio vs sha256sum -c: {m_sum / m_ours:.2f}x faster in-process")
    ratio = m_sum / m_proc
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(
        f"ratio vs sha256sum -c: {ratio:.2f}x faster as a whole process "
        f"(goal {GOAL:.0f}x): {verdict}"
    )
    print(f"ratio vs shell Heads:  {m_shell / m_ours:.2f}x faster")


if __name__ == "__main__":
    main()
