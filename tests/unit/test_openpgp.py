"""core/openpgp: key generation, public export, signatures and the secret key backup.

Everything is checked with our own parser and verifier here; tests/adapters/test_openpgp_gpg.py
checks the same outputs with real gpg and gpgv.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable

import pytest

from heads.core.openpgp import (
    OwnerKey,
    OwnerKeySigner,
    export_public,
    export_public_armored,
    export_secret,
    generate_owner_key,
    import_secret,
    read_public,
    sign_detached,
)
from heads.core.openpgp.armor import armor, crc24, dearmor
from heads.core.openpgp.key import public_key_body, signature_body, user_id_prefix
from heads.core.openpgp.packets import (
    Packet,
    encode_mpi,
    encode_packet,
    encode_subpacket,
    read_packets,
    read_subpackets,
)
from heads.core.openpgp.s2k import decode_count, derive_key
from heads.core.openpgp.verify import parse_signature, verify_signature
from heads.core.secret import Secret
from heads.core.tpm2 import aes
from heads.errors import FormatError, UsageError, WrongPassphraseError

USER_ID = "Heads Owner <owner@heads.invalid>"
CREATED = 1_700_000_000
PASSPHRASE = Secret(b"correct horse battery")
FAST_S2K = 0x10  # 2048 bytes: the format is the same, the tests stay quick


def fixed_rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes  # noqa: S311 (reproducible test keys)


@pytest.fixture(scope="module")
def key() -> OwnerKey:
    return generate_owner_key(USER_ID, created=CREATED, rng=fixed_rng(1))


def signature_of(armored: bytes) -> Packet:
    packets = read_packets(dearmor(armored, label="SIGNATURE", source="sig"), source="sig")
    assert [p.tag for p in packets] == [2]
    return packets[0]


# --- packets, MPIs, armor -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536])
def test_packet_lengths_round_trip(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    encoded = encode_packet(13, body)
    assert read_packets(encoded, source="t") == [Packet(13, body, 0)]


@pytest.mark.parametrize(
    ("header", "length"),
    [(b"\xcd\x05", 5), (b"\xcd\xc0\x00", 192), (b"\xcd\xff\x00\x00\x01\x00", 256)],
)
def test_new_format_headers_are_read(header: bytes, length: int) -> None:
    packets = read_packets(header + bytes(length), source="t")
    assert packets == [Packet(13, bytes(length), 0)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00", "not an OpenPGP packet"),
        (b"\xcd\xe1", "partial body length"),
        (b"\xb7", "indeterminate packet length"),
        (b"\xb4\x05abc", "runs past the end"),
        (b"\xb5\x00", "truncated packet header"),
        (b"\xcd\xff\x00\x10\x00\x01" + bytes(8), "more than a key or signature needs"),
        (b"\xc0\x00", "tag 0 is reserved"),
    ],
)
def test_bad_framing_names_source_and_offset(data: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason) as caught:
        read_packets(b"\xb4\x01x" + data, source="key.asc")
    assert caught.value.source == "key.asc"
    assert caught.value.offset == 3


def test_mpi_counts_bits_and_drops_leading_zeros() -> None:
    assert encode_mpi(b"\x00\x01\xff") == b"\x00\x09\x01\xff"
    assert encode_mpi(b"\x40" + bytes(32))[:2] == (263).to_bytes(2, "big")
    assert encode_mpi(b"\x00\x00") == b"\x00\x00"


@pytest.mark.parametrize("size", [0, 190, 191, 8000, 9000])
def test_subpackets_round_trip(size: int) -> None:
    area = encode_subpacket(20, bytes(size)) + encode_subpacket(2 | 0x80, b"\x01\x02\x03\x04")
    assert read_subpackets(area, source="t", base=0) == [
        (20, False, bytes(size)),
        (2, True, b"\x01\x02\x03\x04"),
    ]


def test_armor_round_trips_and_checks_its_crc() -> None:
    data = bytes(range(200))
    text = armor("SIGNATURE", data)
    assert text.startswith(b"-----BEGIN PGP SIGNATURE-----\n\n")
    assert dearmor(text, label="SIGNATURE", source="s") == data
    assert crc24(b"") == 0xB704CE
    lines = text.split(b"\n")
    lines[2] = lines[2][:10] + (b"B" if lines[2][10:11] != b"B" else b"C") + lines[2][11:]
    with pytest.raises(FormatError, match="checksum differs"):
        dearmor(b"\n".join(lines), label="SIGNATURE", source="s")
    with pytest.raises(FormatError, match="no '-----BEGIN PGP PRIVATE KEY BLOCK-----' line"):
        dearmor(text, label="PRIVATE KEY BLOCK", source="s")
    with pytest.raises(FormatError, match="no '-----END PGP SIGNATURE-----' line"):
        dearmor(text.split(b"-----END")[0], label="SIGNATURE", source="s")
    with pytest.raises(FormatError, match="unexpected line"):
        dearmor(text.replace(b"-----END", b"-----XND"), label="SIGNATURE", source="s")


def test_armor_headers_are_skipped() -> None:
    text = armor("SIGNATURE", b"abc").replace(b"-----\n\n", b"-----\nComment: hi\n\n", 1)
    assert dearmor(text, label="SIGNATURE", source="s") == b"abc"


# --- S2K ----------------------------------------------------------------------------------


def test_s2k_count_decoding() -> None:
    assert decode_count(0) == 1024
    assert decode_count(0x60) == 65536
    assert decode_count(0xFF) == 65011712


def test_s2k_hashes_salt_and_passphrase_repeated_to_the_count() -> None:
    salt = b"12345678"
    unit = (salt + b"pw") * 102 + (salt + b"pw")[:4]  # coded count 0: 1024 bytes
    expected = hashlib.sha256(unit).digest()
    assert derive_key(Secret(b"pw"), hash_id=8, salt=salt, coded_count=0, size=32) == expected
    # Beyond one digest, a second context is preloaded with one zero byte.
    long = derive_key(Secret(b"pw"), hash_id=2, salt=salt, coded_count=0, size=32)
    sha1 = hashlib.new("sha1", usedforsecurity=False)
    sha1.update(unit)
    first = sha1.digest()
    sha1 = hashlib.new("sha1", usedforsecurity=False)
    sha1.update(b"\x00" + unit)
    assert long == (first + sha1.digest())[:32]


# --- the key ------------------------------------------------------------------------------


def test_fingerprint_is_sha1_of_the_key_packet(key: OwnerKey) -> None:
    body = public_key_body(key.public, CREATED)
    prefix = b"\x99" + len(body).to_bytes(2, "big") + body
    expected = hashlib.sha1(prefix, usedforsecurity=False).hexdigest().upper()
    assert key.fingerprint == expected
    assert len(key.fingerprint) == 40
    assert key.key_id.hex().upper() == key.fingerprint[-16:]


def test_generation_is_deterministic_in_its_random_source() -> None:
    first = generate_owner_key(USER_ID, created=CREATED, rng=fixed_rng(7))
    second = generate_owner_key(USER_ID, created=CREATED, rng=fixed_rng(7))
    third = generate_owner_key(USER_ID, created=CREATED, rng=fixed_rng(8))
    assert first.fingerprint == second.fingerprint != third.fingerprint
    assert "****" in repr(first)
    assert first.seed.reveal().hex() not in repr(first)


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("a\nb", "control"),
        ("x\u202ey", "control"),
        ("x" * 1025, "longer"),
    ],
)
def test_unfit_user_ids_are_refused(user_id: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        generate_owner_key(user_id, created=CREATED, rng=fixed_rng(1))


def test_times_outside_32_bits_and_short_random_are_refused(key: OwnerKey) -> None:
    with pytest.raises(UsageError, match="time range"):
        generate_owner_key(USER_ID, created=1 << 32, rng=fixed_rng(1))
    with pytest.raises(UsageError, match="time range"):
        sign_detached(key, b"x", created=-1)
    with pytest.raises(UsageError, match="before the key was made"):
        sign_detached(key, b"x", created=CREATED - 1)
    with pytest.raises(ValueError, match="32 bytes"):
        generate_owner_key(USER_ID, created=CREATED, rng=lambda n: bytes(n - 1))


def test_public_export_reads_back_with_a_valid_self_certification(key: OwnerKey) -> None:
    exported = export_public(key)
    assert export_public(key) == exported  # deterministic: same key, same bytes
    packets = read_packets(exported, source="pub")
    assert [p.tag for p in packets] == [6, 13, 2]
    signature = parse_signature(packets[2].body, source="pub", base=packets[2].offset)
    assert signature.sig_type == 0x13
    assert signature.hash_algo == 8
    assert signature.subpacket(27) == b"\x03"  # certify + sign
    assert (signature.subpacket(21) or b"")[:1] == b"\x08"  # SHA-256 preferred
    public = read_public(exported, source="pub")
    assert (public.public, public.created, public.user_id) == (key.public, CREATED, USER_ID)
    assert public.fingerprint == key.fingerprint
    assert read_public(export_public_armored(key), source="pub") == public


def test_a_replaced_user_id_is_refused(key: OwnerKey) -> None:
    exported = export_public(key)
    forged = exported.replace(USER_ID.encode(), USER_ID.replace("Owner", "Thief").encode())
    with pytest.raises(FormatError, match="no user ID of the key carries a valid"):
        read_public(forged, source="pub")


def test_detached_signature_verifies_and_names_its_issuer(key: OwnerKey) -> None:
    data = b"0123  kexec_hashes.txt\n"
    armored = sign_detached(key, data, created=CREATED + 5)
    assert armored.startswith(b"-----BEGIN PGP SIGNATURE-----")
    packet = signature_of(armored)
    signature = parse_signature(packet.body, source="sig", base=0)
    assert signature.sig_type == 0x00
    assert signature.subpacket(33) == b"\x04" + bytes.fromhex(key.fingerprint)
    assert signature.subpacket(2) == (CREATED + 5).to_bytes(4, "big")
    assert (16, False, key.key_id) in signature.unhashed
    assert verify_signature(key.public, signature, data)
    assert not verify_signature(key.public, signature, data + b"x")
    other = generate_owner_key(USER_ID, created=CREATED, rng=fixed_rng(2))
    assert not verify_signature(other.public, signature, data)


def test_signer_uses_the_clock_and_returns_the_fingerprint(key: OwnerKey) -> None:
    signer = OwnerKeySigner(key, clock=lambda: CREATED + 99.7)
    armored, fingerprint = signer.sign(b"data")
    assert fingerprint == key.fingerprint
    signature = parse_signature(signature_of(armored).body, source="sig", base=0)
    assert signature.subpacket(2) == (CREATED + 99).to_bytes(4, "big")
    assert verify_signature(key.public, signature, b"data")


# --- the secret key backup ----------------------------------------------------------------


def test_secret_export_round_trips_with_the_default_count(key: OwnerKey) -> None:
    exported = export_secret(key, PASSPHRASE, rng=fixed_rng(3))
    assert exported.startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert key.seed.reveal() not in dearmor(exported, label="PRIVATE KEY BLOCK", source="s")
    packets = read_packets(dearmor(exported, label="PRIVATE KEY BLOCK", source="s"), source="s")
    assert [p.tag for p in packets] == [5, 13, 2]
    s2k = packets[0].body[len(key.public_body) :][:13]
    # usage 254, AES-256, iterated+salted, SHA-256, 8 salt bytes, count 0xff
    assert (s2k[:4], s2k[12]) == (bytes((254, 9, 3, 8)), 0xFF)
    assert import_secret(exported, PASSPHRASE, source="backup.asc") == key


@pytest.mark.parametrize("seed_byte", [0x00, 0x01])
def test_seeds_with_leading_zero_bytes_round_trip(seed_byte: int) -> None:
    seed = bytes((0, seed_byte)) + bytes(range(30))
    key = generate_owner_key(USER_ID, created=CREATED, rng=lambda n: seed[:n])
    exported = export_secret(key, PASSPHRASE, rng=fixed_rng(4), s2k_count=FAST_S2K)
    assert import_secret(exported, PASSPHRASE, source="b").seed == key.seed


def test_wrong_passphrase_is_its_own_error_and_leaks_nothing(key: OwnerKey) -> None:
    exported = export_secret(key, PASSPHRASE, rng=fixed_rng(5), s2k_count=FAST_S2K)
    with pytest.raises(WrongPassphraseError) as caught:
        import_secret(exported, Secret(b"correct horse battery!"), source="usb/backup.asc")
    text = f"{caught.value} {caught.value.hint} {caught.value!r}"
    assert "usb/backup.asc" in text
    assert "correct horse" not in text
    assert key.seed.reveal().hex() not in text.lower()


def test_empty_passphrase_is_refused(key: OwnerKey) -> None:
    with pytest.raises(UsageError, match="needs a passphrase"):
        export_secret(key, Secret(b""), rng=fixed_rng(1))


def _rearmored(exported: bytes, change: Callable[[bytearray], None]) -> bytes:
    binary = bytearray(dearmor(exported, label="PRIVATE KEY BLOCK", source="s"))
    change(binary)
    return armor("PRIVATE KEY BLOCK", bytes(binary))


def test_a_secret_of_another_key_is_refused(key: OwnerKey) -> None:
    other = generate_owner_key(USER_ID, created=CREATED, rng=fixed_rng(9))
    mine = dearmor(
        export_secret(key, PASSPHRASE, rng=fixed_rng(6), s2k_count=FAST_S2K),
        label="PRIVATE KEY BLOCK",
        source="s",
    )
    theirs = dearmor(
        export_secret(other, PASSPHRASE, rng=fixed_rng(6), s2k_count=FAST_S2K),
        label="PRIVATE KEY BLOCK",
        source="s",
    )
    mine_packets = read_packets(mine, source="s")
    theirs_packets = read_packets(theirs, source="s")
    # My public key, user ID and certification; their encrypted secret.
    offset = len(key.public_body)
    body = mine_packets[0].body[:offset] + theirs_packets[0].body[offset:]
    spliced = encode_packet(5, body) + mine[len(encode_packet(5, mine_packets[0].body)) :]
    with pytest.raises(FormatError, match="does not belong to the key's public part"):
        import_secret(spliced, PASSPHRASE, source="s")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b: b.__setitem__(2, 3), "key version 3"),
        (lambda b: b.__setitem__(7, 1), "key algorithm 1"),
        (lambda b: b.__setitem__(17, 2), "curve OID"),
        (lambda b: b.__setitem__(53, 1), "S2K usage 1"),
        (lambda b: b.__setitem__(54, 2), "cipher algorithm 2"),
        (lambda b: b.__setitem__(55, 101), "smartcard"),
        (lambda b: b.__setitem__(55, 1), "S2K type 1"),
        (lambda b: b.__setitem__(56, 1), "S2K hash 1"),
    ],
)
def test_unsupported_secret_keys_name_the_field(
    key: OwnerKey, change: Callable[[bytearray], None], reason: str
) -> None:
    exported = export_secret(key, PASSPHRASE, rng=fixed_rng(6), s2k_count=FAST_S2K)
    with pytest.raises(FormatError, match=reason) as caught:
        import_secret(_rearmored(exported, change), PASSPHRASE, source="usb/key.asc")
    assert caught.value.source == "usb/key.asc"


def test_unprotected_secret_keys_are_read(key: OwnerKey) -> None:
    clear = encode_mpi(key.seed.reveal())
    checksum = (sum(clear) & 0xFFFF).to_bytes(2, "big")
    exported = export_public(key)
    packets = read_packets(exported, source="p")
    body = key.public_body + b"\x00" + clear + checksum
    secret = encode_packet(5, body) + exported[len(encode_packet(6, packets[0].body)) :]
    assert import_secret(secret, Secret(b""), source="s") == key


def _certified(key: OwnerKey, user_id: bytes, *, before: bytes = b"") -> bytes:
    """A public key whose user ID (any bytes) carries a valid self-certification."""
    prefix = user_id_prefix(key.public_body, user_id)
    certification = signature_body(key, 0x13, prefix=prefix, hashed=b"", unhashed=b"")
    return (
        encode_packet(6, key.public_body)
        + encode_packet(13, user_id)
        + before
        + encode_packet(2, certification)
    )


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        (b"Owner\x1b[2J", "control characters"),
        (b"Owner \xe2\x80\xae", "control characters"),
        (b"\xff\xfe", "not UTF-8"),
        (b" ", "is empty"),
    ],
)
def test_certified_but_unfit_user_ids_are_refused(
    key: OwnerKey, user_id: bytes, reason: str
) -> None:
    with pytest.raises(FormatError, match=reason) as caught:
        read_public(_certified(key, user_id), source="pub")
    assert caught.value.offset == len(encode_packet(6, key.public_body))


def test_unreadable_signatures_are_skipped_for_a_good_one(key: OwnerKey) -> None:
    v3 = encode_packet(2, b"\x03" + bytes(20))
    public = read_public(_certified(key, b"Owner", before=v3), source="pub")
    assert public.user_id == "Owner"
    # Without the good one, nothing certifies the user ID.
    lone = encode_packet(6, key.public_body) + encode_packet(13, b"Owner") + v3
    with pytest.raises(FormatError, match="no user ID of the key carries a valid"):
        read_public(lone, source="pub")


def test_oversized_key_files_are_refused() -> None:
    with pytest.raises(FormatError, match="not a key file"):
        import_secret(bytes(2 * 1024 * 1024), PASSPHRASE, source="big")


def test_signatures_are_checked_a_bounded_number_of_times(key: OwnerKey) -> None:
    other = generate_owner_key(USER_ID, created=CREATED, rng=fixed_rng(21))
    prefix = user_id_prefix(key.public_body, b"Owner")
    forged = encode_packet(2, signature_body(other, 0x13, prefix=prefix, hashed=b"", unhashed=b""))
    # Unnamed issuers must be checked, up to the bound; then the file is refused.
    with pytest.raises(FormatError, match="more than 16 certifications"):
        read_public(_certified(key, b"Owner", before=forged * 17), source="pub")
    # A certification that names another issuer is skipped without being checked.
    hashed = encode_subpacket(33, b"\x04" + bytes.fromhex(other.fingerprint))
    third = signature_body(other, 0x10, prefix=prefix, hashed=hashed, unhashed=b"")
    public = read_public(
        _certified(key, b"Owner", before=encode_packet(2, third) * 40), source="pub"
    )
    assert public.user_id == "Owner"


@pytest.mark.parametrize(
    ("clear", "reason"),
    [
        (b"\x01\x08" + bytes(33), "264 bits, not 256"),
        (b"\x01\x00" + bytes(33), "does not fill its field"),
        (b"\x01", "truncated secret seed"),
    ],
)
def test_malformed_decrypted_seeds_are_refused(key: OwnerKey, clear: bytes, reason: str) -> None:
    exported = export_public(key)
    rest = exported[len(encode_packet(6, key.public_body)) :]
    checksum = (sum(clear) & 0xFFFF).to_bytes(2, "big")
    secret = encode_packet(5, key.public_body + b"\x00" + clear + checksum) + rest
    with pytest.raises(FormatError, match=reason) as caught:
        import_secret(secret, PASSPHRASE, source="usb/key.gpg")
    assert caught.value.source == "usb/key.gpg (decrypted secret)"


def test_owner_keys_of_the_wrong_shape_cannot_be_made(key: OwnerKey) -> None:
    with pytest.raises(ValueError, match="32-byte seed"):
        OwnerKey(Secret(bytes(31)), key.public, CREATED, USER_ID)
    with pytest.raises(ValueError, match="32-byte public key"):
        OwnerKey(key.seed, key.public + b"\x00", CREATED, USER_ID)
    with pytest.raises(UsageError, match="time range"):
        OwnerKey(key.seed, key.public, -5, USER_ID)


def test_signatures_by_weak_hashes_or_other_algorithms_do_not_verify(key: OwnerKey) -> None:
    data = b"data"
    signature = parse_signature(
        signature_of(sign_detached(key, data, created=CREATED)).body, source="sig", base=0
    )
    assert verify_signature(key.public, signature, data)
    changed = [
        dataclasses.replace(signature, hash_algo=2),  # SHA-1
        dataclasses.replace(signature, hash_algo=1),  # MD5
        dataclasses.replace(signature, pubkey_algo=1),  # RSA
        dataclasses.replace(
            signature, digest_prefix=bytes(b ^ 0xFF for b in signature.digest_prefix)
        ),
    ]
    for other in changed:
        assert not verify_signature(key.public, other, data)


@pytest.mark.parametrize(("cipher", "key_bytes", "s2k_hash"), [(7, 16, 2), (9, 32, 10)])
def test_the_16_bit_checksum_and_other_ciphers_and_hashes_are_read(
    key: OwnerKey, cipher: int, key_bytes: int, s2k_hash: int
) -> None:
    # S2K usage 255 (a 16-bit sum instead of SHA-1), as older OpenPGP writers protect keys.
    salt, iv = bytes(range(8)), bytes(range(16))
    cipher_key = derive_key(PASSPHRASE, hash_id=s2k_hash, salt=salt, coded_count=0, size=key_bytes)
    clear = encode_mpi(key.seed.reveal())
    clear += (sum(clear) & 0xFFFF).to_bytes(2, "big")
    encrypted = bytes(aes.cfb_encrypt(bytes(cipher_key), iv, clear))
    body = key.public_body + bytes((255, cipher, 3, s2k_hash)) + salt + b"\x00" + iv + encrypted
    rest = export_public(key)[len(encode_packet(6, key.public_body)) :]
    secret = encode_packet(5, body) + rest
    assert import_secret(secret, PASSPHRASE, source="s") == key
    with pytest.raises(WrongPassphraseError):
        import_secret(secret, Secret(b"other"), source="s")
