"""Ed25519 against RFC 8032 §7.1's test vectors, and what verification must refuse."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.openpgp import ed25519

# (secret seed, public key, message, signature): RFC 8032 §7.1 TEST 1, 2, 3 and SHA(abc).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
        "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da08"
        "5ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18"
        "ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    assert ed25519.public_key(bytes.fromhex(seed)).hex() == public
    assert ed25519.sign(bytes.fromhex(seed), bytes.fromhex(message)).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_altered_message_or_signature_fails(
    seed: str, public: str, message: str, signature: str
) -> None:
    pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert not ed25519.verify(pub, msg + b"\x00", sig)
    for index in (0, 31, 32, 63):
        flipped = bytearray(sig)
        flipped[index] ^= 0x01
        assert not ed25519.verify(pub, msg, bytes(flipped))


L = 2**252 + 27742317777372353535851937790883648493


def test_non_canonical_s_is_refused() -> None:
    _, public, message, signature = (bytes.fromhex(v) for v in RFC8032[0])
    s = int.from_bytes(signature[32:], "little")
    # S + L passes the group equation, so only the range check can refuse it (malleability).
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert not ed25519.verify(public, message, malleated)


def test_wrong_sizes_and_points_off_the_curve_are_refused() -> None:
    _, public, message, signature = (bytes.fromhex(v) for v in RFC8032[0])
    assert not ed25519.verify(public[:31], message, signature)
    assert not ed25519.verify(public, message, signature[:63])
    # y = 2 has no x on the curve (x^2 = 3 / (4d + 1) is not a square).
    assert not ed25519.verify((2).to_bytes(32, "little"), message, signature)
    # y >= p is not a canonical encoding.
    assert not ed25519.verify(((1 << 255) - 1).to_bytes(32, "little"), message, signature)
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519.public_key(bytes(31))


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=200))
def test_sign_then_verify_round_trips(seed: bytes, message: bytes) -> None:
    public = ed25519.public_key(seed)
    signature = ed25519.sign(seed, message)
    assert ed25519.verify(public, message, signature)
    assert not ed25519.verify(public, message + b"!", signature)
