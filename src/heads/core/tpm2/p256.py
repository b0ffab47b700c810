"""NIST P-256 for salting sessions with an ECC key: ECDH (SP 800-56A) by scalar multiplication.

The multiplication is a Montgomery ladder over Jacobian coordinates: the same sequence of
point operations for every bit of the (secret, ephemeral) scalar.  Python integers are not
constant-time, so this narrows rather than closes a timing channel; the scalar is used for one
session salt and thrown away (docs/tpm-objects.md §Sessions and parameter encryption).
"""

from __future__ import annotations

from typing import Final

__all__ = ["GX", "GY", "N", "P", "ecdh_x", "is_on_curve", "public_point"]

# FIPS 186-4 §D.1.2.3 (also SEC 2 secp256r1).
P: Final = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A: Final = P - 3
B: Final = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX: Final = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY: Final = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

_Jac = tuple[int, int, int]  # X, Y, Z with x = X/Z^2, y = Y/Z^3; Z = 0 is the infinity point
_INFINITY: Final[_Jac] = (1, 1, 0)


def is_on_curve(x: int, y: int) -> bool:
    """Whether (x, y) is an affine point of P-256 (coordinates reduced, equation holds)."""
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x + A * x + B)) % P == 0


def _double(p: _Jac) -> _Jac:
    x, y, z = p
    if z == 0 or y == 0:
        return _INFINITY
    # dbl-2001-b (a = -3).
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) ** 2 - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def _add(p: _Jac, q: _Jac) -> _Jac:
    x1, y1, z1 = p
    x2, y2, z2 = q
    if z1 == 0:
        return q
    if z2 == 0:
        return p
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    if h == 0:
        return _double(p) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = z1 * z2 * h % P
    return x3, y3, z3


def _affine(p: _Jac) -> tuple[int, int]:
    x, y, z = p
    if z == 0:
        raise ValueError("the result is the point at infinity")
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def _multiply(k: int, x: int, y: int) -> tuple[int, int]:
    if not 0 < k < N:
        raise ValueError("the scalar is out of range 1..n-1")
    r0, r1 = _INFINITY, (x, y, 1)
    for i in range(255, -1, -1):
        if (k >> i) & 1:
            r0, r1 = _add(r0, r1), _double(r1)
        else:
            r0, r1 = _double(r0), _add(r0, r1)
    return _affine(r0)


def public_point(k: int) -> tuple[int, int]:
    """k·G: the public point of the private scalar k (1 <= k < n)."""
    return _multiply(k, GX, GY)


def ecdh_x(k: int, x: int, y: int) -> bytes:
    """The shared secret Z: the x coordinate of k·Q, 32 bytes big-endian.

    Raises:
        ValueError: Q is not a point of P-256 (an invalid-curve attack), or k is out of range.
    """
    if not is_on_curve(x, y):
        raise ValueError("the TPM's public point is not on the P-256 curve")
    zx, _ = _multiply(k, x, y)
    return zx.to_bytes(32, "big")
