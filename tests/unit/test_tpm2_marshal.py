"""The command layer's buffers: commands built as the spec lays them out, responses parsed
strictly, forged responses refused, and hostile bytes only ever raising our errors."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.core.tpm2 import rc
from heads.core.tpm2.command import (
    Auth,
    ResponseIntegrityError,
    TpmResponseError,
    build_command,
    parse_response,
)
from heads.core.tpm2.constants import CC, TPMA_SESSION
from heads.core.tpm2.marshal import Reader, tpm2b, u8, u16, u32
from heads.core.tpm2.session import Session, param_crypt, response_hmac, rp_hash
from heads.core.tpm2.structures import (
    NvPublic,
    Public,
    read_digests,
    read_handles,
    read_pcr_selections,
    read_properties,
    storage_primary_template,
)
from heads.errors import FormatError

PRIMARY_TEMPLATE_HEX = "0023000b00030472000000060080004300100003001000000000"


def test_storage_primary_template_is_byte_identical_to_earlier_releases() -> None:
    assert storage_primary_template().hex() == PRIMARY_TEMPLATE_HEX
    public = Public.from_bytes(storage_primary_template(), "template")
    assert public.type == 0x23
    assert public.ecc_curve == 3


def test_response_code_decoding() -> None:
    assert rc.base_rc(0x9A2) == rc.BAD_AUTH  # session 1
    assert rc.base_rc(0x98E) == rc.AUTH_FAIL
    assert rc.base_rc(0x1D5) == rc.SIZE  # parameter 1
    assert rc.describe(0x1D5) == "tpm:parameter(1):structure is the wrong size"
    assert rc.describe(0x98E).startswith("tpm:session(1):the authorisation HMAC check failed")
    assert rc.describe(0x18B) == "tpm:handle(1):the handle is not correct for the use"
    assert rc.describe(0x101) == "tpm:the TPM is in failure mode"
    assert rc.describe(0x921).startswith("tpm:warning:authorisations")
    assert rc.base_rc(0x921) == rc.LOCKOUT


def test_a_command_without_sessions_is_header_handles_parameters() -> None:
    cmd = build_command(CC.PCR_READ, [], [], b"\x00\x00\x00\x00")
    assert bytes(cmd) == struct.pack(">HII", 0x8001, 14, 0x17E) + b"\0\0\0\0"


def test_a_password_session_carries_the_password_in_its_hmac_field() -> None:
    cmd = build_command(CC.NV_READ, [0x40000001, 0x01000001], [], b"\0\x08\0\0", [Auth(None)])
    area = u32(0x40000009) + tpm2b(b"") + u8(1) + tpm2b(b"")
    want = u32(0x40000001) + u32(0x01000001) + u32(len(area)) + area + b"\0\x08\0\0"
    assert bytes(cmd[10:]) == want
    assert struct.unpack(">HII", bytes(cmd[:10])) == (0x8002, 10 + len(want), 0x14E)


def _session() -> Session:
    return Session(0x02000001, "sha256", bytearray(b"S" * 32), b"N" * 32, symmetric=True)


def _unseal_response(session: Session, nonce_caller: bytes, data: bytes) -> bytes:
    nonce_tpm = b"M" * 32
    newer = param_crypt(session, b"", nonce_tpm, nonce_caller, data, encrypt=True)
    params = tpm2b(newer)
    attrs = TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.ENCRYPT
    mac = response_hmac(
        session, b"", rp_hash("sha256", CC.UNSEAL, params), nonce_tpm, nonce_caller, attrs=attrs
    )
    body = u32(len(params)) + params + tpm2b(nonce_tpm) + u8(attrs) + tpm2b(mac)
    return struct.pack(">HII", 0x8002, 10 + len(body), 0) + body


def _auth(session: Session) -> Auth:
    attrs = TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.ENCRYPT
    return Auth(session, attrs=attrs, nonce_caller=b"C" * 32)


def test_an_encrypted_response_is_verified_and_decrypted() -> None:
    session = _session()
    response = _unseal_response(session, b"C" * 32, b"the secret")
    assert b"the secret" not in response
    _, params = parse_response(CC.UNSEAL, response, 0, [_auth(session)])
    assert bytes(params) == tpm2b(b"the secret")
    assert session.nonce_tpm == b"M" * 32


@pytest.mark.parametrize("offset", [14, 20, 30, 55, -1])
def test_a_response_altered_on_the_bus_is_refused(offset: int) -> None:
    session = _session()
    response = bytearray(_unseal_response(session, b"C" * 32, b"the secret"))
    response[offset] ^= 0x01
    with pytest.raises((ResponseIntegrityError, FormatError)):
        parse_response(CC.UNSEAL, bytes(response), 0, [_auth(session)])
    assert session.nonce_tpm == b"N" * 32  # nothing taken from the forged response


def test_a_response_with_the_wrong_session_key_is_refused() -> None:
    response = _unseal_response(_session(), b"C" * 32, b"the secret")
    other = Session(0x02000001, "sha256", bytearray(b"X" * 32), b"N" * 32, symmetric=True)
    with pytest.raises(ResponseIntegrityError, match="does not verify"):
        parse_response(CC.UNSEAL, response, 0, [_auth(other)])


def test_an_error_response_gives_its_code() -> None:
    with pytest.raises(TpmResponseError) as info:
        parse_response(CC.UNSEAL, struct.pack(">HII", 0x8001, 10, 0x99D), 0, [])
    assert info.value.rc == 0x99D
    assert "TPM2_Unseal" in str(info.value)


def test_a_short_response_names_the_command_and_the_field() -> None:
    response = struct.pack(">HII", 0x8001, 14, 0) + b"\0\0"
    with pytest.raises(FormatError) as info:
        parse_response(CC.PCR_READ, response, 0, [])
    assert "TPM2_PCR_Read" in str(info.value)
    assert "responseSize" in str(info.value)
    r = Reader(b"\0\0\0\1\0\x0b\x03", "the TPM's response to TPM2_PCR_Read")
    with pytest.raises(FormatError, match=r"PCR_Read.*pcrSelectionOut\[0\]\.pcrSelect: needs 3"):
        read_pcr_selections(r, "pcrSelectionOut")


_READERS = (read_pcr_selections, read_digests, read_handles, read_properties)


@given(st.binary(max_size=300), st.sampled_from(list(CC)), st.integers(0, 2))
def test_hostile_responses_raise_only_our_errors(data: bytes, cc: CC, handles: int) -> None:
    session = _session()
    for auths in ([], [Auth(None)], [_auth(session)]):
        # Parsing may succeed on a well-formed buffer; any exception but ours fails the test.
        with contextlib.suppress(FormatError, TpmResponseError, ResponseIntegrityError):
            parse_response(cc, data, handles, auths)


@given(st.binary(max_size=300))
def test_hostile_structures_raise_only_format_error(data: bytes) -> None:
    for read in _READERS:
        r = Reader(data, "fuzz")
        with contextlib.suppress(FormatError):
            read(r, "field")
    for parse in (
        lambda r: Public.read(r, "outPublic"),
        lambda r: NvPublic.read(r, "nvPublic"),
    ):
        with contextlib.suppress(FormatError):
            parse(Reader(data, "fuzz"))


@given(st.binary(min_size=1, max_size=120), st.integers(0, 25))
def test_mutated_public_areas_raise_only_format_error(tail: bytes, cut: int) -> None:
    good = tpm2b(storage_primary_template())
    for data in (good[:cut] + tail, good[: len(good) - cut], tail + good):
        with contextlib.suppress(FormatError):
            Public.read(Reader(data, "fuzz"), "outPublic")


def test_counts_larger_than_the_buffer_are_refused_before_reading() -> None:
    r = Reader(u32(0xFFFFFFFF), "the TPM's response to TPM2_GetCapability")
    with pytest.raises(FormatError, match="count"):
        read_handles(r, "capabilityData.handles")
    r = Reader(u16(2), "x")
    with pytest.raises(FormatError, match="needs 2 bytes"):
        r.tpm2b("nonceTPM")
