"""kexec_initrd_crypttab_overrides.txt from the default entry's OS initrd, on a /boot made
here (docs/disk-key.md §Crypttab overrides); the zstd tool is the real one, or absent from PATH."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from conftest import require_tools
from disk_key_support import default_entry
from heads.core.cpio import CpioEntry, build_newc
from heads.core.disk_key import CRYPTTAB_OVERRIDES_FILE, key_initrd, parse_overrides
from heads.core.secret import Secret
from heads.flows.crypttab_overrides import ZSTD_NOTE, write_crypttab_overrides

CRYPTTAB = b"luks-1234 UUID=1234 none luks,discard\n"


def _boot(tmp_path: Path, initrd: bytes) -> Path:
    boot = tmp_path / "boot"
    boot.mkdir()
    default_entry(boot, initrd)
    return boot


def _main_archive() -> bytes:
    return build_newc(
        [
            CpioEntry.file("cryptroot/crypttab", CRYPTTAB),
            CpioEntry.file("etc/crypttab", b"# none yet\n"),
        ],
        mtime=0,
    )


def test_overrides_from_a_gzip_initrd_feed_the_key_archive(tmp_path: Path) -> None:
    boot = _boot(tmp_path, gzip.compress(_main_archive(), mtime=0))
    said: list[str] = []
    overrides = write_crypttab_overrides(boot, say=said.append)
    data = (boot / CRYPTTAB_OVERRIDES_FILE).read_bytes()
    assert data == b"/cryptroot/crypttab:luks-1234 UUID=1234 /secret.key luks,discard\n"
    assert parse_overrides(data) == overrides
    assert any("1 line(s) for /cryptroot/crypttab" in ln for ln in said), said
    # The boot's archive then carries the OS's own file, not the generic pair.
    archive = key_initrd(Secret(b"k" * 128), (), overrides).reveal()
    assert b"cryptroot/crypttab" in archive
    assert b"luks-1234 UUID=1234 /secret.key luks,discard\n" in archive
    assert b"etc/crypttab" not in archive


def test_zstd_without_the_tool_leaves_the_generic_crypttab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tools("zstd")
    packed = subprocess.run(
        ["zstd", "-q", "-c"], input=_main_archive(), check=True, capture_output=True
    ).stdout
    boot = _boot(tmp_path, packed)
    assert write_crypttab_overrides(boot)  # the tool is on PATH: unpacked
    stale = (boot / CRYPTTAB_OVERRIDES_FILE).read_bytes()
    assert b"/secret.key" in stale
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    said: list[str] = []
    assert write_crypttab_overrides(boot, say=said.append) == ()
    assert said == [ZSTD_NOTE]
    assert not (boot / CRYPTTAB_OVERRIDES_FILE).exists()  # no stale file applies


def test_a_damaged_initrd_or_no_default_says_why(tmp_path: Path) -> None:
    boot = _boot(tmp_path, b"\x1f\x8b\x08\x00garbage")
    said: list[str] = []
    assert write_crypttab_overrides(boot, say=said.append) == ()
    assert len(said) == 1
    assert "no crypttab overrides (" in said[0]
    assert "initrd.img" in said[0]
    assert "offset 0" in said[0]
    for name in ("kexec_default.1.txt", "kexec_default_hashes.txt"):
        (boot / name).unlink()
    said.clear()
    assert write_crypttab_overrides(boot, say=said.append) == ()
    assert "no default boot entry" in said[0]
