"""core/openpgp's readers, fuzzed: only FormatError (or WrongPassphraseError) comes out.

Random bytes rarely pass the first header, so most inputs start from our own exports and are
damaged: bytes flipped or set, ranges deleted or duplicated, truncation.  Whatever is still
accepted must be the very key that was exported (the checksum, the public key check and the
self-certification leave no room for a silent change).
"""

from __future__ import annotations

import random
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heads.core.openpgp import (
    OwnerKey,
    export_public,
    export_secret,
    generate_owner_key,
    import_secret,
    read_public,
    sign_detached,
)
from heads.core.openpgp.armor import dearmor
from heads.core.openpgp.packets import read_packets
from heads.core.openpgp.verify import parse_signature
from heads.core.secret import Secret
from heads.errors import FormatError, WrongPassphraseError

PASSPHRASE = Secret(b"pw")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def owner() -> OwnerKey:
    generator = random.Random(11)  # noqa: S311 (reproducible test keys)
    return generate_owner_key("Owner <o@heads.invalid>", created=1, rng=generator.randbytes)


@cache
def secret_binary() -> bytes:
    generator = random.Random(12)  # noqa: S311
    armored = export_secret(owner(), PASSPHRASE, rng=generator.randbytes, s2k_count=0)
    return dearmor(armored, label="PRIVATE KEY BLOCK", source="s")


@st.composite
def damaged(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "delete", "duplicate", "truncate"]))
        if action == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[where] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xC0, 0xFF]))
        elif action == "delete":
            del data[where : where + draw(st.integers(1, 8))]
        elif action == "duplicate":
            data[where:where] = data[where : where + draw(st.integers(1, 8))]
        else:
            del data[where:]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    for reader in (
        lambda: read_public(data, source="f"),
        lambda: import_secret(data, PASSPHRASE, source="f"),
        lambda: parse_signature(data, source="f", base=0),
        lambda: read_packets(data, source="f"),
        lambda: dearmor(data, label="SIGNATURE", source="f"),
    ):
        try:
            reader()
        except FormatError as exc:
            source = exc.source
            assert source == "f"


@FUZZ
@given(st.data())
def test_damaged_public_keys(data: st.DataObject) -> None:
    original = export_public(owner())
    mutated = data.draw(damaged(original))
    try:
        public = read_public(mutated, source="pub")
    except FormatError:
        return
    assert (public.public, public.created) == (owner().public, owner().created)


@FUZZ
@given(st.data())
def test_damaged_secret_keys(data: st.DataObject) -> None:
    mutated = data.draw(damaged(secret_binary()))
    try:
        key = import_secret(mutated, PASSPHRASE, source="sec")
    except (FormatError, WrongPassphraseError) as exc:
        message = str(exc)
        assert "pw" not in message
        return
    assert key == owner()


@FUZZ
@given(st.data())
def test_damaged_signatures(data: st.DataObject) -> None:
    armored = sign_detached(owner(), b"data", created=2)
    body = read_packets(dearmor(armored, label="SIGNATURE", source="s"), source="s")[0].body
    mutated = data.draw(damaged(body))
    try:
        parse_signature(mutated, source="sig", base=0)
    except FormatError as exc:
        offset = exc.offset
        assert offset is not None
