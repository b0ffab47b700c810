"""From a boot entry and verified digests to the exact kexec-tools invocation.

Port of ``kexec-boot.sh`` (docs/heads-compat.md §kexec, §Kernel command line), with the
type-state of docs/architecture.md §Conventions:
a :class:`KexecPlan` normally comes from :func:`plan_kexec`, which needs a
:class:`VerifiedDigests` covering every file the entry loads — the digests that a verified
signature vouches for.  The kexec adapter hashes the bytes it hands to the kernel and refuses
any that differ, so what boots is what was verified.  Recovery uses
:func:`unsafe_plan_without_verification`, which says so in the log.

* elf: ``kexec -s -l KERNEL [--initrd=FILE] [--append=CMDLINE]`` (``kexec_file_load``: the
  kernel itself reads the files, so lockdown/IMA can appraise them).  Several initrds are
  concatenated into one (the kernel unpacks concatenated cpio archives in order); no
  ``--append`` without parameters (memtest), as Heads.
* xen: ``kexec -l XEN --type=multiboot2-x86 --command-line="ARGS no-real-mode reboot=no
  vga=current" --module="VMLINUZ CMDLINE" --module="INITRD"``; multiboot images can only be
  loaded with ``kexec_load`` (x86 ``kexec_file_load`` takes bzImages only).  The dom0 command
  line gets Heads' assembly rules; a plain multiboot entry's line is passed verbatim.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from heads.core.bootcfg.cmdline import build_cmdline
from heads.core.bootcfg.entry import BootEntry, EntryKind
from heads.errors import VerificationError

__all__ = [
    "XEN_EXTRA_ARGS",
    "CmdlineRules",
    "KexecPlan",
    "PlannedFile",
    "VerifiedDigests",
    "plan_kexec",
    "unsafe_plan_without_verification",
]

_log = logging.getLogger(__name__)

XEN_EXTRA_ARGS: Final = "no-real-mode reboot=no vga=current"


@dataclass(frozen=True, slots=True)
class VerifiedDigests:
    """SHA-256 digests of boot files that a verification step vouches for.

    Attributes:
        digests: boot-directory path (``/vmlinuz-6.1``) -> 32-byte SHA-256.
        basis: what established them ("kexec_hashes.txt under a verified kexec.sig").
    """

    digests: Mapping[str, bytes]
    basis: str


@dataclass(frozen=True, slots=True)
class CmdlineRules:
    """Heads' command-line inputs (docs/heads-compat.md §Kernel command line)."""

    add: str = ""
    remove: tuple[str, ...] = ()
    board_add: str = ""
    blob_jail: bool = False


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """A file to load and the SHA-256 its bytes must have (``None``: unverified boot)."""

    path: str
    sha256: bytes | None


@dataclass(frozen=True, slots=True)
class KexecPlan:
    """Everything kexec needs; :meth:`argv` renders the kexec-tools command."""

    title: str
    kind: EntryKind
    kernel: PlannedFile
    initrds: tuple[PlannedFile, ...]
    cmdline: str
    modules: tuple[tuple[PlannedFile, str], ...] = ()
    verified_by: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def files(self) -> tuple[PlannedFile, ...]:
        return (self.kernel, *self.initrds, *(m for m, _ in self.modules))

    def argv(self, opened: Mapping[str, str], initrd: str | None = None) -> list[str]:
        """The kexec-tools command line.

        Args:
            opened: boot path -> the path kexec should open (the real file, or the
                ``/proc/self/fd/N`` of a verified copy).
            initrd: the single initrd file to pass (the concatenation when there are several);
                defaults to ``opened`` of the only initrd.
        """
        if self.kind is EntryKind.ELF:
            argv = ["kexec", "-s", "-l", opened[self.kernel.path]]
            if initrd is None and len(self.initrds) == 1:
                initrd = opened[self.initrds[0].path]
            if initrd is not None:
                argv.append(f"--initrd={initrd}")
            if self.cmdline:
                argv.append(f"--append={self.cmdline}")
            return argv
        argv = ["kexec", "-l", opened[self.kernel.path], "--type=multiboot2-x86"]
        argv.append(f"--command-line={self.cmdline}")
        for module, args in self.modules:
            text = f"{opened[module.path]} {args}" if args else opened[module.path]
            argv.append(f"--module={text}")
        return argv


def _final_cmdline(
    entry: BootEntry, rules: CmdlineRules
) -> tuple[str, tuple[tuple[str, str], ...]]:
    def assemble(params: str) -> str:
        return build_cmdline(
            params,
            add=rules.add,
            remove=rules.remove,
            board_add=rules.board_add,
            blob_jail=rules.blob_jail,
        )

    modules = tuple((m.path, m.args) for m in entry.modules)
    if entry.kind is EntryKind.ELF:
        return assemble(entry.cmdline), modules
    if entry.kind is EntryKind.MULTIBOOT:
        return entry.cmdline, modules
    xen = f"{entry.cmdline} {XEN_EXTRA_ARGS}".strip()
    if modules:
        # The first module is dom0's kernel: its parameters get the command-line rules.
        first_path, first_args = modules[0]
        modules = ((first_path, assemble(first_args)), *modules[1:])
    return xen, modules


def _plan(
    entry: BootEntry, digests: Mapping[str, bytes] | None, rules: CmdlineRules, basis: str | None
) -> KexecPlan:
    def planned(path: str) -> PlannedFile:
        return PlannedFile(path, None if digests is None else digests[path])

    cmdline, modules = _final_cmdline(entry, rules)
    return KexecPlan(
        title=entry.title,
        kind=entry.kind,
        kernel=planned(entry.kernel),
        initrds=tuple(planned(p) for p in entry.initrds),
        cmdline=cmdline,
        modules=tuple((planned(p), args) for p, args in modules),
        verified_by=basis,
        notes=entry.notes,
    )


def plan_kexec(
    entry: BootEntry, verified: VerifiedDigests, rules: CmdlineRules | None = None
) -> KexecPlan:
    """The plan to boot ``entry``, loading only files whose digests were verified.

    Raises:
        VerificationError: a file the entry loads is not covered by ``verified`` (names it).
    """
    uncovered = [p for p in entry.files if p not in verified.digests]
    if uncovered:
        raise VerificationError(
            f"{', '.join(uncovered)} of entry {entry.title!r} not covered by {verified.basis}",
            hint="sign /boot again after checking why the file is new (heads boot sign)",
        )
    return _plan(entry, verified.digests, rules or CmdlineRules(), verified.basis)


def unsafe_plan_without_verification(
    entry: BootEntry, rules: CmdlineRules | None = None, *, reason: str
) -> KexecPlan:
    """A plan that loads the entry's files as they are, without any digest check.

    For the recovery path only ("Ignore tampering and force a boot" in Heads); logged.
    """
    _log.warning("booting %r WITHOUT verifying its files: %s", entry.title, reason)
    return _plan(entry, None, rules or CmdlineRules(), None)
