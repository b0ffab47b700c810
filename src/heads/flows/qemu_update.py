"""Host side of a firmware update flashed from inside a QEMU machine (docs/firmware-update.md
§QEMU).

The owner of a real board copies an update package onto a USB drive and picks it in
"Flash/Update the BIOS".  Here the host builds what the owner would bring:

* :func:`update_image`: a new image for the machine's chip with a payload that differs from
  the one it runs (an extra, uncompressed cpio archive in front of the initramfs, the way
  early microcode is loaded; another kernel command line; an extra user file), so that
  PCRs 4, 7 and 9 all move;
* :func:`update_package`: that image signed with the owner's key (the key the firmware's
  keyring holds), as ``heads rom package`` makes it: gpg's key in the machine directory for
  a machine provisioned on the host, or, for one owned through the factory reset in the guest,
  the key from its backup drive (:func:`backup_signer`);
* :func:`usb_drive`: an ext4 disk image holding files, plugged in with
  ``boot_machine(..., usb_disks=[...])``;
* :func:`demo_update`: the demo's update step (flash from the USB drive, then the boot that
  shows the same TOTP code).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from heads.adapters._run import require_tool, run
from heads.adapters.gpg import GpgSigner, Signer
from heads.adapters.qemu import ConsoleLine
from heads.core.cbfs import CbfsFile
from heads.core.cpio import CpioEntry, build_newc
from heads.core.flash_image import FlashImage
from heads.core.openpgp import OwnerKeySigner, import_secret
from heads.core.qemu_flash import build_flash, payload_of
from heads.core.secret import Secret
from heads.flows.firmware import make_package, write_image_file
from heads.flows.qemu_platform import (
    BootResult,
    Machine,
    boot_machine,
    stop_owner_agent,
    totp_matches,
)

__all__ = [
    "UPDATE_ANSWERS",
    "UPDATE_NOTE",
    "backup_signer",
    "demo_update",
    "pcr_comparisons",
    "update_image",
    "update_package",
    "usb_drive",
]

#: The user file only the update image carries (measured into PCR 7 after the update).
UPDATE_NOTE: Final = "heads/initrd/etc/update-note"
#: The menu answers of "Flash/Update the BIOS, keep settings" with the package on the drive.
UPDATE_ANSWERS: Final = (
    ("main-menu", "o"),
    ("options", "f"),
    ("flash-menu", "f"),
    ("flash-file", "update.zip"),
)
_PENDING_LINE: Final = re.compile(
    r"^heads: pending seal: PCR (\d+) predicted ([0-9a-f]+) now ([0-9a-f]+): (\w+)"
)
_EPOCH: Final = 1_700_000_000
#: The owner key's backup on the factory reset's USB drive (docs/runtime-menus.md).
_BACKUP_SECRET: Final = "heads-owner-key.asc"  # noqa: S105 - a file name


def update_image(machine: Machine, *, note: str = "update 2") -> FlashImage:
    """A new image for ``machine``'s chip: its current payload changed (see the module
    docstring), with :data:`UPDATE_NOTE` as its only user file.

    Raises:
        UsageError: the machine has no flash image.
        FormatError: flash.rom is damaged.
        ValueError: the new payload does not fit the chip.
    """
    current = FlashImage.from_bytes(machine.flash.read_bytes(), source=str(machine.flash))
    kernel, initramfs, cmdline = payload_of(current)
    early = build_newc([CpioEntry.file("etc/heads-update", note.encode() + b"\n")], mtime=_EPOCH)
    return build_flash(
        kernel,
        early + initramfs,
        [CbfsFile(UPDATE_NOTE, note.encode() + b"\n")],
        cmdline=f"{cmdline} heads_update=1",
        size=machine.flash_size,
    )


def update_package(
    machine: Machine, image: FlashImage, out: Path, signer: Signer | None = None
) -> str:
    """Write ``image`` as an update package signed by ``signer`` (default: gpg's key in the
    machine directory); returns the signer's fingerprint.

    Raises:
        GpgError: signing failed.
    """
    with tempfile.TemporaryDirectory(prefix="heads-update-") as tmp:
        rom = Path(tmp) / "qemu-heads-update.rom"
        write_image_file(rom, image)
        if signer is not None:
            return make_package(rom, out, signer)[1]
        try:
            return make_package(rom, out, GpgSigner(machine.gnupghome))[1]
        finally:
            stop_owner_agent(machine)


def backup_signer(backup_drive: Path, passphrase: str) -> Signer:
    """A signer with the owner key read from the factory reset's backup drive image.

    Raises:
        ToolError: mtools is missing or the drive holds no backup.
        WrongPassphraseError, FormatError: the backup does not open.
    """
    from heads.flows.qemu_blank import usb_file  # noqa: PLC0415 - it imports qemu_platform

    with tempfile.TemporaryDirectory(prefix="heads-backup-") as tmp:
        data = usb_file(backup_drive, _BACKUP_SECRET, Path(tmp) / _BACKUP_SECRET).read_bytes()
    key = import_secret(data, Secret(passphrase.encode()), source=f"{backup_drive}")
    return OwnerKeySigner(key, time.time)


def usb_drive(path: Path, files: Mapping[str, bytes]) -> Path:
    """An ext4 disk image at ``path`` holding ``files`` in its top directory.

    Raises:
        ToolError: mkfs.ext4 failed or is missing.
    """
    require_tool("mkfs.ext4", package="e2fsprogs")
    with tempfile.TemporaryDirectory(prefix="heads-usb-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        size = sum(len(d) for d in files.values()) + 16 * 2**20
        with path.open("wb") as f:
            f.truncate(size // 2**20 * 2**20 + 2**20)
        run(
            ["mkfs.ext4", "-q", "-F", "-L", "update", "-E", "root_owner=0:0", "-d", tmp, str(path)],
            desc="build the USB drive",
            timeout_s=120,
            env={"E2FSPROGS_FAKE_TIME": str(_EPOCH)},
        )
    return path


def pcr_comparisons(result: BootResult) -> dict[int, tuple[str, str, bool]]:
    """The pending-seal lines of a boot: PCR -> (predicted, real, matched)."""
    out: dict[int, tuple[str, str, bool]] = {}
    for line in result.lines:
        m = _PENDING_LINE.search(line.text)
        if m is not None:
            out[int(m[1])] = (m[2], m[3], m[4] == "matched")
    return out


def demo_update(
    machine: Machine,
    uri: str | None,
    *,
    say: Callable[[str], None],
    echo: Callable[[ConsoleLine], None] | None = None,
    owner_passphrase: str | None = None,
    signer: Signer | None = None,
    flash_answers: Sequence[tuple[str, str]] = (),
    after_answers: Sequence[tuple[str, str]] = (),
    replies: Sequence[tuple[str, str]] = (),
) -> tuple[list[BootResult], list[tuple[str, bool]]]:
    """The demo's update: flash a signed package from a USB drive inside the guest (the TOTP
    secret resealed to the predicted PCRs first), then boot the new firmware and check that
    it shows a code of the same secret.  ``owner_passphrase``: the TPM owner passphrase the
    reseal asks for on a machine whose TPM has one; ``signer``: the owner's key (default:
    gpg's in the machine directory); ``flash_answers``: more answers for the flash boot (the
    disk unlock key passphrase, which keeps the key across the update); ``after_answers`` and
    ``replies``: the answers and the lines typed on the new firmware's boot
    (:func:`heads.flows.qemu_platform.boot_machine`).  Returns the boots and the checks.

    Raises:
        HeadsError: a step could not run.
    """
    image = update_image(machine)
    package = machine.root / "update.zip"
    fingerprint = update_package(machine, image, package, signer)
    drive = usb_drive(machine.root / "usb-update.img", {"update.zip": package.read_bytes()})
    say(f"update: package signed by {fingerprint} on a USB drive; flashing it from the menu")
    answers = list(UPDATE_ANSWERS)
    if owner_passphrase is not None:
        answers.append(("tpm-owner-auth", owner_passphrase))
    answers.extend(flash_answers)
    flashed = boot_machine(machine, echo=echo, answers=answers, usb_disks=[drive])
    say(f"update: flash boot done; console: {flashed.transcript}")
    say("update: booting the new firmware")
    after = boot_machine(machine, echo=echo, answers=after_answers, replies=replies)
    say(f"update: next boot done; console: {after.transcript}")
    compared = pcr_comparisons(after)
    checks = [
        (
            "update: pending copy sealed before the flash",
            any("reseal: pending copy sealed" in ln.text for ln in flashed.lines),
        ),
        ("update: flashed from the guest", any("flash: done" in ln.text for ln in flashed.lines)),
        (
            "update: every predicted PCR matched the new boot",
            bool(compared) and all(ok for _p, _r, ok in compared.values()),
        ),
        ("update: TOTP code after the update matches the secret", totp_matches(uri, after.totp)),
        ("update: OS booted on the new firmware", after.os_up),
    ]
    return [flashed, after], checks
