"""`heads disk ...`: the disk unlock key (docs/disk-key.md).

``seal``   add a new key to each LUKS device's dedicated key slot, seal it in the TPM to this
           boot's PCRs with the owner's passphrase, write the key files to /boot and sign it.
``unseal --check``  measure the headers into PCR 6 if asked, then release the key and say
           whether it opens every listed device (the key itself is never printed).
``wipe``   remove the sealed key from the TPM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from heads.cli.common import add_tcti_option, open_tpm, read_secret_fd, tcti_from
from heads.core.platform import FIRMWARE_EVENT_LOG, PROFILES
from heads.core.text import shown
from heads.errors import UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from heads.core.secret import Secret

__all__ = ["register"]


def _secret(fd: int | None, prompt: str, what: str) -> Secret:
    import getpass  # only when a passphrase is typed

    from heads.core.secret import Secret

    if fd is not None:
        return read_secret_fd(fd, what)
    value = getpass.getpass(prompt).encode("utf-8")
    if not value:
        raise UsageError(f"no {what} given")
    return Secret(value)


def _new_passphrase(args: argparse.Namespace) -> Secret:
    from heads.core.disk_key import check_passphrase

    if args.passphrase_fd is not None:
        first = read_secret_fd(args.passphrase_fd, "disk unlock key passphrase")
        check_passphrase(first, first)
        return first
    for _ in range(3):
        first = _secret(None, "New disk unlock key passphrase (12+ characters): ", "passphrase")
        again = _secret(None, "The same passphrase again: ", "passphrase")
        try:
            check_passphrase(first, again)
        except UsageError as err:
            print(err.message)
            continue
        return first
    raise UsageError("no acceptable disk unlock key passphrase after 3 tries")


def _seal(args: argparse.Namespace) -> int:
    from heads.flows.boot_signing import sign_boot
    from heads.flows.crypttab_overrides import write_crypttab_overrides
    from heads.flows.disk_key import (
        DiskTarget,
        firmware_pcrs,
        seal_disk_key,
        values_from_live,
        values_from_totp_record,
    )

    targets = [DiskTarget.parse(text) for text in args.device]
    boot = Path(args.boot)
    if not boot.is_dir():
        raise UsageError(f"{boot} is not a directory")
    recovery = _secret(args.recovery_fd, "Disk Recovery Key passphrase: ", "recovery passphrase")
    passphrase = _new_passphrase(args)
    owner = read_secret_fd(args.owner_passphrase_fd) if args.owner_passphrase_fd else None
    # As `heads totp seal`: UEFI firmware exposes /sys/firmware/efi, coreboot does not.
    profile = args.profile or ("uefi" if Path("/sys/firmware/efi").is_dir() else "coreboot")
    event_log = Path(args.event_log)
    with open_tpm(tcti_from(args)) as tpm:
        if args.pcrs_from == "totp-record":
            if not event_log.is_file():
                raise UsageError(
                    f"--pcrs-from totp-record needs a firmware event log ({event_log})"
                )
            fw = firmware_pcrs(event_log.read_bytes(), source=str(event_log))
            values = values_from_totp_record(tpm, fw)
        else:
            values = values_from_live(tpm, profile=profile, event_log=event_log)
        result = seal_disk_key(
            tpm,
            targets=targets,
            recovery=recovery,
            passphrase=passphrase,
            boot_dir=boot,
            values=values,
            profile=profile,
            volume_group=args.volume_group,
            owner_auth=owner,
            say=lambda m: print(shown(m)),
        )
        write_crypttab_overrides(boot, say=lambda m: print(shown(m)))
        if not args.no_sign:
            signed = sign_boot(
                boot,
                gnupghome=Path(args.gnupghome) if args.gnupghome else None,
                key=args.key,
                tpm=tpm,
            )
            print(f"/boot signed again (rollback counter {signed.counter_value})")
    print(f"disk unlock key sealed for {', '.join(d.device for d in result.devices)}")
    return 0


def _unseal(args: argparse.Namespace) -> int:
    from heads.adapters import cryptsetup
    from heads.flows.disk_key import DiskTarget, check_listing, measure_headers, unseal_disk_key

    if not args.check:
        raise UsageError("only --check is supported: the key itself is never printed")
    from heads.core.disk_key import DEVICES_FILE, parse_devices

    boot = Path(args.boot)
    devices = parse_devices((boot / DEVICES_FILE).read_bytes(), source=str(boot / DEVICES_FILE))
    paths = dict(text.partition("=")[::2] for text in args.device)
    targets = [DiskTarget(d.device, Path(paths.get(d.device) or d.device)) for d in devices]
    passphrase = _secret(args.passphrase_fd, "Disk unlock key passphrase: ", "passphrase")
    with open_tpm(tcti_from(args)) as tpm:
        if args.measure:
            listing = measure_headers(tpm, None, targets)
            same = check_listing(boot, listing)
            if same is False:
                print("warning: the LUKS headers changed since the key was sealed")
        key = unseal_disk_key(tpm, passphrase)
    for target in targets:
        ok = cryptsetup.opens_with(target.path, key)
        print(f"{target.device}: {'opens' if ok else 'DOES NOT OPEN'} with the released key")
        if not ok:
            return 3
    print("disk unlock key released")
    return 0


def _wipe(args: argparse.Namespace) -> int:
    from heads.flows.disk_key import wipe_disk_key

    owner = read_secret_fd(args.owner_passphrase_fd) if args.owner_passphrase_fd else None
    with open_tpm(tcti_from(args)) as tpm:
        done = wipe_disk_key(tpm, owner_auth=owner)
    print("disk unlock key removed from the TPM" if done else "no disk unlock key was sealed")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    cmds = parser.add_subparsers(dest="disk_command", metavar="COMMAND", required=True)

    seal = cmds.add_parser("seal", help="add a disk unlock key to LUKS devices and seal it")
    add_tcti_option(seal)
    seal.add_argument(
        "--device",
        action="append",
        required=True,
        metavar="/dev/NAME[=PATH]",
        help="a LUKS device as the booting machine names it (=PATH: read it from PATH now)",
    )
    seal.add_argument("--boot", default="/boot", help="the /boot directory (default /boot)")
    seal.add_argument("--recovery-fd", type=int, metavar="FD", help="read the DRK passphrase")
    seal.add_argument("--passphrase-fd", type=int, metavar="FD", help="read the DUK passphrase")
    seal.add_argument("--owner-passphrase-fd", type=int, metavar="FD")
    seal.add_argument(
        "--profile", choices=sorted(PROFILES), help="platform profile (default: detected)"
    )
    seal.add_argument(
        "--pcrs-from",
        choices=("live", "totp-record"),
        default="live",
        help="this boot's PCRs, or those the TOTP secret is sealed to",
    )
    seal.add_argument("--event-log", default=str(FIRMWARE_EVENT_LOG), metavar="FILE")
    seal.add_argument("--volume-group", metavar="VG", help="LVM volume group to activate")
    seal.add_argument("--gnupghome", metavar="DIR", help="the owner's GnuPG home")
    seal.add_argument("--key", metavar="FPR", help="the owner's signing key")
    seal.add_argument("--no-sign", action="store_true", help="leave signing /boot to the caller")
    seal.set_defaults(func=_seal)

    unseal = cmds.add_parser("unseal", help="check that the sealed key is released")
    add_tcti_option(unseal)
    unseal.add_argument("--check", action="store_true", required=True)
    unseal.add_argument("--boot", default="/boot")
    unseal.add_argument("--device", action="append", default=[], metavar="/dev/NAME=PATH")
    unseal.add_argument("--passphrase-fd", type=int, metavar="FD")
    unseal.add_argument(
        "--measure", action="store_true", help="extend PCR 6 with the headers first (once a boot)"
    )
    unseal.set_defaults(func=_unseal)

    wipe = cmds.add_parser("wipe", help="remove the sealed disk unlock key")
    add_tcti_option(wipe)
    wipe.add_argument("--owner-passphrase-fd", type=int, metavar="FD")
    wipe.set_defaults(func=_wipe)
