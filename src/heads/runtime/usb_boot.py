"""USB boot in the running payload: the boot entries of a USB drive, verified when the drive
carries a signature, kexec'd with the bytes that were checked (docs/runtime-menus.md §USB boot).

Port of Heads' ``usb-init.sh`` / ``media-scan.sh`` for a bootable filesystem on the drive.
Each USB drive's filesystem is mounted read-only and scanned with the boot-configuration
parsers (GRUB, syslinux, BLS, as for /boot, plus ``loopback.cfg``).  A drive that carries its
own ``kexec.sig`` + ``kexec_hashes.txt`` (what ``heads boot sign`` writes) is verified with
the firmware keyring, as /boot is, without a rollback counter: an entry whose files are all
covered is *signed*.  A drive whose signature does not verify offers nothing.  Any other
entry is *unsigned*: the menus ask before booting it and Restricted mode refuses it.

ISO images on the drive (Heads' ``kexec-iso-init.sh``) are listed after the drive's own
entries: an ISO with a detached signature beside it is checked when it boots, from a copy
in memory (:mod:`heads.runtime.iso_boot`); one without is unsigned.

Booting re-scans the drives (the drive may have been swapped since the menu was shown: the
chosen entry must still have the title the owner saw) and hands the plan to the runtime's
kexec, which copies every file into memory while hashing it and refuses a byte that differs
from the verified digest.  PCR 4 is extended with ``usb`` before the kernel is loaded, then
with ``generic`` as for any boot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.core.bootcfg.entry import BootEntry
from heads.core.gui import Failed, Outcome, UsbBoot, UsbEntries
from heads.core.kexec_plan import KexecPlan, VerifiedDigests
from heads.core.text import shown
from heads.errors import HeadsError, VerificationError
from heads.runtime.iso_boot import (
    IsoImage,
    MountIso,
    in_memory,
    iso_entries,
    iso_mounted,
    iso_rules,
    iso_signature,
    plain_iso_name,
    verified_iso_digests,
)
from heads.runtime.usb import UsbDisk, mounted, usb_disks

if TYPE_CHECKING:
    from heads.adapters.tpm import Tpm
    from heads.flows.measure import EventLogWriter
    from heads.runtime.boot import RuntimeEnv, _Console

__all__ = [
    "SIGNATURE_NAME",
    "Medium",
    "UsbAccess",
    "boot_usb",
    "list_usb",
    "perform_usb_boot",
    "scan_medium",
]

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
        entries: the boot entries of its own filesystem, in menu order.
        verified: the digests its ``kexec.sig`` vouches for (None: no signature).
        problem: why it offers nothing (a signature that does not verify), or "".
        isos: its ISO images and their entries (listed after the drive's own entries).
        skipped: ISO files it offers nothing from, with why.
    """

    entries: tuple[BootEntry, ...]
    verified: VerifiedDigests | None = None
    problem: str = ""
    isos: tuple[IsoImage, ...] = ()
    skipped: tuple[str, ...] = ()

    def signed(self, entry: BootEntry) -> bool:
        """Whether the drive's signature covers every file ``entry`` loads."""
        return self.verified is not None and all(p in self.verified.digests for p in entry.files)

    def choices(self) -> list[_Choice]:
        """The entries as the menu lists them: the drive's own, then each ISO's."""
        out = [_Choice(shown(e.title), self.signed(e), e, None) for e in self.entries]
        for iso in self.isos:
            out.extend(
                _Choice(f"{shown(iso.rel)}: {shown(e.title)}", iso.signature is not None, e, iso)
                for e in iso.entries
            )
        return out


@dataclass(frozen=True, slots=True)
class _Choice:
    title: str  # escaped, as the menu shows it
    signed: bool  # for an ISO: it has a signature, checked when it boots
    entry: BootEntry
    iso: IsoImage | None


@dataclass(frozen=True, slots=True)
class UsbAccess:
    """How the drives are reached (tests give directories instead of mounted drives).

    Attributes:
        disks: the USB disks (None: the ones sysfs shows).
        mount: mounts a disk's filesystem read-only.
        mount_iso: loop-mounts an ISO file read-only.
        ram: where the in-memory copy of an ISO goes (None: the runtime's /tmp).
    """

    disks: Sequence[UsbDisk] | None = None
    mount: Mount = mounted
    mount_iso: MountIso = iso_mounted
    ram: Path | None = None

    def found(self) -> list[UsbDisk]:
        return usb_disks() if self.disks is None else list(self.disks)


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


def _scan_isos(root: Path, mount_iso: MountIso) -> tuple[tuple[IsoImage, ...], tuple[str, ...]]:
    isos: list[IsoImage] = []
    skipped: list[str] = []
    for rel in _iso_names(root):
        if not plain_iso_name(rel):
            # The path goes into the kernel command line and no signature covers it.
            skipped.append(f"ISO {shown(rel)}: only letters, digits and ._+- in ISO paths")
            continue
        try:
            with mount_iso(root / rel) as iso_root:
                entries = iso_entries(iso_root, rel)
        except HeadsError as err:
            skipped.append(f"ISO {shown(rel)}: {shown(err.message)}")
            continue
        isos.append(IsoImage(rel, entries, iso_signature(root, rel)))
    return tuple(isos), tuple(skipped)


def scan_medium(root: Path, *, keyring: Path, mount_iso: MountIso = iso_mounted) -> Medium:
    """The boot entries of the drive mounted at ``root`` and whether they are signed.

    Raises:
        HeadsError: the tree cannot be listed, or the keyring is unusable (a signed drive
            cannot be checked without it).
    """
    from heads.flows.boot_entries import list_entries, verified_digests  # noqa: PLC0415

    entries = list_entries(root, media=True).entries
    verified = None
    if (root / SIGNATURE_NAME).exists():
        try:
            verified = verified_digests(root, keyring=keyring, tpm=None)
        except VerificationError as err:
            return Medium((), problem=f"its {SIGNATURE_NAME} does not verify: {err.message}")
    isos, skipped = _scan_isos(root, mount_iso)
    return Medium(entries, verified, isos=isos, skipped=skipped)


def _describe(disk: UsbDisk, medium: Medium, say: Say) -> None:
    where = shown(str(disk.filesystem_device))
    if medium.problem:
        say(f"USB {where}: {shown(medium.problem)}")
        return
    state = "signed" if medium.verified is not None else "unsigned"
    say(f"USB {where}: {len(medium.entries)} boot entries ({state})")
    for iso in medium.isos:
        state = "signature beside it" if iso.signature is not None else "unsigned"
        say(f"USB {where}: ISO {shown(iso.rel)}: {len(iso.entries)} boot entries ({state})")
    for line in medium.skipped:
        say(f"USB {where}: {line}")


def _scan(disk: UsbDisk, access: UsbAccess, keyring: Path) -> Medium:
    try:
        with access.mount(disk.filesystem_device) as root:
            return scan_medium(root, keyring=keyring, mount_iso=access.mount_iso)
    except HeadsError as err:
        return Medium((), problem=err.message)


def list_usb(*, keyring: Path, say: Say, access: UsbAccess | None = None) -> Outcome:
    """Every USB drive's boot entries (:class:`UsbEntries`), or why there are none."""
    access = access or UsbAccess()
    found = access.found()
    if not found:
        say("USB boot: no USB drive found")
        return Failed("No USB drive was found. Plug one in and try again.")
    choices: list[_Choice] = []
    problems: list[str] = []
    for disk in found:
        medium = _scan(disk, access, keyring)
        _describe(disk, medium, say)
        if medium.problem:
            problems.append(f"{shown(str(disk.filesystem_device))}: {shown(medium.problem)}")
        choices.extend(medium.choices())
    if not choices:
        return Failed("No bootable entry was found on the USB drives.", lines=tuple(problems))
    return UsbEntries(tuple(c.title for c in choices), tuple(c.signed for c in choices))


@dataclass(frozen=True, slots=True)
class _Boot:
    """What booting needs besides the choice."""

    env: RuntimeEnv
    keyring: Path
    kexec: Kexec
    measure_usb: Callable[[], None]
    say: Say
    access: UsbAccess


def boot_usb(
    effect: UsbBoot,
    env: RuntimeEnv,
    *,
    keyring: Path,
    kexec: Kexec,
    measure_usb: Callable[[], None],
    say: Say,
    access: UsbAccess | None = None,
) -> Outcome | int:
    """Scan the USB drives (no ``effect.index``), or boot entry ``effect.index`` of them (see
    the module docstring).

    ``measure_usb`` extends PCR 4 with ``usb``; ``kexec`` loads and runs the plan from the
    mounted drive or ISO (it returns only when the boot failed).
    """
    access = access or UsbAccess()
    if effect.index is None:
        return list_usb(keyring=keyring, say=say, access=access)
    how = _Boot(env, keyring, kexec, measure_usb, say, access)
    first = 1
    for disk in access.found():
        with access.mount(disk.filesystem_device) as root:
            medium = scan_medium(root, keyring=keyring, mount_iso=access.mount_iso)
            choices = [] if medium.problem else medium.choices()
            if effect.index >= first + len(choices):
                first += len(choices)
                continue
            choice = choices[effect.index - first]
            if choice.title != effect.title:
                break
            if choice.iso is not None:
                return _boot_iso(effect, choice, root, how)
            return _boot_entry(effect, choice, medium, root, how)
    return Failed("The USB drives changed since they were scanned: scan them again.")


def _unsigned_refusal(effect: UsbBoot, choice: _Choice, how: _Boot) -> Failed | None:
    if how.env.mode is not None and how.env.mode.restricted:
        return Failed("Restricted Boot refuses unsigned USB media.")
    if not effect.unsigned:
        return Failed(f"{choice.title} is no longer signed: not booting it.")
    how.say(f"booting {choice.title} from USB WITHOUT verification (unsigned media)")
    return None


def _boot_entry(
    effect: UsbBoot, choice: _Choice, medium: Medium, root: Path, how: _Boot
) -> Outcome | int:
    from heads.flows.boot_entries import plan_entry  # noqa: PLC0415

    if choice.signed:
        plan = plan_entry(choice.entry, medium.verified)
        how.say(f"USB entry {choice.title}: {SIGNATURE_NAME} verified with the firmware keyring")
    else:
        refused = _unsigned_refusal(effect, choice, how)
        if refused is not None:
            return refused
        plan = plan_entry(choice.entry, None, unsafe_reason=_UNSIGNED)
    how.measure_usb()
    return how.kexec(dataclasses.replace(how.env, boot_dir=root), plan)


def _boot_iso(effect: UsbBoot, choice: _Choice, drive: Path, how: _Boot) -> Outcome | int:
    from heads.adapters.gpg import GpgVerdict, verify_detached_file  # noqa: PLC0415
    from heads.flows.boot_entries import plan_entry  # noqa: PLC0415

    iso = choice.iso
    assert iso is not None  # noqa: S101 - the caller checked
    if iso.signature is None:
        refused = _unsigned_refusal(effect, choice, how)
        if refused is not None:
            return refused
    how.say(f"reading {shown(iso.rel)} into memory")
    with in_memory(drive / iso.rel, into=how.access.ram) as copy:
        basis = None
        if iso.signature is not None:
            result = verify_detached_file(iso.signature, copy, how.keyring)
            if result.verdict is not GpgVerdict.GOOD:
                how.say(f"ISO {shown(iso.rel)}: signature {result.verdict.value}")
                return Failed(
                    f"ISO signature verification failed: {shown(iso.rel)} ({result.verdict.value})."
                )
            basis = f"the detached signature of {shown(iso.rel)}, over its copy in memory"
            how.say(f"ISO {shown(iso.rel)}: signature verified with the firmware keyring")
        with how.access.mount_iso(copy) as iso_root:
            entries = iso_entries(iso_root, iso.rel)
            entry = next((e for e in entries if e == choice.entry), None)
            if entry is None:
                return Failed("The ISO changed since it was scanned: scan the drives again.")
            rules = iso_rules(iso.rel)
            if basis is None:
                plan = plan_entry(entry, None, rules=rules, unsafe_reason=_UNSIGNED)
            else:
                plan = plan_entry(entry, verified_iso_digests(iso_root, entry, basis), rules=rules)
            how.measure_usb()
            return how.kexec(dataclasses.replace(how.env, boot_dir=iso_root), plan)


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
