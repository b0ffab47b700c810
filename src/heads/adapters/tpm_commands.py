"""The TPM 2.0 commands heads sends, one method each, over a transport.

Each method marshals its command with heads.core.tpm2, sends it, checks and unmarshals the
response.  Authorisation is the password session unless an HMAC or policy session is passed;
session nonces and salts come from :mod:`secrets` (docs/tpm-objects.md §The command layer).

Failures: :class:`TpmResponseError` (the TPM's response code), :class:`TransportError` (no
answer), and :class:`heads.errors.TpmError` for a malformed or forged response; after any of
the last kind the connection is closed, since what was sent and what was answered may no
longer line up.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Concatenate, Final, ParamSpec, TypeVar

from heads.adapters.tpm_transport import Transport, TransportError
from heads.core.tpm2 import rc as rcs
from heads.core.tpm2.command import (
    Auth,
    ResponseIntegrityError,
    TpmResponseError,
    build_command,
    parse_response,
)
from heads.core.tpm2.constants import ALG, CAP, CC, RH, SE, TPMA_SESSION, command_name
from heads.core.tpm2.marshal import Reader, tpm2b, u8, u16, u32
from heads.core.tpm2.p256 import N as P256_ORDER
from heads.core.tpm2.session import SaltInputs, Session, encrypted_salt, session_key
from heads.core.tpm2.structures import (
    NvPublic,
    PcrSelect,
    Public,
    marshal_pcr_selections,
    read_capability_kind,
    read_digests,
    read_handles,
    read_pcr_selections,
    read_properties,
)
from heads.errors import FormatError, TpmError

__all__ = ["Auth", "Session", "TpmCommands", "TpmResponseError", "TransportError"]

_NONCE_SIZE: Final = 32  # one SHA-256 digest, as for every session heads starts
_AES128_CFB: Final = u16(ALG.AES) + u16(128) + u16(ALG.CFB)
_NO_SYMMETRIC: Final = u16(ALG.NULL)
_P = ParamSpec("_P")
_R = TypeVar("_R")
_SUBMISSIONS: Final = 10
_AGAIN: Final = frozenset({rcs.RETRY, rcs.YIELDED, rcs.TESTING})
_AGAIN_PAUSE_S: Final = 0.02


def _response_code(response: bytes) -> int:
    return int.from_bytes(response[6:10], "big") if len(response) >= 10 else 0


def _password(auth: bytes = b"") -> Auth:
    return Auth(None, auth=auth, attrs=TPMA_SESSION.CONTINUESESSION)


def _parsed(
    method: Callable[Concatenate[TpmCommands, _P], _R],
) -> Callable[Concatenate[TpmCommands, _P], _R]:
    """A response that does not parse, wherever the command's method reads it, becomes a
    TpmError and ends the connection (a FormatError would name no TPM command to the user)."""

    @functools.wraps(method)
    def wrapper(self: TpmCommands, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except FormatError as exc:
            raise self.malformed(exc) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps' type hides the signature


class TpmCommands:
    """One connection to a TPM, spoken to command by command."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def close(self) -> None:
        self.transport.close()

    def _call(
        self,
        cc: int,
        handles: Sequence[int] = (),
        params: bytes | bytearray = b"",
        *,
        auths: Sequence[Auth] = (),
        names: Sequence[bytes] = (),
        out_handles: int = 0,
    ) -> tuple[tuple[int, ...], Reader]:
        command = build_command(cc, handles, names, params, auths)
        response = b""
        try:
            # A TPM that cannot start a command now says so (RETRY, YIELDED, TESTING) without
            # touching any session: the same buffer is sent again.
            for attempt in range(_SUBMISSIONS):
                response = self.transport.transact(bytes(command))
                if attempt + 1 < _SUBMISSIONS and _response_code(response) in _AGAIN:
                    time.sleep(_AGAIN_PAUSE_S * (attempt + 1))
                    continue
                break
        finally:
            command[:] = bytes(len(command))
        try:
            got, out = parse_response(cc, response, out_handles, auths)
        except ResponseIntegrityError:
            self.transport.close()
            self.transport.broken = "a forged response"
            raise
        return got, Reader(bytes(out), f"the TPM's response to {command_name(cc)}")

    def malformed(self, exc: FormatError) -> TpmError:
        """The error for a response that does not parse; the connection is closed."""
        self.transport.close()
        self.transport.broken = "a malformed response"
        return TpmError(
            f"the TPM's answer is malformed: {exc}",
            hint="is it a TPM 2.0? a faulty TPM or something on its bus sent this",
        )

    # -- start-up, capabilities, randomness ------------------------------------------

    @_parsed
    def startup(self, su: int) -> None:
        self._call(CC.STARTUP, params=u16(su))

    @_parsed
    def get_capability(self, cap: CAP, prop: int, count: int) -> tuple[bool, Reader]:
        """TPM2_GetCapability: moreData, and a reader positioned after the capability kind."""
        _, r = self._call(CC.GET_CAPABILITY, params=u32(cap) + u32(prop) + u32(count))
        more = r.u8("moreData")
        read_capability_kind(r, "capabilityData", cap)
        return bool(more), r

    @_parsed
    def handles(self, first: int, count: int = 64) -> tuple[bool, tuple[int, ...]]:
        more, r = self.get_capability(CAP.HANDLES, first, count)
        handles = read_handles(r, "capabilityData.handles")
        r.end("capabilityData")
        return more, handles

    @_parsed
    def properties(self, first: int, count: int) -> dict[int, int]:
        _, r = self.get_capability(CAP.TPM_PROPERTIES, first, count)
        props = read_properties(r, "capabilityData.tpmProperties")
        r.end("capabilityData")
        return props

    @_parsed
    def pcr_banks(self) -> tuple[PcrSelect, ...]:
        _, r = self.get_capability(CAP.PCRS, 0, 1)
        sels = read_pcr_selections(r, "capabilityData.assignedPCR")
        r.end("capabilityData")
        return sels

    @_parsed
    def get_random(self, size: int) -> bytes:
        _, r = self._call(CC.GET_RANDOM, params=u16(size))
        data = r.tpm2b("randomBytes", 64)
        r.end("randomBytes")
        if len(data) > size:
            raise r.fail("randomBytes", f"{len(data)} bytes, {size} asked for")
        return data

    # -- PCRs --------------------------------------------------------------------------

    @_parsed
    def pcr_read(
        self, selections: Sequence[PcrSelect]
    ) -> tuple[tuple[PcrSelect, ...], tuple[bytes, ...]]:
        _, r = self._call(CC.PCR_READ, params=marshal_pcr_selections(selections))
        r.u32("pcrUpdateCounter")
        out = read_pcr_selections(r, "pcrSelectionOut")
        digests = read_digests(r, "pcrValues")
        r.end("pcrValues")
        return out, digests

    @_parsed
    def pcr_extend(self, pcr: int, digests: Sequence[tuple[int, bytes]]) -> None:
        body = bytearray(u32(len(digests)))
        for alg, digest in digests:
            body += u16(alg) + digest
        self._call(CC.PCR_EXTEND, [pcr], body, auths=[_password()])

    # -- sessions and policies --------------------------------------------------------

    @_parsed
    def start_auth_session(
        self, kind: SE, *, salt_key: tuple[int, Public] | None = None, symmetric: bool = False
    ) -> Session:
        """TPM2_StartAuthSession, SHA-256, unbound; salted to ``salt_key`` (handle, public).

        Raises:
            ValueError: the salt key's type cannot salt a session.
        """
        nonce_caller = secrets.token_bytes(_NONCE_SIZE)
        salt = bytearray()
        secret = b""
        key_handle = int(RH.NULL)
        if salt_key is not None:
            key_handle, public = salt_key
            rand = SaltInputs(
                salt=secrets.token_bytes(64),
                oaep_seed=secrets.token_bytes(32),
                scalar=1 + secrets.randbelow(P256_ORDER - 1),
            )
            salt, secret = encrypted_salt(public, rand)
        try:
            params = (
                tpm2b(nonce_caller)
                + tpm2b(secret)
                + u8(kind)
                + (_AES128_CFB if symmetric else _NO_SYMMETRIC)
                + u16(ALG.SHA256)
            )
            (handle,), r = self._call(
                CC.START_AUTH_SESSION, [key_handle, RH.NULL], params, out_handles=1
            )
            nonce_tpm = r.tpm2b("nonceTPM", 64)
            r.end("nonceTPM")
            key = session_key("sha256", bytes(salt), nonce_tpm, nonce_caller)
        finally:
            salt[:] = bytes(len(salt))
        return Session(handle, "sha256", key, nonce_tpm, symmetric)

    def session_auth(self, session: Session, auth: bytes = b"", attrs: int = 0) -> Auth:
        """An authorisation-area entry for ``session`` with a fresh nonce."""
        return Auth(session, auth=auth, attrs=attrs, nonce_caller=secrets.token_bytes(_NONCE_SIZE))

    @_parsed
    def policy_pcr(self, session: int, pcr_digest: bytes, selection: PcrSelect) -> None:
        params = tpm2b(pcr_digest) + marshal_pcr_selections([selection])
        self._call(CC.POLICY_PCR, [session], params)

    @_parsed
    def policy_auth_value(self, session: Session) -> None:
        self._call(CC.POLICY_AUTH_VALUE, [session.handle])
        session.auth_value_needed = True

    @_parsed
    def policy_get_digest(self, session: int) -> bytes:
        _, r = self._call(CC.POLICY_GET_DIGEST, [session])
        digest = r.tpm2b("policyDigest", 64)
        r.end("policyDigest")
        return digest

    @_parsed
    def flush_context(self, handle: int) -> None:
        self._call(CC.FLUSH_CONTEXT, params=u32(handle))

    # -- objects -----------------------------------------------------------------------

    @_parsed
    def read_public(self, handle: int) -> tuple[Public, bytes]:
        """The object's public area and name; the name is checked against the area."""
        _, r = self._call(CC.READ_PUBLIC, [handle])
        public = Public.read(r, "outPublic")
        name = r.tpm2b("name", 66)
        r.tpm2b("qualifiedName", 66)
        r.end("qualifiedName")
        try:
            computed = public.name()
        except ValueError as exc:
            raise r.fail("outPublic.nameAlg", str(exc)) from None
        if name != computed:
            raise r.fail("name", "it is not the name of the public area returned")
        return public, name

    @_parsed
    def create_primary(
        self, hierarchy: int, hierarchy_auth: bytes, template: bytes
    ) -> tuple[int, Public]:
        params = (
            u16(4)
            + u16(0)
            + u16(0)  # inSensitive: no auth, no data
            + tpm2b(template)
            + tpm2b(b"")  # outsideInfo
            + u32(0)  # creationPCR
        )
        (handle,), r = self._call(
            CC.CREATE_PRIMARY, [hierarchy], params, auths=[_password(hierarchy_auth)], out_handles=1
        )
        public = Public.read(r, "outPublic")
        return handle, public

    @_parsed
    def create(
        self,
        parent: int,
        parent_name: bytes,
        sensitive: bytearray,
        template: bytes,
        session: Session,
    ) -> tuple[bytes, bytes]:
        """TPM2_Create: (TPM2B_PRIVATE, TPM2B_PUBLIC) of the new object.

        ``sensitive`` (a TPM2B_SENSITIVE_CREATE) is encrypted by ``session`` (DECRYPT), which
        also authorises the parent (empty auth).
        """
        params = bytearray(sensitive)
        params += tpm2b(template) + tpm2b(b"") + u32(0)
        use = self.session_auth(session, attrs=TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.DECRYPT)
        try:
            _, r = self._call(CC.CREATE, [parent], params, auths=[use], names=[parent_name])
        finally:
            params[:] = bytes(len(params))
        private = r.tpm2b("outPrivate", 2048)
        public = Public.read(r, "outPublic")
        return tpm2b(private), public.marshal()

    @_parsed
    def load(self, parent: int, private: bytes, public: bytes) -> tuple[int, bytes]:
        """TPM2_Load of a (TPM2B_PRIVATE, TPM2B_PUBLIC): the transient handle and name."""
        (handle,), r = self._call(
            CC.LOAD, [parent], private + public, auths=[_password()], out_handles=1
        )
        name = r.tpm2b("name", 66)
        r.end("name")
        return handle, name

    @_parsed
    def unseal(
        self,
        item: int,
        item_name: bytes,
        policy: Session,
        auth: bytes,
        crypt: Session,
    ) -> bytearray:
        """TPM2_Unseal under a policy session; the response is encrypted by ``crypt``."""
        uses = [
            self.session_auth(policy, auth if policy.auth_value_needed else b"", attrs=0),
            self.session_auth(crypt, attrs=TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.ENCRYPT),
        ]
        _, r = self._call(CC.UNSEAL, [item], auths=uses, names=[item_name])
        data = bytearray(r.tpm2b("outData", 128))
        r.end("outData")
        return data

    @_parsed
    def evict_control(self, auth: bytes, obj: int, persistent: int) -> None:
        self._call(CC.EVICT_CONTROL, [RH.OWNER, obj], u32(persistent), auths=[_password(auth)])

    # -- NV ------------------------------------------------------------------------------

    @_parsed
    def nv_read_public(self, index: int) -> NvPublic:
        _, r = self._call(CC.NV_READ_PUBLIC, [index])
        public = NvPublic.read(r, "nvPublic")
        name = r.tpm2b("nvName", 66)
        r.end("nvName")
        try:
            computed = public.name()
        except ValueError as exc:
            raise r.fail("nvPublic.nameAlg", str(exc)) from None
        if name != computed or public.index != index:
            raise r.fail("nvName", "it is not the name of the index asked for")
        return public

    @_parsed
    def nv_define_space(self, owner_auth: bytes, public: NvPublic) -> None:
        params = tpm2b(b"") + public.marshal()
        self._call(CC.NV_DEFINE_SPACE, [RH.OWNER], params, auths=[_password(owner_auth)])

    @_parsed
    def nv_undefine_space(self, owner_auth: bytes, index: int) -> None:
        self._call(CC.NV_UNDEFINE_SPACE, [RH.OWNER, index], auths=[_password(owner_auth)])

    @_parsed
    def nv_read(self, auth_handle: int, auth: bytes, index: int, size: int, offset: int) -> bytes:
        _, r = self._call(
            CC.NV_READ, [auth_handle, index], u16(size) + u16(offset), auths=[_password(auth)]
        )
        data = r.tpm2b("data", 2048)
        r.end("data")
        if len(data) != size:
            raise TpmError(f"TPM2_NV_Read returned {len(data)} bytes, {size} asked for")
        return data

    @_parsed
    def nv_write(self, auth_handle: int, auth: bytes, index: int, data: bytes, offset: int) -> None:
        self._call(
            CC.NV_WRITE, [auth_handle, index], tpm2b(data) + u16(offset), auths=[_password(auth)]
        )

    @_parsed
    def nv_increment(self, auth_handle: int, auth: bytes, index: int) -> None:
        self._call(CC.NV_INCREMENT, [auth_handle, index], auths=[_password(auth)])

    # -- hierarchies -------------------------------------------------------------------

    @_parsed
    def hierarchy_change_auth(self, hierarchy: int, auth: bytes, new_auth: bytes) -> None:
        self._call(CC.HIERARCHY_CHANGE_AUTH, [hierarchy], tpm2b(new_auth), auths=[_password(auth)])

    @_parsed
    def clear_control(self, auth_handle: int, auth: bytes, *, disable: bool) -> None:
        self._call(CC.CLEAR_CONTROL, [auth_handle], u8(int(disable)), auths=[_password(auth)])

    @_parsed
    def clear(self, auth_handle: int, auth: bytes) -> None:
        self._call(CC.CLEAR, [auth_handle], auths=[_password(auth)])

    @_parsed
    def dictionary_attack_parameters(
        self, lockout_auth: bytes, max_tries: int, recovery_s: int, lockout_recovery_s: int
    ) -> None:
        params = u32(max_tries) + u32(recovery_s) + u32(lockout_recovery_s)
        self._call(
            CC.DICTIONARY_ATTACK_PARAMETERS, [RH.LOCKOUT], params, auths=[_password(lockout_auth)]
        )
