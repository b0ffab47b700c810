"""gpg/gpgv adapter against real GnuPG: every verdict comes from --status-fd."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_tools
from heads.adapters._run import run
from heads.adapters.gpg import (
    GpgVerdict,
    check_keyring,
    parse_verify_status,
    sign_detached,
    verify_detached,
)
from heads.core.secret import Secret
from heads.errors import AuthError, GpgError, UsageError
from heads.testing.gpghome import (
    GpgHome,
    export_public_keyring,
    make_owner_key,
    revoke_key,
)

pytestmark = pytest.mark.gpg

DATA = b"0123  kexec_hashes.txt\n"


@pytest.fixture(scope="module")
def owner() -> Iterator[tuple[Path, str]]:
    require_tools("gpg", "gpgv", "gpgconf")
    with GpgHome() as home:
        fpr = make_owner_key(home.path)
        yield home.path, fpr


@pytest.fixture
def keyring(owner: tuple[Path, str], tmp_path: Path) -> Path:
    return export_public_keyring(owner[0], tmp_path / "pubring.gpg")


def test_sign_then_verify_is_good_and_names_the_signer(
    owner: tuple[Path, str], keyring: Path
) -> None:
    home, fpr = owner
    sig, signer = sign_detached(DATA, gnupghome=home, key=fpr)
    assert sig.startswith(b"-----BEGIN PGP SIGNATURE-----")
    assert signer == fpr
    result = verify_detached(sig, DATA, keyring)
    assert result.verdict is GpgVerdict.GOOD
    assert result.fingerprint == fpr


def test_one_flipped_byte_is_a_bad_signature(owner: tuple[Path, str], keyring: Path) -> None:
    sig, _ = sign_detached(DATA, gnupghome=owner[0], key=owner[1])
    tampered = bytes([DATA[0] ^ 1]) + DATA[1:]
    assert verify_detached(sig, tampered, keyring).verdict is GpgVerdict.BAD


def test_key_not_in_keyring_is_no_public_key_with_its_fingerprint(
    owner: tuple[Path, str], tmp_path: Path
) -> None:
    with GpgHome() as other:
        other_fpr = make_owner_key(other.path, "Other", "other@heads.invalid")
        sig, _ = sign_detached(DATA, gnupghome=other.path, key=other_fpr)
    keyring = export_public_keyring(owner[0], tmp_path / "owner.gpg")
    result = verify_detached(sig, DATA, keyring)
    assert result.verdict is GpgVerdict.NO_PUBKEY
    assert result.fingerprint == other_fpr


@pytest.mark.parametrize("make", [lambda s: b"garbage\n", lambda s: s[:100], lambda s: b""])
def test_garbage_or_truncated_signature_is_no_valid_data(
    owner: tuple[Path, str], keyring: Path, make: object
) -> None:
    sig, _ = sign_detached(DATA, gnupghome=owner[0], key=owner[1])
    assert callable(make)
    assert verify_detached(make(sig), DATA, keyring).verdict is GpgVerdict.NO_DATA


def test_expired_key_is_reported_as_expired(tmp_path: Path) -> None:
    with GpgHome() as home:
        fpr = make_owner_key(home.path, expire="1d", faked_time="20200101T000000")
        # gpg refuses to sign with an expired key today, so sign while it was valid: twelve
        # hours after its creation (each faked clock starts afresh, so signing at the same
        # faked instant could land before the key's creation second and be refused).
        sig = run(
            [
                "gpg",
                "--homedir",
                str(home.path),
                "--batch",
                "--faked-system-time",
                "20200101T120000",
                "--armor",
                "--detach-sign",
                "-u",
                fpr,
                "-o",
                "-",
                "-",
            ],
            desc="sign in the past",
            stdin=DATA,
        ).stdout
        keyring = export_public_keyring(home.path, tmp_path / "k.gpg")
    assert verify_detached(sig, DATA, keyring).verdict is GpgVerdict.EXPIRED_KEY


def test_revoked_key_is_reported_as_revoked(tmp_path: Path) -> None:
    with GpgHome() as home:
        fpr = make_owner_key(home.path)
        sig, _ = sign_detached(DATA, gnupghome=home.path, key=fpr)
        revoke_key(home.path, fpr)
        keyring = export_public_keyring(home.path, tmp_path / "k.gpg")
    assert verify_detached(sig, DATA, keyring).verdict is GpgVerdict.REVOKED_KEY


def test_pin_through_a_file_descriptor_signs_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    with GpgHome() as home:
        fpr = make_owner_key(home.path, passphrase="correct horse")
        # Wrong first: after a success the agent caches the passphrase.
        with pytest.raises(AuthError) as info:
            sign_detached(DATA, gnupghome=home.path, key=fpr, pin=Secret(b"wrong pin 1234"))
        sig, _ = sign_detached(DATA, gnupghome=home.path, key=fpr, pin=Secret(b"correct horse"))
        keyring = export_public_keyring(home.path, tmp_path / "k.gpg")
        assert verify_detached(sig, DATA, keyring).verdict is GpgVerdict.GOOD
    text = " ".join([str(info.value), *info.value.details, info.value.hint or ""])
    assert "wrong pin 1234" not in text


def test_unknown_signing_key_is_a_gpg_error_with_a_hint(owner: tuple[Path, str]) -> None:
    with pytest.raises(GpgError, match="no usable secret key") as info:
        sign_detached(DATA, gnupghome=owner[0], key="nobody@heads.invalid")
    assert info.value.hint


def test_armored_or_missing_keyring_is_a_usage_error(
    owner: tuple[Path, str], tmp_path: Path
) -> None:
    sig, _ = sign_detached(DATA, gnupghome=owner[0], key=owner[1])
    armored = tmp_path / "k.asc"
    armored.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
    with pytest.raises(UsageError, match="armored"):
        verify_detached(sig, DATA, armored)
    with pytest.raises(UsageError, match="cannot read the keyring"):
        verify_detached(sig, DATA, tmp_path / "absent.gpg")


def test_status_parser_requires_every_signature_good() -> None:
    good = (
        b"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG AAAA x\n"
        b"[GNUPG:] VALIDSIG F1 2026-01-01 0 0 4 0 22 8 00 F1\n"
    )
    assert parse_verify_status(good, 0).verdict is GpgVerdict.GOOD
    two = good + b"[GNUPG:] NEWSIG\n[GNUPG:] BADSIG BBBB y\n"
    assert parse_verify_status(two, 1).verdict is GpgVerdict.BAD
    missing_valid = b"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG AAAA x\n"
    assert parse_verify_status(missing_valid, 0).verdict is GpgVerdict.ERROR
    assert parse_verify_status(good, 2).verdict is GpgVerdict.ERROR
    assert parse_verify_status(b"gpgv: Good signature\n", 0).verdict is GpgVerdict.NO_DATA


def test_keybox_keyring_as_stored_in_the_rom_verifies(owner: tuple[Path, str]) -> None:
    # Heads keeps heads/initrd/.gnupg/pubring.kbx in CBFS; gpgv reads the keybox directly.
    home, fpr = owner
    sig, _ = sign_detached(DATA, gnupghome=home, key=fpr)
    assert verify_detached(sig, DATA, home / "pubring.kbx").verdict is GpgVerdict.GOOD


@settings(deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"[GNUPG:] NEWSIG",
                b"[GNUPG:] GOODSIG AAAA u",
                b"[GNUPG:] VALIDSIG F 1 2 3 4 5 6 7 8 F",
                b"[GNUPG:] BADSIG AAAA u",
                b"[GNUPG:] ERRSIG AAAA 22 8 00 1 9 F",
                b"[GNUPG:] ERRSIG",
                b"[GNUPG:] NODATA 1",
                b"[GNUPG:] EXPKEYSIG",
                b"[GNUPG:] ",
                b"junk \xff",
            ]
        )
        | st.binary(max_size=40).map(lambda b: b"[GNUPG:] " + b),
        max_size=12,
    ),
    st.integers(0, 3),
)
def test_status_parser_never_raises_and_good_needs_complete_good_lines(
    lines: list[bytes], rc: int
) -> None:
    output = b"\n".join(lines)
    result = parse_verify_status(output, rc)
    if result.verdict is GpgVerdict.GOOD:
        keywords = [ln.split(b" ")[1] for ln in output.splitlines() if ln.startswith(b"[GNUPG:] ")]
        assert rc == 0
        assert b"BADSIG" not in keywords
        assert b"ERRSIG" not in keywords
        assert keywords.count(b"GOODSIG") == keywords.count(b"NEWSIG") >= 1


# Status lines gpgv 2.2 printed for a file holding a signature by a key outside the keyring
# followed by the owner's good one.
_FOREIGN = (
    b"[GNUPG:] NEWSIG\n"
    b"[GNUPG:] ERRSIG 8ABF8130644BF3BD 22 8 00 1796001311 9 "
    b"78EAA7AC0669650F4B54CD178ABF8130644BF3BD\n"
    b"[GNUPG:] NO_PUBKEY 8ABF8130644BF3BD\n"
)
_OWNERS = (
    b"[GNUPG:] NEWSIG\n"
    b"[GNUPG:] KEY_CONSIDERED B060727696BF6B9B8F9BE88A6E466F9EFDFE31B4 0\n"
    b"[GNUPG:] GOODSIG 6E466F9EFDFE31B4 Heads Owner <owner@heads.invalid>\n"
    b"[GNUPG:] VALIDSIG B060727696BF6B9B8F9BE88A6E466F9EFDFE31B4 2026-11-30 1796001311 0 4 0 "
    b"22 8 00 B060727696BF6B9B8F9BE88A6E466F9EFDFE31B4\n"
)


@pytest.mark.parametrize("foreign_first", [True, False])
def test_status_parser_names_the_unknown_key_not_the_good_one(foreign_first: bool) -> None:
    output = _FOREIGN + _OWNERS if foreign_first else _OWNERS + _FOREIGN
    result = parse_verify_status(output, 2)
    assert result.verdict is GpgVerdict.NO_PUBKEY
    assert result.fingerprint == "78EAA7AC0669650F4B54CD178ABF8130644BF3BD"
    assert result.key_id == "8ABF8130644BF3BD"
    verdicts = [c.verdict for c in result.checks]
    expected = [GpgVerdict.NO_PUBKEY, GpgVerdict.GOOD]
    assert verdicts == (expected if foreign_first else expected[::-1])
    assert result.signatures == 2


def test_foreign_signature_beside_the_owners_is_no_public_key_with_real_gpgv(
    owner: tuple[Path, str], keyring: Path
) -> None:
    ours, _ = sign_detached(DATA, gnupghome=owner[0], key=owner[1])
    with GpgHome() as other:
        other_fpr = make_owner_key(other.path, "Other", "other@heads.invalid")
        theirs, _ = sign_detached(DATA, gnupghome=other.path, key=other_fpr)
    for sig, unknown_at in ((theirs + ours, 0), (ours + theirs, 1)):
        result = verify_detached(sig, DATA, keyring)
        assert result.verdict is GpgVerdict.NO_PUBKEY
        assert result.fingerprint == other_fpr
        assert result.checks[unknown_at].verdict is GpgVerdict.NO_PUBKEY
        assert result.checks[1 - unknown_at].verdict is GpgVerdict.GOOD
        assert result.checks[1 - unknown_at].fingerprint == owner[1]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02 not openpgp", "not an OpenPGP packet"),
        (b"\xb4\x05user!", "not a public key"),  # a lone user ID packet
    ],
)
def test_empty_or_corrupt_keyring_is_a_usage_error_before_gpgv_runs(
    owner: tuple[Path, str], tmp_path: Path, content: bytes, match: str
) -> None:
    sig, _ = sign_detached(DATA, gnupghome=owner[0], key=owner[1])
    bad = tmp_path / "bad.gpg"
    bad.write_bytes(content)
    with pytest.raises(UsageError, match=match):
        verify_detached(sig, DATA, bad)
    with pytest.raises(UsageError, match=match):
        check_keyring(bad)


def test_keyring_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pubring.gpg"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        check_keyring(fifo)


def test_check_keyring_counts_the_keys(owner: tuple[Path, str], tmp_path: Path) -> None:
    with GpgHome() as other:
        make_owner_key(other.path, "Other", "other@heads.invalid")
        theirs = export_public_keyring(other.path, tmp_path / "other.gpg").read_bytes()
    both = tmp_path / "both.gpg"
    both.write_bytes(export_public_keyring(owner[0], tmp_path / "o.gpg").read_bytes() + theirs)
    assert check_keyring(both).keys == 2
    assert check_keyring(owner[0] / "pubring.kbx").format == "keybox"
