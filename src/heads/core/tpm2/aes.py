"""AES encryption and CFB-128 mode (FIPS-197, SP 800-38A).

TPM parameter encryption uses AES-128; OpenPGP secret keys (docs/openpgp.md) use AES-128 or
AES-256, so the key schedule takes both sizes.

Only the forward cipher is needed: CFB decrypts with it too.  A straightforward
implementation of the FIPS-197 rounds over bytearrays; the S-box is computed from its
definition (multiplicative inverse in GF(2^8), then the affine map) instead of being
typed in (docs/tpm-objects.md §Sessions and parameter encryption).
"""

from __future__ import annotations

from typing import Final

__all__ = ["BLOCK", "cfb_decrypt", "cfb_encrypt", "encrypt_block"]

BLOCK: Final = 16


def _xtime(b: int) -> int:
    b <<= 1
    return (b ^ 0x11B) if b & 0x100 else b


def _sbox() -> bytes:
    # Powers of the generator 3 walk through every non-zero element of GF(2^8), so the
    # inverse of 3^i is 3^(255-i).
    power = [1] * 255
    for i in range(1, 255):
        prev = power[i - 1]
        power[i] = prev ^ _xtime(prev)  # times 3 = times 2 plus itself
    log = {value: i for i, value in enumerate(power)}
    box = bytearray(256)
    for x in range(256):
        inv = power[(255 - log[x]) % 255] if x else 0
        s = inv
        for shift in range(1, 5):
            s ^= ((inv << shift) | (inv >> (8 - shift))) & 0xFF
        box[x] = s ^ 0x63
    return bytes(box)


_SBOX: Final = _sbox()
_X2: Final = bytes(_xtime(i) for i in range(256))
_RCON: Final = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36)


def _expand(key: bytes) -> list[bytes]:
    """The round keys of AES-128 (11) or AES-256 (15) (FIPS-197 §5.2)."""
    if len(key) not in {16, 32}:
        raise ValueError("AES takes a 16-byte key (AES-128) or a 32-byte key (AES-256)")
    nk = len(key) // 4
    rounds = nk + 6
    words = [bytes(key[i : i + 4]) for i in range(0, len(key), 4)]
    for i in range(nk, 4 * (rounds + 1)):
        t = words[i - 1]
        if i % nk == 0:
            t = bytes(
                (
                    _SBOX[t[1]] ^ _RCON[i // nk - 1],
                    _SBOX[t[2]],
                    _SBOX[t[3]],
                    _SBOX[t[0]],
                )
            )
        elif nk > 6 and i % nk == 4:
            t = bytes(_SBOX[b] for b in t)
        words.append(bytes(a ^ b for a, b in zip(words[i - nk], t, strict=True)))
    return [b"".join(words[r * 4 : r * 4 + 4]) for r in range(rounds + 1)]


def _encrypt(rounds: list[bytes], block: bytes) -> bytes:
    last = len(rounds) - 1
    s = [a ^ b for a, b in zip(block, rounds[0], strict=True)]
    for r in range(1, last + 1):
        s = [_SBOX[b] for b in s]
        # ShiftRows: the state is column-major, byte (row, col) at index 4*col + row.
        s = [s[(i + 4 * (i % 4)) % 16] for i in range(16)]
        if r != last:
            mixed: list[int] = []
            for c in range(0, 16, 4):
                a0, a1, a2, a3 = s[c : c + 4]
                t = a0 ^ a1 ^ a2 ^ a3
                mixed += (
                    a0 ^ t ^ _X2[a0 ^ a1],
                    a1 ^ t ^ _X2[a1 ^ a2],
                    a2 ^ t ^ _X2[a2 ^ a3],
                    a3 ^ t ^ _X2[a3 ^ a0],
                )
            s = mixed
        s = [a ^ b for a, b in zip(s, rounds[r], strict=True)]
    return bytes(s)


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """One AES block encryption (a 16-byte key: AES-128, 32 bytes: AES-256).

    Raises:
        ValueError: a key or block that is not 16 bytes.
    """
    if len(block) != BLOCK:
        raise ValueError("an AES block has 16 bytes")
    return _encrypt(_expand(key), block)


def _cfb(key: bytes, iv: bytes, data: bytes | bytearray, *, encrypting: bool) -> bytearray:
    if len(iv) != BLOCK:
        raise ValueError("CFB takes a 16-byte IV")
    rounds = _expand(key)
    out = bytearray()
    feedback = bytes(iv)
    for start in range(0, len(data), BLOCK):
        chunk = data[start : start + BLOCK]
        stream = _encrypt(rounds, feedback)
        result = bytes(a ^ b for a, b in zip(chunk, stream, strict=False))
        out += result
        # The next block's input is the ciphertext (a short last block ends the stream).
        feedback = result if encrypting else bytes(chunk)
    return out


def cfb_encrypt(key: bytes, iv: bytes, data: bytes | bytearray) -> bytearray:
    """AES-CFB128 encryption (SP 800-38A §6.3); a final partial block is allowed."""
    return _cfb(key, iv, data, encrypting=True)


def cfb_decrypt(key: bytes, iv: bytes, data: bytes | bytearray) -> bytearray:
    """AES-CFB128 decryption."""
    return _cfb(key, iv, data, encrypting=False)
