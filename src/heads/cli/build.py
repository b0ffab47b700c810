"""``heads build``: the boot payload (kernel + initramfs + manifest), reproducibly.

heads build [--out DIR] [--cache DIR] [--lock FILE] [--init FILE] [--platform NAME] [--locked]
            [--json]
heads build --inputs DIR     build offline from an export (byte-for-byte the published payload)
heads build --export-inputs DIR   write every pinned input and a checksum list
heads build --locked --compare payload/published.json   rebuild and compare with the published
                             digests
heads build --check          build twice, the second time as another machine, compare every member
heads build --update-lock    re-pin Debian packages and Python distributions

``--json`` output of a build: ``kernel``, ``kernel_size``, ``kernel_version``,
``kernel_config``, ``kernel_from_cache``, ``platform``, ``initramfs``,
``initramfs_size``, ``initramfs_uncompressed_size``, ``members``, ``manifest`` (paths and
sizes); ``published`` (false when pinned versions were gone and current ones were used),
``lock_changes`` (``"name locked-version -> name used-version"`` lines), ``resolved_lock``
(the lock actually built from, or null); with ``--compare``, ``published_differences``.
``--check --json``: ``identical``, ``differences`` (first member first), ``varied`` (what the
second build changed), ``first`` (the build summary).  ``--export-inputs --json``:
``directory``, ``files``, ``bytes``, ``lock_sha256``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from heads.cli.common import add_json_option, print_json
from heads.errors import ExitCode, FormatError, HeadsError, UsageError, VerificationError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from heads.flows.image_build import Payload

__all__ = ["register"]


def register(p: argparse.ArgumentParser) -> None:
    """Fill the ``build`` command's parser."""
    p.description = (
        "Build the payload from the pinned inputs in the lock file: a kernel "
        "compiled from Debian's kernel source for the platform (cached once built) and a "
        "deterministic zstd initramfs with busybox, kexec, gpgv, a trimmed Python, "
        "tpm2-pytss and heads.  Inputs are downloaded once into the cache and checked "
        "against their SHA-256 on every build.  When pinned Debian versions are gone from the "
        "archive, the current ones are used and the summary says the result is not the "
        "published payload (--locked refuses instead)."
    )
    p.add_argument("--out", type=Path, default=Path("out/payload"), help="output directory")
    p.add_argument(
        "--cache", type=Path, default=None, help="download cache (default ~/.cache/heads)"
    )
    p.add_argument(
        "--lock",
        type=Path,
        default=None,
        help="lock file of pinned inputs (default payload/lock.json of this checkout, or the "
        "lock of --inputs)",
    )
    p.add_argument(
        "--inputs",
        type=Path,
        default=None,
        metavar="DIR",
        help="build offline from a directory written by --export-inputs",
    )
    p.add_argument(
        "--locked",
        action="store_true",
        help="refuse (exit 3) when a pinned package is gone from the archive",
    )
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="FILE",
        help="after building, compare with published digests (payload/published.json); "
        "exit 3 if any differs",
    )
    p.add_argument(
        "--publish",
        type=Path,
        default=None,
        metavar="FILE",
        help="after building, write its digests to FILE (what --compare reads)",
    )
    p.add_argument(
        "--init", type=Path, default=None, help="/init script (default: the boot runtime's)"
    )
    p.add_argument(
        "--platform",
        default="qemu",
        metavar="NAME",
        help="the kernel configuration to build: payload/kernel/NAME.fragment (default qemu)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=12.0,
        metavar="MIB",
        help="the most kernel + compressed initramfs may weigh, in MiB (default 12: a 16 MiB "
        "chip shared with coreboot and the owner's files); a build over it fails and names "
        "what grew",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="build twice in different directories and require identical digests",
    )
    mode.add_argument(
        "--export-inputs",
        type=Path,
        default=None,
        metavar="DIR",
        help="write every pinned input (debs, wheels), the lock and SHA256SUMS to DIR",
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
        "kernel_config": str(p.kernel_config) if p.kernel_config else None,
        "kernel_from_cache": p.kernel_from_cache,
        "platform": p.platform,
        "initramfs": str(p.initramfs),
        "initramfs_size": p.initramfs_size,
        "initramfs_uncompressed_size": p.initramfs_uncompressed_size,
        "members": p.members,
        "manifest": str(p.manifest),
        "published": p.published,
        "lock_changes": list(p.lock_changes),
        "resolved_lock": str(p.resolved_lock) if p.resolved_lock else None,
    }


def _print_sizes(p: Payload) -> None:
    mib = p.initramfs_size / 2**20
    origin = "cached build" if p.kernel_from_cache else "built now"
    print(
        f"kernel     {p.kernel}  {p.kernel_size / 2**20:.2f} MiB "
        f"({p.kernel_version}, {p.platform}, {origin})"
    )
    print(
        f"initramfs  {p.initramfs}  {mib:.2f} MiB zstd "
        f"({p.initramfs_uncompressed_size / 2**20:.1f} MiB, {p.members} members)"
    )
    print(f"manifest   {p.manifest}")
    total = (p.kernel_size + p.initramfs_size) / 2**20
    print(f"payload    {total:.2f} MiB in total (budget {p.budget / 2**20:.2f} MiB)")
    if not p.published:
        print(
            f"warning: this is NOT the published payload: {len(p.lock_changes)} input(s) "
            "differ from the lock (pinned versions gone from the archive):"
        )
        for change in p.lock_changes:
            print(f"  {change}")
        print(f"  the lock it was built from: {p.resolved_lock}")


def _build(args: argparse.Namespace) -> int:
    from heads.adapters.atomic import write_atomic
    from heads.flows.image_build import (
        DEFAULT_LOCK,
        build_payload,
        check_reproducible,
        compare_published,
        default_cache_dir,
        export_payload_inputs,
        published_digests,
        read_manifest,
        update_lock,
    )

    cache: Path = args.cache or default_cache_dir()
    lock: Path = args.lock or DEFAULT_LOCK
    say: Callable[[str], None] | None = None
    if not args.json:
        say = lambda msg: print(f"  {msg}", file=sys.stderr)  # noqa: E731
    if args.inputs is not None and (args.update_lock or args.export_inputs or args.check):
        raise UsageError("--inputs builds a payload; it does not go with the other modes")
    if args.update_lock:
        new = update_lock(lock, cache_dir=cache, init_script=args.init, progress=say)
        if args.json:
            print_json({"lock": str(lock), "debian": len(new.debs), "python": len(new.python)})
        else:
            print(
                f"{lock}: {len(new.debs)} Debian packages, "
                f"{len(new.python)} Python distributions pinned"
            )
        return ExitCode.OK
    if args.export_inputs is not None:
        summary = export_payload_inputs(
            args.export_inputs, cache_dir=cache, lock_path=lock, progress=say
        )
        if args.json:
            print_json(
                {
                    "directory": str(summary.directory),
                    "files": summary.files,
                    "bytes": summary.total_bytes,
                    "lock_sha256": summary.lock_sha256,
                }
            )
        else:
            print(
                f"{summary.directory}: {summary.files} files, "
                f"{summary.total_bytes / 2**20:.1f} MiB (lock {summary.lock_sha256[:16]}); "
                f"rebuild offline with `heads build --inputs {summary.directory}`"
            )
        return ExitCode.OK
    if args.check:
        result = check_reproducible(
            cache_dir=cache,
            lock_path=lock,
            init_script=args.init,
            progress=say,
            platform=args.platform,
        )
        if args.json:
            print_json(
                {
                    "identical": result.identical,
                    "differences": list(result.differences),
                    "varied": list(result.varied),
                    "first": _summary(result.first),
                }
            )
        if not result.identical:
            raise HeadsError(
                "the two builds differ: the payload is not reproducible",
                details=result.differences[:40],
                hint="the first line names the first member that differs",
            )
        if not args.json:
            print(
                f"reproducible: a second build as another machine ({', '.join(result.varied)}) "
                f"is identical (initramfs {result.first.initramfs_size / 2**20:.2f} MiB, "
                f"{result.first.members} members)"
            )
        return ExitCode.OK
    payload = build_payload(
        args.out,
        cache_dir=cache,
        lock_path=args.lock,
        inputs=args.inputs,
        locked=args.locked,
        init_script=args.init,
        progress=say,
        platform=args.platform,
        budget=int(args.budget * 2**20),
    )
    manifest = read_manifest(payload.manifest)
    if args.publish is not None:
        import json

        digests = {"format": 1, **published_digests(manifest)}
        write_atomic(args.publish, (json.dumps(digests, indent=1, sort_keys=True) + "\n").encode())
    differences: list[str] = []
    if args.compare is not None:
        differences = compare_published(manifest, _read_published(args.compare))
    if args.json:
        report = _summary(payload)
        if args.compare is not None:
            report["published_differences"] = differences
        print_json(report)
    else:
        _print_sizes(payload)
        if args.compare is not None and not differences:
            print(f"identical to the published payload ({args.compare})")
    if differences:
        raise VerificationError(
            f"this build is not the published payload of {args.compare}",
            details=tuple(differences),
            hint="the first line names what differs; a differing top part means other heads "
            "sources than the published commit",
        )
    return ExitCode.OK


def _read_published(path: Path) -> dict[str, object]:
    import json

    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise FormatError(f"unreadable published digests: {exc}", source=str(path)) from None
    if not isinstance(obj, dict) or obj.get("format") != 1:
        raise FormatError("not a format-1 published digest file", source=str(path))
    return obj
