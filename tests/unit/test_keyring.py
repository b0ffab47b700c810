"""The framing check of keyring files: OpenPGP packet sequences and GnuPG keyboxes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.core.keyring import parse_keyring
from heads.errors import FormatError

# A v4 public key packet in each header form (RFC 9580 §4.2): tag 6, body "\x04" + 5 bytes.
_BODY = b"\x04" + b"\x00" * 5
NEW_FORMAT = b"\xc6\x06" + _BODY
OLD_FORMAT_1 = b"\x98\x06" + _BODY  # length type 0: one octet
OLD_FORMAT_2 = b"\x99\x00\x06" + _BODY  # length type 1: two octets
NEW_FORMAT_5 = b"\xc6\xff\x00\x00\x00\x06" + _BODY
USER_ID = b"\xcd\x05Owner"  # tag 13, new format
SUBKEY = b"\xce\x06" + _BODY  # tag 14


def _keybox(*blobs: tuple[int, bytes]) -> bytes:
    header = (32).to_bytes(4, "big") + b"\x01\x01\x00\x00KBXf" + b"\x00" * 20
    out = header
    for kind, body in blobs:
        out += (5 + len(body)).to_bytes(4, "big") + bytes([kind]) + body
    return out


@pytest.mark.parametrize(
    ("data", "keys"),
    [
        (NEW_FORMAT + USER_ID, 1),
        (OLD_FORMAT_1 + USER_ID + SUBKEY, 1),
        (OLD_FORMAT_2 + USER_ID + NEW_FORMAT_5 + USER_ID, 2),
    ],
)
def test_packet_sequences_are_counted(data: bytes, keys: int) -> None:
    summary = parse_keyring(data, source="k")
    assert (summary.format, summary.keys) == ("openpgp", keys)


def test_keybox_blobs_are_counted() -> None:
    summary = parse_keyring(_keybox((2, b"x" * 40), (2, b"y" * 10)), source="k.kbx")
    assert (summary.format, summary.keys) == ("keybox", 2)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n", "ASCII-armored"),
        (b"\x00garbage", "not an OpenPGP packet"),
        (USER_ID + NEW_FORMAT, "type 13, not a public key"),
        (NEW_FORMAT[:-1], "runs past the end"),
        (NEW_FORMAT + b"\xcd", "truncated packet header"),
        (b"\xc6\x01\x09", "unknown version"),
        (b"\xc6\xe1" + _BODY, "partial body length"),
        (b"\x9b" + _BODY, "indeterminate packet length"),
        (_keybox(), "holds no public key"),
        (_keybox((2, b"x"))[:-1], "does not fit"),
        (_keybox((3, b"x509")), "holds no public key"),
    ],
)
def test_empty_armored_and_corrupt_keyrings_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_keyring(data, source="k")


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_format_error(data: bytes) -> None:
    try:
        summary = parse_keyring(data, source="k")
    except FormatError:
        return
    assert summary.keys >= 1


@given(st.binary(min_size=1, max_size=60))
def test_anything_appended_to_a_keyring_is_caught_or_is_packets(tail: bytes) -> None:
    try:
        parse_keyring(NEW_FORMAT + USER_ID + tail, source="k")
    except FormatError:
        return
    # Accepted only when the tail itself is whole packets.
    assert tail[0] & 0x80
