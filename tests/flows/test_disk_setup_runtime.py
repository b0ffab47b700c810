"""The menus' disk key effects on the host (runtime/disk_setup): real LUKS2 images,
cryptsetup and swtpm.  A key set up here is released by the boot step; a reseal that wipes
the other slots leaves only the recovery key's and the disk key's."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from conftest import require_tools
from disk_key_support import default_entry
from heads.adapters import cryptsetup
from heads.adapters.tpm import open_tpm
from heads.core.answers import ScriptedAnswers
from heads.core.cpio import CpioEntry, build_newc
from heads.core.disk_key import CRYPTTAB_OVERRIDES_FILE
from heads.core.gui import (
    ChangeRecoveryKey,
    CheckRecoveryKey,
    Failed,
    LuksDevices,
    Ok,
    Reencrypt,
    SealDiskKey,
)
from heads.core.secret import Secret
from heads.runtime.disk_key import DiskKeyDeclinedError, disk_key_archive
from heads.runtime.disk_setup import (
    change_recovery,
    check_recovery,
    find_disks,
    luks_devices,
    reencrypt,
    seal,
)
from heads.testing.swtpm import Swtpm
from heads.ui.line import LineRenderer

pytestmark = [pytest.mark.swtpm, pytest.mark.cryptsetup]

DRK = Secret(b"recovery passphrase")
DUK = "disk unlock passphrase"
DEVICE = "/dev/nvme1n1"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    require_tools("cryptsetup")
    path = tmp_path / "luks.img"
    with path.open("wb") as f:
        f.truncate(20 << 20)
    cryptsetup.format_luks(path, DRK)
    return path


def test_scan_finds_luks_devices_only(image: Path, tmp_path: Path) -> None:
    sys_block, dev = tmp_path / "sys", tmp_path / "dev"
    sys_block.mkdir()
    dev.mkdir()
    for name in ("nvme0n1", "nvme1n1", "loop0", "sda"):
        (sys_block / name).mkdir()
    (dev / "nvme0n1").write_bytes(bytes(8192))
    (dev / "nvme1n1").write_bytes(image.read_bytes()[:8192])
    (dev / "loop0").write_bytes(image.read_bytes()[:8192])  # loop devices are skipped
    (dev / "sda").write_bytes(b"LUKS\xba\xbe" + bytes(10))  # a damaged header is no device
    assert luks_devices(sys_block, dev) == (str(dev / "nvme1n1"),)
    boot = tmp_path / "boot"
    boot.mkdir()
    found = find_disks(boot, scan=lambda: ["/dev/nvme1n1", "/dev/\x1b[2J"])
    assert found == LuksDevices(("/dev/nvme1n1", "/dev/\\x1b[2J"), ())


def _default_entry(boot: Path) -> None:
    """A default entry whose gzip initrd has the OS's own crypttab."""
    crypttab = CpioEntry.file("etc/crypttab", b"cryptos UUID=1234 none luks\n")
    default_entry(boot, gzip.compress(build_newc([crypttab], mtime=0), mtime=0))


def test_seal_then_the_boot_releases_it(swtpm: Swtpm, image: Path, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    _default_entry(boot)
    cryptsetup.add_key(image, DRK, Secret(b"someone else's passphrase"), slot=3)
    locate = {DEVICE: image}.__getitem__
    wrong = CheckRecoveryKey((DEVICE,), Secret(b"not it"))
    assert isinstance(check_recovery(wrong, locate=locate), Failed)
    assert check_recovery(CheckRecoveryKey((DEVICE,), DRK), locate=locate) == Ok()
    lines: list[str] = []
    with open_tpm(swtpm.tcti) as tpm:
        effect = SealDiskKey((DEVICE,), DRK, Secret(DUK.encode()), wipe_others=True)
        outcome = seal(
            effect,
            tpm=tpm,
            boot_dir=boot,
            profile="coreboot",
            firmware_log=None,
            owner=None,
            say=lines.append,
            locate=locate,
        )
        assert isinstance(outcome, Ok), outcome
        assert f"{DEVICE}: key slot 3 wiped" in outcome.lines
        # The OS initrd's own crypttab, its key file set to the one the boot appends.
        overrides = (boot / CRYPTTAB_OVERRIDES_FILE).read_bytes()
        assert overrides == b"/etc/crypttab:cryptos UUID=1234 /secret.key luks\n"
        assert "The key file replaces the OS initrd's own in /etc/crypttab." in outcome.lines
        assert cryptsetup.active_slots(image) == (0, cryptsetup.DUK_SLOT_LUKS2)
        assert find_disks(boot, scan=lambda: [DEVICE]) == LuksDevices((DEVICE,), (DEVICE,))
        assert DUK not in "\n".join(lines)
        out = io.StringIO()
        archive = disk_key_archive(
            boot_dir=boot,
            tpm=tpm,
            log=None,
            say=lines.append,
            renderer=LineRenderer(out, None, ScriptedAnswers([("disk-key-passphrase", DUK)])),
            locate=lambda _d: image,
        )
        assert archive is not None, "\n".join(lines)
        assert b"cryptos UUID=1234 /secret.key luks\n" in archive.reveal()


def test_changed_header_is_told_apart(swtpm: Swtpm, image: Path, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    locate = {DEVICE: image}.__getitem__
    with open_tpm(swtpm.tcti) as tpm:
        effect = SealDiskKey((DEVICE,), DRK, Secret(DUK.encode()))
        sealed = seal(
            effect,
            tpm=tpm,
            boot_dir=boot,
            profile="coreboot",
            firmware_log=None,
            owner=None,
            say=print,
            locate=locate,
        )
        assert isinstance(sealed, Ok)
        cryptsetup.add_key(image, DRK, Secret(b"extra"), slot=2)
        with pytest.raises(DiskKeyDeclinedError) as caught:
            disk_key_archive(
                boot_dir=boot,
                tpm=tpm,
                log=None,
                say=print,
                renderer=LineRenderer(
                    io.StringIO(), None, ScriptedAnswers([("disk-key-recovery", "n")])
                ),
                locate=lambda _d: image,
            )
        assert caught.value.headers_changed


def test_change_recovery_and_reencrypt(image: Path) -> None:
    locate = {DEVICE: image}.__getitem__
    new = Secret(b"new recovery passphrase")
    cryptsetup.add_key(image, DRK, Secret(os_key := b"K" * 128), slot=31)
    changed = change_recovery(ChangeRecoveryKey((DEVICE,), DRK, new), say=print, locate=locate)
    assert changed == Ok((f"{DEVICE}: Disk Recovery Key passphrase changed",))
    assert cryptsetup.opens_with(image, new)
    assert not cryptsetup.opens_with(image, DRK)
    assert isinstance(reencrypt(Reencrypt((DEVICE,), DRK), say=print, locate=locate), Failed)
    done = reencrypt(Reencrypt((DEVICE,), new), say=print, locate=locate)
    assert isinstance(done, Ok), done
    assert cryptsetup.opens_with(image, new)
    assert not cryptsetup.opens_with(image, Secret(os_key))
