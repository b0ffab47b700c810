"""Ed25519 signatures (RFC 8032 §5.1), in pure Python.

OpenPGP's EdDSA keys (docs/openpgp.md) need only three operations: derive the public key from
the 32-byte seed, sign, verify.  Points are kept in extended twisted-Edwards coordinates
(X:Y:Z:T with x = X/Z, y = Y/Z, xy = T/Z), so adding two points needs no inversion; the one
inversion per encoding is a modular power.

This is not constant time, and cannot be made so in Python: big-integer arithmetic takes time
that depends on the values, and the scalar multiplication branches on the bits of the secret
scalar.  Heads signs a few times per /boot update, on the owner's own machine, with nobody
able to time it remotely; that is the threat model this implementation accepts.  The
intermediate integers derived from the seed cannot be wiped either (Python integers are
immutable): only the seed itself is held in a :class:`heads.core.secret.Secret` by callers.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["SEED_BYTES", "SIGNATURE_BYTES", "public_key", "sign", "verify"]

SEED_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64

_P: Final = 2**255 - 19
_L: Final = 2**252 + 27742317777372353535851937790883648493  # the base point's order
_D: Final = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1: Final = pow(2, (_P - 1) // 4, _P)  # a square root of -1 modulo p

_Point = tuple[int, int, int, int]


def _add(a: _Point, b: _Point) -> _Point:
    # RFC 8032 §5.1.4, "add-2008-hwcd-3" for a = -1.
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(a: _Point) -> _Point:
    # RFC 8032 §5.1.4, "dbl-2008-hwcd".
    x1, y1, z1, _ = a
    aa = x1 * x1 % _P
    bb = y1 * y1 % _P
    cc = 2 * z1 * z1 % _P
    h = aa + bb
    e = h - (x1 + y1) * (x1 + y1)
    g = aa - bb
    f = cc + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


_IDENTITY: Final[_Point] = (0, 1, 1, 0)


def _multiply(scalar: int, point: _Point) -> _Point:
    result = _IDENTITY
    for bit in bin(scalar)[2:]:
        result = _double(result)
        if bit == "1":
            result = _add(result, point)
    return result


def _recover_x(y: int, sign: int) -> int | None:
    """x for ``y`` with the given low bit (RFC 8032 §5.1.3), or None when there is none."""
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


_BASE_Y: Final = 4 * pow(5, _P - 2, _P) % _P
_BASE_X: Final = _recover_x(_BASE_Y, 0) or 0
_BASE: Final[_Point] = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % _P)


def _encode(point: _Point) -> bytes:
    x, y, z, _ = point
    zinv = pow(z, _P - 2, _P)
    x, y = x * zinv % _P, y * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(data: bytes) -> _Point | None:
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    y = value & ((1 << 255) - 1)
    x = _recover_x(y, value >> 255)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _expand_seed(seed: bytes) -> tuple[int, bytes]:
    """The secret scalar (clamped, §5.1.5) and the nonce prefix of a seed."""
    if len(seed) != SEED_BYTES:
        raise ValueError("an Ed25519 seed has 32 bytes")
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % _L


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed (RFC 8032 §5.1.5)."""
    scalar, _ = _expand_seed(seed)
    return _encode(_multiply(scalar, _BASE))


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte signature R || S of ``message`` (RFC 8032 §5.1.6)."""
    scalar, prefix = _expand_seed(seed)
    public = _encode(_multiply(scalar, _BASE))
    r = _hash_int(prefix, message)
    big_r = _encode(_multiply(r, _BASE))
    k = _hash_int(big_r, public, message)
    s = (r + k * scalar) % _L
    return big_r + s.to_bytes(32, "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public``'s signature of ``message`` (RFC 8032 §5.1.7).

    The group equation is checked without the cofactor, as most implementations (and
    libgcrypt, which gpg uses) do; a non-canonical S (S >= L) is refused.
    """
    if len(signature) != SIGNATURE_BYTES or len(public) != 32:
        return False
    point_a = _decode(public)
    point_r = _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if point_a is None or point_r is None or s >= _L:
        return False
    k = _hash_int(signature[:32], public, message)
    left = _multiply(s, _BASE)
    right = _add(point_r, _multiply(k, point_a))
    return _encode(left) == _encode(right)
