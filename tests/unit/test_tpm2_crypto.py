"""The command layer's cryptography against published test vectors."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from heads.core.tpm2 import aes, p256
from heads.core.tpm2.kdf import kdfa, kdfe, oaep_encrypt
from heads.core.tpm2.session import Session, param_crypt


def test_aes128_fips197_appendix_c1() -> None:
    key = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    block = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert aes.encrypt_block(key, block).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_aes128_fips197_appendix_b() -> None:
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    block = bytes.fromhex("3243f6a8885a308d313198a2e0370734")
    assert aes.encrypt_block(key, block).hex() == "3925841d02dc09fbdc118597196a0b32"


SP800_38A_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
SP800_38A_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
SP800_38A_PLAIN = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
SP800_38A_CFB128 = bytes.fromhex(
    "3b3fd92eb72dad20333449f8e83cfb4a"
    "c8a64537a0b3a93fcde3cdad9f1ce58b"
    "26751f67a3cbb140b1808cf187a4f4df"
    "c04b05357c5d1c0eeac4c66f9ff7f2e6"
)


def test_cfb128_sp800_38a_f_3_13_and_f_3_14() -> None:
    assert aes.cfb_encrypt(SP800_38A_KEY, SP800_38A_IV, SP800_38A_PLAIN) == SP800_38A_CFB128
    assert aes.cfb_decrypt(SP800_38A_KEY, SP800_38A_IV, SP800_38A_CFB128) == SP800_38A_PLAIN


def test_cfb128_partial_last_block_is_a_prefix_of_the_full_stream() -> None:
    short = aes.cfb_encrypt(SP800_38A_KEY, SP800_38A_IV, SP800_38A_PLAIN[:21])
    assert short == SP800_38A_CFB128[:21]
    assert aes.cfb_decrypt(SP800_38A_KEY, SP800_38A_IV, short) == SP800_38A_PLAIN[:21]


def test_aes256_fips197_appendix_c3() -> None:
    key = bytes(range(32))
    block = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert aes.encrypt_block(key, block).hex() == "8ea2b7ca516745bfeafc49904b496089"


def test_cfb128_aes256_sp800_38a_f_3_17() -> None:
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    cipher = bytes.fromhex(
        "dc7e84bfda79164b7ecd8486985d3860"
        "39ffed143b28b1c832113c6331e5407b"
        "df10132415e54b92a13ed0a8267ae2f9"
        "75a385741ab9cef82031623d55b1e471"
    )
    assert aes.cfb_encrypt(key, SP800_38A_IV, SP800_38A_PLAIN) == cipher
    assert aes.cfb_decrypt(key, SP800_38A_IV, cipher) == SP800_38A_PLAIN


def test_aes_refuses_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="16-byte key"):
        aes.encrypt_block(b"short", bytes(16))
    with pytest.raises(ValueError, match="16-byte key"):
        aes.encrypt_block(bytes(24), bytes(16))
    with pytest.raises(ValueError, match="16 bytes"):
        aes.encrypt_block(bytes(16), bytes(15))


# RFC 5903 §8.1 (ECDH over P-256).
RFC5903_I = 0xC88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433
RFC5903_GIX = 0xDAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180
RFC5903_GIY = 0x5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3
RFC5903_R = 0xC6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53
RFC5903_GRX = 0xD12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63
RFC5903_GRY = 0x56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB
RFC5903_Z = "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE"


def test_p256_public_points_rfc5903() -> None:
    assert p256.public_point(RFC5903_I) == (RFC5903_GIX, RFC5903_GIY)
    assert p256.public_point(RFC5903_R) == (RFC5903_GRX, RFC5903_GRY)


def test_p256_ecdh_rfc5903_both_ways() -> None:
    assert p256.ecdh_x(RFC5903_I, RFC5903_GRX, RFC5903_GRY).hex().upper() == RFC5903_Z
    assert p256.ecdh_x(RFC5903_R, RFC5903_GIX, RFC5903_GIY).hex().upper() == RFC5903_Z


def test_p256_small_multiples_agree_with_repeated_addition() -> None:
    # 2G and 3G from the ladder, checked on the curve and against k = n-1 giving -G.
    for k in (1, 2, 3, 1000):
        assert p256.is_on_curve(*p256.public_point(k))
    x, y = p256.public_point(p256.N - 1)
    assert (x, y) == (p256.GX, p256.P - p256.GY)


def test_p256_refuses_a_point_off_the_curve() -> None:
    with pytest.raises(ValueError, match="not on the P-256 curve"):
        p256.ecdh_x(RFC5903_I, RFC5903_GRX, RFC5903_GRY ^ 1)
    with pytest.raises(ValueError, match="not on the P-256 curve"):
        p256.ecdh_x(RFC5903_I, p256.P + 1, 2)
    with pytest.raises(ValueError, match="out of range"):
        p256.public_point(0)


def test_kdfa_is_sp800_108_counter_mode() -> None:
    key, u, v = b"k" * 32, b"u" * 32, b"v" * 32
    want = hmac.new(key, b"\0\0\0\1CFB\0" + u + v + b"\0\0\1\0", "sha256").digest()
    assert kdfa("sha256", key, b"CFB", u, v, bits=256) == want
    long = kdfa("sha256", key, b"ATH", u, v, bits=384)
    second = hmac.new(key, b"\0\0\0\2ATH\0" + u + v + b"\0\0\1\x80", "sha256").digest()
    assert long[32:] == second[:16]


def test_kdfe_is_the_concatenation_kdf() -> None:
    z, u, v = b"z" * 32, b"u" * 32, b"v" * 32
    want = hashlib.sha256(b"\0\0\0\1" + z + b"SECRET\0" + u + v).digest()
    assert kdfe("sha256", z, b"SECRET", u, v, bits=256) == want


def test_oaep_round_trips_with_a_small_textbook_key() -> None:
    # A 1024-bit key made from two known primes; decryption here checks the padding.
    p = 0xE0DFD2C2A288ACEBC705EFAB30E4447541A8C5A47A37185C5A9CB98389CE4DE19199AA3069B404FD98C801568CB9170EB712BF10B4955CE9C9DC8CE6855C6123  # noqa: E501
    q = 0xEBE0FCF21866FD9A9F0D72F7994875A8D92E67AEE4B515136B2A778A8048B149828AEA30BD0BA34B977982A3D42168F594CA99F3981DDABFAB2369F229640115  # noqa: E501
    n, e = p * q, 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    modulus = n.to_bytes(128, "big")
    seed = bytes(range(32))
    ct = oaep_encrypt("sha256", modulus, e, b"salt" * 8, label=b"SECRET\0", seed=seed)
    em = pow(int.from_bytes(ct, "big"), d, n).to_bytes(128, "big")
    assert em[0] == 0
    h = 32
    masked_seed, masked_db = em[1 : 1 + h], em[1 + h :]

    def mgf1(s: bytes, n_out: int) -> bytes:
        out = b"".join(hashlib.sha256(s + i.to_bytes(4, "big")).digest() for i in range(5))
        return out[:n_out]

    got_seed = bytes(a ^ b for a, b in zip(masked_seed, mgf1(masked_db, h), strict=True))
    assert got_seed == seed
    db = bytes(a ^ b for a, b in zip(masked_db, mgf1(got_seed, len(masked_db)), strict=True))
    assert db[:h] == hashlib.sha256(b"SECRET\0").digest()
    assert db.endswith(b"\1" + b"salt" * 8)


def test_parameter_encryption_round_trips_and_depends_on_the_nonces() -> None:
    s = Session(0x02000000, "sha256", bytearray(b"K" * 32), b"T" * 32, symmetric=True)
    secret = b"a sealed secret"
    ct = param_crypt(s, b"", b"C" * 32, b"T" * 32, secret, encrypt=True)
    assert ct != secret
    assert param_crypt(s, b"", b"C" * 32, b"T" * 32, ct, encrypt=False) == secret
    assert param_crypt(s, b"", b"D" * 32, b"T" * 32, ct, encrypt=False) != secret
