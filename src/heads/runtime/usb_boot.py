"""USB boot in the running payload: the boot entries of a USB drive, verified when the drive
carries a signature, kexec'd with the bytes that were checked (docs/runtime-menus.md §USB boot).

Port of Heads' ``usb-init.sh`` / ``media-scan.sh`` for a bootable filesystem on the drive.
Each USB drive's filesystem is mounted read-only and scanned with the boot-configuration
parsers (GRUB, syslinux, BLS, as for /boot, plus ``loopback.cfg``).  A drive that carries its
own ``kexec.sig`` + ``kexec_hashes.txt`` (what ``heads boot sign`` writes) is verified with
the firmware keyring, as /boot is, without a rollback counter: an entry whose files are all
covered is *signed*.  A drive whose signature does not verify offers nothing.  Any other
entry is *unsigned*: the menus ask before booting it and Restricted mode refuses it.

Booting re-scans the drives (the drive may have been swapped since the menu was shown: the
chosen entry must still have the title the owner saw) and hands the plan to the runtime's
kexec, which copies every file into memory while hashing it and refuses a byte that differs
from the signed digest.  PCR 4 is extended with ``usb`` before the kernel is loaded, then
with ``generic`` as for any boot.

ISO images on the drive are not booted yet: they are named on the console.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.core.bootcfg.entry import BootEntry
from heads.core.gui import Failed, Outcome, UsbBoot, UsbEntries
from heads.core.kexec_plan import KexecPlan, VerifiedDigests
from heads.core.text import shown
from heads.errors import HeadsError, VerificationError
from heads.runtime.usb import UsbDisk, mounted, usb_disks

if TYPE_CHECKING:
    from heads.adapters.tpm import Tpm
    from heads.flows.measure import EventLogWriter
    from heads.runtime.boot import RuntimeEnv, _Console

__all__ = ["SIGNATURE_NAME", "Medium", "boot_usb", "list_usb", "perform_usb_boot", "scan_medium"]

#: The signature a signed drive carries, as /boot does (Heads' ``kexec.sig``).
SIGNATURE_NAME: Final = "kexec.sig"
#: Why an unsigned entry boots without verification (logged with the plan).
_UNSIGNED: Final = "unsigned USB media, accepted by the owner"
#: How deep ISO files are looked for (Heads lists them recursively; a bound keeps a hostile
#: tree from keeping the scan busy).
_ISO_DEPTH: Final = 3
_MAX_ISO_NAMES: Final = 32

Say = Callable[[str], None]
Mount = Callable[[Path], AbstractContextManager[Path]]
Kexec = Callable[["RuntimeEnv", KexecPlan], int]


@dataclass(frozen=True, slots=True)
class Medium:
    """What one USB drive offers.

    Attributes:
        entries: its boot entries, in menu order.
        verified: the digests its ``kexec.sig`` vouches for (None: no signature).
        problem: why it offers nothing although it has entries (a signature that does not
            verify), or "".
        isos: ISO files found on it (relative paths), not booted by this build.
    """

    entries: tuple[BootEntry, ...]
    verified: VerifiedDigests | None = None
    problem: str = ""
    isos: tuple[str, ...] = ()

    def signed(self, entry: BootEntry) -> bool:
        """Whether the signature covers every file ``entry`` loads."""
        return self.verified is not None and all(p in self.verified.digests for p in entry.files)


def _iso_names(root: Path) -> tuple[str, ...]:
    found: list[str] = []

    def walk(where: Path, depth: int) -> None:
        try:
            children = sorted(where.iterdir())
        except OSError:
            return
        for child in children:
            if len(found) >= _MAX_ISO_NAMES:
                return
            if child.is_symlink():
                continue
            if child.is_dir() and depth < _ISO_DEPTH:
                walk(child, depth + 1)
            elif child.suffix.lower() == ".iso" and child.is_file():
                found.append(str(child.relative_to(root)))

    walk(root, 0)
    return tuple(found)


def scan_medium(root: Path, *, keyring: Path) -> Medium:
    """The boot entries of the drive mounted at ``root`` and whether they are signed.

    Raises:
        HeadsError: the tree cannot be listed, or the keyring is unusable (a signed drive
            cannot be checked without it).
    """
    from heads.flows.boot_entries import list_entries, verified_digests  # noqa: PLC0415

    entries = list_entries(root, media=True).entries
    isos = _iso_names(root)
    if not (root / SIGNATURE_NAME).exists():
        return Medium(entries, isos=isos)
    try:
        verified = verified_digests(root, keyring=keyring, tpm=None)
    except VerificationError as err:
        return Medium((), problem=f"its {SIGNATURE_NAME} does not verify: {err.message}")
    return Medium(entries, verified, isos=isos)


def _describe(disk: UsbDisk, medium: Medium, say: Say) -> None:
    where = shown(str(disk.filesystem_device))
    if medium.problem:
        say(f"USB {where}: {shown(medium.problem)}")
    else:
        state = "signed" if medium.verified is not None else "unsigned"
        say(f"USB {where}: {len(medium.entries)} boot entries ({state})")
    for iso in medium.isos:
        say(f"USB {where}: ISO {shown(iso)} found; booting ISO files is not in this build")


def _media(disks: Sequence[UsbDisk], mount: Mount, keyring: Path, say: Say) -> Iterator[Medium]:
    for disk in disks:
        try:
            with mount(disk.filesystem_device) as root:
                medium = scan_medium(root, keyring=keyring)
        except HeadsError as err:
            medium = Medium((), problem=err.message)
        _describe(disk, medium, say)
        yield medium


def list_usb(
    *,
    keyring: Path,
    say: Say,
    disks: Sequence[UsbDisk] | None = None,
    mount: Mount = mounted,
) -> Outcome:
    """Every USB drive's boot entries (:class:`UsbEntries`), or why there are none."""
    found = usb_disks() if disks is None else list(disks)
    if not found:
        say("USB boot: no USB drive found")
        return Failed("No USB drive was found. Plug one in and try again.")
    titles: list[str] = []
    signed: list[bool] = []
    problems: list[str] = []
    for disk, medium in zip(found, _media(found, mount, keyring, say), strict=True):
        if medium.problem:
            problems.append(f"{shown(str(disk.filesystem_device))}: {shown(medium.problem)}")
        for entry in medium.entries:
            titles.append(shown(entry.title))
            signed.append(medium.signed(entry))
    if not titles:
        return Failed("No bootable entry was found on the USB drives.", lines=tuple(problems))
    return UsbEntries(tuple(titles), tuple(signed))


def boot_usb(
    effect: UsbBoot,
    env: RuntimeEnv,
    *,
    keyring: Path,
    kexec: Kexec,
    measure_usb: Callable[[], None],
    say: Say,
    disks: Sequence[UsbDisk] | None = None,
    mount: Mount = mounted,
) -> Outcome | int:
    """Boot entry ``effect.index`` of the USB drives (see the module docstring).

    ``measure_usb`` extends PCR 4 with ``usb``; ``kexec`` loads and runs the plan from the
    mounted drive (it returns only when the boot failed).
    """
    if effect.index is None:
        return list_usb(keyring=keyring, say=say, disks=disks, mount=mount)
    found = usb_disks() if disks is None else list(disks)
    first = 1
    for disk in found:
        with mount(disk.filesystem_device) as root:
            medium = scan_medium(root, keyring=keyring)
            if medium.problem:
                continue
            if effect.index >= first + len(medium.entries):
                first += len(medium.entries)
                continue
            entry = medium.entries[effect.index - first]
            return _boot_entry(
                effect,
                entry,
                medium,
                env=env,
                root=root,
                kexec=kexec,
                measure_usb=measure_usb,
                say=say,
            )
    return Failed("The USB drives changed since they were scanned: scan them again.")


def _boot_entry(
    effect: UsbBoot,
    entry: BootEntry,
    medium: Medium,
    *,
    env: RuntimeEnv,
    root: Path,
    kexec: Kexec,
    measure_usb: Callable[[], None],
    say: Say,
) -> Outcome | int:
    from heads.flows.boot_entries import plan_entry  # noqa: PLC0415

    if shown(entry.title) != effect.title:
        return Failed("The USB drives changed since they were scanned: scan them again.")
    if medium.signed(entry):
        plan = plan_entry(entry, medium.verified)
        say(f"USB entry {shown(entry.title)}: {SIGNATURE_NAME} verified with the firmware keyring")
    else:
        if env.mode is not None and env.mode.restricted:
            return Failed("Restricted Boot refuses unsigned USB media.")
        if not effect.unsigned:
            return Failed(f"{shown(entry.title)} is no longer signed: not booting it.")
        say(f"booting {shown(entry.title)} from USB WITHOUT verification (unsigned media)")
        plan = plan_entry(entry, None, unsafe_reason=_UNSIGNED)
    measure_usb()
    return kexec(dataclasses.replace(env, boot_dir=root), plan)


def perform_usb_boot(
    effect: UsbBoot,
    env: RuntimeEnv,
    *,
    keyring: Path,
    tpm: Tpm,
    log: EventLogWriter,
    con: _Console,
) -> Outcome | int:
    """:func:`boot_usb` with the runtime's TPM, event log, console and kexec."""
    from heads.core.platform import PCR_BOOT_MODE  # noqa: PLC0415
    from heads.flows.measure import measure_string  # noqa: PLC0415
    from heads.runtime.boot import _kexec  # noqa: PLC0415

    def measure_usb() -> None:
        measure_string(tpm, log, PCR_BOOT_MODE, "usb", description="boot mode")
        con.say('PCR 4 extended with "usb"')

    return boot_usb(
        effect,
        env,
        keyring=keyring,
        kexec=lambda booted, plan: _kexec(booted, plan, tpm, log, con),
        measure_usb=measure_usb,
        say=con.say,
    )
