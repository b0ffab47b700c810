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
    add_key,
    format_luks,
    kill_slot,
    luks_uuid,
    luks_version,
    opens_with,
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
