"""cryptsetup adapter on real LUKS images (files; no device-mapper needed)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from conftest import require_tools
from heads.adapters.cryptsetup import (
    DUK_SLOT_LUKS2,
    active_slots,
    add_key,
    change_key,
    format_luks,
    kill_slot,
    luks_uuid,
    luks_version,
    opens_with,
    reencrypt,
    slot_of,
)
from heads.core.secret import Secret
from heads.errors import AuthError, CryptsetupError

pytestmark = pytest.mark.cryptsetup

DRK = Secret(b"recovery passphrase")
KEY = Secret(os.urandom(128))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    require_tools("cryptsetup")
    path = tmp_path / "disk.img"
    with path.open("wb") as f:
        f.truncate(20 << 20)
    format_luks(path, DRK)
    return path


def test_add_test_and_kill_the_duk_slot(image: Path) -> None:
    assert luks_version(image) == 2
    assert len(luks_uuid(image)) == 36
    assert not kill_slot(image, DUK_SLOT_LUKS2, DRK)
    add_key(image, DRK, KEY, slot=DUK_SLOT_LUKS2)
    assert opens_with(image, KEY, slot=DUK_SLOT_LUKS2)
    assert opens_with(image, DRK)
    assert not opens_with(image, Secret(b"not the key"))
    assert kill_slot(image, DUK_SLOT_LUKS2, DRK)
    assert not opens_with(image, KEY)
    assert opens_with(image, DRK)


def test_wrong_recovery_passphrase(image: Path) -> None:
    with pytest.raises(AuthError, match="recovery passphrase"):
        add_key(image, Secret(b"wrong"), KEY, slot=DUK_SLOT_LUKS2)


def test_not_luks(tmp_path: Path) -> None:
    require_tools("cryptsetup")
    plain = tmp_path / "plain.img"
    plain.write_bytes(bytes(1 << 20))
    with pytest.raises(CryptsetupError):
        luks_uuid(plain)


def test_key_never_in_argv(image: Path) -> None:
    """Sample every process's command line while cryptsetup runs: the key is never there."""
    key = Secret(b"K" * 64 + os.urandom(64).hex().encode()[:64])
    needles = (key.reveal()[:32], DRK.reveal())
    seen: list[bytes] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    with contextlib.suppress(OSError):
                        seen.append((proc / "cmdline").read_bytes())

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        add_key(image, DRK, key, slot=DUK_SLOT_LUKS2)
    finally:
        stop.set()
        thread.join()
    assert any(b"luksAddKey" in c for c in seen), "the sampler never saw cryptsetup"
    assert not any(n in c for c in seen for n in needles)


def test_slots_listed_and_found(image: Path, tmp_path: Path) -> None:
    assert active_slots(image) == (0,)
    add_key(image, DRK, KEY, slot=DUK_SLOT_LUKS2)
    add_key(image, DRK, Secret(b"other"), slot=4)
    assert active_slots(image) == (0, 4, DUK_SLOT_LUKS2)
    assert slot_of(image, DRK) == 0
    assert slot_of(image, Secret(b"other")) == 4
    assert slot_of(image, Secret(b"nobody")) is None
    luks1 = tmp_path / "luks1.img"
    with luks1.open("wb") as f:
        f.truncate(4 << 20)
    format_luks(luks1, DRK, version=1)
    add_key(luks1, DRK, KEY, slot=7)
    assert active_slots(luks1) == (0, 7)


def test_change_key_replaces_the_recovery_passphrase(image: Path) -> None:
    new = Secret(b"new recovery passphrase")
    add_key(image, DRK, KEY, slot=DUK_SLOT_LUKS2)
    change_key(image, DRK, new)
    assert opens_with(image, new)
    assert not opens_with(image, DRK)
    assert opens_with(image, KEY, slot=DUK_SLOT_LUKS2)  # the other slots stay
    with pytest.raises(AuthError):
        change_key(image, DRK, Secret(b"x"))


def test_reencrypt_keeps_only_the_recovery_slot(image: Path) -> None:
    add_key(image, DRK, KEY, slot=DUK_SLOT_LUKS2)
    before = image.read_bytes()
    reencrypt(image, DRK, slot=0, extra=("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"))
    after = image.read_bytes()
    assert opens_with(image, DRK)
    assert active_slots(image) == (slot_of(image, DRK),)
    assert not opens_with(image, KEY)
    # The ciphertext after the header changed: every data sector was rewritten.
    assert before[16 << 20 :] != after[16 << 20 :]
    slot = slot_of(image, DRK)
    assert slot is not None
    with pytest.raises(AuthError):
        reencrypt(image, Secret(b"wrong"), slot=slot)
