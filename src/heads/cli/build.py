"""``heads build``: the boot payload (kernel + initramfs + manifest), reproducibly.

heads build [--out DIR] [--cache DIR] [--lock FILE] [--init FILE] [--json]
heads build --check          build twice in different directories and compare every digest
heads build --update-lock    re-pin Debian packages and Python distributions
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from heads.cli.common import add_json_option, print_json
from heads.errors import ExitCode, HeadsError
from heads.flows.image_build import (
    DEFAULT_LOCK,
    Payload,
    build_payload,
    check_reproducible,
    default_cache_dir,
    update_lock,
)

__all__ = ["register"]

_GOAL_MIB = 16


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``build`` command."""
    p = sub.add_parser(
        "build",
        help="build the boot payload (kernel, initramfs, manifest)",
        description="Build the payload from the pinned inputs in the lock file: the Debian "
        "cloud kernel and a deterministic zstd initramfs with busybox, kexec, gpgv, a trimmed "
        "Python, tpm2-pytss and heads.  Inputs are downloaded once into the cache and checked "
        "against their SHA-256 on every build.",
    )
    p.add_argument("--out", type=Path, default=Path("out/payload"), help="output directory")
    p.add_argument(
        "--cache", type=Path, default=None, help="download cache (default ~/.cache/heads)"
    )
    p.add_argument("--lock", type=Path, default=DEFAULT_LOCK, help="lock file of pinned inputs")
    p.add_argument(
        "--init", type=Path, default=None, help="/init script (default: the boot runtime's)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="build twice in different directories and require identical digests",
    )
    mode.add_argument(
        "--update-lock",
        action="store_true",
        help="re-resolve every pin from apt and the virtualenv, then rewrite the lock",
    )
    add_json_option(p)
    p.set_defaults(func=_build)


def _summary(p: Payload) -> dict[str, object]:
    return {
        "kernel": str(p.kernel),
        "kernel_size": p.kernel_size,
        "kernel_version": p.kernel_version,
        "initramfs": str(p.initramfs),
        "initramfs_size": p.initramfs_size,
        "initramfs_uncompressed_size": p.initramfs_uncompressed_size,
        "members": p.members,
        "manifest": str(p.manifest),
    }


def _print_sizes(p: Payload) -> None:
    mib = p.initramfs_size / 2**20
    goal = "within" if mib <= _GOAL_MIB else "over"
    print(f"kernel     {p.kernel}  {p.kernel_size / 2**20:.2f} MiB ({p.kernel_version})")
    print(
        f"initramfs  {p.initramfs}  {mib:.2f} MiB zstd "
        f"({p.initramfs_uncompressed_size / 2**20:.1f} MiB, {p.members} members; "
        f"{goal} the {_GOAL_MIB} MiB goal)"
    )
    print(f"manifest   {p.manifest}")
    print(f"payload    {(p.kernel_size + p.initramfs_size) / 2**20:.2f} MiB in total")


def _build(args: argparse.Namespace) -> int:
    cache: Path = args.cache or default_cache_dir()
    say: Callable[[str], None] | None = None
    if not args.json:
        say = lambda msg: print(f"  {msg}", file=sys.stderr)  # noqa: E731
    if args.update_lock:
        lock = update_lock(args.lock, cache_dir=cache, init_script=args.init, progress=say)
        if args.json:
            print_json(
                {"lock": str(args.lock), "debian": len(lock.debs), "python": len(lock.python)}
            )
        else:
            print(
                f"{args.lock}: {len(lock.debs)} Debian packages, "
                f"{len(lock.python)} Python distributions pinned"
            )
        return ExitCode.OK
    if args.check:
        result = check_reproducible(
            cache_dir=cache, lock_path=args.lock, init_script=args.init, progress=say
        )
        if args.json:
            print_json(
                {
                    "identical": result.identical,
                    "differences": list(result.differences),
                    "first": _summary(result.first),
                }
            )
        if not result.identical:
            raise HeadsError(
                "the two builds differ: the payload is not reproducible",
                details=result.differences[:40],
                hint="the first lines name the members that differ",
            )
        if not args.json:
            print(
                f"reproducible: two builds are identical (initramfs "
                f"{result.first.initramfs_size / 2**20:.2f} MiB, "
                f"{result.first.members} members)"
            )
        return ExitCode.OK
    payload = build_payload(
        args.out, cache_dir=cache, lock_path=args.lock, init_script=args.init, progress=say
    )
    if args.json:
        print_json(_summary(payload))
    else:
        _print_sizes(payload)
    return ExitCode.OK
