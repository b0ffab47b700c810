"""TPM 2.0 adapter over heads' own command layer (heads.core.tpm2, heads.adapters.tpm_commands).

One ``Tpm`` protocol and one backend, ``DirectTpm``.  Each method is one TPM operation (the
docstrings name the TPM commands it runs).  The adapter reports facts and translates TSS return
codes into the ``TpmError`` family; deciding what a failure *means* to the owner (e.g. "the TOTP
secret was not released because firmware changed") is the flows' job, except that a refused
unseal already names the PCRs that moved, using the public seal record kept beside the object.

Secrets (sealed data, passphrases, owner auth) are ``Secret`` values.  They cross the wire inside
sessions salted with the storage primary key and encrypting the sensitive parameter
(TPM 2.0 Part 1 §21 "Session-based encryption"), so a bus sniffer on a real machine sees
ciphertext.  They are never logged or put into exception text.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from heads.adapters.tpm_commands import (
    Session,
    TpmCommands,
    TpmResponseError,
    TransportError,
)
from heads.adapters.tpm_transport import TIMEOUT_ENV, open_transport
from heads.core.digest import HashAlg
from heads.core.pcr import PCR_COUNT, PcrSelection
from heads.core.sealing import (
    SealRecord,
    changed_pcrs,
    policy_auth_value,
    policy_pcr,
    seal_policy_digest,
)
from heads.core.secret import Secret
from heads.core.tpm2 import rc as rcs
from heads.core.tpm2.constants import (
    NT,
    NV_TYPE_SHIFT,
    PT,
    RH,
    SE,
    SU,
    TPMA_NV,
    TPMA_PERMANENT_IN_LOCKOUT,
    TPMA_PERMANENT_OWNER_AUTH_SET,
)
from heads.core.tpm2.structures import (
    NvPublic,
    PcrSelect,
    Public,
    keyedhash_seal_template,
    sensitive_create,
    storage_primary_template,
)
from heads.errors import (
    AuthError,
    FormatError,
    HeadsError,
    LockoutError,
    TpmError,
    TpmFailureModeError,
    TpmUnreachableError,
    UnsealError,
    UsageError,
)

__all__ = [
    "DISK_KEY_HANDLE",
    "PRIMARY_HANDLE",
    "SHELL_HEADS_SELECTIONS",
    "TOTP_HANDLE",
    "DirectTpm",
    "LockoutState",
    "Tpm",
    "TpmInfo",
    "open_tpm",
    "seal_journal_index",
    "seal_record_index",
]

_log = logging.getLogger(__name__)

PRIMARY_HANDLE: Final = 0x81000000
TOTP_HANDLE: Final = 0x81004D47
DISK_KEY_HANDLE: Final = 0x81000003
_EK_HANDLES: Final = (0x81010001, 0x81010002, 0x81010016)
_HEADS_HANDLES: Final = {
    PRIMARY_HANDLE: "storage primary key",
    TOTP_HANDLE: "TOTP/HOTP secret",
    DISK_KEY_HANDLE: "disk unlock key",
}
_PERSISTENT_FIRST: Final = 0x81000000
_NV_FIRST: Final = 0x01000000
_TRANSIENT_FIRST: Final = 0x80000000
_LOADED_SESSION_FIRST: Final = 0x02000000  # lists HMAC and policy sessions (TPM 2.0 Part 2 §7)
_SEAL_RECORD_BASE: Final = 0x01800000  # owner range (TCG handle registry)
_SEAL_JOURNAL_BASE: Final = 0x01810000
_MAX_SECRET_BYTES: Final = 128  # MAX_SYM_DATA of a keyedhash object
_PCRS_PER_READ: Final = 8  # TPM2_PCR_Read returns at most 8 digests

_NV_CHUNK_DEFAULT: Final = 512
_JOURNAL_MAGIC: Final = b"HSJ1"
_MAX_JOURNAL_BYTES: Final = 4096

# The PCR selections of objects sealed without a seal record, i.e. by shell Heads: TOTP/HOTP
# (seal-totp.sh: 0-3 and 7 current, 4 at its firmware-only value), then the same with PCR 9 as
# heads seals it on the uefi profile; the disk key (kexec-seal-key.sh: 0-7, plus a passphrase).
SHELL_HEADS_SELECTIONS: Final[Mapping[int, tuple[PcrSelection, ...]]] = {
    TOTP_HANDLE: (
        PcrSelection.parse("sha256:0,1,2,3,4,7"),
        PcrSelection.parse("sha256:0,1,2,3,4,7,9"),
    ),
    DISK_KEY_HANDLE: (PcrSelection.parse("sha256:0,1,2,3,4,5,6,7"),),
}


def seal_record_index(handle: int) -> int:
    """The NV index holding the public seal record of the sealed object at ``handle``."""
    return _SEAL_RECORD_BASE | (handle & 0xFFFF)


def seal_journal_index(handle: int) -> int:
    """The NV index of the seal journal: the object being sealed at ``handle``, while it is."""
    return _SEAL_JOURNAL_BASE | (handle & 0xFFFF)


def _record_needs_auth(record: SealRecord) -> bool | None:
    """Whether the record's policy includes PolicyAuthValue; None if it fits neither form."""
    for with_auth in (False, True):
        try:
            if seal_policy_digest(record.selection, record.values, with_auth=with_auth) == (
                record.policy
            ):
                return with_auth
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class _SealJournal:
    """An object on its way to a persistent handle (docs/tpm-objects.md §Replacing a sealed object).

    ``"HSJ1" | u16 n | sha256(body) | body`` with ``body = u16 len | seal record |
    u16 len | TPM2B_PUBLIC | u16 len | TPM2B_PRIVATE``; the digest tells a complete journal
    from one whose writing was cut short.  Nothing in it is secret: the private part is
    encrypted to the primary key.
    """

    record: SealRecord
    public: bytes
    private: bytes

    def to_bytes(self) -> bytes:
        body = b"".join(
            struct.pack(">H", len(part)) + part
            for part in (self.record.to_bytes(), self.public, self.private)
        )
        return _JOURNAL_MAGIC + struct.pack(">H", len(body)) + hashlib.sha256(body).digest() + body

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> _SealJournal:
        """Raises FormatError unless ``data`` is a complete journal."""
        if len(data) > _MAX_JOURNAL_BYTES or data[:4] != _JOURNAL_MAGIC or len(data) < 38:
            raise FormatError("not a seal journal", source=source, offset=0)
        (size,) = struct.unpack_from(">H", data, 4)
        body = data[38 : 38 + size]
        if len(body) != size or hashlib.sha256(body).digest() != data[6:38]:
            raise FormatError("the seal journal is incomplete", source=source)
        parts = []
        pos = 0
        for _ in range(3):
            if pos + 2 > len(body):
                raise FormatError("the seal journal is truncated", source=source)
            (n,) = struct.unpack_from(">H", body, pos)
            parts.append(body[pos + 2 : pos + 2 + n])
            pos += 2 + n
        record = SealRecord.from_bytes(parts[0], source=source)
        return cls(record, parts[1], parts[2])


@dataclass(frozen=True, slots=True)
class _Sealed:
    """An object found for unsealing: its handle and name, authPolicy and seal record."""

    obj: int
    name: bytes
    policy: bytes
    record: SealRecord | None
    transient: bool


@dataclass(frozen=True, slots=True)
class LockoutState:
    """The TPM's dictionary-attack state (TPM 2.0 Part 1 §19.8)."""

    failed_tries: int
    max_tries: int
    recovery_interval_s: int
    lockout_recovery_s: int
    in_lockout: bool
    #: The owner hierarchy has a passphrase (TPMA_PERMANENT ownerAuthSet): persisting or
    #: evicting objects needs it, and trying without it costs a dictionary-attack try.
    owner_auth_set: bool = False

    @property
    def tries_left(self) -> int:
        return max(0, self.max_tries - self.failed_tries)

    @property
    def wait_s(self) -> int:
        """Upper bound on the wait before one more try is allowed (0 when not locked out)."""
        if not self.in_lockout:
            return 0
        if self.recovery_interval_s == 0:
            return 0
        return (self.failed_tries - self.max_tries + 1) * self.recovery_interval_s


@dataclass(frozen=True, slots=True)
class TpmInfo:
    """What `heads tpm status` shows."""

    manufacturer: str
    vendor: str
    firmware_version: str
    spec_revision: str
    banks: tuple[HashAlg, ...]
    endorsement_key: bool
    lockout: LockoutState
    objects: Mapping[int, str] = field(default_factory=dict)


class Tpm(Protocol):
    """The TPM operations heads uses."""

    def banks(self) -> tuple[HashAlg, ...]: ...
    def read_pcrs(self, alg: HashAlg, indices: Iterable[int]) -> dict[int, bytes]: ...
    def extend_digests(self, pcr: int, digests: Mapping[HashAlg, bytes]) -> None: ...
    def get_random(self, size: int) -> bytes: ...
    def seal(
        self,
        handle: int,
        secret: Secret,
        selection: PcrSelection,
        *,
        pcr_values: Mapping[int, bytes] | None = None,
        auth: Secret | None = None,
        owner_auth: Secret | None = None,
    ) -> SealRecord: ...
    def unseal(
        self, handle: int, auth: Secret | None = None, selection: PcrSelection | None = None
    ) -> Secret: ...
    def seal_record(self, handle: int) -> SealRecord | None: ...
    def object_exists(self, handle: int) -> bool: ...
    def evict(self, handle: int, owner_auth: Secret | None = None) -> None: ...
    def nv_exists(self, index: int) -> bool: ...
    def nv_counter_create(self, owner_auth: Secret | None = None) -> int: ...
    def nv_counter_read(self, index: int) -> int: ...
    def nv_counter_increment(self, index: int) -> int: ...
    def policy_pcr_digest_trial(
        self, selection: PcrSelection, pcr_values: Mapping[int, bytes] | None = None
    ) -> bytes: ...
    def lockout_state(self) -> LockoutState: ...
    def info(self) -> TpmInfo: ...
    def reset(self, owner_auth: Secret | None = None) -> None: ...
    def lock_platform_hierarchy(self) -> None: ...


_Failure = TpmResponseError | TransportError
_FAILURES: Final = (TpmResponseError, TransportError)
_TCTI_IO_ERROR: Final = 0x000A000A  # what a lost connection was reported as before (TSS2 TCTI)


def _rc(exc: _Failure) -> int:
    """The base response code of a failure (a lost connection has none of the TPM's)."""
    if isinstance(exc, TransportError):
        return _TCTI_IO_ERROR
    return rcs.base_rc(exc.rc)


def _raw_rc(exc: _Failure) -> int:
    return _TCTI_IO_ERROR if isinstance(exc, TransportError) else exc.rc


class DirectTpm:
    """The TPM through heads' own command layer.  Use :func:`open_tpm` to get one."""

    def __init__(self, commands: TpmCommands, tcti: str) -> None:
        self._c = commands
        self._tcti = tcti
        self._transport = commands.transport
        self._banks: tuple[HashAlg, ...] | None = None
        # Public areas of persistent objects, read once per connection (their names key the
        # HMACs of the commands that use them).
        self._publics: dict[int, tuple[Public, bytes]] = {}
        self._nv_known: set[int] = set()  # NV indices seen defined on this connection
        self._owner_auth = b""
        self._session: Session | None = None  # see _crypt_session
        self._nv_buffer_max: int | None = None  # see _nv_chunk

    # -- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        if self._session is not None:
            if not self._broken:
                with contextlib.suppress(*_FAILURES, TpmError):
                    self._c.flush_context(self._session.handle)
            self._session.wipe()
            self._session = None
        self._c.close()

    @property
    def _broken(self) -> bool:
        """The connection was lost or the TPM missed a deadline: no more commands."""
        return self._transport.broken is not None

    def _fail(self, what: str, exc: _Failure) -> TpmError:
        """Translate a failed command for the operation ``what`` into our error tree."""
        rc = _rc(exc)
        raw = _raw_rc(exc)
        if rc == rcs.FAILURE:
            return TpmFailureModeError(
                f"{what}: the TPM is in failure mode",
                rc=raw,
                hint="power-cycle the machine; if it persists the TPM needs a firmware reset",
            )
        if rc == rcs.LOCKOUT:
            return self._lockout_error(what, raw)
        if isinstance(exc, TransportError) or self._broken:
            if self._transport.timed_out:
                return TpmUnreachableError(
                    f"{what}: the TPM at {self._tcti!r} did not answer within "
                    f"{self._transport.timeout_s:g} s",
                    rc=raw,
                    hint=f"is it a TPM, and is it alive? (a slow TPM may need a longer "
                    f"deadline: ${TIMEOUT_ENV} seconds)",
                )
            why = exc.why if isinstance(exc, TransportError) else self._transport.broken
            return TpmUnreachableError(
                f"{what}: lost the connection to the TPM ({why})",
                rc=raw,
                hint="is swtpm still running?"
                if self._tcti.startswith("swtpm")
                else "is the TPM still there?",
            )
        return TpmError(f"{what}: {rcs.describe(raw)} (rc 0x{raw:x})", rc=raw)

    def _lockout_error(self, what: str, rc: int) -> LockoutError:
        try:
            state = self.lockout_state()
            wait = state.wait_s
        except TpmError:
            wait = 0
        when = f"wait up to {wait} s" if wait else "wait for the lockout to expire"
        return LockoutError(
            f"{what}: the TPM is in dictionary-attack lockout",
            recovery_s=wait or None,
            rc=rc,
            hint=f"{when}, or reset the TPM (heads tpm reset) if you own it",
        )

    def startup(self) -> None:
        """TPM command: TPM2_Startup(CLEAR); an already started TPM is fine."""
        try:
            self._c.startup(SU.CLEAR)
        except _FAILURES as exc:
            if _rc(exc) == rcs.FAILURE and self._tcti.startswith("swtpm"):
                raise TpmFailureModeError(
                    f"start the TPM: the swtpm at {self._tcti!r} answers only TPM_RC_FAILURE",
                    rc=_raw_rc(exc),
                    hint="swtpm was started without being initialised: start it with "
                    "--flags not-need-init,startup-clear (and manufacture its state with "
                    "swtpm_setup --tpm2 first)",
                ) from None
            if _rc(exc) != rcs.INITIALIZE:
                raise self._fail("start the TPM", exc) from None

    def flush_leftovers(self) -> None:
        """Flush transient objects and loaded sessions left by a client that went away.

        Only for a TPM without a resource manager that nobody else uses meanwhile (swtpm
        serves one connection at a time): without this, a few killed clients exhaust its 3
        object and 3 session slots until the next TPM2_Startup (Heads' ``tpm2_startsession``
        flushes the same way).  TPM commands: TPM2_GetCapability(HANDLES), TPM2_FlushContext.
        """
        try:
            for first in (_TRANSIENT_FIRST, _LOADED_SESSION_FIRST):
                _, handles = self._c.handles(first)
                for handle in handles:
                    self._c.flush_context(handle)
                    _log.info("flushed 0x%08x, left loaded by an earlier client", handle)
        except _FAILURES as exc:
            raise self._fail("flush what an earlier client left loaded", exc) from None

    def _public(self, handle: int) -> tuple[Public, bytes]:
        """The public area and name of a persistent object (TPM2_ReadPublic, once)."""
        known = self._publics.get(handle)
        if known is None:
            known = self._c.read_public(handle)
            self._publics[handle] = known
        return known

    def _forget_all(self) -> None:
        """Drop what is cached about objects and indices (after TPM2_Clear it names nothing)."""
        self._publics.clear()
        self._nv_known.clear()
        if self._session is not None:
            # The session is salted with the primary key TPM2_Clear destroyed.
            with contextlib.suppress(*_FAILURES):
                self._c.flush_context(self._session.handle)
            self._session.wipe()
            self._session = None

    def _evict(self, handle: int) -> None:
        """TPM2_EvictControl of the persistent object at ``handle``."""
        self._c.evict_control(self._owner_auth, handle, handle)
        self._publics.pop(handle, None)

    def _undefine(self, index: int) -> None:
        """TPM2_NV_UndefineSpace of ``index``."""
        self._c.nv_undefine_space(self._owner_auth, index)
        self._nv_known.discard(index)

    @contextlib.contextmanager
    def _flushing(self, handle: int) -> Iterator[int]:
        try:
            yield handle
        finally:
            if not self._broken:
                with contextlib.suppress(*_FAILURES):
                    self._c.flush_context(handle)

    def _persistent_handles(self) -> set[int]:
        return self._handles(_PERSISTENT_FIRST, 0x81)

    def _nv_indices(self) -> set[int]:
        found = self._handles(_NV_FIRST, 0x01)
        self._nv_known = set(found)
        return found

    def _handles(self, first: int, kind: int) -> set[int]:
        handles: set[int] = set()
        prop = first
        while True:
            more, got = self._c.handles(prop)
            batch = [h for h in got if h >> 24 == kind]
            handles.update(batch)
            if not more or not batch:
                return handles
            prop = max(batch) + 1

    def _policy_session(self, *, salted: bool) -> Session:
        key = self._salt_key() if salted else None
        return self._c.start_auth_session(SE.POLICY, salt_key=key, symmetric=salted)

    def _salt_key(self) -> tuple[int, Public]:
        """The storage primary key as a session's salt key (created if absent)."""
        self._ensure_primary()
        public, _ = self._public(PRIMARY_HANDLE)
        return PRIMARY_HANDLE, public

    def _crypt_session(self) -> Session:
        """The connection's HMAC session salted with the primary key, AES-128-CFB.

        Made once per connection and kept (like the enc/dec sessions shell Heads starts at
        boot), used per command with DECRYPT to encrypt a command's first parameter (a secret
        being sealed) or ENCRYPT a response's (an unsealed secret).
        """
        if self._session is None:
            try:
                self._session = self._c.start_auth_session(
                    SE.HMAC, salt_key=self._salt_key(), symmetric=True
                )
            except ValueError as exc:
                raise TpmError(
                    f"the storage primary key at 0x{PRIMARY_HANDLE:08x} cannot salt a "
                    f"session: {exc}",
                    hint="reset the TPM (heads tpm reset) to make a new primary key",
                ) from None
        return self._session

    # -- PCRs ---------------------------------------------------------------------------

    def banks(self) -> tuple[HashAlg, ...]:
        """TPM command: TPM2_GetCapability(PCRS).  Banks with at least one PCR allocated."""
        if self._banks is None:
            try:
                selections = self._c.pcr_banks()
            except _FAILURES as exc:
                raise self._fail("read the PCR banks", exc) from None
            found = []
            for sel in selections:
                if any(sel.bitmap):
                    with contextlib.suppress(ValueError):
                        found.append(HashAlg.from_tpm_alg_id(sel.alg))
            self._banks = tuple(found)
        return self._banks

    def read_pcrs(self, alg: HashAlg, indices: Iterable[int]) -> dict[int, bytes]:
        """TPM command: TPM2_PCR_Read, 8 PCRs at a time."""
        wanted = sorted(set(indices))
        if any(not 0 <= i < PCR_COUNT for i in wanted):
            raise UsageError(f"PCR index out of range 0-{PCR_COUNT - 1}: {wanted}")
        if alg not in self.banks():
            raise UsageError(
                f"the TPM has no {alg.value} PCR bank",
                hint="banks: " + ", ".join(b.value for b in self.banks()),
            )
        out: dict[int, bytes] = {}
        for start in range(0, len(wanted), _PCRS_PER_READ):
            chunk = wanted[start : start + _PCRS_PER_READ]
            sel = f"{alg.value}:{','.join(map(str, chunk))}"
            asked = PcrSelect(alg.tpm_alg_id, _bitmap(chunk))
            try:
                sel_out, digests = self._c.pcr_read([asked])
            except _FAILURES as exc:
                raise self._fail(f"read PCRs {sel}", exc) from None
            returned = []
            for s in sel_out:
                if s.alg != alg.tpm_alg_id:
                    raise TpmError(f"the TPM returned PCRs of bank 0x{s.alg:04x} for {sel}")
                returned += list(s.indices)
            if len(returned) != len(digests) or not set(returned) <= set(chunk):
                raise TpmError(f"the TPM's answer to PCR_Read {sel} does not match its selection")
            for index, digest in zip(returned, digests, strict=True):
                if len(digest) != alg.digest_size:
                    raise TpmError(f"the TPM returned a {len(digest)}-byte {alg.value} PCR")
                out[index] = digest
            missing = set(chunk) - set(returned)
            if missing:
                raise TpmError(f"the TPM did not return PCRs {sorted(missing)} of {alg.value}")
        return out

    def extend_digests(self, pcr: int, digests: Mapping[HashAlg, bytes]) -> None:
        """TPM command: TPM2_PCR_Extend with one digest per bank (no event log entry)."""
        if not 0 <= pcr < PCR_COUNT:
            raise UsageError(f"PCR index {pcr} is out of range 0-{PCR_COUNT - 1}")
        values = []
        for alg, digest in digests.items():
            if len(digest) != alg.digest_size:
                raise UsageError(f"a {alg.value} digest has {alg.digest_size} bytes")
            values.append((alg.tpm_alg_id, digest))
        try:
            self._c.pcr_extend(pcr, values)
        except _FAILURES as exc:
            raise self._fail(f"extend PCR {pcr}", exc) from None

    def get_random(self, size: int) -> bytes:
        """TPM command: TPM2_GetRandom (repeated: a TPM returns at most one digest's worth)."""
        out = b""
        try:
            while len(out) < size:
                got = self._c.get_random(min(32, size - len(out)))
                if not got:
                    raise TpmError("the TPM returned no random bytes")
                out += got
        except _FAILURES as exc:
            raise self._fail("get random bytes", exc) from None
        return out

    def policy_pcr_digest_trial(
        self, selection: PcrSelection, pcr_values: Mapping[int, bytes] | None = None
    ) -> bytes:
        """The TPM's own PolicyPCR digest (trial session; current values when none given).

        TPM commands: TPM2_StartAuthSession(TRIAL), TPM2_PolicyPCR, TPM2_PolicyGetDigest.
        """
        try:
            session = self._c.start_auth_session(SE.TRIAL)
            with self._flushing(session.handle):
                pcr_digest = b""
                if pcr_values is not None:
                    pcr_digest = _pcr_composite(selection, pcr_values)
                self._c.policy_pcr(session.handle, pcr_digest, _select(selection))
                return self._c.policy_get_digest(session.handle)
        except _FAILURES as exc:
            raise self._fail("compute a PolicyPCR digest", exc) from None

    # -- persistent objects -------------------------------------------------------------

    def object_exists(self, handle: int) -> bool:
        """Whether a sealed object is at ``handle``, counting one whose replacement was cut
        short after the old object was evicted (its seal journal still holds it).

        TPM commands: TPM2_GetCapability(HANDLES) [, TPM2_NV_ReadPublic, TPM2_NV_Read].
        """
        try:
            return handle in self._persistent_handles() or self._journal(handle) is not None
        except _FAILURES as exc:
            raise self._fail("list persistent objects", exc) from None

    def evict(self, handle: int, owner_auth: Secret | None = None) -> None:
        """Remove a persistent object, its seal journal and its seal record.

        TPM commands: TPM2_NV_UndefineSpace, TPM2_EvictControl.
        """
        try:
            self._set_owner_auth(owner_auth)
            self._nv_undefine(seal_journal_index(handle))
            if handle in self._persistent_handles():
                self._evict(handle)
            self._nv_undefine(seal_record_index(handle))
        except _FAILURES as exc:
            raise self._owner_fail(f"remove the object at 0x{handle:08x}", exc) from None

    def _set_owner_auth(self, owner_auth: Secret | None) -> None:
        self._owner_auth = owner_auth.reveal() if owner_auth else b""

    def _owner_fail(self, what: str, exc: _Failure) -> HeadsError:
        if _rc(exc) in (rcs.AUTH_FAIL, rcs.BAD_AUTH):
            state = self._lockout_state_or_none()
            left = state.tries_left if state else None
            return AuthError(
                f"{what}: the TPM owner passphrase was refused"
                + (f" ({left} tries left before lockout)" if left is not None else ""),
                tries_left=left,
                hint="give the owner passphrase set at TPM reset (--owner-passphrase-fd)",
            )
        return self._fail(what, exc)

    def _ensure_primary(self, owner_auth: Secret | None = None) -> int:
        """The storage primary key at 0x81000000, created (ECC P-256, AES-128-CFB) if absent.

        Whatever storage key is there is used as is: shell Heads makes an RSA one.
        TPM commands: TPM2_CreatePrimary, TPM2_EvictControl.
        """
        if self._primary_or_none() is not None:
            return PRIMARY_HANDLE
        self._set_owner_auth(owner_auth)
        transient, _ = self._c.create_primary(
            RH.OWNER, self._owner_auth, storage_primary_template()
        )
        with self._flushing(transient):
            self._c.evict_control(self._owner_auth, transient, PRIMARY_HANDLE)
        _log.info("created the storage primary key at 0x%08x", PRIMARY_HANDLE)
        return PRIMARY_HANDLE

    def _primary_or_none(self) -> int | None:
        if PRIMARY_HANDLE in self._publics or PRIMARY_HANDLE in self._persistent_handles():
            return PRIMARY_HANDLE
        return None

    def _object_public(self, handle: int) -> tuple[Public, bytes] | None:
        """The public area and name of the persistent object at ``handle``, if any."""
        if handle not in self._publics and handle not in self._persistent_handles():
            return None
        return self._public(handle)

    # -- public NV indices: seal records and seal journals ------------------------------

    def _nv_chunk(self) -> int:
        """TPM_PT_NV_BUFFER_MAX: the most one TPM2_NV_Read/NV_Write may carry."""
        if self._nv_buffer_max is None:
            props = self._c.properties(PT.NV_BUFFER_MAX, 1)
            self._nv_buffer_max = max(64, props.get(PT.NV_BUFFER_MAX, _NV_CHUNK_DEFAULT))
        return self._nv_buffer_max

    def _nv_undefine(self, index: int) -> None:
        if index in self._nv_indices():
            self._undefine(index)

    def _write_public_index(self, index: int, data: bytes, *, undefined: bool = False) -> None:
        """Write ``data`` to the public index ``index``, (re)defining it at that size.

        ``undefined``: the caller knows the index does not exist (saves a look-up).

        Attributes ownerwrite|ownerread|authread|no_da, ordinary, empty auth: anyone reads it,
        only the owner writes it.  TPM commands: TPM2_NV_ReadPublic, [TPM2_NV_UndefineSpace,
        TPM2_NV_DefineSpace,] TPM2_NV_Write (in chunks of TPM_PT_NV_BUFFER_MAX).
        """
        defined = False
        if not undefined and index in self._nv_indices():
            defined = True
            if self._c.nv_read_public(index).data_size != len(data):
                self._undefine(index)
                defined = False
        if not defined:
            self._c.nv_define_space(
                self._owner_auth,
                NvPublic.build(
                    index,
                    TPMA_NV.OWNERWRITE
                    | TPMA_NV.OWNERREAD
                    | TPMA_NV.AUTHREAD
                    | TPMA_NV.NO_DA
                    | (NT.ORDINARY << NV_TYPE_SHIFT),
                    len(data),
                ),
            )
            self._nv_known.add(index)
        chunk = self._nv_chunk()
        for offset in range(0, len(data), chunk):
            self._c.nv_write(
                RH.OWNER, self._owner_auth, index, data[offset : offset + chunk], offset
            )

    def _read_public_index(self, index: int) -> bytes | None:
        """The bytes of a public index; None when it is not defined or was never written.

        TPM commands: TPM2_GetCapability(HANDLES), TPM2_NV_ReadPublic, TPM2_NV_Read.
        """
        if index not in self._nv_known and index not in self._nv_indices():
            return None
        size = self._c.nv_read_public(index).data_size
        chunk = self._nv_chunk()
        out = bytearray()
        try:
            for offset in range(0, size, chunk):
                out += self._c.nv_read(index, b"", index, min(chunk, size - offset), offset)
        except TpmResponseError as exc:
            if rcs.base_rc(exc.rc) == rcs.NV_UNINITIALIZED:
                return None  # defined, but the write never happened
            raise
        return bytes(out)

    def seal_record(self, handle: int) -> SealRecord | None:
        """The public record of what the object at ``handle`` was sealed to, if kept.

        This is the record as stored; an unseal uses it only when it describes the object
        (its policy is the object's authPolicy).
        TPM commands: TPM2_NV_ReadPublic, TPM2_NV_Read.
        """
        index = seal_record_index(handle)
        try:
            data = self._read_public_index(index)
        except _FAILURES as exc:
            raise self._fail(f"read the seal record 0x{index:08x}", exc) from None
        if data is None:
            return None
        try:
            return SealRecord.from_bytes(data, source=f"NV index 0x{index:08x}")
        except FormatError:
            _log.warning("seal record at NV 0x%08x is damaged; ignoring it", index)
            return None

    def _journal(self, handle: int) -> _SealJournal | None:
        """The seal journal of ``handle`` when it is complete; None when absent or cut short."""
        index = seal_journal_index(handle)
        data = self._read_public_index(index)
        if data is None:
            return None
        try:
            return _SealJournal.from_bytes(data, source=f"NV index 0x{index:08x}")
        except FormatError as exc:
            _log.info("ignoring an incomplete seal journal: %s", exc)
            return None

    def _record_for(self, handle: int, auth_policy: bytes) -> SealRecord | None:
        """The seal record of ``handle`` if it describes an object with this authPolicy."""
        record = self.seal_record(handle)
        if record is None:
            return None
        if record.policy != auth_policy or _record_needs_auth(record) is None:
            _log.info("the seal record of 0x%08x describes another object; ignoring it", handle)
            return None
        return record

    # -- sealing ------------------------------------------------------------------------

    def seal(
        self,
        handle: int,
        secret: Secret,
        selection: PcrSelection,
        *,
        pcr_values: Mapping[int, bytes] | None = None,
        auth: Secret | None = None,
        owner_auth: Secret | None = None,
    ) -> SealRecord:
        """Seal ``secret`` at the persistent ``handle`` under PolicyPCR [+ PolicyAuthValue].

        ``pcr_values`` gives the values to seal to (future values may be given); the current
        values are read for selected PCRs it lacks.  The selection, values and policy are
        written to the public seal record (NV index :func:`seal_record_index`).

        Replacing an object is safe at every step (docs/tpm-objects.md §Replacing a sealed
        object): the new object's public and private parts (the private part is encrypted to
        the primary key) and its record are first written to the seal journal (NV index
        :func:`seal_journal_index`); only then is the old object evicted and the new one made
        persistent, the record written and the journal removed.  Until the old object is
        evicted an unseal releases the old secret; from then on the new one, loaded from the
        journal if it is not persistent yet.  The next seal at ``handle`` first completes or
        drops a journal left by an interrupted one.

        TPM commands: TPM2_PCR_Read, [TPM2_CreatePrimary, TPM2_EvictControl,]
        TPM2_StartAuthSession (salted, decrypt), TPM2_Create, TPM2_NV_DefineSpace,
        TPM2_NV_Write, TPM2_Load, TPM2_EvictControl (old out), TPM2_EvictControl (new in),
        TPM2_FlushContext, TPM2_NV_Write (record), TPM2_NV_UndefineSpace (journal).

        Raises:
            UsageError: empty or oversized secret, or a value of the wrong size.
            AuthError: the owner passphrase was refused.
            TpmError: the TPM failed.
        """
        if not 0 < len(secret) <= _MAX_SECRET_BYTES:
            raise UsageError(f"a sealed secret has 1-{_MAX_SECRET_BYTES} bytes, not {len(secret)}")
        if handle >> 24 != 0x81:
            raise UsageError(f"0x{handle:08x} is not a persistent object handle (0x81xxxxxx)")
        values = dict(pcr_values or {})
        live = [i for i in selection.indices if i not in values]
        if live:
            values.update(self.read_pcrs(selection.alg, live))
        values = {i: values[i] for i in selection.indices}
        try:
            policy = seal_policy_digest(selection, values, with_auth=auth is not None)
        except ValueError as exc:
            raise UsageError(f"cannot seal: {exc}") from None
        record = SealRecord(selection, values, policy)
        # No passphrase, so nothing to guess: keep policy failures out of the DA counter.
        template = keyedhash_seal_template(policy, no_da=auth is None)
        sensitive = sensitive_create(auth.reveal() if auth else b"", secret.reveal())
        try:
            parent = self._ensure_primary(owner_auth)
            self._set_owner_auth(owner_auth)
            self._settle(handle, parent)
            _, parent_name = self._public(parent)
            private, public_out = self._c.create(
                parent, parent_name, sensitive, template, self._crypt_session()
            )
            journal = _SealJournal(record, public_out, private)
            # The commit point of a replacement: from here on the new object can always be
            # recovered (and the old one is still in place until the eviction below).
            self._write_public_index(seal_journal_index(handle), journal.to_bytes(), undefined=True)
            # Nothing secret travels in TPM2_Load (the private part is already encrypted to
            # the parent), so the cheaper password session will do.
            loaded, _ = self._c.load(parent, private, public_out)
            with self._flushing(loaded):
                if handle in self._persistent_handles():
                    self._evict(handle)
                self._c.evict_control(self._owner_auth, loaded, handle)
            self._write_public_index(seal_record_index(handle), record.to_bytes())
            self._undefine(seal_journal_index(handle))
        except _FAILURES as exc:
            raise self._owner_fail(f"seal a secret at 0x{handle:08x}", exc) from None
        finally:
            sensitive[:] = bytes(len(sensitive))
        return record

    def _settle(self, handle: int, parent: int) -> None:
        """Complete or undo a replacement at ``handle`` that was cut short (owner auth set).

        A complete journal whose object is persistent at ``handle``: write the record.  A
        complete journal and nothing at ``handle`` (the old object was evicted): load the
        journal's object, make it persistent, write the record.  Another object at ``handle``
        (the old one, never evicted) or an incomplete journal: the replacement did not
        happen.  Then the journal is removed.
        """
        index = seal_journal_index(handle)
        if index not in self._nv_indices():
            return
        journal = self._journal(handle)
        if journal is not None:
            public = self._object_public(handle)
            if public is None:
                loaded = self._load_journal(journal, parent)
                if loaded is not None:
                    with self._flushing(loaded[0]):
                        self._c.evict_control(self._owner_auth, loaded[0], handle)
                    public = self._object_public(handle)
                    _log.info("completed an interrupted seal at 0x%08x", handle)
            if public is not None and public[0].marshal() == journal.public:
                self._write_public_index(seal_record_index(handle), journal.record.to_bytes())
        self._undefine(index)

    def _load_journal(self, journal: _SealJournal, parent: int) -> tuple[int, bytes] | None:
        """TPM2_Load of the journal's object (its handle and name); None when the primary key
        no longer fits it."""
        try:
            return self._c.load(parent, journal.private, journal.public)
        except TpmResponseError as exc:
            if rcs.base_rc(exc.rc) == rcs.FAILURE:
                raise
            _log.warning("the seal journal's object does not load (%s); dropping it", exc)
            return None

    # -- unsealing ----------------------------------------------------------------------

    def _find_sealed(self, handle: int) -> _Sealed:
        """The object to unseal at ``handle`` and the seal record that describes it.

        A complete seal journal wins: its object is the one at ``handle``, or, when nothing
        is there (a replacement cut short after the eviction), it is loaded from the journal.
        Otherwise the seal record is used if it describes the object.
        """
        journal = self._journal(handle)
        found = self._object_public(handle)
        if found is not None:
            public, name = found
            policy = public.auth_policy
            if journal is not None and public.marshal() == journal.public:
                return _Sealed(handle, name, policy, journal.record, transient=False)
            record = self._record_for(handle, policy)
            return _Sealed(handle, name, policy, record, transient=False)
        if journal is not None:
            parent = self._primary_or_none()
            loaded = self._load_journal(journal, parent) if parent is not None else None
            if loaded is not None:
                obj, name = loaded
                return _Sealed(obj, name, journal.record.policy, journal.record, transient=True)
        raise TpmError(
            f"no sealed secret at 0x{handle:08x}",
            hint="provision it first (e.g. heads totp seal)",
        )

    def _default_selection(self, handle: int, auth_policy: bytes) -> PcrSelection:
        """The PCR selection of an object without a seal record (sealed by shell Heads).

        The known selections for ``handle`` (:data:`SHELL_HEADS_SELECTIONS`) are tried against
        the object's authPolicy with the current PCR values, in Python; the first that gives
        the policy (with or without PolicyAuthValue) is used, else the first one.
        """
        candidates = SHELL_HEADS_SELECTIONS.get(handle, ())
        if not candidates:
            raise UsageError(
                f"no seal record for 0x{handle:08x}: cannot tell which PCRs it is sealed to",
                hint="give the PCR selection (--pcrs sha256:0,1,2,...)",
            )
        for candidate in candidates:
            if self._auth_needed(candidate, auth_policy) is not None:
                return candidate
        return candidates[0]

    def _auth_needed(self, selection: PcrSelection, auth_policy: bytes) -> bool | None:
        """With the current PCR values, does ``auth_policy`` need PolicyAuthValue?

        None when neither PolicyPCR nor PolicyPCR + PolicyAuthValue over the current values
        gives it (the PCRs moved, or the object was sealed to another selection or policy).
        """
        if selection.alg not in self.banks():
            return None
        current = self.read_pcrs(selection.alg, selection.indices)
        pcr_only = policy_pcr(b"\0" * len(auth_policy), selection, current)
        if auth_policy == pcr_only:
            return False
        if auth_policy == policy_auth_value(pcr_only):
            return True
        return None

    def unseal(
        self, handle: int, auth: Secret | None = None, selection: PcrSelection | None = None
    ) -> Secret:
        """Release the secret sealed at ``handle``.

        The PCR selection comes from the seal record unless given; an object without a record
        (sealed by shell Heads) gets the selection Heads uses for that handle.  Whether a
        passphrase is needed is read from the object's policy before the TPM is asked.
        TPM commands: TPM2_ReadPublic, TPM2_NV_ReadPublic, TPM2_NV_Read, [TPM2_PCR_Read,]
        TPM2_StartAuthSession (policy, salted with a passphrase), TPM2_PolicyPCR,
        [TPM2_PolicyAuthValue], TPM2_Unseal (response encrypted).

        Raises:
            UsageError: a passphrase is needed and none was given, or the reverse; or no
                selection is known.
            UnsealError: the PCRs differ from the sealed values (names the PCRs).
            AuthError: wrong passphrase (says how many tries remain).
            LockoutError: dictionary-attack lockout (says how long to wait).
            TpmError: no object at ``handle``, or the TPM failed.
        """
        try:
            sealed = self._find_sealed(handle)
            try:
                return self._unseal(handle, sealed, auth, selection)
            finally:
                if sealed.transient and not self._broken:
                    with contextlib.suppress(*_FAILURES):
                        self._c.flush_context(sealed.obj)
        except _FAILURES as exc:
            raise self._fail(f"unseal 0x{handle:08x}", exc) from None

    def _unseal(
        self,
        handle: int,
        sealed: _Sealed,
        auth: Secret | None,
        selection: PcrSelection | None,
    ) -> Secret:
        record = sealed.record
        if selection is None:
            selection = (
                record.selection
                if record is not None
                else self._default_selection(handle, sealed.policy)
            )
        if record is not None and record.selection == selection:
            needs_auth = _record_needs_auth(record)
        else:
            needs_auth = self._auth_needed(selection, sealed.policy)
        if needs_auth and auth is None:
            raise UsageError(
                f"0x{handle:08x} is sealed with a passphrase as well as to PCRs {selection}",
                hint="give the passphrase (heads tpm unseal --passphrase-fd N)",
            )
        if needs_auth is False and auth is not None:
            raise UsageError(
                f"0x{handle:08x} is sealed to PCRs {selection} without a passphrase",
                hint="leave the passphrase out",
            )
        try:
            crypt = self._crypt_session()
            # With a passphrase the policy session is salted too: its HMAC is then keyed by a
            # session key a bus observer doesn't know, so it can't be brute-forced offline.
            session = self._policy_session(salted=auth is not None)
            done = False
            try:
                self._c.policy_pcr(session.handle, b"", _select(selection))
                if auth is not None:
                    self._c.policy_auth_value(session)
                data = self._c.unseal(
                    sealed.obj, sealed.name, session, auth.reveal() if auth else b"", crypt
                )
                done = True  # the TPM flushed the policy session (no continueSession)
                try:
                    return Secret(bytes(data))
                finally:
                    data[:] = bytes(len(data))
            finally:
                session.wipe()
                if not done and not self._broken:
                    with contextlib.suppress(*_FAILURES):
                        self._c.flush_context(session.handle)
        except _FAILURES as exc:
            raise self._unseal_error(handle, exc, auth is not None, record, selection) from None
        except ValueError as exc:
            raise TpmError(f"unseal 0x{handle:08x}: {exc}") from None

    def _unseal_error(
        self,
        handle: int,
        exc: _Failure,
        with_auth: bool,
        record: SealRecord | None,
        selection: PcrSelection,
    ) -> HeadsError:
        rc = _rc(exc)
        what = f"unseal 0x{handle:08x}"
        if rc == rcs.POLICY_FAIL:
            return self._policy_failure(handle, record, selection)
        if rc in (rcs.AUTH_FAIL, rcs.BAD_AUTH) and with_auth:
            state = self._lockout_state_or_none()
            left = state.tries_left if state else None
            if state is not None and state.in_lockout:
                return LockoutError(
                    f"{what}: wrong passphrase, and the TPM is now in dictionary-attack lockout",
                    recovery_s=state.wait_s or None,
                    rc=_raw_rc(exc),
                    hint=f"wait up to {state.wait_s} s before trying again",
                )
            msg = f"{what}: wrong passphrase"
            if left is not None:
                msg += f" ({left} {'try' if left == 1 else 'tries'} left before lockout)"
            return AuthError(msg, tries_left=left, hint="check the passphrase and try again")
        return self._fail(what, exc)

    def _policy_failure(
        self, handle: int, record: SealRecord | None, selection: PcrSelection
    ) -> UnsealError:
        """Explain a PolicyPCR failure: which PCRs moved since sealing."""
        what = f"the TPM refused to unseal 0x{handle:08x}"
        if record is None:
            return UnsealError(
                f"{what}: the PCRs {selection} differ from the sealed policy",
                hint="it has no seal record (sealed by shell Heads or another tool), so the "
                "changed PCRs cannot be named; if you changed firmware or configuration, "
                "re-seal; if it is sealed to other PCRs, give them (--pcrs)",
            )
        if selection != record.selection:
            return UnsealError(
                f"{what}: it is sealed to PCRs {record.selection}, not {selection}",
                hint="leave out --pcrs to use the selection it was sealed to",
            )
        current = self.read_pcrs(record.selection.alg, record.selection.indices)
        moved = changed_pcrs(record, current)
        if not moved:
            return UnsealError(
                f"{what} although the PCR values match its seal record",
                hint="its policy needs more than PolicyPCR (and PolicyAuthValue); heads "
                "cannot satisfy it",
            )
        names = ", ".join(str(i) for i in moved)
        details = tuple(
            f"PCR {i}: sealed {record.values[i].hex()[:16]}..., now {current[i].hex()[:16]}..."
            for i in moved
        )
        return UnsealError(
            f"{what}: PCR {names} changed since the secret was sealed"
            if len(moved) == 1
            else f"{what}: PCRs {names} changed since the secret was sealed",
            changed_pcrs=moved,
            details=details,
            hint="if you changed firmware, configuration or boot mode, re-seal; otherwise "
            "this machine may have been tampered with",
        )

    def _lockout_state_or_none(self) -> LockoutState | None:
        try:
            return self.lockout_state()
        except TpmError:
            return None

    # -- NV counters (the /boot rollback counter) ---------------------------------------

    def nv_exists(self, index: int) -> bool:
        """TPM command: TPM2_GetCapability(HANDLES)."""
        try:
            return index in self._nv_indices()
        except _FAILURES as exc:
            raise self._fail("list NV indices", exc) from None

    def nv_counter_create(self, owner_auth: Secret | None = None) -> int:
        """Define a counter at a random index 0x01XXXXXX (as Heads) and increment it once.

        Attributes ownerread|authread|authwrite|nt=counter, empty index auth (as Heads), plus
        no_da (docs/tpm-objects.md §NV counters).  A new counter is unreadable until first
        incremented, and starts at the highest value any counter on this TPM ever reached,
        not at 0.
        TPM commands: TPM2_NV_DefineSpace, TPM2_NV_Increment.
        """
        self._set_owner_auth(owner_auth)
        for _ in range(16):
            index = 0x01000000 | secrets.randbelow(0x00800000)
            public = NvPublic.build(
                index,
                TPMA_NV.OWNERREAD
                | TPMA_NV.AUTHREAD
                | TPMA_NV.AUTHWRITE
                # Unlike Heads, NO_DA: the index auth is empty, so there is nothing to
                # guess, and the counter must stay usable while the TPM is in lockout.
                | TPMA_NV.NO_DA
                | (NT.COUNTER << NV_TYPE_SHIFT),
                8,
            )
            try:
                self._c.nv_define_space(self._owner_auth, public)
                self._nv_known.add(index)
            except _FAILURES as exc:
                if _rc(exc) == rcs.NV_DEFINED:
                    continue
                raise self._owner_fail("create an NV counter", exc) from None
            try:
                self._c.nv_increment(index, b"", index)
            except _FAILURES as exc:
                raise self._fail(f"increment new counter 0x{index:08x}", exc) from None
            return index
        raise TpmError("could not find a free NV index for the counter after 16 tries")

    def _counter_handle(self, index: int) -> int:
        if index not in self._nv_indices():
            raise TpmError(
                f"no NV counter 0x{index:08x} in this TPM",
                hint="the TPM was reset or this /boot was signed on another machine; "
                "re-sign /boot to create a new counter",
            )
        return index

    def nv_counter_read(self, index: int) -> int:
        """TPM command: TPM2_NV_Read (8 bytes, big-endian)."""
        try:
            nvh = self._counter_handle(index)
            try:
                data = self._c.nv_read(nvh, b"", nvh, 8, 0)
            except TpmResponseError as exc:
                if rcs.base_rc(exc.rc) != rcs.LOCKOUT:
                    raise
                # A Heads-made counter is DA-protected; the owner hierarchy's (usually
                # empty) auth is not, so it still reads the counter during a lockout.
                data = self._c.nv_read(RH.OWNER, self._owner_auth, nvh, 8, 0)
            return int.from_bytes(data, "big")
        except _FAILURES as exc:
            if _rc(exc) == rcs.NV_UNINITIALIZED:
                raise TpmError(
                    f"NV counter 0x{index:08x} was never incremented, so it has no value",
                    rc=_raw_rc(exc),
                ) from None
            raise self._fail(f"read NV counter 0x{index:08x}", exc) from None

    def nv_counter_increment(self, index: int) -> int:
        """TPM commands: TPM2_NV_Increment, TPM2_NV_Read.  Returns the new value."""
        try:
            nvh = self._counter_handle(index)
            self._c.nv_increment(nvh, b"", nvh)
        except _FAILURES as exc:
            raise self._fail(f"increment NV counter 0x{index:08x}", exc) from None
        return self.nv_counter_read(index)

    # -- ownership and status -----------------------------------------------------------

    def lockout_state(self) -> LockoutState:
        """TPM command: TPM2_GetCapability(TPM_PROPERTIES: LOCKOUT_*, PERMANENT)."""
        try:
            props = self._c.properties(PT.PERMANENT, 32)
        except _FAILURES as exc:
            raise self._fail("read the dictionary-attack state", exc) from None
        return LockoutState(
            failed_tries=props.get(PT.LOCKOUT_COUNTER, 0),
            max_tries=props.get(PT.MAX_AUTH_FAIL, 0),
            recovery_interval_s=props.get(PT.LOCKOUT_INTERVAL, 0),
            lockout_recovery_s=props.get(PT.LOCKOUT_RECOVERY, 0),
            in_lockout=bool(props.get(PT.PERMANENT, 0) & TPMA_PERMANENT_IN_LOCKOUT),
            owner_auth_set=bool(props.get(PT.PERMANENT, 0) & TPMA_PERMANENT_OWNER_AUTH_SET),
        )

    def info(self) -> TpmInfo:
        """TPM command: TPM2_GetCapability(TPM_PROPERTIES fixed, HANDLES persistent)."""
        try:
            props = self._c.properties(PT.FIXED, 64)
            persistent = self._persistent_handles()
        except _FAILURES as exc:
            raise self._fail("read the TPM's properties", exc) from None

        def text(*keys: int) -> str:
            raw = b"".join(props.get(k, 0).to_bytes(4, "big") for k in keys)
            return " ".join(raw.replace(b"\0", b"").decode("ascii", "replace").split())

        fw1, fw2 = (
            props.get(PT.FIRMWARE_VERSION_1, 0),
            props.get(PT.FIRMWARE_VERSION_2, 0),
        )
        revision = props.get(PT.REVISION, 0)
        return TpmInfo(
            manufacturer=text(PT.MANUFACTURER),
            vendor=text(
                PT.VENDOR_STRING_1,
                PT.VENDOR_STRING_2,
                PT.VENDOR_STRING_3,
                PT.VENDOR_STRING_4,
            ),
            firmware_version=f"{fw1:08x}.{fw2:08x}",
            spec_revision=f"{revision // 100}.{revision % 100:02d}",
            banks=self.banks(),
            endorsement_key=any(h in persistent for h in _EK_HANDLES),
            lockout=self.lockout_state(),
            objects={h: name for h, name in _HEADS_HANDLES.items() if h in persistent},
        )

    def lock_platform_hierarchy(self) -> None:
        """Set the platform hierarchy's auth to 32 random bytes nobody keeps (before kexec).

        The booted OS then cannot clear the TPM or take over the platform hierarchy until the
        next power cycle (Heads' `tpmr kexec_finalize`).  TPM command: TPM2_HierarchyChangeAuth.
        """
        new_auth = bytearray(secrets.token_bytes(32))
        try:
            self._c.hierarchy_change_auth(RH.PLATFORM, b"", bytes(new_auth))
        except _FAILURES as exc:
            raise self._fail("lock the platform hierarchy", exc) from None
        finally:
            new_auth[:] = bytes(32)

    def reset(self, owner_auth: Secret | None = None) -> None:
        """Clear the TPM and take ownership (Heads' TPM reset; docs/tpm-objects.md §TPM reset).

        Everything in the owner hierarchy is destroyed (sealed secrets, counters, the primary
        key).  Then: owner auth set (when given), dictionary-attack parameters 10 tries /
        1 h recovery / 24 h lockout recovery, and a new primary key at 0x81000000.
        TPM commands: TPM2_ClearControl, TPM2_Clear (platform, else lockout hierarchy),
        TPM2_HierarchyChangeAuth, TPM2_DictionaryAttackParameters, TPM2_CreatePrimary,
        TPM2_EvictControl.

        Raises:
            TpmError: neither the platform nor the lockout hierarchy may clear the TPM.
        """
        cleared = False
        for hierarchy in (RH.PLATFORM, RH.LOCKOUT):
            try:
                if hierarchy == RH.PLATFORM:
                    self._c.clear_control(RH.PLATFORM, b"", disable=False)
                self._c.clear(hierarchy, b"")
                cleared = True
                break
            except _FAILURES as exc:
                _log.debug("TPM2_Clear through 0x%x refused: %s", int(hierarchy), exc)
                if isinstance(exc, TransportError) or _rc(exc) in (rcs.FAILURE, rcs.LOCKOUT):
                    raise self._fail("clear the TPM", exc) from None
        if not cleared:
            raise TpmError(
                "clear the TPM: both the platform and the lockout hierarchy refused",
                hint="the platform hierarchy is locked after boot; reset from the firmware "
                "(boot the heads payload) or with the TPM's physical-presence menu",
            )
        self._owner_auth = b""
        self._forget_all()
        try:
            self._c.dictionary_attack_parameters(b"", 10, 3600, 86400)
            if owner_auth is not None:
                self._c.hierarchy_change_auth(RH.OWNER, b"", owner_auth.reveal())
            self._banks = None
            self._ensure_primary(owner_auth)
        except _FAILURES as exc:
            raise self._fail("take ownership of the cleared TPM", exc) from None


def _bitmap(indices: Iterable[int]) -> bytes:
    bits = bytearray(3)
    for i in indices:
        bits[i // 8] |= 1 << (i % 8)
    return bytes(bits)


def _select(selection: PcrSelection) -> PcrSelect:
    return PcrSelect(selection.alg.tpm_alg_id, selection.bitmap())


def _pcr_composite(selection: PcrSelection, values: Mapping[int, bytes]) -> bytes:
    return hashlib.sha256(b"".join(values[i] for i in selection.indices)).digest()


@contextlib.contextmanager
def open_tpm(tcti: str, *, timeout_s: float | None = None) -> Iterator[Tpm]:
    """Connect to the TPM named by a TCTI string and start it if needed.

    Every command gets a deadline (``timeout_s``, else ``$HEADS_TPM_TIMEOUT``, else 30 s); a
    ``device:`` path must be a TPM character device (docs/tpm-objects.md §Reaching the TPM).

    Raises:
        UsageError: ``$HEADS_TPM_TIMEOUT`` is not a number of seconds.
        TpmNotFoundError: the device node does not exist.
        TpmUnreachableError: the TCTI is malformed, names something that is not a TPM, or
            nothing answers there in time.
        TpmFailureModeError: the TPM answers only with TPM_RC_FAILURE.
    """
    transport = open_transport(tcti, timeout_s)
    tpm = DirectTpm(TpmCommands(transport), tcti)
    try:
        tpm.startup()
        if tcti.startswith("swtpm"):
            # swtpm has no resource manager: what a killed client left loaded stays there.
            tpm.flush_leftovers()
        yield tpm
    finally:
        tpm.close()
