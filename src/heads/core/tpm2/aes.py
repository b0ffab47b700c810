"""AES-128 encryption and CFB-128 mode, for TPM parameter encryption (FIPS-197, SP 800-38A).

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
    """The 11 round keys of AES-128 (FIPS-197 §5.2)."""
    if len(key) != 16:
        raise ValueError("AES-128 takes a 16-byte key")
    words = [bytes(key[i : i + 4]) for i in range(0, 16, 4)]
    for i in range(4, 44):
        t = words[i - 1]
        if i % 4 == 0:
            t = bytes(
                (
                    _SBOX[t[1]] ^ _RCON[i // 4 - 1],
                    _SBOX[t[2]],
                    _SBOX[t[3]],
                    _SBOX[t[0]],
                )
            )
        words.append(bytes(a ^ b for a, b in zip(words[i - 4], t, strict=True)))
    return [b"".join(words[r * 4 : r * 4 + 4]) for r in range(11)]


def _encrypt(rounds: list[bytes], block: bytes) -> bytes:
    s = [a ^ b for a, b in zip(block, rounds[0], strict=True)]
    for r in range(1, 11):
        s = [_SBOX[b] for b in s]
        # ShiftRows: the state is column-major, byte (row, col) at index 4*col + row.
        s = [s[(i + 4 * (i % 4)) % 16] for i in range(16)]
        if r != 10:
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
    """One AES-128 block encryption.

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
    """AES-128-CFB128 encryption (SP 800-38A §6.3); a final partial block is allowed."""
    return _cfb(key, iv, data, encrypting=True)


def cfb_decrypt(key: bytes, iv: bytes, data: bytes | bytearray) -> bytearray:
    """AES-128-CFB128 decryption."""
    return _cfb(key, iv, data, encrypting=False)
