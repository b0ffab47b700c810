"""TPM 2.0 command and response buffers (TPM 2.0 Part 1 §18, Part 3 §5): header, handles,
authorisation area, parameters; with HMAC sessions, the command HMACs, parameter encryption,
and the checks of each response HMAC (docs/tpm-objects.md §The command layer).

A response whose HMAC does not verify is refused: on a real machine the TPM sits on a bus,
and whoever can change bytes there must not be able to change what heads is told.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from heads.core.tpm2 import rc as rcs
from heads.core.tpm2.constants import RH, ST, TPMA_SESSION, command_name
from heads.core.tpm2.marshal import Reader, tpm2b, u8, u16, u32
from heads.core.tpm2.session import (
    Session,
    command_hmac,
    cp_hash,
    param_crypt,
    response_hmac,
    rp_hash,
)
from heads.errors import TpmError

__all__ = [
    "Auth",
    "ResponseIntegrityError",
    "TpmResponseError",
    "build_command",
    "parse_response",
]

HEADER_SIZE = 10


class TpmResponseError(Exception):
    """The TPM answered a command with a response code other than success."""

    def __init__(self, cc: int, rc: int) -> None:
        self.cc = cc
        self.rc = rc
        super().__init__(f"{command_name(cc)}: {rcs.describe(rc)} (rc 0x{rc:x})")


class ResponseIntegrityError(TpmError):
    """A response failed its HMAC check: it was altered between the TPM and heads."""


@dataclass(slots=True)
class Auth:
    """One entry of a command's authorisation area.

    ``session`` None is the password session (TPM_RS_PW) with ``auth`` in clear.  Otherwise
    ``auth`` is the authValue that joins the session key in the HMAC (the authorised entity's
    for an HMAC session, the object's after PolicyAuthValue, else empty) and ``nonce_caller``
    the fresh nonce for this command.
    """

    session: Session | None
    auth: bytes = b""
    attrs: int = TPMA_SESSION.CONTINUESESSION
    nonce_caller: bytes = b""


def _first_param_span(params: bytes | bytearray, field: str) -> tuple[int, int]:
    if len(params) < 2:
        raise ValueError(f"{field}: no sized first parameter to encrypt")
    size = int.from_bytes(params[:2], "big")
    if size > len(params) - 2:
        raise ValueError(f"{field}: the first parameter is shorter than its size")
    return 2, 2 + size


def build_command(
    cc: int,
    handles: Sequence[int],
    names: Sequence[bytes],
    params: bytes | bytearray,
    auths: Sequence[Auth] = (),
) -> bytearray:
    """The command buffer; the first parameter is encrypted in a copy for a DECRYPT session.

    ``names`` are the names of the handles that need authorisation (one per session used for
    authorisation, in order) followed by the rest; only HMAC sessions look at them.
    """
    body = bytearray(params)
    crypt = _crypt_sessions(auths, TPMA_SESSION.DECRYPT)
    if len(crypt) > 1:
        raise ValueError("at most one session may encrypt a command parameter")
    for use, session in crypt:
        start, end = _first_param_span(body, command_name(cc))
        body[start:end] = param_crypt(
            session, use.auth, use.nonce_caller, session.nonce_tpm, body[start:end], encrypt=True
        )
    out = bytearray()
    for h in handles:
        out += u32(h)
    if auths:
        area = bytearray()
        cphash: dict[str, bytes] = {}
        for i, a in enumerate(auths):
            if a.session is None:
                area += u32(RH.PW) + tpm2b(b"") + u8(a.attrs) + tpm2b(a.auth)
                continue
            s = a.session
            if s.hash_name not in cphash:
                cphash[s.hash_name] = cp_hash(s.hash_name, cc, list(names), bytes(body))
            extra = b""
            if i == 0:
                extra = _other_nonces(auths, TPMA_SESSION.DECRYPT) + _other_nonces(
                    auths, TPMA_SESSION.ENCRYPT
                )
            mac = command_hmac(
                s, a.auth, cphash[s.hash_name], a.nonce_caller, attrs=a.attrs, extra_nonces=extra
            )
            area += u32(s.handle) + tpm2b(a.nonce_caller) + u8(a.attrs) + tpm2b(mac)
        out += u32(len(area)) + area
    out += body
    tag = ST.SESSIONS if auths else ST.NO_SESSIONS
    command = bytearray(u16(tag) + u32(HEADER_SIZE + len(out)) + u32(cc))
    command += out
    body[:] = bytes(len(body))
    return command


def _crypt_sessions(auths: Sequence[Auth], flag: int) -> list[tuple[Auth, Session]]:
    return [(a, a.session) for a in auths if a.session is not None and a.attrs & flag]


def _other_nonces(auths: Sequence[Auth], flag: int) -> bytes:
    """nonceTPM of the session (other than the first) that has ``flag``, if any."""
    for a in auths[1:]:
        if a.session is not None and a.attrs & flag:
            return a.session.nonce_tpm
    return b""


def parse_response(
    cc: int, data: bytes, handle_count: int, auths: Sequence[Auth] = ()
) -> tuple[tuple[int, ...], bytearray]:
    """The response's handles and parameters (the first decrypted for an ENCRYPT session).

    Each session's nonceTPM is updated from the response once its HMAC has verified.

    Raises:
        TpmResponseError: the TPM refused the command (its response code).
        FormatError: the response is malformed (names the command and the field).
        ResponseIntegrityError: a response HMAC does not verify.
    """
    name = command_name(cc)
    r = Reader(data, f"the TPM's response to {name}")
    tag = r.u16("tag")
    size = r.u32("responseSize")
    if size != len(data):
        raise r.fail("responseSize", f"says {size} bytes, the response has {len(data)}")
    code = r.u32("responseCode")
    if code != rcs.SUCCESS:
        raise TpmResponseError(cc, code)
    expected_tag = ST.SESSIONS if auths else ST.NO_SESSIONS
    if tag != expected_tag:
        raise r.fail("tag", f"0x{tag:04x}, expected 0x{expected_tag:04x}")
    handles = tuple(r.u32(f"handle {i + 1}") for i in range(handle_count))
    if not auths:
        return handles, bytearray(r.take(r.remaining, "parameters"))
    params = r.take(r.u32("parameterSize"), "parameters")
    answers = []
    for i in range(len(auths)):
        nonce = r.tpm2b(f"session {i}.nonceTPM", 64)
        attrs = r.u8(f"session {i}.sessionAttributes")
        mac = r.tpm2b(f"session {i}.hmac", 64)
        answers.append((nonce, attrs, mac))
    r.end("authorisation area")
    rphash: dict[str, bytes] = {}
    for i, (a, (nonce, attrs, mac)) in enumerate(zip(auths, answers, strict=True)):
        if a.session is None:
            if nonce or mac:
                raise r.fail(f"session {i}", "a password session answered with a nonce or HMAC")
            continue
        s = a.session
        if s.hash_name not in rphash:
            rphash[s.hash_name] = rp_hash(s.hash_name, cc, params)
        want = response_hmac(s, a.auth, rphash[s.hash_name], nonce, a.nonce_caller, attrs=attrs)
        if not hmac.compare_digest(want, mac):
            raise ResponseIntegrityError(
                f"{name}: the response HMAC of session {i} does not verify",
                hint="something between heads and the TPM altered the answer (or the TPM "
                "is faulty); nothing from this response was used",
            )
        s.nonce_tpm = nonce
    out = bytearray(params)
    for use, session in _crypt_sessions(auths, TPMA_SESSION.ENCRYPT)[:1]:
        try:
            start, end = _first_param_span(out, name)
        except ValueError as exc:
            raise r.fail("parameters", str(exc)) from None
        out[start:end] = param_crypt(
            session, use.auth, session.nonce_tpm, use.nonce_caller, out[start:end], encrypt=False
        )
    return handles, out
