"""The firmware menu's disk key step on the host (docs/disk-key.md §Firmware updates): scripted
passphrases, swtpm, a real LUKS2 image; the new image's prediction is given (the host has no
firmware log to predict from, the QEMU test predicts for real)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from disk_key_support import luks_image, seal_test_key
from heads.adapters.tpm import Tpm, open_tpm
from heads.core.answers import ScriptedAnswers
from heads.core.digest import HashAlg, extend_string
from heads.core.pcr_predict import Prediction
from heads.core.platform import PROFILES
from heads.flows.disk_key_pending import pending_disk_key_exists
from heads.flows.measure import EventLogWriter
from heads.runtime.boot import RuntimeEnv
from heads.runtime.disk_key import disk_key_archive
from heads.runtime.disk_key_reseal import reseal_disk_key
from heads.runtime.firmware_menu import FirmwareContext
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


def _prediction(tpm: Tpm) -> Prediction:
    values = tpm.read_pcrs(HashAlg.SHA256, PROFILES["coreboot"])
    values[7] = extend_string(HashAlg.SHA256, values[7], "new config.user")
    values[4] = bytes(32)
    return Prediction("coreboot", values, dict.fromkeys(values, "test"))


def _reseal(
    sealed: tuple[Tpm, Path, Path],
    tmp_path: Path,
    *answers: tuple[str, str],
    recovered: bool = False,
    verifies: bool = True,
) -> tuple[str | None, list[str], ScriptedAnswers, EventLogWriter]:
    tpm, boot, image = sealed
    env = RuntimeEnv(root=tmp_path, boot_dir=boot, profile="coreboot", batch=True)
    said: list[str] = []
    scripted = ScriptedAnswers(list(answers))
    log = EventLogWriter(tmp_path / "log.jsonl")
    ctx = FirmwareContext(
        env,
        tpm,
        said.append,
        totp_released=True,
        recovered=recovered,
        renderer=LineRenderer(io.StringIO(), None, scripted),
        log=log,
    )
    line = reseal_disk_key(
        ctx,
        lambda: _prediction(tpm),
        firmware_log=None,
        boot_verifies=lambda: verifies,
        owner_needed=lambda: None,
        locate=lambda _dev: image,
    )
    return line, said, scripted, log


def test_the_passphrase_seals_the_copy_and_the_boot_measures_once(
    sealed: tuple[Tpm, Path, Path], tmp_path: Path
) -> None:
    tpm, boot, image = sealed
    line, said, scripted, log = _reseal(
        sealed,
        tmp_path,
        ("disk-key-update-passphrase", "wrong"),
        ("disk-key-update-passphrase", DUK),
    )
    assert line == "The disk unlock key was resealed to the new firmware's PCRs."
    assert scripted.left() == {}
    assert any(ln.startswith("disk key reseal: wrong passphrase") for ln in said), said
    assert pending_disk_key_exists(tpm)
    assert not any(DUK in ln for ln in said)
    # A boot default later in the same boot: PCR 6 is not extended a second time, and the
    # current object (not yet replaced: no flash happened) releases the key.
    pcr6 = tpm.read_pcrs(HashAlg.SHA256, [6])
    lines: list[str] = []
    archive = disk_key_archive(
        boot_dir=boot,
        tpm=tpm,
        log=log,
        say=lines.append,
        renderer=LineRenderer(io.StringIO(), None, ScriptedAnswers([("disk-key-passphrase", DUK)])),
        locate=lambda _dev: image,
    )
    assert archive is not None, lines
    assert any("already measured into PCR 6 in this boot" in ln for ln in lines), lines
    assert tpm.read_pcrs(HashAlg.SHA256, [6]) == pcr6
    assert [r.pcr for r in log.records()] == [6]


def test_a_blank_passphrase_skips_with_a_warning(
    sealed: tuple[Tpm, Path, Path], tmp_path: Path
) -> None:
    line, _, _, _ = _reseal(sealed, tmp_path, ("disk-key-update-passphrase", ""))
    assert line is not None
    assert line.startswith("No disk key reseal (no passphrase given)")
    assert "boot with the Disk Recovery Key" in line
    assert not pending_disk_key_exists(sealed[0])


def test_three_wrong_passphrases_skip(sealed: tuple[Tpm, Path, Path], tmp_path: Path) -> None:
    line, _, scripted, _ = _reseal(sealed, tmp_path, *[("disk-key-update-passphrase", "no")] * 3)
    assert line is not None
    # Three tries, or fewer when the TPM's dictionary-attack threshold comes first.
    assert re.search(r"the passphrase was wrong 3 times|dictionary-attack lockout", line), line
    assert scripted.left() == {}
    assert not pending_disk_key_exists(sealed[0])


@pytest.mark.parametrize(
    ("recovered", "verifies", "why"),
    [(True, True, 'PCR 4 holds "recovery"'), (False, False, "/boot does not verify")],
)
def test_no_dialog_without_the_gate(
    sealed: tuple[Tpm, Path, Path], tmp_path: Path, recovered: bool, verifies: bool, why: str
) -> None:
    line, _, scripted, log = _reseal(
        sealed,
        tmp_path,
        ("disk-key-update-passphrase", DUK),
        recovered=recovered,
        verifies=verifies,
    )
    assert line is not None
    assert line.startswith(f"No disk key reseal ({why})")
    assert scripted.left() == {"disk-key-update-passphrase": 1}  # never asked
    assert log.records() == []  # PCR 6 untouched
    assert not pending_disk_key_exists(sealed[0])


def test_without_a_disk_key_nothing_is_asked(
    sealed: tuple[Tpm, Path, Path], tmp_path: Path
) -> None:
    (sealed[1] / "kexec_key_devices.txt").unlink()
    line, said, _, _ = _reseal(sealed, tmp_path, ("disk-key-update-passphrase", DUK))
    assert line is None
    assert said == []
