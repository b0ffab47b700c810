"""Someone on the TPM's bus changes its answers: heads must notice, never use them.

A proxy between heads and a real swtpm (testing/tpm_proxy.py) changes the responses of one
command.  Where heads uses an HMAC session (TPM2_Create of a sealed secret, TPM2_Unseal) a
changed byte anywhere in the response must be refused by the response HMAC check; a response
that no longer parses must be reported naming the command; in neither case may a wrong secret
come out, nor a traceback reach the user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from heads.adapters.tpm import TOTP_HANDLE, open_tpm
from heads.core.pcr import PcrSelection
from heads.core.secret import Secret
from heads.errors import TpmError
from heads.testing.swtpm import Swtpm
from heads.testing.tpm_proxy import TpmProxy

pytestmark = pytest.mark.swtpm

PCRS = PcrSelection.parse("sha256:0,1,2,3,4,7")
SECRET = Secret(b"twenty byte secret!!")
TPM2_CC_CREATE = 0x153
TPM2_CC_UNSEAL = 0x15E
TPM2_CC_PCR_READ = 0x17E


@pytest.fixture
def proxy(swtpm: Swtpm) -> Iterator[TpmProxy]:
    with TpmProxy(swtpm.port) as p:
        yield p


def _flip(offset: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[offset % len(out)] ^= 0x04
        return bytes(out)

    return change


# Offsets into the unseal response: the parameter size, the encrypted secret, the first
# session's nonce, the second session's attributes and HMAC, the last byte.
@pytest.mark.parametrize("offset", [13, 16, 25, 40, 70, 120, -1])
def test_an_altered_unseal_response_is_refused(proxy: TpmProxy, offset: int) -> None:
    with open_tpm(proxy.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, PCRS)
    proxy.tamper(TPM2_CC_UNSEAL, _flip(offset))
    with pytest.raises(TpmError) as info, open_tpm(proxy.tcti) as tpm:
        tpm.unseal(TOTP_HANDLE)
    assert proxy.tampered == 1
    text = str(info.value)
    assert "TPM2_Unseal" in text
    assert "does not verify" in text or "malformed" in text
    assert SECRET.reveal().hex() not in text
    proxy.tamper(TPM2_CC_UNSEAL, None)
    with open_tpm(proxy.tcti) as tpm:
        assert tpm.unseal(TOTP_HANDLE) == SECRET


def test_an_unseal_response_stripped_of_its_sessions_is_refused(proxy: TpmProxy) -> None:
    with open_tpm(proxy.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, PCRS)

    def strip(data: bytes) -> bytes:
        # Claim "no sessions" and drop the authorisation area: nothing left to verify.
        size = int.from_bytes(data[10:14], "big")
        body = data[14 : 14 + size]
        return b"\x80\x01" + (10 + len(body)).to_bytes(4, "big") + data[6:10] + body

    proxy.tamper(TPM2_CC_UNSEAL, strip)
    with pytest.raises(TpmError, match=r"TPM2_Unseal.*tag"), open_tpm(proxy.tcti) as tpm:
        tpm.unseal(TOTP_HANDLE)


@pytest.mark.parametrize("offset", [20, 60, -1])
def test_an_altered_create_response_stops_the_seal(proxy: TpmProxy, offset: int) -> None:
    proxy.tamper(TPM2_CC_CREATE, _flip(offset))
    with pytest.raises(TpmError, match="TPM2_Create"), open_tpm(proxy.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, PCRS)
    proxy.tamper(TPM2_CC_CREATE, None)
    with open_tpm(proxy.tcti) as tpm:
        assert not tpm.object_exists(TOTP_HANDLE)


def test_a_garbled_response_names_the_command_and_the_field(proxy: TpmProxy) -> None:
    def truncate_count(data: bytes) -> bytes:
        # pcrSelectionOut.count after the 4-byte update counter: claim 200 selections.
        return data[:14] + (200).to_bytes(4, "big") + data[18:]

    with open_tpm(proxy.tcti) as tpm:
        proxy.tamper(TPM2_CC_PCR_READ, truncate_count)
        with pytest.raises(TpmError) as info:
            tpm.read_pcrs(PCRS.alg, PCRS.indices)
    assert "TPM2_PCR_Read" in str(info.value)
    assert "pcrSelectionOut" in str(info.value)
