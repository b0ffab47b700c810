"""core/openpgp against real GnuPG: gpg imports what we write, gpgv verifies what we sign,
and we read what gpg writes.  Then /boot signed without gpg passes verify_boot (gpgv)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require_tools
from heads.adapters._run import run
from heads.adapters.gpg import GpgVerdict, check_keyring, sign_detached, verify_detached
from heads.core.boot_trust import SignatureState
from heads.core.keyring import parse_keyring
from heads.core.openpgp import (
    OwnerKey,
    OwnerKeySigner,
    export_public,
    export_public_armored,
    export_secret,
    generate_owner_key,
    import_secret,
    read_public,
)
from heads.core.openpgp import sign_detached as sign_with_key
from heads.core.openpgp.armor import dearmor
from heads.core.openpgp.packets import read_packets
from heads.core.openpgp.verify import parse_signature, verify_signature
from heads.core.secret import Secret
from heads.errors import WrongPassphraseError
from heads.flows.boot_signing import sign_boot, verify_boot
from heads.testing.gpghome import GpgHome, make_owner_key

pytestmark = pytest.mark.gpg

USER_ID = "Heads Owner <owner@heads.invalid>"
PASSPHRASE = "a passphrase with spaces"
DATA = b"0123  kexec_hashes.txt\n"


@pytest.fixture(scope="module")
def key() -> OwnerKey:
    require_tools("gpg", "gpgv", "gpgconf")
    return generate_owner_key(USER_ID, created=1_700_000_000, rng=os.urandom)


@pytest.fixture
def home() -> Iterator[Path]:
    with GpgHome() as gnupg:
        yield gnupg.path


def gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    argv = ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args]
    return run(argv, desc="gpg (test)", stdin=stdin, timeout_s=120).stdout


def colons(home: Path, *args: str) -> list[list[str]]:
    text = gpg(home, "--with-colons", *args).decode()
    return [line.split(":") for line in text.splitlines()]


def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    return path


@pytest.mark.parametrize("armored", [False, True])
def test_gpg_imports_the_public_key_with_a_valid_self_signature(
    key: OwnerKey, home: Path, tmp_path: Path, armored: bool
) -> None:
    exported = export_public_armored(key) if armored else export_public(key)
    (tmp_path / "pub.gpg").write_bytes(exported)
    gpg(home, "--import", str(tmp_path / "pub.gpg"))
    rows = colons(home, "--check-sigs", key.fingerprint)
    assert [r[9] for r in rows if r[0] == "fpr"] == [key.fingerprint]
    pub = next(r for r in rows if r[0] == "pub")
    assert (pub[3], pub[11], pub[16]) == ("22", "scSC", "ed25519")
    # "!" in field 2 of a sig row: gpg checked the self-signature and found it good.
    assert [r[1] for r in rows if r[0] == "sig"] == ["!"]
    assert [r[9] for r in rows if r[0] == "uid"] == [USER_ID]


@pytest.mark.parametrize("name", ["pubring.gpg", "pubring.kbx"])
def test_gpgv_verifies_our_signature_with_our_keyring(
    key: OwnerKey, tmp_path: Path, name: str
) -> None:
    keyring = tmp_path / name
    keyring.write_bytes(export_public(key))
    # The firmware image names the keyring pubring.kbx; gpgv goes by the content.
    assert parse_keyring(keyring.read_bytes(), source=name).format == "openpgp"
    assert check_keyring(keyring).keys == 1
    signature = sign_with_key(key, DATA, created=1_700_000_500)
    good = verify_detached(signature, DATA, keyring)
    assert good.verdict is GpgVerdict.GOOD
    assert good.fingerprint == key.fingerprint
    assert verify_detached(signature, DATA + b"x", keyring).verdict is GpgVerdict.BAD


def test_gpg_imports_our_secret_key_and_signs_with_it(
    key: OwnerKey, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.asc").write_bytes(
        export_secret(key, Secret(PASSPHRASE.encode()), rng=os.urandom)
    )
    loopback = ["--pinentry-mode", "loopback", "--passphrase-file"]
    loopback.append(str(passphrase_file(tmp_path)))
    gpg(home, *loopback, "--import", str(tmp_path / "secret.asc"))
    assert [r[9] for r in colons(home, "--list-secret-keys") if r[0] == "fpr"] == [key.fingerprint]
    # gpg-agent unprotects the key only with the right passphrase: a signature proves it.
    signature, fingerprint = sign_detached(
        DATA, gnupghome=home, key=key.fingerprint, pin=Secret(PASSPHRASE.encode())
    )
    assert fingerprint == key.fingerprint
    packet = read_packets(dearmor(signature, label="SIGNATURE", source="gpg"), source="gpg")[0]
    assert verify_signature(key.public, parse_signature(packet.body, source="gpg", base=0), DATA)
    keyring = tmp_path / "pubring.gpg"
    keyring.write_bytes(export_public(key))
    assert verify_detached(signature, DATA, keyring).verdict is GpgVerdict.GOOD


def test_we_read_a_key_gpg_generated_and_exported(home: Path, tmp_path: Path) -> None:
    fingerprint = make_owner_key(home, passphrase=PASSPHRASE)
    loopback = ["--pinentry-mode", "loopback", "--passphrase-file"]
    loopback.append(str(passphrase_file(tmp_path)))
    exported = gpg(home, *loopback, "--armor", "--export-secret-keys", fingerprint)
    key = import_secret(exported, Secret(PASSPHRASE.encode()), source="gpg-export.asc")
    assert key.fingerprint == fingerprint
    assert key.user_id == "Heads Owner <owner@heads.invalid>"
    assert read_public(gpg(home, "--export", fingerprint), source="gpg").public == key.public
    with pytest.raises(WrongPassphraseError, match=r"gpg-export\.asc"):
        import_secret(exported, Secret(b"not it"), source="gpg-export.asc")
    # What we sign with the key gpg made, gpgv accepts against gpg's own public export.
    keyring = tmp_path / "pubring.gpg"
    keyring.write_bytes(gpg(home, "--export", fingerprint))
    signature = sign_with_key(key, DATA, created=key.created + 1)
    assert verify_detached(signature, DATA, keyring).verdict is GpgVerdict.GOOD


def test_we_read_gpg_default_key_with_its_encryption_subkey(home: Path, tmp_path: Path) -> None:
    # gpg's default: an Ed25519 primary key and a Curve25519 subkey after the user ID.
    loopback = ["--pinentry-mode", "loopback", "--passphrase-file"]
    loopback.append(str(passphrase_file(tmp_path)))
    gpg(home, *loopback, "--quick-gen-key", USER_ID, "future-default", "default", "never")
    rows = colons(home, "--list-secret-keys")
    assert [r[0] for r in rows if r[0] in {"sec", "ssb"}] == ["sec", "ssb"]
    fingerprint = next(r[9] for r in rows if r[0] == "fpr")
    exported = gpg(home, *loopback, "--armor", "--export-secret-keys")
    key = import_secret(exported, Secret(PASSPHRASE.encode()), source="gpg-export.asc")
    assert (key.fingerprint, key.user_id) == (fingerprint, USER_ID)


def test_boot_signed_without_gpg_passes_verify_boot(key: OwnerKey, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    (boot / "grub").mkdir(parents=True)
    (boot / "vmlinuz-6.1").write_bytes(os.urandom(50_000))
    (boot / "initrd.img-6.1").write_bytes(os.urandom(80_000))
    (boot / "grub" / "grub.cfg").write_text("menuentry 'Debian' { linux /vmlinuz-6.1 }\n")
    keyring = tmp_path / "pubring.kbx"
    keyring.write_bytes(export_public(key))
    signer = OwnerKeySigner(key, clock=lambda: 1_700_001_000)
    sign_boot(boot, gnupghome=None, key=None, tpm=None, rollback=False, signer=signer)
    verdict = verify_boot(boot, keyring=keyring, tpm=None)
    assert verdict.ok, verdict.render_text()
    assert verdict.signature.fingerprint == key.fingerprint
    (boot / "vmlinuz-6.1").write_bytes(b"changed")
    assert not verify_boot(boot, keyring=keyring, tpm=None).ok
    other = generate_owner_key(USER_ID, created=1_700_000_000, rng=os.urandom)
    keyring.write_bytes(export_public(other))
    assert verify_boot(boot, keyring=keyring, tpm=None).signature.state is not (
        SignatureState.VERIFIED
    )
