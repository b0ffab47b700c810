"""TPM 2.0 adapter over the tpm2-pytss ESAPI.

One ``Tpm`` protocol and one backend, ``EsapiTpm``.  Each method is one TPM operation (the
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
import os
import secrets
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from heads.adapters.tcti import (
    TIMEOUT_ENV,
    SwtpmTcti,
    check_device,
    parse_swtpm,
    timeout_from_env,
)
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

# ESYS prints a WARNING/ERROR line on stderr for every TPM error, expected ones included (a
# refused unseal is a normal outcome here).  Silence it unless the user asked for TSS logs.
os.environ.setdefault("TSS2_LOG", "all+NONE")

from tpm2_pytss import ESAPI, TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_NT,
    TPM2_PT,
    TPM2_SE,
    TPM2_SU,
    TPMA_NV,
    TPMA_OBJECT,
    TPMA_PERMANENT,
    TPMA_SESSION,
)
from tpm2_pytss.types import (
    TPM2B_NV_PUBLIC,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPML_DIGEST_VALUES,
    TPML_PCR_SELECTION,
    TPMS_NV_PUBLIC,
    TPMS_SENSITIVE_CREATE,
    TPMT_HA,
    TPMT_PUBLIC,
    TPMT_SYM_DEF,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)

__all__ = [
    "DISK_KEY_HANDLE",
    "PRIMARY_HANDLE",
    "SHELL_HEADS_SELECTIONS",
    "TOTP_HANDLE",
    "EsapiTpm",
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

# TPM 2.0 Part 2 §6.6 response codes (format-1 codes with the parameter/session bits masked).
_RC_FMT1: Final = 0x080
_RC_INITIALIZE: Final = 0x100
_RC_FAILURE: Final = 0x101
_RC_HANDLE: Final = 0x08B
_RC_AUTH_FAIL: Final = 0x08E
_RC_POLICY_FAIL: Final = 0x09D
_RC_BAD_AUTH: Final = 0x0A2
_RC_NV_UNINITIALIZED: Final = 0x14A
_RC_NV_DEFINED: Final = 0x14C
_RC_LOCKOUT: Final = 0x921
_RC_NV_RATE: Final = 0x920
_TSS_LAYER_MASK: Final = 0xFFFF0000
# TPM 2.0 Part 2 §6.13 properties tpm2-pytss does not name.
_PT_VENDOR_STRING_1: Final = 0x106
_PT_VENDOR_STRING_2: Final = 0x107
_PT_VENDOR_STRING_3: Final = 0x108
_PT_VENDOR_STRING_4: Final = 0x109
_PT_FIRMWARE_VERSION_1: Final = 0x10B
_PT_FIRMWARE_VERSION_2: Final = 0x10C
_PT_NV_BUFFER_MAX: Final = 0x12C
_NV_CHUNK_DEFAULT: Final = 512
_TCTI_LAYER: Final = 0x000A0000
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


def _base_rc(rc: int) -> int:
    """Strip the handle/session/parameter number from a TPM response code."""
    if rc & _TSS_LAYER_MASK:
        return rc
    if rc & _RC_FMT1:
        return rc & 0xBF
    return rc


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
    """An object found for unsealing: its ESYS_TR, authPolicy and describing seal record."""

    obj: ESYS_TR
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


def _tcti_error(tcti: str, exc: TSS2_Exception) -> TpmError:
    kind, _, conf = tcti.partition(":")
    if kind == "device":
        path = conf or "/dev/tpmrm0"
        return TpmUnreachableError(
            f"cannot open the TPM at {path}: {exc}",
            rc=exc.rc,
            hint="is another program holding /dev/tpm0? use /dev/tpmrm0; are you root?",
        )
    if _base_rc(exc.rc) in (0xA0015, 0xA000B, 0xA0003):  # not supported / bad value / bad ref
        return TpmUnreachableError(
            f"bad TCTI {tcti!r}: {exc}",
            rc=exc.rc,
            hint="use device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321",
        )
    return TpmUnreachableError(
        f"cannot reach the TPM at {tcti!r}: {exc}",
        rc=exc.rc,
        hint="is swtpm running and listening there?",
    )


class EsapiTpm:
    """The TPM through tpm2-pytss's ESAPI.  Use :func:`open_tpm` to get one."""

    def __init__(self, esapi: ESAPI, tcti: str, transport: SwtpmTcti | None = None) -> None:
        self._e = esapi
        self._tcti = tcti
        self._transport = transport  # our own TCTI (swtpm), None for tpm2-tss' TCTIs
        self._banks: tuple[HashAlg, ...] | None = None
        # ESYS_TRs of persistent objects and NV indices, looked up once: ESYS keeps every
        # ESYS_TR in a list it searches on each command, so fresh lookups per call add up.
        self._trs: dict[int, ESYS_TR] = {}
        self._session: ESYS_TR | None = None  # see _crypt_session
        self._nv_buffer_max: int | None = None  # see _nv_chunk

    # -- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        if self._session is not None and not self._broken:
            with contextlib.suppress(TSS2_Exception):
                self._e.flush_context(self._session)
        self._e.close()
        if self._transport is not None:
            self._transport.close()

    @property
    def _broken(self) -> bool:
        """The connection was lost or the TPM missed a deadline: no more commands."""
        return self._transport is not None and self._transport.broken is not None

    def _fail(self, what: str, exc: TSS2_Exception) -> TpmError:
        """Translate a TSS error for the operation ``what`` into our error tree."""
        rc = _base_rc(exc.rc)
        if rc == _RC_FAILURE:
            return TpmFailureModeError(
                f"{what}: the TPM is in failure mode",
                rc=exc.rc,
                hint="power-cycle the machine; if it persists the TPM needs a firmware reset",
            )
        if rc == _RC_LOCKOUT:
            return self._lockout_error(what, exc.rc)
        # After a TCTI failure ESYS refuses every later call with "wrong order" (BAD_SEQUENCE):
        # what failed is still the connection.
        if exc.rc & _TSS_LAYER_MASK == _TCTI_LAYER or self._broken:
            transport = self._transport
            if transport is not None and transport.timed_out:
                return TpmUnreachableError(
                    f"{what}: the TPM at {self._tcti!r} did not answer within "
                    f"{transport.timeout_s:g} s",
                    rc=exc.rc,
                    hint=f"is it a TPM, and is it alive? (a slow TPM may need a longer "
                    f"deadline: ${TIMEOUT_ENV} seconds)",
                )
            return TpmUnreachableError(
                f"{what}: lost the connection to the TPM ({exc})",
                rc=exc.rc,
                hint="is swtpm still running?",
            )
        return TpmError(f"{what}: {exc} (rc 0x{exc.rc:x})", rc=exc.rc)

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
            self._e.startup(TPM2_SU.CLEAR)
        except TSS2_Exception as exc:
            if _base_rc(exc.rc) == _RC_FAILURE and self._tcti.startswith("swtpm"):
                raise TpmFailureModeError(
                    f"start the TPM: the swtpm at {self._tcti!r} answers only TPM_RC_FAILURE",
                    rc=exc.rc,
                    hint="swtpm was started without being initialised: start it with "
                    "--flags not-need-init,startup-clear (and manufacture its state with "
                    "swtpm_setup --tpm2 first)",
                ) from None
            if _base_rc(exc.rc) != _RC_INITIALIZE:
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
                _, data = self._e.get_capability(TPM2_CAP.HANDLES, first, 64)
                for handle in (int(h) for h in data.data.handles):
                    tr = self._e.tr_from_tpmpublic(handle)
                    self._e.flush_context(tr)
                    _log.info("flushed 0x%08x, left loaded by an earlier client", handle)
        except TSS2_Exception as exc:
            raise self._fail("flush what an earlier client left loaded", exc) from None

    def _tr(self, handle: int) -> ESYS_TR:
        """The ESYS_TR of a persistent object or NV index (TPM2_ReadPublic/NV_ReadPublic)."""
        tr = self._trs.get(handle)
        if tr is None:
            tr = self._e.tr_from_tpmpublic(handle)
            self._trs[handle] = tr
        return tr

    def _forget_all(self) -> None:
        """Drop every ESYS_TR (after TPM2_Clear they name nothing)."""
        for tr in self._trs.values():
            with contextlib.suppress(TSS2_Exception):
                self._e.tr_close(tr)
        self._trs.clear()

    def _evict(self, handle: int) -> None:
        """TPM2_EvictControl of the persistent object at ``handle`` (ESYS frees its ESYS_TR)."""
        self._e.evict_control(ESYS_TR.OWNER, self._tr(handle), handle)
        self._trs.pop(handle, None)

    def _undefine(self, index: int) -> None:
        """TPM2_NV_UndefineSpace of ``index`` (ESYS frees its ESYS_TR)."""
        self._e.nv_undefine_space(self._tr(index), ESYS_TR.OWNER)
        self._trs.pop(index, None)

    @contextlib.contextmanager
    def _flushing(self, handle: ESYS_TR) -> Iterator[ESYS_TR]:
        try:
            yield handle
        finally:
            with contextlib.suppress(TSS2_Exception):
                self._e.flush_context(handle)

    def _persistent_handles(self) -> set[int]:
        handles: set[int] = set()
        prop = _PERSISTENT_FIRST
        while True:
            more, data = self._e.get_capability(TPM2_CAP.HANDLES, prop, 64)
            batch = [int(h) for h in data.data.handles]
            handles.update(batch)
            if not more or not batch:
                return handles
            prop = max(batch) + 1

    def _nv_indices(self) -> set[int]:
        indices: set[int] = set()
        prop = _NV_FIRST
        while True:
            more, data = self._e.get_capability(TPM2_CAP.HANDLES, prop, 64)
            batch = [int(h) for h in data.data.handles if (int(h) >> 24) == 1]
            indices.update(batch)
            if not more or not batch:
                return indices
            prop = max(batch) + 1

    def _policy_session(self, *, salted: bool) -> ESYS_TR:
        key = self._ensure_primary() if salted else ESYS_TR.NONE
        symmetric = (
            TPMT_SYM_DEF(
                algorithm=TPM2_ALG.AES,
                keyBits=TPMU_SYM_KEY_BITS(aes=128),
                mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
            )
            if salted
            else TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
        )
        return self._e.start_auth_session(
            key, ESYS_TR.NONE, TPM2_SE.POLICY, symmetric, TPM2_ALG.SHA256
        )

    def _crypt_session(self, attrs: int) -> ESYS_TR:
        """The connection's HMAC session salted with the primary key, AES-128-CFB.

        Made once per connection and kept (like the enc/dec sessions shell Heads starts at
        boot), with its attributes set per command: DECRYPT encrypts a command's first
        parameter (a secret being sealed), ENCRYPT a response's (an unsealed secret).
        """
        if self._session is None:
            primary = self._ensure_primary()
            self._session = self._e.start_auth_session(
                tpm_key=primary,
                bind=ESYS_TR.NONE,
                session_type=TPM2_SE.HMAC,
                symmetric=TPMT_SYM_DEF(
                    algorithm=TPM2_ALG.AES,
                    keyBits=TPMU_SYM_KEY_BITS(aes=128),
                    mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
                ),
                auth_hash=TPM2_ALG.SHA256,
            )
        self._e.trsess_set_attributes(
            self._session,
            attrs | TPMA_SESSION.CONTINUESESSION,
            TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.DECRYPT | TPMA_SESSION.ENCRYPT,
        )
        return self._session

    # -- PCRs ---------------------------------------------------------------------------

    def banks(self) -> tuple[HashAlg, ...]:
        """TPM command: TPM2_GetCapability(PCRS).  Banks with at least one PCR allocated."""
        if self._banks is None:
            try:
                _, data = self._e.get_capability(TPM2_CAP.PCRS, 0, 1)
            except TSS2_Exception as exc:
                raise self._fail("read the PCR banks", exc) from None
            found = []
            for sel in data.data.assignedPCR:
                if any(bytes(sel.pcrSelect)[: sel.sizeofSelect]):
                    with contextlib.suppress(ValueError):
                        found.append(HashAlg.from_tpm_alg_id(int(sel.hash)))
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
            try:
                _, sel_out, digests = self._e.pcr_read(TPML_PCR_SELECTION.parse(sel))
            except TSS2_Exception as exc:
                raise self._fail(f"read PCRs {sel}", exc) from None
            returned = []
            for s in sel_out:
                bits = bytes(s.pcrSelect)[: s.sizeofSelect]
                returned += [i for i in range(len(bits) * 8) if bits[i // 8] >> (i % 8) & 1]
            for index, digest in zip(returned, digests, strict=True):
                out[index] = bytes(digest)
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
            ha = TPMT_HA(hashAlg=alg.tpm_alg_id)
            setattr(ha.digest, alg.value.replace("_", ""), digest)
            values.append(ha)
        try:
            self._e.pcr_extend(ESYS_TR.PCR0 + pcr, TPML_DIGEST_VALUES(values))
        except TSS2_Exception as exc:
            raise self._fail(f"extend PCR {pcr}", exc) from None

    def get_random(self, size: int) -> bytes:
        """TPM command: TPM2_GetRandom (repeated: a TPM returns at most one digest's worth)."""
        out = b""
        try:
            while len(out) < size:
                out += bytes(self._e.get_random(min(32, size - len(out))))
        except TSS2_Exception as exc:
            raise self._fail("get random bytes", exc) from None
        return out

    def policy_pcr_digest_trial(
        self, selection: PcrSelection, pcr_values: Mapping[int, bytes] | None = None
    ) -> bytes:
        """The TPM's own PolicyPCR digest (trial session; current values when none given).

        TPM commands: TPM2_StartAuthSession(TRIAL), TPM2_PolicyPCR, TPM2_PolicyGetDigest.
        """
        try:
            session = self._e.start_auth_session(
                ESYS_TR.NONE,
                ESYS_TR.NONE,
                TPM2_SE.TRIAL,
                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                TPM2_ALG.SHA256,
            )
            with self._flushing(session):
                pcr_digest = b""
                if pcr_values is not None:
                    pcr_digest = _pcr_composite(selection, pcr_values)
                self._e.policy_pcr(session, pcr_digest, _tpml(selection))
                return bytes(self._e.policy_get_digest(session))
        except TSS2_Exception as exc:
            raise self._fail("compute a PolicyPCR digest", exc) from None

    # -- persistent objects -------------------------------------------------------------

    def object_exists(self, handle: int) -> bool:
        """Whether a sealed object is at ``handle``, counting one whose replacement was cut
        short after the old object was evicted (its seal journal still holds it).

        TPM commands: TPM2_GetCapability(HANDLES) [, TPM2_NV_ReadPublic, TPM2_NV_Read].
        """
        try:
            return handle in self._persistent_handles() or self._journal(handle) is not None
        except TSS2_Exception as exc:
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
        except TSS2_Exception as exc:
            raise self._owner_fail(f"remove the object at 0x{handle:08x}", exc) from None

    def _set_owner_auth(self, owner_auth: Secret | None) -> None:
        self._e.tr_set_auth(ESYS_TR.OWNER, owner_auth.reveal() if owner_auth else b"")

    def _owner_fail(self, what: str, exc: TSS2_Exception) -> HeadsError:
        if _base_rc(exc.rc) in (_RC_AUTH_FAIL, _RC_BAD_AUTH):
            state = self._lockout_state_or_none()
            left = state.tries_left if state else None
            return AuthError(
                f"{what}: the TPM owner passphrase was refused"
                + (f" ({left} tries left before lockout)" if left is not None else ""),
                tries_left=left,
                hint="give the owner passphrase set at TPM reset (--owner-passphrase-fd)",
            )
        return self._fail(what, exc)

    def _ensure_primary(self, owner_auth: Secret | None = None) -> ESYS_TR:
        """The storage primary key at 0x81000000, created (ECC P-256, AES-128-CFB) if absent.

        Whatever storage key is there is used as is: shell Heads makes an RSA one.
        TPM commands: TPM2_CreatePrimary, TPM2_EvictControl.
        """
        existing = self._primary_or_none()
        if existing is not None:
            return existing
        self._set_owner_auth(owner_auth)
        template = TPMT_PUBLIC.parse(
            "ecc256:aes128cfb",
            objectAttributes=TPMA_OBJECT.RESTRICTED
            | TPMA_OBJECT.DECRYPT
            | TPMA_OBJECT.FIXEDTPM
            | TPMA_OBJECT.FIXEDPARENT
            | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.USERWITHAUTH
            | TPMA_OBJECT.NODA,
        )
        transient = self._e.create_primary(None, TPM2B_PUBLIC(publicArea=template))[0]
        with self._flushing(transient):
            self._trs[PRIMARY_HANDLE] = self._e.evict_control(
                ESYS_TR.OWNER, transient, PRIMARY_HANDLE
            )
        _log.info("created the storage primary key at 0x%08x", PRIMARY_HANDLE)
        return self._tr(PRIMARY_HANDLE)

    def _primary_or_none(self) -> ESYS_TR | None:
        if PRIMARY_HANDLE in self._trs or PRIMARY_HANDLE in self._persistent_handles():
            return self._tr(PRIMARY_HANDLE)
        return None

    def _object_public(self, handle: int) -> TPM2B_PUBLIC | None:
        """The public area of the persistent object at ``handle`` (TPM2_ReadPublic), if any."""
        if handle not in self._trs and handle not in self._persistent_handles():
            return None
        public, _, _ = self._e.read_public(self._tr(handle))
        return public

    # -- public NV indices: seal records and seal journals ------------------------------

    def _nv_chunk(self) -> int:
        """TPM_PT_NV_BUFFER_MAX: the most one TPM2_NV_Read/NV_Write may carry."""
        if self._nv_buffer_max is None:
            _, data = self._e.get_capability(TPM2_CAP.TPM_PROPERTIES, _PT_NV_BUFFER_MAX, 1)
            props = {int(p.property): int(p.value) for p in data.data.tpmProperties}
            self._nv_buffer_max = max(64, props.get(_PT_NV_BUFFER_MAX, _NV_CHUNK_DEFAULT))
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
        nvh: ESYS_TR | None = None
        if not undefined and index in self._nv_indices():
            nvh = self._tr(index)
            pub, _ = self._e.nv_read_public(nvh)
            if pub.nvPublic.dataSize != len(data):
                self._undefine(index)
                nvh = None
        if nvh is None:
            nvh = self._e.nv_define_space(
                b"",
                TPM2B_NV_PUBLIC(
                    nvPublic=TPMS_NV_PUBLIC(
                        nvIndex=index,
                        nameAlg=TPM2_ALG.SHA256,
                        attributes=TPMA_NV.OWNERWRITE
                        | TPMA_NV.OWNERREAD
                        | TPMA_NV.AUTHREAD
                        | TPMA_NV.NO_DA
                        | (TPM2_NT.ORDINARY << TPMA_NV.TPM2_NT_SHIFT),
                        dataSize=len(data),
                    )
                ),
            )
            self._trs[index] = nvh
        chunk = self._nv_chunk()
        for offset in range(0, len(data), chunk):
            self._e.nv_write(nvh, data[offset : offset + chunk], offset, ESYS_TR.OWNER)

    def _read_public_index(self, index: int) -> bytes | None:
        """The bytes of a public index; None when it is not defined or was never written.

        TPM commands: TPM2_GetCapability(HANDLES), TPM2_NV_ReadPublic, TPM2_NV_Read.
        """
        if index not in self._trs and index not in self._nv_indices():
            return None
        nvh = self._tr(index)
        pub, _ = self._e.nv_read_public(nvh)
        size = int(pub.nvPublic.dataSize)
        chunk = self._nv_chunk()
        out = bytearray()
        try:
            for offset in range(0, size, chunk):
                out += bytes(self._e.nv_read(nvh, min(chunk, size - offset), offset, nvh))
        except TSS2_Exception as exc:
            if _base_rc(exc.rc) == _RC_NV_UNINITIALIZED:
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
        except TSS2_Exception as exc:
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
        attrs = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.ADMINWITHPOLICY
        if auth is None:
            # No passphrase, so nothing to guess: keep policy failures out of the DA counter.
            attrs |= TPMA_OBJECT.NODA
        public = TPMT_PUBLIC(
            type=TPM2_ALG.KEYEDHASH,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=attrs,
            authPolicy=policy,
        )
        public.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG.NULL
        sensitive = TPM2B_SENSITIVE_CREATE(
            TPMS_SENSITIVE_CREATE(userAuth=auth.reveal() if auth else b"", data=secret.reveal())
        )
        try:
            parent = self._ensure_primary(owner_auth)
            self._set_owner_auth(owner_auth)
            self._settle(handle, parent)
            private, public_out, *_ = self._e.create(
                parent,
                sensitive,
                TPM2B_PUBLIC(publicArea=public),
                session1=self._crypt_session(TPMA_SESSION.DECRYPT),
            )
            journal = _SealJournal(record, public_out.marshal(), private.marshal())
            # The commit point of a replacement: from here on the new object can always be
            # recovered (and the old one is still in place until the eviction below).
            self._write_public_index(seal_journal_index(handle), journal.to_bytes(), undefined=True)
            # Nothing secret travels in TPM2_Load (the private part is already encrypted to
            # the parent), so the cheaper password session will do.
            loaded = self._e.load(parent, private, public_out)
            with self._flushing(loaded):
                if handle in self._persistent_handles():
                    self._evict(handle)
                self._trs[handle] = self._e.evict_control(ESYS_TR.OWNER, loaded, handle)
            self._write_public_index(seal_record_index(handle), record.to_bytes())
            self._undefine(seal_journal_index(handle))
        except TSS2_Exception as exc:
            raise self._owner_fail(f"seal a secret at 0x{handle:08x}", exc) from None
        return record

    def _settle(self, handle: int, parent: ESYS_TR) -> None:
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
                    with self._flushing(loaded):
                        self._trs[handle] = self._e.evict_control(ESYS_TR.OWNER, loaded, handle)
                    public = self._object_public(handle)
                    _log.info("completed an interrupted seal at 0x%08x", handle)
            if public is not None and public.marshal() == journal.public:
                self._write_public_index(seal_record_index(handle), journal.record.to_bytes())
        self._undefine(index)

    def _load_journal(self, journal: _SealJournal, parent: ESYS_TR) -> ESYS_TR | None:
        """TPM2_Load of the journal's object; None when the primary key no longer fits it."""
        public, _ = TPM2B_PUBLIC.unmarshal(journal.public)
        private, _ = TPM2B_PRIVATE.unmarshal(journal.private)
        try:
            return self._e.load(parent, private, public)
        except TSS2_Exception as exc:
            if exc.rc & _TSS_LAYER_MASK == _TCTI_LAYER or _base_rc(exc.rc) == _RC_FAILURE:
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
        public = self._object_public(handle)
        if public is not None:
            policy = bytes(public.publicArea.authPolicy)
            if journal is not None and public.marshal() == journal.public:
                return _Sealed(self._tr(handle), policy, journal.record, transient=False)
            return _Sealed(self._tr(handle), policy, self._record_for(handle, policy), False)
        if journal is not None:
            parent = self._primary_or_none()
            loaded = self._load_journal(journal, parent) if parent is not None else None
            if loaded is not None:
                return _Sealed(loaded, journal.record.policy, journal.record, transient=True)
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
                if sealed.transient:
                    with contextlib.suppress(TSS2_Exception):
                        self._e.flush_context(sealed.obj)
        except TSS2_Exception as exc:
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
        obj = sealed.obj
        try:
            # With a passphrase the policy session is salted too: its HMAC is then keyed by a
            # session key a bus observer doesn't know, so it can't be brute-forced offline.
            session = self._policy_session(salted=auth is not None)
            with self._flushing(session):
                self._e.policy_pcr(session, b"", _tpml(selection))
                if auth is not None:
                    self._e.policy_auth_value(session)
                    self._e.tr_set_auth(obj, auth.reveal())
                try:
                    data = self._e.unseal(
                        obj, session1=session, session2=self._crypt_session(TPMA_SESSION.ENCRYPT)
                    )
                    return Secret(bytes(data))
                finally:
                    self._e.tr_set_auth(obj, b"")
        except TSS2_Exception as exc:
            raise self._unseal_error(handle, exc, auth is not None, record, selection) from None

    def _unseal_error(
        self,
        handle: int,
        exc: TSS2_Exception,
        with_auth: bool,
        record: SealRecord | None,
        selection: PcrSelection,
    ) -> HeadsError:
        rc = _base_rc(exc.rc)
        what = f"unseal 0x{handle:08x}"
        if rc == _RC_POLICY_FAIL:
            return self._policy_failure(handle, record, selection)
        if rc in (_RC_AUTH_FAIL, _RC_BAD_AUTH) and with_auth:
            state = self._lockout_state_or_none()
            left = state.tries_left if state else None
            if state is not None and state.in_lockout:
                return LockoutError(
                    f"{what}: wrong passphrase, and the TPM is now in dictionary-attack lockout",
                    recovery_s=state.wait_s or None,
                    rc=exc.rc,
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
        except TSS2_Exception as exc:
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
            public = TPM2B_NV_PUBLIC(
                nvPublic=TPMS_NV_PUBLIC(
                    nvIndex=index,
                    nameAlg=TPM2_ALG.SHA256,
                    attributes=TPMA_NV.OWNERREAD
                    | TPMA_NV.AUTHREAD
                    | TPMA_NV.AUTHWRITE
                    # Unlike Heads, NO_DA: the index auth is empty, so there is nothing to
                    # guess, and the counter must stay usable while the TPM is in lockout.
                    | TPMA_NV.NO_DA
                    | (TPM2_NT.COUNTER << TPMA_NV.TPM2_NT_SHIFT),
                    dataSize=8,
                )
            )
            try:
                nvh = self._e.nv_define_space(b"", public)
                self._trs[index] = nvh
            except TSS2_Exception as exc:
                if _base_rc(exc.rc) == _RC_NV_DEFINED:
                    continue
                raise self._owner_fail("create an NV counter", exc) from None
            try:
                self._e.nv_increment(nvh, nvh)
            except TSS2_Exception as exc:
                raise self._fail(f"increment new counter 0x{index:08x}", exc) from None
            return index
        raise TpmError("could not find a free NV index for the counter after 16 tries")

    def _counter_handle(self, index: int) -> ESYS_TR:
        if index not in self._nv_indices():
            raise TpmError(
                f"no NV counter 0x{index:08x} in this TPM",
                hint="the TPM was reset or this /boot was signed on another machine; "
                "re-sign /boot to create a new counter",
            )
        return self._tr(index)

    def nv_counter_read(self, index: int) -> int:
        """TPM command: TPM2_NV_Read (8 bytes, big-endian)."""
        try:
            nvh = self._counter_handle(index)
            try:
                data = self._e.nv_read(nvh, 8, 0, nvh)
            except TSS2_Exception as exc:
                if _base_rc(exc.rc) != _RC_LOCKOUT:
                    raise
                # A Heads-made counter is DA-protected; the owner hierarchy's (usually
                # empty) auth is not, so it still reads the counter during a lockout.
                data = self._e.nv_read(nvh, 8, 0, ESYS_TR.OWNER)
            return int.from_bytes(bytes(data), "big")
        except TSS2_Exception as exc:
            if _base_rc(exc.rc) == _RC_NV_UNINITIALIZED:
                raise TpmError(
                    f"NV counter 0x{index:08x} was never incremented, so it has no value",
                    rc=exc.rc,
                ) from None
            raise self._fail(f"read NV counter 0x{index:08x}", exc) from None

    def nv_counter_increment(self, index: int) -> int:
        """TPM commands: TPM2_NV_Increment, TPM2_NV_Read.  Returns the new value."""
        try:
            nvh = self._counter_handle(index)
            self._e.nv_increment(nvh, nvh)
        except TSS2_Exception as exc:
            raise self._fail(f"increment NV counter 0x{index:08x}", exc) from None
        return self.nv_counter_read(index)

    # -- ownership and status -----------------------------------------------------------

    def lockout_state(self) -> LockoutState:
        """TPM command: TPM2_GetCapability(TPM_PROPERTIES: LOCKOUT_*, PERMANENT)."""
        try:
            _, data = self._e.get_capability(TPM2_CAP.TPM_PROPERTIES, TPM2_PT.PERMANENT, 32)
        except TSS2_Exception as exc:
            raise self._fail("read the dictionary-attack state", exc) from None
        props = {int(p.property): int(p.value) for p in data.data.tpmProperties}
        return LockoutState(
            failed_tries=props.get(TPM2_PT.LOCKOUT_COUNTER, 0),
            max_tries=props.get(TPM2_PT.MAX_AUTH_FAIL, 0),
            recovery_interval_s=props.get(TPM2_PT.LOCKOUT_INTERVAL, 0),
            lockout_recovery_s=props.get(TPM2_PT.LOCKOUT_RECOVERY, 0),
            in_lockout=bool(props.get(TPM2_PT.PERMANENT, 0) & TPMA_PERMANENT.INLOCKOUT),
        )

    def info(self) -> TpmInfo:
        """TPM command: TPM2_GetCapability(TPM_PROPERTIES fixed, HANDLES persistent)."""
        try:
            _, data = self._e.get_capability(TPM2_CAP.TPM_PROPERTIES, TPM2_PT.FIXED, 64)
            persistent = self._persistent_handles()
        except TSS2_Exception as exc:
            raise self._fail("read the TPM's properties", exc) from None
        props = {int(p.property): int(p.value) for p in data.data.tpmProperties}

        def text(*keys: int) -> str:
            raw = b"".join(props.get(k, 0).to_bytes(4, "big") for k in keys)
            return " ".join(raw.replace(b"\0", b"").decode("ascii", "replace").split())

        fw1, fw2 = (
            props.get(_PT_FIRMWARE_VERSION_1, 0),
            props.get(_PT_FIRMWARE_VERSION_2, 0),
        )
        revision = props.get(TPM2_PT.REVISION, 0)
        return TpmInfo(
            manufacturer=text(TPM2_PT.MANUFACTURER),
            vendor=text(
                _PT_VENDOR_STRING_1,
                _PT_VENDOR_STRING_2,
                _PT_VENDOR_STRING_3,
                _PT_VENDOR_STRING_4,
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
        try:
            self._e.hierarchy_change_auth(ESYS_TR.PLATFORM, secrets.token_bytes(32))
            # ESYS remembers the new auth for this connection; forget it too.
            self._e.tr_set_auth(ESYS_TR.PLATFORM, b"")
        except TSS2_Exception as exc:
            raise self._fail("lock the platform hierarchy", exc) from None

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
        for hierarchy in (ESYS_TR.PLATFORM, ESYS_TR.LOCKOUT):
            try:
                if hierarchy == ESYS_TR.PLATFORM:
                    self._e.clear_control(ESYS_TR.PLATFORM, False)
                self._e.clear(hierarchy)
                cleared = True
                break
            except TSS2_Exception as exc:
                _log.debug("TPM2_Clear through 0x%x refused: %s", int(hierarchy), exc)
                if _base_rc(exc.rc) in (_RC_FAILURE, _RC_LOCKOUT):
                    raise self._fail("clear the TPM", exc) from None
        if not cleared:
            raise TpmError(
                "clear the TPM: both the platform and the lockout hierarchy refused",
                hint="the platform hierarchy is locked after boot; reset from the firmware "
                "(boot the heads payload) or with the TPM's physical-presence menu",
            )
        try:
            self._e.dictionary_attack_parameters(10, 3600, 86400)
            if owner_auth is not None:
                self._e.hierarchy_change_auth(ESYS_TR.OWNER, owner_auth.reveal())
            self._banks = None
            self._forget_all()
            self._ensure_primary(owner_auth)
        except TSS2_Exception as exc:
            raise self._fail("take ownership of the cleared TPM", exc) from None


def _tpml(selection: PcrSelection) -> TPML_PCR_SELECTION:
    return TPML_PCR_SELECTION.parse(str(selection))


def _pcr_composite(selection: PcrSelection, values: Mapping[int, bytes]) -> bytes:
    return hashlib.sha256(b"".join(values[i] for i in selection.indices)).digest()


@contextlib.contextmanager
def open_tpm(tcti: str, *, timeout_s: float | None = None) -> Iterator[Tpm]:
    """Connect to the TPM named by a TCTI string and start it if needed.

    ``swtpm:`` TPMs get a deadline on every command (``timeout_s``, else
    ``$HEADS_TPM_TIMEOUT``, else 30 s); a ``device:`` path must be a TPM character device
    (docs/tpm-objects.md §Reaching the TPM).

    Raises:
        UsageError: ``$HEADS_TPM_TIMEOUT`` is not a number of seconds.
        TpmNotFoundError: the device node does not exist.
        TpmUnreachableError: the TCTI is malformed, names something that is not a TPM, or
            nothing answers there in time.
        TpmFailureModeError: the TPM answers only with TPM_RC_FAILURE.
    """
    kind, _, conf = tcti.partition(":")
    transport: SwtpmTcti | None = None
    if kind == "device":
        check_device(conf or "/dev/tpmrm0")
    if kind == "swtpm":
        deadline = timeout_s if timeout_s is not None else timeout_from_env()
        transport = SwtpmTcti(tcti, parse_swtpm(tcti, conf), deadline)
    try:
        esapi = ESAPI(transport if transport is not None else tcti)
    except TSS2_Exception as exc:
        if transport is not None:
            transport.close()
        raise _tcti_error(tcti, exc) from None
    tpm = EsapiTpm(esapi, tcti, transport)
    try:
        tpm.startup()
        if transport is not None:
            # swtpm has no resource manager: what a killed client left loaded stays there.
            tpm.flush_leftovers()
        yield tpm
    finally:
        tpm.close()
