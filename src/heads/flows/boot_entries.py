"""Boot entries of /boot: list them, save the default one, plan and perform the kexec.

Ports of ``kexec-select-boot.sh`` (listing, default selection), ``kexec-save-default.sh``
and ``kexec-boot.sh`` (docs/heads-compat.md §Default entry, §kexec).

The default entry is stored in Heads' formats (docs/heads-compat.md §Default entry):
``kexec_default.N.txt`` holds the entry's line (N = its 1-based place in the menu) and
``kexec_default_hashes.txt`` the ``sha256sum`` lines (``./path``) of every file it loads, in
entry order.  Both are ``kexec*.txt`` files, so /boot must be signed again afterwards:
:func:`save_default` says so, and signs when given a signing callback.  If that signing fails,
the previous default files are put back.

Booting needs digests that a verified signature vouches for: :func:`verified_digests` checks
/boot with :func:`heads.flows.boot_signing.verify_boot` (signature, every file, rollback
counter) and returns the signed ``kexec_hashes.txt`` digests; the kexec adapter then refuses
any byte that differs from them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.adapters.atomic import fsync_dir, write_atomic
from heads.adapters.bootdir import BootDir
from heads.adapters.hashing import read_file_beneath
from heads.adapters.kexec import Kexec
from heads.core.bootcfg.discover import Discovery, discover_entries
from heads.core.bootcfg.entry import BootEntry, parse_entry_line
from heads.core.bootcfg.grub import GrubContext
from heads.core.kexec_plan import (
    CmdlineRules,
    KexecPlan,
    VerifiedDigests,
    plan_kexec,
    unsafe_plan_without_verification,
)
from heads.core.manifest import HASHES_NAME, MAX_MANIFEST_BYTES, HashEntry, HashManifest
from heads.core.text import shown
from heads.errors import FormatError, HashMismatchError, HeadsError, UsageError, VerificationError

if TYPE_CHECKING:
    from heads.core.boot_trust import BootVerification
    from heads.flows.boot_signing import RollbackCounter

__all__ = [
    "DEFAULT_HASHES_NAME",
    "BootNotVerifiedError",
    "DefaultBoot",
    "DefaultEntry",
    "SavedDefault",
    "boot_default",
    "boot_plan",
    "default_entry_name",
    "default_is_current",
    "dry_run_argv",
    "list_entries",
    "plan_entry",
    "read_default",
    "save_default",
    "verified_digests",
]

DEFAULT_HASHES_NAME: Final = "kexec_default_hashes.txt"
_DEFAULT_RE: Final = re.compile(r"kexec_default\.([0-9]+)\.txt")
_MAX_DEFAULT_BYTES: Final = 64 * 1024
# What open_beneath answers for a name that is not a regular file reached without a symlink.
_NOT_REGULAR: Final = frozenset({errno.EINVAL, errno.ELOOP, errno.ENOTDIR})


def default_entry_name(index: int) -> str:
    """``kexec_default.N.txt``."""
    return f"kexec_default.{index}.txt"


def list_entries(
    bootdir: Path,
    *,
    media: bool = False,
    ctx: GrubContext | None = None,
    require_files: bool = True,
) -> Discovery:
    """Every boot entry of ``bootdir`` (see :func:`heads.core.bootcfg.discover_entries`).

    Raises:
        UsageError: ``bootdir`` is not a directory.
        HeadsError: the tree cannot be listed.
        FormatError: implausibly many configuration files.
    """
    return discover_entries(BootDir(bootdir), media=media, ctx=ctx, require_files=require_files)


def _pick(discovery: Discovery, index: int, bootdir: Path) -> BootEntry:
    if not discovery.entries:
        raise UsageError(
            f"no bootable entry found in {bootdir}",
            hint="heads boot list shows what was found and why entries were dropped",
        )
    if not 1 <= index <= len(discovery.entries):
        raise UsageError(
            f"entry {index} does not exist: {bootdir} has entries 1 to {len(discovery.entries)}"
        )
    return discovery.entries[index - 1]


@dataclass(frozen=True, slots=True)
class SavedDefault:
    """The result of :func:`save_default`."""

    index: int
    entry: BootEntry
    written: tuple[str, ...]
    removed: tuple[str, ...]
    signed: bool


def _hash_lines(boot: BootDir, entry: BootEntry) -> bytes:
    lines = []
    for path in entry.files:
        digest = boot.sha256(path)
        if digest is None:
            raise UsageError(
                f"{shown(path)} of entry {shown(entry.title)} is not a regular file in /boot"
            )
        lines.append(HashEntry(digest, b"." + os.fsencode(path)).to_line())
    return b"".join(lines)


def save_default(
    bootdir: Path, index: int, *, sign: Callable[[], object] | None = None
) -> SavedDefault:
    """Make entry ``index`` (1-based, as listed) the default (port of kexec-save-default.sh).

    Writes ``kexec_default.N.txt`` and ``kexec_default_hashes.txt`` atomically and removes any
    other ``kexec_default.*.txt``.  Then calls ``sign`` (which signs /boot) if given; when it
    raises, the previous default files are restored and the error propagates.

    Raises:
        UsageError: no such entry, or a file it loads cannot be hashed.
        HeadsError: /boot cannot be written (read-only mount, permissions), or from ``sign``.
    """
    boot = BootDir(bootdir)
    entry = _pick(discover_entries(boot), index, bootdir)
    line = (entry.to_line() + "\n").encode()
    hashes = _hash_lines(boot, entry)
    new_name = default_entry_name(index)
    old: dict[str, bytes] = {}
    for child in sorted(bootdir.iterdir()):
        if _DEFAULT_RE.fullmatch(child.name) or child.name == DEFAULT_HASHES_NAME:
            with contextlib.suppress(FileNotFoundError):  # removed since the listing
                old[child.name] = _read_small(bootdir, child.name)
    try:
        write_atomic(bootdir / new_name, line, sync_dir=False)
        write_atomic(bootdir / DEFAULT_HASHES_NAME, hashes, sync_dir=False)
        removed = [n for n in old if n not in (new_name, DEFAULT_HASHES_NAME)]
        for name in removed:
            (bootdir / name).unlink()
        fsync_dir(bootdir)
    except OSError as exc:
        raise HeadsError(
            f"cannot write the default entry to {bootdir}: {exc.strerror}",
            hint="remount /boot read-write (mount -o remount,rw /boot)",
        ) from None
    if sign is not None:
        try:
            sign()
        except BaseException:
            _restore(bootdir, old, new_name)
            raise
    return SavedDefault(
        index=index,
        entry=entry,
        written=(new_name, DEFAULT_HASHES_NAME),
        removed=tuple(removed),
        signed=sign is not None,
    )


def _restore(bootdir: Path, old: dict[str, bytes], new_name: str) -> None:
    with contextlib.suppress(OSError):
        if new_name not in old:
            (bootdir / new_name).unlink(missing_ok=True)
        if DEFAULT_HASHES_NAME not in old:
            (bootdir / DEFAULT_HASHES_NAME).unlink(missing_ok=True)
        for name, data in old.items():
            write_atomic(bootdir / name, data, sync_dir=False)
        fsync_dir(bootdir)


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    """The saved default: its menu number, the entry, and the digests saved with it."""

    index: int
    entry: BootEntry
    digests: dict[str, bytes]


def read_default(bootdir: Path) -> DefaultEntry:
    """Read ``kexec_default.N.txt`` and ``kexec_default_hashes.txt``.

    Raises:
        UsageError: there is no default entry.
        FormatError: two default files, or one of them is malformed.
    """
    found = sorted(p for p in bootdir.glob("kexec_default.*.txt") if _DEFAULT_RE.fullmatch(p.name))
    if not found:
        raise UsageError(
            f"no default boot entry in {bootdir}", hint="heads boot default BOOTDIR --entry N"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise FormatError(f"more than one default entry ({names})", source=str(bootdir))
    path = found[0]
    match = _DEFAULT_RE.fullmatch(path.name)
    assert match is not None  # noqa: S101 - filtered just above
    try:
        data = _read_small(bootdir, path.name)
    except FileNotFoundError:
        raise UsageError(f"{path} was removed while it was being read") from None
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) != 1:
        raise FormatError(f"expected exactly one line, found {len(lines)}", source=str(path))
    entry = parse_entry_line(lines[0], source=str(path), line_no=1)
    hashes_path = bootdir / DEFAULT_HASHES_NAME
    try:
        hashes = _read_small(bootdir, DEFAULT_HASHES_NAME)
    except FileNotFoundError:
        raise UsageError(f"cannot read {hashes_path}: it does not exist") from None
    manifest = HashManifest.from_bytes(hashes, source=str(hashes_path))
    digests = {"/" + os.fsdecode(rel): d for rel, d in manifest.digests().items()}
    return DefaultEntry(int(match.group(1)), entry, digests)


def default_is_current(bootdir: Path, default: DefaultEntry) -> bool:
    """Whether entry N of today's menu is still the saved default (Heads' ``default_select``
    compares the two and warns that the default changed when they differ)."""
    entries = list_entries(bootdir).entries
    index = default.index
    return 1 <= index <= len(entries) and entries[index - 1].to_line() == default.entry.to_line()


def _read_small(bootdir: Path, name: str, limit: int = _MAX_DEFAULT_BYTES) -> bytes:
    """A top-level file of /boot, read safely: only a regular file, never through a symlink,
    at most ``limit`` bytes (:func:`heads.adapters.hashing.read_file_beneath`).

    Raises:
        FileNotFoundError: there is no such file.
        FormatError: it is larger than ``limit`` bytes.
        UsageError: it is not a regular file or cannot be read.
    """
    path = bootdir / name
    try:
        return read_file_beneath(bootdir, os.fsencode(name), limit)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise FormatError(f"larger than {limit} bytes", source=shown(str(path))) from None
        why = "not a regular file" if exc.errno in _NOT_REGULAR else exc.strerror
        raise UsageError(f"cannot read {shown(str(path))}: {why}") from None


class BootNotVerifiedError(VerificationError):
    """/boot did not verify: the first failure as the message, the whole report kept for
    the boot console (which shows every file, as Heads' integrity report does)."""

    def __init__(self, cause: VerificationError, report: tuple[str, ...]) -> None:
        super().__init__(cause.message, hint=cause.hint, details=cause.details)
        self.report = report


def verified_digests(
    bootdir: Path, *, keyring: Path, tpm: RollbackCounter | None
) -> VerifiedDigests:
    """Verify /boot (signature, every file, rollback counter) and return the signed digests.

    Raises:
        VerificationError: the verification failed (its report is the message's details).
        UsageError / GpgError: see :func:`heads.flows.boot_signing.verify_boot`.
    """
    return _verify_for_boot(bootdir, keyring=keyring, tpm=tpm)[0]


def _verify_for_boot(
    bootdir: Path, *, keyring: Path, tpm: RollbackCounter | None
) -> tuple[VerifiedDigests, BootVerification]:
    from heads.flows.boot_signing import (  # noqa: PLC0415 - gpg only when booting
        STAGING_NAME,
        verify_boot,
    )

    if (bootdir / STAGING_NAME).exists():
        # verify_boot may vouch for a committed but not yet moved signing, whose digests are
        # not the ones in kexec_hashes.txt on disk: boot only from a settled /boot.
        raise VerificationError(
            f"{bootdir / STAGING_NAME} exists: a signing of /boot was interrupted",
            hint="finish it first: heads boot sign (it completes or discards the transaction)",
        )
    hashes_path = bootdir / HASHES_NAME

    def signed_hashes() -> bytes | None:
        try:
            return _read_small(bootdir, HASHES_NAME, MAX_MANIFEST_BYTES)
        except (FileNotFoundError, FormatError, UsageError):
            return None  # verify_boot reports what is wrong with it

    before = signed_hashes()
    report = verify_boot(bootdir, keyring=keyring, tpm=tpm)
    try:
        report.raise_if_failed()
    except VerificationError as err:
        raise BootNotVerifiedError(err, tuple(report.render_text().splitlines())) from None
    after = signed_hashes()
    if before is None or after is None or before != after:
        raise VerificationError(f"{HASHES_NAME} changed while /boot was being verified")
    manifest = HashManifest.from_bytes(after, source=str(hashes_path))
    digests = {"/" + os.fsdecode(rel): d for rel, d in manifest.digests().items()}
    return VerifiedDigests(digests, f"{HASHES_NAME} under a verified kexec.sig"), report


def plan_entry(
    entry: BootEntry,
    verified: VerifiedDigests | None,
    *,
    rules: CmdlineRules | None = None,
    default: DefaultEntry | None = None,
    unsafe_reason: str | None = None,
) -> KexecPlan:
    """The kexec plan for ``entry``.

    With ``default``, the entry's files must also match the digests saved with the default
    (``kexec_default_hashes.txt``, as ``default_select`` checks in Heads).  Without
    ``verified``, ``unsafe_reason`` must say why booting unverified files is acceptable.

    Raises:
        VerificationError: a file is not covered by the verified digests.
        HashMismatchError: the default's saved digests differ from the verified ones.
        UsageError: neither verified digests nor an unsafe reason.
    """
    if verified is None:
        if unsafe_reason is None:
            raise UsageError("refusing to boot files that were not verified")
        return unsafe_plan_without_verification(entry, rules, reason=unsafe_reason)
    plan = plan_kexec(entry, verified, rules)
    if default is not None:
        for path in entry.files:
            saved = default.digests.get(path)
            if saved is None or saved != verified.digests[path]:
                raise HashMismatchError(
                    f"{shown(path)} differs from the digest saved with the default entry "
                    f"({DEFAULT_HASHES_NAME})",
                    hint="choose the entry again: heads boot default BOOTDIR --entry N, then sign",
                )
    return plan


@dataclass(frozen=True, slots=True)
class DefaultBoot:
    """What booting the saved default entry will do, once /boot has verified.

    Attributes:
        plan: the kexec plan, built from the verified digests only.
        default: the saved default (``kexec_default.N.txt`` and its hashes).
        current: whether entry N of today's menu is still that entry (Heads' "Boot Entry Has
            Changed" when it is not: the saved entry is still the one booted).
        report: the verification report, one line per item, for the console.
    """

    plan: KexecPlan
    default: DefaultEntry
    current: bool
    report: tuple[str, ...]


def boot_default(
    bootdir: Path,
    *,
    keyring: Path,
    tpm: RollbackCounter | None,
    rules: CmdlineRules | None = None,
) -> DefaultBoot:
    """The one default-boot path (``heads boot kexec --default`` and the boot runtime alike).

    Port of ``kexec-select-boot.sh``'s default path: verify /boot (signature, every file,
    rollback counter), read ``kexec_default.N.txt`` whatever N is, check the entry's files
    against both the signed ``kexec_hashes.txt`` and ``kexec_default_hashes.txt``, apply the
    command-line rules, and plan the kexec from the verified digests.

    Raises:
        VerificationError: /boot did not verify (the report is in the error's details).
        HashMismatchError: the entry's files differ from the digests saved with the default.
        UsageError: there is no default entry.
        FormatError: the default files are malformed.
    """
    verified, report = _verify_for_boot(bootdir, keyring=keyring, tpm=tpm)
    default = read_default(bootdir)
    plan = plan_entry(default.entry, verified, rules=rules, default=default)
    return DefaultBoot(
        plan,
        default,
        default_is_current(bootdir, default),
        tuple(report.render_text().splitlines()),
    )


def boot_plan(
    plan: KexecPlan,
    bootdir: Path,
    kexec: Kexec | None = None,
    *,
    tcti: str | None = None,
    execute: bool = True,
) -> list[str]:
    """Load ``plan`` (the adapter re-checks every byte), measure the boot mode, jump to it.

    Port of the end of ``kexec-boot.sh``: once the kernel is loaded, PCR 4 is extended with
    the string ``generic`` (docs/pcr-layout.md §Boot mode (PCR 4); the TOTP secret is sealed
    to PCR 4's firmware-only value, so the booted OS can no longer unseal it), then
    ``kexec -e``.

    Args:
        plan: what to boot.
        bootdir: the mounted /boot.
        kexec: the kexec backend (kexec-tools by default).
        tcti: the TPM for the PCR 4 extend; ``None`` skips it (no TPM).
        execute: jump to the loaded kernel (False: load only).

    Raises:
        HashMismatchError: a file changed since it was verified.
        KexecError: kexec failed.
        TpmError: the PCR 4 extend failed (the kernel stays loaded, nothing is executed).
    """
    if kexec is None:
        from heads.adapters.kexec import KexecTools  # noqa: PLC0415 - needed on the boot path only

        kexec = KexecTools()
    argv = kexec.load(plan, bootdir)
    if tcti is not None:
        from heads.adapters.tpm import open_tpm  # noqa: PLC0415 - tpm2-pytss only when measuring
        from heads.flows.measure import (  # noqa: PLC0415
            EventLogWriter,
            default_log_path,
            measure_string,
        )

        with open_tpm(tcti) as tpm:
            log = EventLogWriter(default_log_path())
            measure_string(tpm, log, 4, "generic", description="boot mode")
    if execute:
        kexec.execute()
    return argv


def dry_run_argv(plan: KexecPlan, bootdir: Path) -> list[str]:
    """The kexec-tools command for ``plan`` with the real file paths (for ``--dry-run``)."""
    opened = {f.path: str(bootdir / f.path.lstrip("/")) for f in plan.files}
    initrd = None
    if len(plan.initrds) > 1:
        initrd = "<concatenation of " + " ".join(opened[f.path] for f in plan.initrds) + ">"
    return plan.argv(opened, initrd)
