"""Sign /boot and verify it, in Heads' formats, with the TPM rollback counter.

Public API (used by the boot runtime and the QEMU platform; kept stable)::

    sign_boot(bootdir: Path, *, gnupghome: Path | None, key: str | None,
              tpm: RollbackCounter | None, pin: Secret | None = None,
              signer: Signer | None = None, rollback: bool = True,
              progress: Progress | None = None,
              fault: Callable[[str], None] | None = None) -> SignResult
    verify_boot(bootdir: Path, *, keyring: Path, tpm: RollbackCounter | None,
                progress: Progress | None = None) -> BootVerification
    recover_boot(bootdir: Path, tpm: RollbackCounter | None) -> str | None
    preflight_rollback(bootdir: Path, tpm: RollbackCounter) -> RollbackReport

``tpm`` is anything with ``nv_exists``/``nv_counter_create``/``nv_counter_read``/
``nv_counter_increment`` (``heads.adapters.tpm.Tpm`` is one); None skips the rollback counter
(``sign_boot`` then needs ``rollback=False``; ``verify_boot`` reports it "not checked").
``BootVerification`` (``heads.core.boot_trust``) has ``.ok``, ``.to_json()``,
``.render_text()`` and ``.raise_if_failed()``.

Signing (port of ``kexec-sign-config.sh -p /boot -u -r``): hash every file, list the tree, bind
the next counter value, sign ``sha256sum kexec*.txt``.  Unlike Heads it makes the change to
/boot one transaction, because /boot holds several files that must change together:

1. everything new is written into ``/boot/kexec.staging/`` (fsynced).  That name matches
   ``./kexec*``, so neither our verifier nor Heads' lists it in the tree or hashes it, and it
   does not match ``kexec*.txt``, so no signature covers it;
2. the signature is made (a refused PIN or a missing card stops here: nothing changed);
3. ``kexec.staging/COMMIT`` is written atomically: the list of staged files and the counter
   step (from N to N+1);
4. the TPM counter is incremented to N+1: the commit point.  Before it the old /boot is the
   valid one (its binding says N); after it the staged files are;
5. the staged files are renamed over the old ones, then ``COMMIT`` and the directory removed.

A process killed anywhere leaves a state :func:`verify_boot` reads as exactly the old or the
new /boot: it overlays a committed staging directory (COMMIT present and the TPM at N+1, or
files already moved) on /boot, and ignores an uncommitted one.  :func:`recover_boot` (run by
every ``sign_boot``) finishes or discards such a transaction on disk.  Heads' shell verifier
does not know this overlay; it sees a consistent /boot again once a signing completes.

Verifying (port of ``check_config`` + ``verify_checksums`` + ``verify_rollback_counter``):
signature first (relative names, then the legacy ``/boot/`` form); only if it verified, the
signed manifests against a fresh scan; then the counter.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from heads.adapters.atomic import fsync_dir, write_atomic
from heads.adapters.gpg import (
    MAX_SIGNATURE_BYTES,
    GpgSigner,
    GpgVerdict,
    SignatureCheck,
    Signer,
    check_keyring,
    verify_detached,
)
from heads.adapters.hashing import hash_files, read_beneath, scan_tree
from heads.core.boot_trust import (
    BootVerification,
    ManifestReport,
    ManifestState,
    RollbackReport,
    RollbackReportState,
    SignatureReport,
    SignatureState,
)
from heads.core.frozen_record import FrozenRecord
from heads.core.manifest import (
    HASHES_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    TREE_NAME,
    EntryKind,
    FileCheck,
    FileStatus,
    HashManifest,
    ManifestCheck,
    SignedForm,
    TreeList,
    check_manifest,
    check_signable,
    is_signed_name,
    shown_path,
    signed_payload,
)
from heads.core.text import shown
from heads.errors import FormatError, HeadsError, TpmError, UsageError

__all__ = [
    "COMMIT_NAME",
    "STAGING_NAME",
    "Progress",
    "RollbackCounter",
    "SignResult",
    "preflight_rollback",
    "recover_boot",
    "sign_boot",
    "verify_boot",
]

if TYPE_CHECKING:
    import logging

    from heads.core.secret import Secret


def _log() -> logging.Logger:
    # Imported here: only signing and its recovery log, and verifying need not pay for it
    # (docs/architecture.md §Command start-up).
    import logging  # noqa: PLC0415

    return logging.getLogger(__name__)


STAGING_NAME: Final = "kexec.staging"
COMMIT_NAME: Final = "COMMIT"
_MAX_SIGNED_FILES: Final = 256
_MAX_SIGNED_TOTAL_BYTES: Final = 64 * 1024 * 1024
_SIG_NAME_B: Final = SIGNATURE_NAME.encode()
Progress = Callable[[int, int], None]


class RollbackCounter(Protocol):
    """The TPM NV counter operations /boot signing needs (``heads.adapters.tpm.Tpm`` has them)."""

    def nv_exists(self, index: int) -> bool: ...
    def nv_counter_create(self) -> int: ...
    def nv_counter_read(self, index: int) -> int: ...
    def nv_counter_increment(self, index: int) -> int: ...


_set = object.__setattr__


# Value classes here are FrozenRecords, not dataclasses: each decorated class compiles its
# methods when `heads boot verify` starts (docs/architecture.md §Command start-up).
class SignResult(FrozenRecord):
    __slots__ = (  # noqa: RUF023 - the fields in order, as compared and printed
        "bootdir",
        "fingerprint",
        "files_hashed",
        "signed_files",
        "counter_index",
        "counter_value",
        "recovered",
    )
    bootdir: Path
    fingerprint: str
    files_hashed: int
    signed_files: tuple[str, ...]
    counter_index: int | None
    counter_value: int | None
    recovered: str | None

    def __init__(  # noqa: PLR0917 - positional, as the dataclass it was
        self,
        bootdir: Path,
        fingerprint: str,
        files_hashed: int,
        signed_files: tuple[str, ...],
        counter_index: int | None,
        counter_value: int | None,
        recovered: str | None,
    ) -> None:
        _set(self, "bootdir", bootdir)
        _set(self, "fingerprint", fingerprint)
        _set(self, "files_hashed", files_hashed)
        _set(self, "signed_files", signed_files)
        _set(self, "counter_index", counter_index)
        _set(self, "counter_value", counter_value)
        _set(self, "recovered", recovered)


def _no_fault(step: str) -> None:
    del step


# -- reading the top level of /boot, safely --------------------------------------------------
# Everything here is read through heads.adapters.hashing.read_beneath: never through a symlink,
# never anything but a regular file (a FIFO would block the boot forever), and never more than
# a cap (a sparse multi-GiB file would exhaust memory).

_MAX_COMMIT_BYTES: Final = 64 * 1024
_COMMIT_REL: Final = f"{STAGING_NAME}/{COMMIT_NAME}".encode()


def _why(exc: OSError) -> str:
    """Why a file of /boot was not read, in words (``open_beneath``'s errors)."""
    return {
        errno.ELOOP: "it is a symbolic link",
        errno.ENOTDIR: "a symbolic link or file is in the way",
        errno.EINVAL: "not a regular file",
    }.get(exc.errno or 0, exc.strerror or str(exc))


def _cap_for(name: bytes) -> int:
    return MAX_SIGNATURE_BYTES if name == _SIG_NAME_B else MAX_MANIFEST_BYTES


def _read_beneath(root_fd: int, name: bytes, what: str) -> bytes:
    try:
        return read_beneath(root_fd, name, _cap_for(name))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise HeadsError(f"cannot read {what}: {_why(exc)}") from None


class _Pending(FrozenRecord):
    __slots__ = ("files", "counter_index", "counter_from", "counter_to")  # noqa: RUF023 - in order
    files: tuple[bytes, ...]
    counter_index: int | None
    counter_from: int | None
    counter_to: int | None

    def __init__(
        self,
        files: tuple[bytes, ...],
        counter_index: int | None,
        counter_from: int | None,
        counter_to: int | None,
    ) -> None:
        _set(self, "files", files)
        _set(self, "counter_index", counter_index)
        _set(self, "counter_from", counter_from)
        _set(self, "counter_to", counter_to)


class _BadCommitError(HeadsError):
    """``kexec.staging/COMMIT`` exists but is not a commit record a signing wrote."""


def _read_pending(root_fd: int) -> _Pending | None:
    """The COMMIT record of the staging directory, or None when there is none.

    A ``kexec.staging`` that is not a real directory is not ours and is ignored (recovery
    removes it).  A COMMIT is only ever written whole (``write_atomic``), so one that is not a
    regular file, is larger than any record, or does not parse was put there by someone else.

    Raises:
        _BadCommitError: naming COMMIT and what is wrong with it.
    """
    shown = shown_path(_COMMIT_REL)
    try:
        data = read_beneath(root_fd, _COMMIT_REL, _MAX_COMMIT_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in {errno.ELOOP, errno.ENOTDIR} and not _staging_is_dir(root_fd):
            return None
        raise _BadCommitError(f"cannot read {shown}: {_why(exc)}") from None
    import json  # noqa: PLC0415 - only a COMMIT left by an interrupted signing

    try:
        record = json.loads(data)
        files = tuple(os.fsencode(str(n)) for n in record["files"])
        counter = record.get("counter")
        if any(not is_signed_name(n) and n != _SIG_NAME_B for n in files):
            raise ValueError("a file that is not kexec*.txt or kexec.sig")
        if counter is None:
            return _Pending(files, None, None, None)
        return _Pending(files, int(counter["index"]), int(counter["from"]), int(counter["to"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _BadCommitError(
            f"{shown} is not a commit record of heads boot sign ({type(exc).__name__})"
        ) from None


def _staging_is_dir(root_fd: int) -> bool:
    try:
        st = os.stat(STAGING_NAME, dir_fd=root_fd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode)


def _is_committed(bootdir: Path, pending: _Pending, tpm: RollbackCounter | None) -> bool:
    staged = bootdir / STAGING_NAME
    if pending.counter_index is None:
        return True
    if any(not (staged / os.fsdecode(n)).exists() for n in pending.files):
        return True  # files are moved only after the increment
    if tpm is None:
        return False
    try:
        return tpm.nv_counter_read(pending.counter_index) == pending.counter_to
    except TpmError:
        return False


def _signed_set(bootdir: Path, tpm: RollbackCounter | None) -> dict[bytes, bytes]:
    """``kexec*.txt`` and ``kexec.sig`` as the current consistent state has them (see module doc).

    Raises:
        HeadsError: /boot cannot be read, a signed name is not a regular file, or too many or
            too large files.
    """
    try:
        return _read_signed_set(bootdir, tpm)
    except OSError as exc:
        raise HeadsError(f"cannot read {bootdir}: {exc.strerror or exc}") from None


def _read_signed_set(bootdir: Path, tpm: RollbackCounter | None) -> dict[bytes, bytes]:
    root_fd = os.open(bootdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        names = [
            n
            for n in os.listdir(os.fsencode(bootdir))  # noqa: PTH208 - bytes names, as on disk
            if is_signed_name(n) or n == _SIG_NAME_B
        ]
        if len(names) > _MAX_SIGNED_FILES:
            raise HeadsError(f"{bootdir} holds more than {_MAX_SIGNED_FILES} kexec*.txt files")
        files: dict[bytes, bytes] = {}
        for n in names:
            with contextlib.suppress(FileNotFoundError):  # removed since the listing
                files[n] = _read_beneath(root_fd, n, shown_path(n))
            if sum(map(len, files.values())) > _MAX_SIGNED_TOTAL_BYTES:
                raise HeadsError(
                    f"the kexec*.txt files in {bootdir} exceed {_MAX_SIGNED_TOTAL_BYTES} bytes"
                )
        pending = _read_pending(root_fd)
        if pending is not None and _is_committed(bootdir, pending, tpm):
            staged_fd = os.open(
                STAGING_NAME, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd
            )
            try:
                for name in pending.files:
                    with contextlib.suppress(FileNotFoundError):
                        files[name] = _read_beneath(
                            staged_fd, name, shown_path(STAGING_NAME.encode() + b"/" + name)
                        )
            finally:
                os.close(staged_fd)
        return files
    finally:
        os.close(root_fd)


# -- recovery --------------------------------------------------------------------------------


def recover_boot(bootdir: Path, tpm: RollbackCounter | None) -> str | None:
    """Finish (committed) or discard (uncommitted) a signing that was interrupted.

    Returns:
        "completed", "discarded" or None when there was nothing to do.

    Raises:
        OSError: /boot cannot be written.
    """
    staged = bootdir / STAGING_NAME
    if not staged.exists() and not staged.is_symlink():
        return None
    root_fd = os.open(bootdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pending = _read_pending(root_fd)
    except _BadCommitError as exc:
        # Not a record a signing wrote: nothing to finish.  The owner is signing anew, so the
        # directory is discarded like any uncommitted one.
        _log().warning("%s; discarding it", exc.message)
        pending = None
    finally:
        os.close(root_fd)
    if pending is not None and _is_committed(bootdir, pending, tpm):
        _roll_forward(bootdir, pending, _no_fault)
        _log().warning("completed an interrupted signing of %s", bootdir)
        return "completed"
    if staged.is_dir() and not staged.is_symlink():
        shutil.rmtree(staged)
    else:
        staged.unlink()
    fsync_dir(bootdir)
    _log().warning("discarded an interrupted signing of %s", bootdir)
    return "discarded"


def _roll_forward(bootdir: Path, pending: _Pending, fault: Callable[[str], None]) -> None:
    staged = bootdir / STAGING_NAME
    # kexec.sig goes last: until then a shell verifier sees a mismatch rather than a new
    # signature over half-old files (both fail, but this order keeps the old signature longest).
    order = sorted(pending.files, key=lambda n: (n == _SIG_NAME_B, n))
    for name in order:
        src = staged / os.fsdecode(name)
        if src.exists():
            src.replace(bootdir / os.fsdecode(name))
            fault(f"moved:{os.fsdecode(name)}")
    fsync_dir(bootdir)
    fault("moved-all")
    (staged / COMMIT_NAME).unlink(missing_ok=True)
    shutil.rmtree(staged, ignore_errors=True)
    fsync_dir(bootdir)


# -- signing ---------------------------------------------------------------------------------


def sign_boot(
    bootdir: Path,
    *,
    gnupghome: Path | None,
    key: str | None,
    tpm: RollbackCounter | None,
    pin: Secret | None = None,
    signer: Signer | None = None,
    rollback: bool = True,
    progress: Progress | None = None,
    fault: Callable[[str], None] | None = None,
) -> SignResult:
    """Hash, list, bind to the next counter value and sign /boot, as one transaction.

    Args:
        bootdir: the mounted /boot (writable).
        gnupghome: the owner's GNUPGHOME (None: gpg's default).
        key: fingerprint or user ID of the signing key (None: gpg's default key).
        tpm: the TPM holding the rollback counter.
        pin: the card PIN / key passphrase; None lets gpg-agent's pinentry ask.
        signer: overrides gpg (must make an armored detached signature).
        rollback: bind to the TPM counter (``-r`` in Heads); False keeps any existing
            ``kexec_rollback.txt`` as it is.
        progress: hashing progress callback (bytes done, bytes total).
        fault: called with the name of each step as it completes (tests stop the process
            there to prove every interruption leaves /boot consistent).

    Raises:
        UsageError: no TPM while rollback is wanted, or /boot is not a directory.
        UnsignableNameError: a name in /boot that Heads refuses.
        HeadsError: a file cannot be read or /boot cannot be written.
        AuthError / GpgError: gpg refused the PIN or could not sign (nothing changed).
        TpmError: the counter cannot be read, created or incremented.
    """
    if not bootdir.is_dir():
        raise UsageError(f"{bootdir} is not a directory")
    with _signing_lock(bootdir):
        return _sign_locked(
            bootdir,
            gnupghome=gnupghome,
            key=key,
            tpm=tpm,
            pin=pin,
            signer=signer,
            rollback=rollback,
            progress=progress,
            fault=fault,
        )


@contextlib.contextmanager
def _signing_lock(bootdir: Path) -> Iterator[None]:
    """One signer per /boot: an exclusive flock on the directory, released on exit or death.

    Without it a second signer's recovery could discard the first one's staging directory
    between its commit record and its counter increment.
    """
    fd = os.open(bootdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HeadsError(
                f"another heads boot sign is running on {bootdir}",
                hint="wait for it to finish, then sign again",
            ) from None
        yield
    finally:
        os.close(fd)


def _sign_locked(
    bootdir: Path,
    *,
    gnupghome: Path | None,
    key: str | None,
    tpm: RollbackCounter | None,
    pin: Secret | None = None,
    signer: Signer | None = None,
    rollback: bool = True,
    progress: Progress | None = None,
    fault: Callable[[str], None] | None = None,
) -> SignResult:
    from heads.core.rollback import ROLLBACK_NAME, RollbackBinding  # noqa: PLC0415 - see _check_counter

    step = fault or _no_fault
    if rollback and tpm is None:
        raise UsageError(
            "signing with the rollback counter needs a TPM",
            hint="pass --tcti, or --no-rollback to sign without binding to a TPM counter",
        )
    try:
        recovered = recover_boot(bootdir, tpm)
    except OSError as exc:
        raise _write_error(bootdir, exc) from None
    step("recovered")

    scan = scan_tree(bootdir)
    if scan.unlisted:
        path, reason = sorted(scan.unlisted.items())[0]
        raise HeadsError(
            f"cannot sign /boot: {shown_path(path)} cannot be listed ({reason})",
            hint="sign as root, or fix the directory's permissions",
        )
    for path in sorted(scan.kinds):
        check_signable(path)
    current = _signed_set(bootdir, tpm)
    for name in current:
        check_signable(name)
    hashed = hash_files(bootdir, scan.files(), sizes=scan.sizes, progress=progress)
    if hashed.errors:
        path, reason = sorted(hashed.errors.items())[0]
        raise HeadsError(f"cannot hash {shown_path(path)}: {reason}")
    step("hashed")

    new: dict[bytes, bytes] = {n: b for n, b in current.items() if n != _SIG_NAME_B}
    new[HASHES_NAME.encode()] = HashManifest.build(hashed.digests).to_bytes()
    new[TREE_NAME.encode()] = TreeList.build(scan.kinds).to_bytes()

    counter_index: int | None = None
    counter_from: int | None = None
    counter_to: int | None = None
    if rollback and tpm is not None:  # tpm is None only with rollback=False (checked above)
        counter_index = _counter_for(current.get(ROLLBACK_NAME.encode()), tpm)
        counter_from = tpm.nv_counter_read(counter_index)
        counter_to = counter_from + 1
        new[ROLLBACK_NAME.encode()] = RollbackBinding.for_counter(
            counter_index, counter_to
        ).to_bytes()
    step("counter-read")

    staged = bootdir / STAGING_NAME
    try:
        staged.mkdir(mode=0o755)
        for name, data in new.items():
            write_atomic(staged / os.fsdecode(name), data, sync_dir=False)
        fsync_dir(staged)
        fsync_dir(bootdir)
    except OSError as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise _write_error(bootdir, exc) from None
    step("staged")

    payload = signed_payload(
        [(n, hashlib.sha256(b).digest()) for n, b in new.items()], SignedForm.RELATIVE
    )
    files = sorted([*new, _SIG_NAME_B])
    try:
        sig_signer = signer or GpgSigner(gnupghome, key, pin)
        signature, fingerprint = sig_signer.sign(payload)
        step("signed")
        write_atomic(staged / SIGNATURE_NAME, signature, sync_dir=False)
        record: dict[str, object] = {
            "files": [os.fsdecode(n) for n in files],
            "counter": None
            if counter_index is None
            else {"index": counter_index, "from": counter_from, "to": counter_to},
        }
        import json  # noqa: PLC0415 - signing only

        write_atomic(staged / COMMIT_NAME, json.dumps(record, sort_keys=True).encode() + b"\n")
        fsync_dir(bootdir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    step("prepared")

    pending = _Pending(tuple(files), counter_index, counter_from, counter_to)
    if counter_index is not None:
        try:
            value = tpm.nv_counter_increment(counter_index) if tpm is not None else None
        except BaseException:
            # The increment may or may not have reached the TPM: recovery decides from the
            # counter's value, so the staging directory is left in place.
            _log().error("counter increment failed; run heads boot sign again to recover")
            raise
        if value != counter_to:
            shutil.rmtree(staged, ignore_errors=True)
            raise TpmError(
                f"rollback counter 0x{counter_index:08x} went from {counter_from} to {value}, "
                f"expected {counter_to}: something else incremented it",
                hint="/boot was left as it was; sign again",
            )
    step("incremented")
    try:
        _roll_forward(bootdir, pending, step)
    except OSError as exc:
        raise _write_error(bootdir, exc) from None
    step("done")
    return SignResult(
        bootdir=bootdir,
        fingerprint=fingerprint,
        files_hashed=len(hashed.digests),
        signed_files=tuple(os.fsdecode(n) for n in files if n != _SIG_NAME_B),
        counter_index=counter_index,
        counter_value=counter_to,
        recovered=recovered,
    )


def _counter_for(binding_bytes: bytes | None, tpm: RollbackCounter) -> int:
    """The counter of the current binding if the TPM still has it, else a new one."""
    from heads.core.rollback import RollbackBinding  # noqa: PLC0415 - see _check_counter

    if binding_bytes is not None:
        try:
            index = RollbackBinding.from_bytes(binding_bytes).nv_index
        except FormatError:
            index = None
        if index is not None and tpm.nv_exists(index):
            return index
    return tpm.nv_counter_create()


def _write_error(bootdir: Path, exc: OSError) -> HeadsError:
    hint = "mount it read-write: mount -o remount,rw /boot" if exc.errno == 30 else None
    return HeadsError(f"cannot write to {bootdir}: {exc.strerror or exc}", hint=hint)


# -- verification ----------------------------------------------------------------------------

_VERDICTS: Final = {
    GpgVerdict.GOOD: SignatureState.VERIFIED,
    GpgVerdict.BAD: SignatureState.BAD,
    GpgVerdict.NO_PUBKEY: SignatureState.UNKNOWN_KEY,
    GpgVerdict.NO_DATA: SignatureState.BROKEN,
    GpgVerdict.EXPIRED_KEY: SignatureState.EXPIRED_OR_REVOKED,
    GpgVerdict.REVOKED_KEY: SignatureState.EXPIRED_OR_REVOKED,
    GpgVerdict.EXPIRED_SIGNATURE: SignatureState.EXPIRED_OR_REVOKED,
    GpgVerdict.ERROR: SignatureState.ERROR,
}


def _check_signature(files: Mapping[bytes, bytes], keyring: Path) -> SignatureReport:
    signature = files.get(_SIG_NAME_B)
    signed = sorted(n for n in files if n != _SIG_NAME_B)
    names = tuple(os.fsdecode(n) for n in signed)
    if signature is None:
        return SignatureReport(SignatureState.MISSING, signed_files=names, detail="no kexec.sig")
    digests = [(n, hashlib.sha256(files[n]).digest()) for n in signed]
    result = verify_detached(signature, signed_payload(digests, SignedForm.RELATIVE), keyring)
    form = SignedForm.RELATIVE
    if result.verdict is GpgVerdict.BAD:
        legacy = verify_detached(signature, signed_payload(digests, SignedForm.ABSOLUTE), keyring)
        if legacy.verdict is GpgVerdict.GOOD:
            result, form = legacy, SignedForm.ABSOLUTE
    state = _VERDICTS[result.verdict]
    key = shown(result.fingerprint or result.key_id or "")
    detail = {
        SignatureState.VERIFIED: f"signed {len(signed)} kexec*.txt file(s)",
        SignatureState.BAD: "the kexec*.txt files differ from what was signed "
        "(a file edited, added, removed or renamed, or a signature from another /boot)",
        SignatureState.UNKNOWN_KEY: "signed by a key that is not in the keyring"
        + (f" (key {key})" if key else ""),
        SignatureState.BROKEN: "kexec.sig holds no valid OpenPGP signature",
        SignatureState.EXPIRED_OR_REVOKED: f"gpgv: {result.verdict.value}"
        + (f" (key {key})" if key else ""),
        SignatureState.ERROR: "gpgv could not check the signature",
    }[state]
    if len(result.checks) > 1:
        detail += "; " + _several_signatures(result.checks)
    return SignatureReport(
        state,
        fingerprint=result.fingerprint,
        form=form if state is SignatureState.VERIFIED else None,
        signed_files=names,
        detail=detail,
    )


def _several_signatures(checks: Sequence[SignatureCheck]) -> str:
    """Each signature's verdict, for a kexec.sig holding more than one (Heads signs once).

    gpgv, and so Heads, fails the file when any signature fails: a good signature by the
    owner next to one by an unknown key does not make /boot verified, and the report says
    which signature failed rather than only that one did.
    """
    parts = []
    for number, check in enumerate(checks, start=1):
        who = shown(check.fingerprint or check.key_id or "an unnamed key")
        parts.append(f"signature {number} by {who}: {check.verdict.value}")
    return f"kexec.sig holds {len(checks)} signatures, all must verify: " + ", ".join(parts)


def verify_boot(
    bootdir: Path,
    *,
    keyring: Path,
    tpm: RollbackCounter | None,
    progress: Progress | None = None,
) -> BootVerification:
    """Check /boot: signature, then every file, then the rollback counter.

    Never raises for what it finds in /boot (that is the report); only for what stops it from
    looking.

    Raises:
        UsageError: /boot is not a directory, or the keyring is missing, armored, empty or
            corrupt (a configuration error, found before /boot is read).
        GpgError: gpgv is missing.
        HeadsError: /boot cannot be read.
    """
    if not bootdir.is_dir():
        raise UsageError(f"{bootdir} is not a directory")
    # A keyring that cannot vouch for anything is the owner's configuration error, found before
    # /boot is looked at: otherwise every signature would read as "unknown key" (tampering).
    check_keyring(keyring)
    name = str(bootdir)
    not_checked = RollbackReport(
        RollbackReportState.NOT_CHECKED,
        detail="no TPM given" if tpm is None else "the signed files were not verified",
    )
    try:
        files = _signed_set(bootdir, tpm)
    except HeadsError as exc:
        sig = SignatureReport(SignatureState.ERROR, detail=exc.message)
        return BootVerification(
            name, sig, ManifestReport(ManifestState.NOT_CHECKED), None, not_checked
        )
    signature = _check_signature(files, keyring)
    if signature.state is not SignatureState.VERIFIED:
        return BootVerification(
            name, signature, ManifestReport(ManifestState.NOT_CHECKED), None, not_checked
        )

    hashes_bytes = files.get(HASHES_NAME.encode())
    tree_bytes = files.get(TREE_NAME.encode())
    if hashes_bytes is None:
        manifest = ManifestReport(ManifestState.MISSING, f"no {HASHES_NAME} under the signature")
        return BootVerification(name, signature, manifest, None, not_checked)
    try:
        hashes = HashManifest.from_bytes(hashes_bytes)
        tree = TreeList.from_bytes(tree_bytes) if tree_bytes is not None else None
    except FormatError as exc:
        # Signed, yet malformed: treat as tampering (a FormatError in a signed file becomes a
        # verification failure, docs/architecture.md §Errors), and check nothing against it.
        return BootVerification(
            name, signature, ManifestReport(ManifestState.INVALID, exc.message), None, not_checked
        )
    scan = scan_tree(bootdir)
    # Only what lstat saw as a regular file is opened: never a device or FIFO under a signed name.
    wanted = [p for p in hashes.digests() if scan.kinds.get(p) is EntryKind.FILE]
    hashed = hash_files(bootdir, wanted, sizes=scan.sizes, progress=progress)
    check = check_manifest(hashes, tree, scan.kinds, hashed.digests, hashed.errors)
    if scan.unlisted:
        # What is inside is unknown: new files could hide there, so the check cannot pass.
        found = {f.path: f for f in check.files}
        for path, reason in scan.unlisted.items():
            found[path] = FileCheck(path, FileStatus.CHANGED, f"cannot be listed: {reason}")
        check = ManifestCheck(tuple(found[p] for p in sorted(found)))
    detail = "" if tree is not None else f"no {TREE_NAME}: new files found by the hashes only"
    manifest = ManifestReport(ManifestState.OK, detail)
    return BootVerification(
        name, signature, manifest, check, _check_counter(files, tpm), verified_hashes=hashes
    )


def _check_counter(files: Mapping[bytes, bytes], tpm: RollbackCounter | None) -> RollbackReport:
    if tpm is None:
        return RollbackReport(RollbackReportState.NOT_CHECKED, detail="no TPM given")
    # heads.core.rollback is imported by the code that has a counter to check: verifying
    # without a TPM need not compile its classes (docs/architecture.md §Command start-up).
    from heads.core.rollback import (  # noqa: PLC0415
        ROLLBACK_NAME,
        RollbackBinding,
        RollbackState,
        check_rollback,
    )

    data = files.get(ROLLBACK_NAME.encode())
    if data is None:
        return RollbackReport(
            RollbackReportState.MISSING,
            detail=f"no {ROLLBACK_NAME}: this /boot is not bound to a TPM counter",
        )
    try:
        binding = RollbackBinding.from_bytes(data)
    except FormatError as exc:
        return RollbackReport(RollbackReportState.INVALID, detail=exc.message)
    index = binding.nv_index
    try:
        if not tpm.nv_exists(index):
            return RollbackReport(
                RollbackReportState.UNREADABLE,
                binding.counter_id,
                detail=f"the TPM has no counter 0x{index:08x} (TPM reset or swapped?)",
            )
        value = tpm.nv_counter_read(index)
    except TpmError as exc:
        return RollbackReport(
            RollbackReportState.UNREADABLE, binding.counter_id, detail=exc.message
        )
    result = check_rollback(binding, value)
    state = {
        RollbackState.OK: RollbackReportState.OK,
        RollbackState.ROLLED_BACK: RollbackReportState.ROLLED_BACK,
        RollbackState.MISMATCH: RollbackReportState.MISMATCH,
    }[result.state]
    return RollbackReport(
        state, result.counter_id, result.tpm_value, result.signed_value, result.describe()
    )


def preflight_rollback(bootdir: Path, tpm: RollbackCounter) -> RollbackReport:
    """The start-up check of the rollback counter, before anything is unsealed or resealed.

    Port of ``preflight_rollback_counter_before_reseal`` (docs/heads-compat.md §Rollback
    preflight), which only checks that the counter is readable; this also compares its value.
    It reads ``kexec_rollback.txt`` without checking the signature (that is
    :func:`verify_boot`'s job, later in the boot), so an OK here is necessary, not sufficient.
    A /boot with no trust metadata at all (a fresh install) passes as "not checked".

    Raises:
        HeadsError: /boot cannot be read.
    """
    from heads.core.rollback import ROLLBACK_NAME  # noqa: PLC0415 - see _check_counter

    files = _signed_set(bootdir, tpm)
    has_metadata = any(
        n in files for n in (_SIG_NAME_B, ROLLBACK_NAME.encode(), b"kexec_default_hashes.txt")
    )
    if ROLLBACK_NAME.encode() not in files:
        if not has_metadata:
            return RollbackReport(
                RollbackReportState.NOT_CHECKED, detail="/boot holds no signed state yet"
            )
        return RollbackReport(
            RollbackReportState.MISSING,
            detail=f"{ROLLBACK_NAME} is missing although /boot was signed: "
            "/boot was restored or swapped",
        )
    return _check_counter(files, tpm)
