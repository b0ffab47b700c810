"""Authorisation sessions: salt, session key, command and response HMACs, parameter encryption.

TPM 2.0 Part 1 §19.6 (HMAC authorisation), §21 (session-based encryption) and Annex C (the
salt): everything here is arithmetic on values the caller supplies, random ones included, so it
runs without a TPM (docs/tpm-objects.md §Sessions and parameter encryption).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from heads.core.tpm2 import aes, p256
from heads.core.tpm2.constants import ALG
from heads.core.tpm2.kdf import kdfa, kdfe, oaep_encrypt
from heads.core.tpm2.marshal import tpm2b, u8, u32
from heads.core.tpm2.structures import Public, hash_for

__all__ = [
    "SaltInputs",
    "Session",
    "command_hmac",
    "cp_hash",
    "encrypted_salt",
    "param_crypt",
    "response_hmac",
    "rp_hash",
    "session_key",
    "strip_auth",
]

_OAEP_LABEL = b"SECRET\0"


@dataclass(frozen=True, slots=True)
class SaltInputs:
    """The caller's randomness for one salt: salt bytes (RSA), OAEP seed (RSA), scalar (ECC)."""

    salt: bytes
    oaep_seed: bytes
    scalar: int


def encrypted_salt(key: Public, rand: SaltInputs) -> tuple[bytearray, bytes]:
    """The salt and its encryption to ``key`` (a TPM2B_ENCRYPTED_SECRET's contents).

    RSA keys: the salt (one nameAlg digest of random bytes) encrypted with RSA-OAEP, label
    "SECRET".  ECC P-256 keys: an ephemeral key pair; the salt is KDFe over the ECDH shared
    x coordinate, label "SECRET", and the encrypted salt is the ephemeral public point.

    Raises:
        ValueError: a key type, curve or nameAlg heads cannot use, or a point off the curve.
    """
    hash_name = hash_for(key.name_alg)
    digest_size = hashlib.new(hash_name).digest_size
    if key.type == ALG.RSA:
        salt = bytearray(rand.salt[:digest_size])
        if len(salt) != digest_size:
            raise ValueError("not enough salt bytes for this key's nameAlg")
        exponent = key.rsa_exponent or 65537
        secret = oaep_encrypt(
            hash_name, key.rsa_modulus, exponent, bytes(salt), label=_OAEP_LABEL,
            seed=rand.oaep_seed,
        )  # fmt: skip
        return salt, secret
    if key.type == ALG.ECC:
        if key.ecc_curve != 0x0003:
            raise ValueError(f"ECC curve 0x{key.ecc_curve:04x} is not P-256")
        qx, qy = int.from_bytes(key.ecc_x, "big"), int.from_bytes(key.ecc_y, "big")
        z = p256.ecdh_x(rand.scalar, qx, qy)
        ex, ey = p256.public_point(rand.scalar)
        eu = ex.to_bytes(32, "big")
        salt = bytearray(kdfe(hash_name, z, b"SECRET", eu, key.ecc_x, bits=digest_size * 8))
        return salt, tpm2b(eu) + tpm2b(ey.to_bytes(32, "big"))
    raise ValueError(f"a key of type 0x{key.type:04x} cannot salt a session")


def session_key(hash_name: str, salt: bytes, nonce_tpm: bytes, nonce_caller: bytes) -> bytearray:
    """sessionKey = KDFa(authHash, bind auth || salt, "ATH", nonceTPM, nonceCaller); empty
    for a session neither bound nor salted (heads never binds)."""
    if not salt:
        return bytearray()
    bits = hashlib.new(hash_name).digest_size * 8
    return bytearray(kdfa(hash_name, salt, b"ATH", nonce_tpm, nonce_caller, bits=bits))


def strip_auth(auth: bytes) -> bytes:
    """An authValue as the TPM uses it in HMACs: trailing zero octets removed."""
    return auth.rstrip(b"\0")


@dataclass(slots=True)
class Session:
    """A started HMAC or policy session as the caller tracks it."""

    handle: int
    hash_name: str
    key: bytearray
    nonce_tpm: bytes
    symmetric: bool
    auth_value_needed: bool = False  # a policy session after TPM2_PolicyAuthValue

    def wipe(self) -> None:
        self.key[:] = bytes(len(self.key))


def cp_hash(hash_name: str, cc: int, names: list[bytes], params: bytes) -> bytes:
    """cpHash = H(commandCode || name1 || ... || parameters)."""
    return hashlib.new(hash_name, u32(cc) + b"".join(names) + params).digest()


def rp_hash(hash_name: str, cc: int, params: bytes) -> bytes:
    """rpHash = H(responseCode (0) || commandCode || parameters)."""
    return hashlib.new(hash_name, u32(0) + u32(cc) + params).digest()


def command_hmac(
    session: Session,
    auth: bytes,
    cphash: bytes,
    nonce_caller: bytes,
    *,
    attrs: int,
    extra_nonces: bytes = b"",
) -> bytes:
    """HMAC(sessionKey || authValue, cpHash || nonceCaller || nonceTPM || [decrypt and
    encrypt sessions' nonceTPM, first session only] || sessionAttributes)."""
    key = bytes(session.key) + strip_auth(auth)
    msg = cphash + nonce_caller + session.nonce_tpm + extra_nonces + u8(attrs)
    return hmac.new(key, msg, session.hash_name).digest()


def response_hmac(
    session: Session, auth: bytes, rphash: bytes, nonce_tpm: bytes, nonce_caller: bytes, *,
    attrs: int,
) -> bytes:  # fmt: skip
    """HMAC(sessionKey || authValue, rpHash || nonceTPM || nonceCaller || sessionAttributes)."""
    key = bytes(session.key) + strip_auth(auth)
    msg = rphash + nonce_tpm + nonce_caller + u8(attrs)
    return hmac.new(key, msg, session.hash_name).digest()


def param_crypt(
    session: Session,
    auth: bytes,
    nonce_newer: bytes,
    nonce_older: bytes,
    data: bytes | bytearray,
    *,
    encrypt: bool,
) -> bytearray:
    """AES-128-CFB over a first parameter's bytes: key and IV from KDFa(sessionKey ||
    authValue, "CFB", nonceNewer, nonceOlder, 256 bits).

    Raises:
        ValueError: the session has no symmetric algorithm, or no key to derive one from.
    """
    if not session.symmetric:
        raise ValueError("the session was started without a symmetric algorithm")
    value = bytes(session.key) + strip_auth(auth)
    if not value:
        raise ValueError("an unsalted, unbound session cannot encrypt parameters")
    material = kdfa(session.hash_name, value, b"CFB", nonce_newer, nonce_older, bits=256)
    key, iv = material[:16], material[16:]
    if encrypt:
        return aes.cfb_encrypt(key, iv, data)
    return aes.cfb_decrypt(key, iv, data)
