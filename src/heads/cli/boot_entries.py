"""`heads boot list`, `heads boot default`, `heads boot kexec`: the OS boot entries of /boot.

``list`` shows what the boot-loader configurations offer (GRUB, BLS, SYSLINUX) and what was
left out and why; ``default`` saves one entry as the default in Heads' files; ``kexec`` boots
an entry after verifying /boot (``--dry-run`` prints the exact kexec-tools command instead).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from heads.cli.common import add_json_option, add_tcti_option, print_json, read_secret_fd, tcti_from
from heads.core.text import scrub, shown
from heads.errors import ExitCode, UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from heads.core.bootcfg.discover import Discovery
    from heads.core.bootcfg.entry import BootEntry
    from heads.core.bootcfg.grub import GrubContext
    from heads.core.kexec_plan import KexecPlan
    from heads.flows.boot_signing import RollbackCounter

__all__ = ["register_boot"]

_SCHEMA = "heads.boot-entries/1"


def _entry_json(index: int, entry: BootEntry) -> dict[str, object]:
    return {
        "index": index,
        "title": entry.title,
        "submenu": list(entry.submenu),
        "kind": entry.kind.value,
        "kernel": entry.kernel,
        "initrds": list(entry.initrds),
        "cmdline": entry.cmdline,
        "modules": [{"path": m.path, "args": m.args} for m in entry.modules],
        "source": (
            {"file": entry.source.file, "line": entry.source.line} if entry.source else None
        ),
        "notes": list(entry.notes),
        "hidden": entry.hidden,
        "line": entry.to_line(),
    }


def _discovery_json(found: Discovery) -> dict[str, object]:
    return {
        "schema": _SCHEMA,
        "entries": [_entry_json(i, e) for i, e in enumerate(found.entries, start=1)],
        "dropped": [
            {
                "title": d.title,
                "source": {"file": d.source.file, "line": d.source.line},
                "reason": d.reason,
            }
            for d in found.dropped
        ],
        "configs": list(found.configs),
        "problems": list(found.problems),
        "skipped_commands": dict(found.skipped_commands),
    }


def _short(path: str) -> str:
    # The Heads menu shows paths longer than 35 characters as their basename
    # (docs/heads-compat.md §Boot entries).
    return path.rsplit("/", 1)[-1] if len(path) > 35 else path


def _render(found: Discovery, *, show_dropped: bool) -> str:
    # Titles, paths, command lines and file names come from the disk: each is escaped
    # (heads.core.text.shown) so none can add a line or hide text with escape sequences.
    # Notes, reasons and problems are sentences heads wrote around such names: scrub() escapes
    # their control characters without doubling the backslashes of names already shown.
    out: list[str] = []
    for i, e in enumerate(found.entries, start=1):
        files = " | ".join(shown(_short(p)) for p in e.files)
        out.append(f"{i:3d}  {shown(e.display_title)}  [{files}]")
        if e.cmdline:
            out.append(f"       {shown(e.cmdline)}")
        out.extend(f"       note: {scrub(note)}" for note in e.notes)
    if not found.entries:
        out.append("no bootable entries")
    if found.dropped:
        if show_dropped:
            out.append(f"left out ({len(found.dropped)}):")
            out.extend(
                f"  - {shown(d.title)} ({shown(d.source.file)}:{d.source.line}): {scrub(d.reason)}"
                for d in found.dropped
            )
        else:
            out.append(f"{len(found.dropped)} entries left out (--all shows them and why)")
    out.extend(f"problem: {scrub(p)}" for p in found.problems)
    if found.configs:
        out.append("from: " + ", ".join(shown(c) for c in found.configs))
    return "\n".join(out) + "\n"


def _context(args: argparse.Namespace) -> GrubContext:
    from heads.core.bootcfg.grub import GrubContext

    return GrubContext(
        platform=args.platform,
        iso_path=args.iso_path,
        iso_device_uuid=args.iso_device_uuid,
        boot_uuid=args.boot_uuid,
        boot_label=args.boot_label,
    )


def _cmd_list(args: argparse.Namespace) -> int:
    from heads.flows.boot_entries import list_entries

    found = list_entries(
        Path(args.bootdir),
        media=args.media or args.iso_path is not None,
        ctx=_context(args),
        require_files=not args.keep_missing,
    )
    if args.json:
        print_json(_discovery_json(found))
    else:
        sys.stdout.write(_render(found, show_dropped=args.all))
    return ExitCode.OK if found.entries else ExitCode.ERROR


@contextlib.contextmanager
def _rollback_tpm(args: argparse.Namespace) -> Iterator[RollbackCounter | None]:
    if args.no_rollback:
        yield None
        return
    from heads.adapters.tpm import open_tpm

    with open_tpm(tcti_from(args)) as tpm:
        yield tpm


def _signer(args: argparse.Namespace, bootdir: Path) -> Callable[[], object] | None:
    """A callable that signs /boot, or None when the signing flow is not available."""
    try:
        from heads.flows.boot_signing import sign_boot
    except ImportError:
        return None
    pin = read_secret_fd(args.pin_fd, "PIN") if args.pin_fd is not None else None

    def sign() -> object:
        with _rollback_tpm(args) as tpm:
            return sign_boot(
                bootdir,
                gnupghome=Path(args.gnupghome) if args.gnupghome else None,
                key=args.key,
                tpm=tpm,
                pin=pin,
                rollback=not args.no_rollback,
            )

    return sign


def _cmd_default(args: argparse.Namespace) -> int:
    from heads.flows.boot_entries import save_default

    bootdir = Path(args.bootdir)
    sign = _signer(args, bootdir) if args.sign else None
    if args.sign and sign is None:
        sys.stderr.write("signing is not available in this build\n")
    saved = save_default(bootdir, args.entry, sign=sign)
    if args.json:
        print_json(
            {
                "schema": "heads.boot-default/1",
                "entry": _entry_json(saved.index, saved.entry),
                "written": list(saved.written),
                "removed": list(saved.removed),
                "signed": saved.signed,
            }
        )
        return ExitCode.OK
    sys.stdout.write(f"default entry {saved.index}: {shown(saved.entry.display_title)}\n")
    sys.stdout.write(f"wrote {', '.join(saved.written)}\n")
    if saved.removed:
        sys.stdout.write(f"removed {', '.join(shown(n) for n in saved.removed)}\n")
    if saved.signed:
        sys.stdout.write("/boot signed\n")
    else:
        sys.stdout.write(
            f"/boot must be re-signed: heads boot sign {scrub(shlex.quote(str(bootdir)))}\n"
        )
    return ExitCode.OK


def _plan(args: argparse.Namespace, bootdir: Path) -> KexecPlan:
    from heads.core.bootcfg.cmdline import FORCE_BOOT_ADD, FORCE_BOOT_REMOVE
    from heads.core.kexec_plan import CmdlineRules
    from heads.flows.boot_entries import (
        boot_default,
        default_is_current,
        list_entries,
        plan_entry,
        read_default,
        verified_digests,
    )

    add, remove = args.add or "", tuple((args.remove or "").split())
    if args.unsafe_skip_verification:
        # As Heads' forced boot: the unverified OS runs on a red console.
        add, remove = f"{add} {FORCE_BOOT_ADD}".strip(), (*remove, *FORCE_BOOT_REMOVE)
    rules = CmdlineRules(add=add, remove=remove, board_add=args.board_add or "")
    if not args.unsafe_skip_verification and args.keyring is None:
        raise UsageError(
            "--keyring is needed to verify /boot before booting",
            hint="give the owner's public keyring (gpg --export > FILE)",
        )
    if args.default and not args.unsafe_skip_verification:
        # The same path as the boot runtime's default boot.
        with _rollback_tpm(args) as tpm:
            chosen = boot_default(bootdir, keyring=Path(args.keyring), tpm=tpm, rules=rules)
        if not chosen.current:
            _note_default_changed(chosen.default.index)
        return chosen.plan
    verified = None
    if args.unsafe_skip_verification:
        import logging

        logging.getLogger(__name__).warning("--unsafe-skip-verification: /boot is NOT verified")
    else:
        with _rollback_tpm(args) as tpm:
            verified = verified_digests(bootdir, keyring=Path(args.keyring), tpm=tpm)
    reason = "--unsafe-skip-verification given" if args.unsafe_skip_verification else None
    if args.default:
        default = read_default(bootdir)
        if not default_is_current(bootdir, default):
            _note_default_changed(default.index)
        return plan_entry(
            default.entry, verified, rules=rules, default=default, unsafe_reason=reason
        )
    found = list_entries(bootdir)
    if not 1 <= args.entry <= len(found.entries):
        raise UsageError(
            f"entry {args.entry} does not exist: {bootdir} has {len(found.entries)} entries"
        )
    return plan_entry(found.entries[args.entry - 1], verified, rules=rules, unsafe_reason=reason)


def _note_default_changed(index: int) -> None:
    sys.stderr.write(
        f"note: the saved default is no longer entry {index} of the menu "
        "(the boot configuration changed since it was saved); booting the saved entry\n"
    )


def _cmd_kexec(args: argparse.Namespace) -> int:
    from heads.flows.boot_entries import boot_plan, dry_run_argv

    bootdir = Path(args.bootdir)
    plan = _plan(args, bootdir)
    if args.dry_run:
        argv = dry_run_argv(plan, bootdir)
        if args.json:
            print_json(
                {
                    "schema": "heads.kexec-plan/1",
                    "title": plan.title,
                    "kind": plan.kind.value,
                    "argv": argv,
                    "verified_by": plan.verified_by,
                    "files": [
                        {"path": f.path, "sha256": f.sha256.hex() if f.sha256 else None}
                        for f in plan.files
                    ],
                    "notes": list(plan.notes),
                }
            )
        else:
            sys.stdout.write(f"entry: {shown(plan.title)}\n")
            sys.stdout.write(f"verified by: {plan.verified_by or 'NOTHING (unsafe boot)'}\n")
            # Quoted for a shell; a control character in it is escaped, so the line shown
            # is the whole command (and pasting it fails rather than runs something else).
            sys.stdout.write(scrub(shlex.join(argv)) + "\n")
            sys.stdout.write("kexec -e\n")
        return ExitCode.OK
    boot_plan(plan, bootdir, tcti=None if args.no_measure else tcti_from(args))
    return ExitCode.OK  # not reached when kexec -e succeeds


def _add_context_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--platform",
        default="pc",
        choices=("pc", "efi"),
        help="GRUB's grub_platform for conditions (default pc: kexec boots like a BIOS loader)",
    )
    parser.add_argument("--iso-path", metavar="PATH", help="ISO path on its device (ISO boot)")
    parser.add_argument("--iso-device-uuid", metavar="UUID", help="UUID of the ISO's device")
    parser.add_argument("--boot-uuid", metavar="UUID", help="filesystem UUID of BOOTDIR")
    parser.add_argument("--boot-label", metavar="LABEL", help="filesystem label of BOOTDIR")


def _add_sign_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gnupghome", metavar="DIR", help="the owner's GnuPG home (--sign)")
    parser.add_argument("--key", metavar="FPR", help="signing key (--sign)")
    parser.add_argument("--pin-fd", type=int, metavar="N", help="read the PIN from this fd")


def register_boot(boot_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``list``, ``default`` and ``kexec`` to the ``heads boot`` group."""
    lister = boot_sub.add_parser(
        "list",
        help="list the OS boot entries (GRUB, BLS, SYSLINUX) of a boot directory",
        description="Exit 0 when at least one bootable entry was found, 1 otherwise.",
    )
    lister.add_argument("bootdir", metavar="BOOTDIR", help="the mounted /boot, ISO or USB tree")
    lister.add_argument("--all", action="store_true", help="also show entries left out, and why")
    lister.add_argument("--media", action="store_true", help="scan as ISO/USB (loopback.cfg)")
    lister.add_argument(
        "--keep-missing",
        action="store_true",
        help="keep entries whose kernel or initrd does not exist",
    )
    _add_context_options(lister)
    add_json_option(lister)
    lister.set_defaults(func=_cmd_list)

    default = boot_sub.add_parser(
        "default",
        help="make an entry the default (kexec_default.N.txt, kexec_default_hashes.txt)",
        description="Writes the default-entry files in Heads' format; /boot must then be "
        "signed again (--sign does it).",
    )
    default.add_argument("bootdir", metavar="BOOTDIR", help="the mounted /boot (read-write)")
    default.add_argument("--entry", type=int, required=True, metavar="N", help="as listed")
    default.add_argument("--sign", action="store_true", help="sign /boot afterwards")
    default.add_argument(
        "--no-rollback", action="store_true", help="sign without the TPM rollback counter"
    )
    _add_sign_options(default)
    add_tcti_option(default)
    add_json_option(default)
    default.set_defaults(func=_cmd_default)

    kexec = boot_sub.add_parser(
        "kexec",
        help="verify /boot and boot an entry with kexec (--dry-run prints the command)",
        description="Verifies /boot (signature, hashes, rollback counter), loads exactly the "
        "verified bytes with kexec -s -l, extends PCR 4 with 'generic' and runs kexec -e.",
    )
    kexec.add_argument("bootdir", metavar="BOOTDIR", help="the mounted /boot")
    which = kexec.add_mutually_exclusive_group(required=True)
    which.add_argument("--entry", type=int, metavar="N", help="the entry, as listed")
    which.add_argument("--default", action="store_true", help="the saved default entry")
    kexec.add_argument("--dry-run", action="store_true", help="print the kexec command only")
    kexec.add_argument("--keyring", metavar="FILE", help="owner's public keyring for verifying")
    kexec.add_argument(
        "--no-rollback", action="store_true", help="do not check the TPM rollback counter"
    )
    kexec.add_argument(
        "--no-measure", action="store_true", help="do not extend PCR 4 before kexec -e"
    )
    kexec.add_argument(
        "--unsafe-skip-verification",
        action="store_true",
        help="boot files that were NOT verified (recovery only; red console, as Heads)",
    )
    kexec.add_argument("--add", metavar="PARAMS", help="parameters to add (ISO boot)")
    kexec.add_argument("--remove", metavar="WORDS", help="parameters to remove")
    kexec.add_argument("--board-add", metavar="PARAMS", help="CONFIG_BOOT_KERNEL_ADD")
    add_tcti_option(kexec)
    add_json_option(kexec)
    kexec.set_defaults(func=_cmd_kexec)
