"""The runtime's disk key step on the host: scripted passphrases, swtpm, real LUKS2 images."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from disk_key_support import DRK, luks_image, seal_test_key
from heads.adapters import cryptsetup
from heads.adapters.tpm import Tpm, open_tpm
from heads.core.answers import ScriptedAnswers
from heads.core.cpio import read_newc
from heads.core.secret import Secret
from heads.runtime.disk_key import DiskKeyDeclinedError, disk_key_archive
from heads.testing.swtpm import Swtpm
from heads.ui.line import LineRenderer

pytestmark = [pytest.mark.swtpm, pytest.mark.cryptsetup]

DUK = "disk unlock passphrase"  # as the owner types it: disk_key_support.DUK


@pytest.fixture
def sealed(swtpm: Swtpm, tmp_path: Path) -> Iterator[tuple[Tpm, Path, Path]]:
    disk = luks_image(tmp_path)
    boot = tmp_path / "boot"
    with open_tpm(swtpm.tcti) as tpm:
        seal_test_key(tpm, disk, boot)
        yield tpm, boot, disk.path


def _run(
    sealed: tuple[Tpm, Path, Path], *answers: tuple[str, str]
) -> tuple[Secret | None, str, ScriptedAnswers]:
    tpm, boot, image = sealed
    out = io.StringIO()
    scripted = ScriptedAnswers(list(answers))
    lines: list[str] = []
    archive = disk_key_archive(
        boot_dir=boot,
        tpm=tpm,
        log=None,
        say=lines.append,
        renderer=LineRenderer(out, None, scripted),
        locate=lambda _dev: image,
    )
    return archive, out.getvalue() + "\n".join(lines), scripted


def test_right_passphrase_gives_the_key_archive(sealed: tuple[Tpm, Path, Path]) -> None:
    archive, text, _ = _run(sealed, ("disk-key-passphrase", DUK))
    assert archive is not None, text
    members = {m.name: m.data for m in read_newc(archive.reveal(), source="archive")}
    assert cryptsetup.opens_with(sealed[2], Secret(members["secret.key"]), slot=31)
    uuid = cryptsetup.luks_uuid(sealed[2])
    assert members["etc/crypttab"] == f"luks-{uuid} UUID={uuid} /secret.key luks,discard\n".encode()
    assert "released in" in text
    assert DUK not in text


def test_three_wrong_then_recovery_key(sealed: tuple[Tpm, Path, Path]) -> None:
    archive, text, scripted = _run(
        sealed,
        *[("disk-key-passphrase", "wrong passphrase!")] * 3,
        ("disk-key-recovery", "y"),
    )
    assert archive is None
    assert "3 of 3 tries left" in text
    assert "1 of 3 tries left" in text
    assert "before TPM lockout" in text
    # The simulator allows 3 failures: the third wrong passphrase puts it in lockout.
    assert text.count("wrong passphrase (") == 3 or "lockout" in text.splitlines()[-1]
    assert scripted.left() == {}


def test_declining_the_recovery_key_aborts(sealed: tuple[Tpm, Path, Path]) -> None:
    with pytest.raises(DiskKeyDeclinedError, match="not booting"):
        _run(sealed, ("disk-key-passphrase", ""), ("disk-key-recovery", "n"))


def test_changed_header_skips_the_passphrase(sealed: tuple[Tpm, Path, Path]) -> None:
    cryptsetup.add_key(sealed[2], DRK, Secret(b"another key"), slot=3)
    archive, text, scripted = _run(sealed, ("disk-key-recovery", "y"), ("disk-key-passphrase", DUK))
    assert archive is None
    assert "Encrypted disk keys have changed" in text
    assert scripted.left() == {"disk-key-passphrase": 1}


def test_unattended_boot_uses_the_recovery_key(sealed: tuple[Tpm, Path, Path]) -> None:
    tpm, boot, image = sealed
    lines: list[str] = []
    archive = disk_key_archive(
        boot_dir=boot, tpm=tpm, log=None, say=lines.append, renderer=None, locate=lambda _d: image
    )
    assert archive is None
    assert any("unattended" in x for x in lines)


def test_volume_group_that_cannot_be_activated_offers_the_recovery_key(
    sealed: tuple[Tpm, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The payload has no LVM tools: the boot says so and asks no passphrase.
    (sealed[1] / "kexec_key_lvm.txt").write_text("vg0\n")
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    archive, text, scripted = _run(sealed, ("disk-key-recovery", "y"), ("disk-key-passphrase", DUK))
    assert archive is None
    assert "volume group vg0 was not activated: no lvm tool" in text
    assert "LUKS headers" not in text
    assert scripted.left() == {"disk-key-passphrase": 1}


def test_unreadable_device_offers_the_recovery_key(sealed: tuple[Tpm, Path, Path]) -> None:
    tpm, boot, image = sealed
    image.unlink()
    lines: list[str] = []
    scripted = ScriptedAnswers([("disk-key-recovery", "n")])
    with pytest.raises(DiskKeyDeclinedError, match="could not be read"):
        disk_key_archive(
            boot_dir=boot,
            tpm=tpm,
            log=None,
            say=lines.append,
            renderer=LineRenderer(io.StringIO(), None, scripted),
            locate=lambda _dev: image,
        )
    assert any("cannot read" in x for x in lines), lines
