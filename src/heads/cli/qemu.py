"""`heads qemu ...`: the QEMU platform: machine directories, provisioning, boots, the demo.

::

    heads qemu create DIR [--force] [--flash-size MIB]   new machine: swtpm, settings, chip size
    heads qemu provision DIR [--payload P]   owner key, flash image (payload + user files),
                                             signed OS disk
    heads qemu boot DIR [--interactive] [--console]      boots what the flash image holds
    heads qemu demo [--dir DIR] [--payload P] [--interactive] [--console]

``--payload`` is the directory ``heads build`` writes (``vmlinuz``, ``initramfs.cpio.zst``).
Exit status of ``demo``: 0 when every check held, 3 when one did not (see the summary).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from heads.core.qr import qr_matrix, render_half_blocks
from heads.errors import ExitCode, UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

    from heads.adapters.qemu import ConsoleLine
    from heads.flows.qemu_platform import (
        BootResult,
        DemoPayload,
    )

__all__ = ["register"]

_DEFAULT_PAYLOAD: Final = Path("out/payload")
_DEFAULT_DEMO_DIR: Final = Path("out/qemu-demo")
_MARKS: Final = (
    ("init", "first line of /init"),
    ("python", "Python started"),
    ("runtime", "runtime imported"),
    ("totp", "TOTP shown"),
    ("kexec", "kexec"),
    ("os", "OS marker"),
)


def _say(text: str) -> None:
    print(f"heads qemu: {text}", flush=True)


def _echo(line: ConsoleLine) -> None:
    print(f"  [{line.t_s:7.2f}] {line.text}", flush=True)


def _payload_files(directory: Path) -> DemoPayload:
    from heads.flows.qemu_platform import DemoPayload

    return DemoPayload(directory / "vmlinuz", directory / "initramfs.cpio.zst", built=False)


def _print_boot(result: BootResult) -> None:
    for key, what in _MARKS:
        if key in result.marks:
            print(f"    {what:<22} {result.marks[key]:6.2f} s after QEMU start")
    if result.totp is not None:
        print(f"    TOTP code              {result.totp[0]} at {result.totp[1]}")
    if result.refusal is not None:
        print(f"    refused                {result.refusal}")
        for line in result.report:
            print(f"      {line}")


def _create(args: argparse.Namespace) -> int:
    from heads.flows.qemu_platform import create_machine

    create_machine(args.dir, force=args.force, say=_say, flash_size=args.flash_size * 2**20)
    return ExitCode.OK


def _provision(args: argparse.Namespace) -> int:
    from heads.flows.qemu_platform import Machine, provision_machine

    machine = Machine.load(args.dir)
    payload = _payload_files(args.payload)
    provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs, say=_say)
    return ExitCode.OK


def _answers(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``--answers FILE`` then every ``--answer ID=CHOICE``, in that order."""
    from heads.core.answers import parse_answer, parse_answer_file
    from heads.core.dialogs import PASSPHRASE_IDS

    pairs: list[tuple[str, str]] = []
    if args.answers is not None:
        try:
            data = args.answers.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.answers}: {exc.strerror}") from None
        pairs += parse_answer_file(data, source=str(args.answers))
    for text in args.answer:
        dialog_id, value = parse_answer(text)
        if dialog_id in PASSPHRASE_IDS:
            # argv is visible to every user of the machine (ps, /proc).
            raise UsageError(
                f"--answer {dialog_id}=...: a passphrase is never given on the command line",
                hint="put it in a file readable only by you and pass --answers FILE",
            )
        pairs.append((dialog_id, value))
    return pairs


def _boot(args: argparse.Namespace) -> int:
    from heads.flows.qemu_platform import Machine, boot_interactive, boot_machine

    answers = _answers(args)
    machine = Machine.load(args.dir)
    if args.interactive:
        if answers:
            raise UsageError("--answer/--answers script a boot: not with --interactive")
        return boot_interactive(machine)
    result = boot_machine(
        machine,
        echo=_echo if args.console else None,
        timeout_s=args.timeout,
        answers=answers,
    )
    _say(f"boot finished; console transcript: {result.transcript}")
    _print_boot(result)
    if result.refusal is not None:
        return ExitCode.VERIFICATION_FAILED
    return ExitCode.OK if result.os_up else ExitCode.ERROR


def _disk_key(args: argparse.Namespace) -> int:
    import getpass

    from heads.cli.common import read_secret_fd
    from heads.core.disk_key import check_passphrase
    from heads.core.secret import Secret
    from heads.flows.qemu_luks import add_disk_key, firmware_values_from_transcripts
    from heads.flows.qemu_platform import Machine

    def secret(fd: int | None, prompt: str) -> Secret:
        if fd is not None:
            return read_secret_fd(fd)
        return Secret(getpass.getpass(prompt).encode("utf-8"))

    machine = Machine.load(args.dir)
    firmware = firmware_values_from_transcripts(machine)
    recovery = secret(args.recovery_fd, "New LUKS Disk Recovery Key passphrase: ")
    passphrase = secret(args.passphrase_fd, "Disk unlock key passphrase (12+ characters): ")
    again = passphrase if args.passphrase_fd is not None else secret(None, "Again: ")
    check_passphrase(passphrase, again)
    add_disk_key(machine, recovery=recovery, passphrase=passphrase, firmware=firmware, say=_say)
    _say("next boot: the OS opens its LUKS volume with the key, after the passphrase")
    return ExitCode.OK


def _demo(args: argparse.Namespace) -> int:
    from heads.flows.image_build import default_cache_dir
    from heads.flows.qemu_platform import (
        boot_interactive,
        cached_payload,
        create_machine,
        demo_flash_size,
        provision_machine,
        run_demo,
    )

    start = time.monotonic()
    payload = cached_payload(args.payload, cache_dir=args.cache or default_cache_dir(), say=_say)
    size = payload.kernel.stat().st_size + payload.initramfs.stat().st_size
    _say(
        f"payload: kernel {payload.kernel.stat().st_size / 2**20:.1f} MiB + initramfs "
        f"{payload.initramfs.stat().st_size / 2**20:.1f} MiB = {size / 2**20:.1f} MiB"
    )
    if args.interactive:
        chip = demo_flash_size(payload, _say)
        machine = create_machine(args.dir, force=True, say=_say, flash_size=chip)
        provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs, say=_say)
        _say("interactive boot: the serial console is yours (the guest powers off at the end)")
        return boot_interactive(machine)
    report = run_demo(args.dir, payload, say=_say, echo=_echo if args.console else None)
    print()
    print(f"heads qemu demo summary (machine {report.machine}, {time.monotonic() - start:.0f} s)")
    print(f"  payload: {report.payload_bytes / 2**20:.1f} MiB (kernel + zstd initramfs)")
    # Boot 0 is the factory reset; the TOTP secret is provisioned on the first boot after it.
    for n, result in enumerate(report.boots):
        print(f"  boot {n}: console transcript {result.transcript}")
        _print_boot(result)
    uri = next((b.otpauth_uri for b in report.boots if b.otpauth_uri), None)
    if uri is not None:
        # What the guest showed on its console at provisioning: scan it to follow along.
        print("  TOTP secret provisioned on boot 1 (scan with an authenticator app):")
        print(render_half_blocks(qr_matrix(uri)))
    for name, passed in report.checks:
        print(f"  [{'ok' if passed else 'FAILED'}] {name}")
    if not report.ok:
        print("demo FAILED: see the console transcripts above", file=sys.stderr)
        return ExitCode.VERIFICATION_FAILED
    print(
        "demo passed: ownership taken, attested boots, disk key released, firmware updated "
        "with the TOTP kept, tampering refused"
    )
    return ExitCode.OK


def register(parser: argparse.ArgumentParser) -> None:
    qsub = parser.add_subparsers(dest="qemu_command", metavar="SUBCOMMAND", required=True)

    p = qsub.add_parser("create", help="create a machine directory with a new TPM")
    p.add_argument("dir", type=Path, help="the machine directory")
    p.add_argument("--force", action="store_true", help="replace an existing directory")
    p.add_argument(
        "--flash-size",
        type=int,
        choices=(1, 2, 4, 8, 16, 32, 64),
        default=16,
        metavar="MIB",
        help="flash chip size in MiB (default 16; the payload must fit)",
    )
    p.set_defaults(func=_create)

    p = qsub.add_parser("provision", help="owner key, flash image, signed OS disk")
    p.add_argument("dir", type=Path, help="the machine directory")
    p.add_argument("--payload", type=Path, default=_DEFAULT_PAYLOAD, help="heads build output")
    p.set_defaults(func=_provision)

    p = qsub.add_parser("boot", help="boot the machine once from its flash image")
    p.add_argument("dir", type=Path, help="the machine directory")
    p.add_argument("--interactive", action="store_true", help="the console is yours")
    p.add_argument("--console", action="store_true", help="show the guest's console")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds until power-off")
    p.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="ID=CHOICE",
        help="answer the runtime's dialog ID (repeat; answers to one ID are used in order)",
    )
    p.add_argument(
        "--answers",
        type=Path,
        default=None,
        metavar="FILE",
        help="ID=CHOICE lines (passphrases go here, never in --answer)",
    )
    p.set_defaults(func=_boot)

    p = qsub.add_parser(
        "disk-key", help="give the OS a LUKS volume and seal a disk unlock key for it"
    )
    p.add_argument("dir", type=Path, help="the machine directory (booted once)")
    p.add_argument("--recovery-fd", type=int, metavar="FD", help="read the DRK passphrase")
    p.add_argument("--passphrase-fd", type=int, metavar="FD", help="read the DUK passphrase")
    p.set_defaults(func=_disk_key)

    p = qsub.add_parser(
        "demo",
        help="build, take ownership in the guest, boot twice, tamper, boot refused",
    )
    p.add_argument("--dir", type=Path, default=_DEFAULT_DEMO_DIR, help="machine directory")
    p.add_argument("--payload", type=Path, default=_DEFAULT_PAYLOAD, help="payload directory")
    p.add_argument(
        "--cache", type=Path, default=None, help="package cache (default ~/.cache/heads)"
    )
    p.add_argument("--interactive", action="store_true", help="one boot, console is yours")
    p.add_argument("--console", action="store_true", help="show the guests' consoles")
    p.set_defaults(func=_demo)
