"""Adding a key to the firmware's keyring without gpg: real gpg keys, checked by real gpgv.

The keybox gpg writes (``pubring.kbx``) is unpacked into keyblocks, the new key (armored or
not) is appended, and gpgv must accept signatures of both the old and the new key with the
result.  The parsers are fuzzed: anything but FormatError is a defect.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_tools
from heads.adapters.gpg import GpgVerdict, sign_detached, verify_detached
from heads.core.cbfs import CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.keyring import parse_keyring
from heads.core.keyring_edit import PUBRING, dearmor, keyblocks, with_added_key
from heads.core.qemu_flash import build_flash
from heads.errors import FormatError
from heads.testing.gpghome import GpgHome, make_owner_key

DATA = b"sha256sum.txt of an update\n"


def _gpg(home: Path, *args: str) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", *args], check=True, capture_output=True
    ).stdout


def _image(keyring: bytes) -> FlashImage:
    return build_flash(
        b"kernel", b"initramfs", [CbfsFile(PUBRING, keyring)], cmdline="x", size=1 << 20
    )


def test_a_key_added_to_a_keybox_verifies_with_gpgv(tmp_path: Path) -> None:
    require_tools("gpg", "gpgv")
    with GpgHome() as old_home, GpgHome() as new_home:
        old_fpr = make_owner_key(old_home.path)
        new_fpr = make_owner_key(new_home.path, "New Owner", "new@heads.invalid")
        kbx = (old_home.path / "pubring.kbx").read_bytes()
        assert parse_keyring(kbx, source="kbx").format == "keybox"
        armored = _gpg(new_home.path, "--armor", "--export", new_fpr)
        image, count = with_added_key(_image(kbx), armored, source="new.asc")
        assert count == 2
        ring = image.file(PUBRING)
        assert ring is not None
        path = tmp_path / "pubring.kbx"  # the name the runtime uses; gpgv reads the content
        path.write_bytes(ring.data)
        for home, fpr in ((old_home.path, old_fpr), (new_home.path, new_fpr)):
            signature, _ = sign_detached(DATA, gnupghome=home, key=fpr)
            result = verify_detached(signature, DATA, path)
            assert result.verdict is GpgVerdict.GOOD, fpr
            assert result.fingerprint == fpr
        # A third key that was never added is not trusted.
        with GpgHome() as other:
            other_fpr = make_owner_key(other.path, "Someone", "x@heads.invalid")
            signature, _ = sign_detached(DATA, gnupghome=other.path, key=other_fpr)
            assert verify_detached(signature, DATA, path).verdict is not GpgVerdict.GOOD


def test_armor_and_binary_give_the_same_key() -> None:
    require_tools("gpg")
    with GpgHome() as home:
        fpr = make_owner_key(home.path)
        binary = _gpg(home.path, "--export", fpr)
        armored = _gpg(home.path, "--armor", "--export", fpr)
    assert dearmor(armored, source="k.asc") == binary
    assert dearmor(binary, source="k.gpg") == binary
    assert keyblocks(binary, source="k.gpg") == binary
    # One changed character of the base64 body: the CRC-24 refuses it.
    lines = armored.splitlines()
    body = next(
        i for i, ln in enumerate(lines) if ln and not ln.startswith(b"-") and b":" not in ln
    )
    flipped = bytes([lines[body][0] ^ 0x01]) + lines[body][1:]
    broken = b"\n".join([*lines[:body], flipped, *lines[body + 1 :]])
    with pytest.raises(FormatError, match=r"k\.asc"):
        dearmor(broken, source="k.asc")


def test_a_file_that_is_no_key_is_refused_by_name() -> None:
    with pytest.raises(FormatError, match=r"notes\.asc"):
        with_added_key(_image(b""), b"hello, not a key\n", source="notes.asc")
    with pytest.raises(FormatError, match="END"):
        dearmor(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n", source="cut.asc")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_keyblocks_and_dearmor(data: bytes) -> None:
    for parse in (keyblocks, dearmor):
        with contextlib.suppress(FormatError):
            parse(data, source="fuzz")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_armor_bodies(body: bytes) -> None:
    text = (
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
        + body
        + b"\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    with contextlib.suppress(FormatError):
        dearmor(text, source="fuzz.asc")
