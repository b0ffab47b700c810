"""USB boot's scanning and planning on the host: drive trees in directories instead of mounted
drives, real gpg signatures, the runtime's kexec replaced by a recorder of the plan."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Owner
from heads.core.gui import Failed, ModeConfig, Outcome, UsbBoot, UsbEntries
from heads.core.kexec_plan import KexecPlan
from heads.flows.boot_signing import sign_boot
from heads.runtime.boot import RuntimeEnv
from heads.runtime.usb import UsbDisk
from heads.runtime.usb_boot import UsbAccess, boot_usb, list_usb, scan_medium

pytestmark = pytest.mark.gpg

KERNEL = b"MZ a kernel" * 100
INITRD = b"070701 an initrd" * 100


def _tree(where: Path, title: str = "Live system") -> Path:
    (where / "boot" / "grub").mkdir(parents=True)
    (where / "boot" / "vmlinuz").write_bytes(KERNEL)
    (where / "boot" / "initrd.img").write_bytes(INITRD)
    (where / "boot" / "grub" / "grub.cfg").write_text(
        f"menuentry '{title}' {{\n\tlinux /boot/vmlinuz quiet\n\tinitrd /boot/initrd.img\n}}\n"
    )
    return where


def _signed(where: Path, owner: Owner) -> Path:
    tree = _tree(where, "Signed live")
    sign_boot(tree, gnupghome=owner.home, key=owner.fpr, tpm=None, rollback=False)
    return tree


class Drives:
    """USB disks whose "mount" is the directory of their files; an "ISO" file holds the name
    of the directory its loop mount shows."""

    def __init__(self, *trees: Path, ram: Path | None = None) -> None:
        self.trees = {Path(f"/dev/sd{chr(97 + i)}"): t for i, t in enumerate(trees)}
        self.lines: list[str] = []
        self.access = UsbAccess(
            [UsbDisk(dev, (), 2**20) for dev in self.trees], self.mount, self.mount_iso, ram
        )

    @contextlib.contextmanager
    def mount(self, device: Path) -> Iterator[Path]:
        yield self.trees[device]

    @contextlib.contextmanager
    def mount_iso(self, iso: Path) -> Iterator[Path]:
        yield Path(iso.read_text().strip())


class Booted:
    def __init__(self) -> None:
        self.plans: list[tuple[Path, KexecPlan]] = []
        self.measured = 0

    def kexec(self, env: RuntimeEnv, plan: KexecPlan) -> int:
        self.plans.append((env.boot_dir, plan))
        return 7

    def measure(self) -> None:
        self.measured += 1


def _boot(
    drives: Drives, effect: UsbBoot, owner: Owner, mode: ModeConfig | None = None
) -> tuple[Outcome | int, Booted]:
    booted = Booted()
    result = boot_usb(
        effect,
        RuntimeEnv(mode=mode),
        keyring=owner.keyring,
        kexec=booted.kexec,
        measure_usb=booted.measure,
        say=drives.lines.append,
        access=drives.access,
    )
    return result, booted


def test_unsigned_drive_lists_its_entries(tmp_path: Path, owner: Owner) -> None:
    medium = scan_medium(_tree(tmp_path / "u"), keyring=owner.keyring)
    assert [e.title for e in medium.entries] == ["Live system"]
    assert medium.verified is None
    assert not medium.signed(medium.entries[0])
    assert medium.isos == ()


def test_signed_drive_is_verified_and_a_changed_one_offers_nothing(
    tmp_path: Path, owner: Owner
) -> None:
    tree = _signed(tmp_path / "s", owner)
    medium = scan_medium(tree, keyring=owner.keyring)
    assert medium.verified is not None
    assert medium.signed(medium.entries[0])
    (tree / "boot" / "vmlinuz").write_bytes(KERNEL + b"!")
    changed = scan_medium(tree, keyring=owner.keyring)
    assert changed.entries == ()
    assert "kexec.sig does not verify" in changed.problem


def test_listing_escapes_titles_and_marks_what_is_signed(tmp_path: Path, owner: Owner) -> None:
    drives = Drives(_tree(tmp_path / "u", "Evil\x1b[2J title"), _signed(tmp_path / "s", owner))
    listed = list_usb(keyring=owner.keyring, say=drives.lines.append, access=drives.access)
    assert isinstance(listed, UsbEntries)
    assert listed.signed == (False, True)
    assert "\x1b" not in listed.titles[0]
    assert listed.titles[1] == "Signed live"
    assert any("/dev/sdb: 1 boot entries (signed)" in line for line in drives.lines)


def test_no_drive_and_nothing_bootable_are_failures(tmp_path: Path, owner: Owner) -> None:
    none = list_usb(keyring=owner.keyring, say=lambda _l: None, access=UsbAccess(disks=[]))
    assert isinstance(none, Failed)
    assert "No USB drive" in none.reason
    empty = tmp_path / "empty"
    empty.mkdir()
    drives = Drives(empty)
    nothing = list_usb(keyring=owner.keyring, say=drives.lines.append, access=drives.access)
    assert isinstance(nothing, Failed)
    assert "No bootable entry" in nothing.reason


def test_signed_entry_boots_with_its_digests(tmp_path: Path, owner: Owner) -> None:
    drives = Drives(_tree(tmp_path / "u"), _signed(tmp_path / "s", owner))
    result, booted = _boot(drives, UsbBoot(2, "Signed live"), owner, ModeConfig(restricted=True))
    assert result == 7
    assert booted.measured == 1
    ((root, plan),) = booted.plans
    assert root == tmp_path / "s"
    assert plan.kernel.sha256 == hashlib.sha256(KERNEL).digest()
    assert [f.sha256 for f in plan.initrds] == [hashlib.sha256(INITRD).digest()]


def test_unsigned_entry_boots_only_when_accepted_and_not_restricted(
    tmp_path: Path, owner: Owner
) -> None:
    drives = Drives(_tree(tmp_path / "u"))
    refused, booted = _boot(drives, UsbBoot(1, "Live system"), owner)
    assert isinstance(refused, Failed)
    assert "no longer signed" in refused.reason
    restricted, booted = _boot(
        drives, UsbBoot(1, "Live system", unsigned=True), owner, ModeConfig(restricted=True)
    )
    assert isinstance(restricted, Failed)
    assert "Restricted" in restricted.reason
    assert not booted.plans
    assert booted.measured == 0
    result, booted = _boot(drives, UsbBoot(1, "Live system", unsigned=True), owner)
    assert result == 7
    ((_root, plan),) = booted.plans
    assert plan.kernel.sha256 is None
    assert plan.verified_by is None


def test_a_swapped_drive_is_noticed(tmp_path: Path, owner: Owner) -> None:
    drives = Drives(_tree(tmp_path / "u", "Another system"))
    result, booted = _boot(drives, UsbBoot(1, "Live system", unsigned=True), owner)
    assert isinstance(result, Failed)
    assert "changed since they were scanned" in result.reason
    shutil.rmtree(tmp_path / "u" / "boot")
    result, booted = _boot(drives, UsbBoot(1, "Live system", unsigned=True), owner)
    assert isinstance(result, Failed)
    assert not booted.plans


def _iso_drive(tmp_path: Path, owner: Owner, *, sign: bool) -> Drives:
    """A drive with its own entry and ``isos/live.iso`` (signed beside it when ``sign``),
    whose loop mount is a tree with a loopback.cfg; and an ISO whose name is refused."""
    drive = _tree(tmp_path / "drive", "Drive entry")
    inside = tmp_path / "iso-inside"
    (inside / "boot" / "grub").mkdir(parents=True)
    (inside / "live").mkdir()
    (inside / "live" / "vmlinuz").write_bytes(KERNEL)
    (inside / "live" / "initrd.img").write_bytes(INITRD)
    (inside / "boot" / "grub" / "loopback.cfg").write_text(
        "menuentry 'Live ISO' {\n\tlinux /live/vmlinuz boot=live findiso=${iso_path}\n"
        "\tinitrd /live/initrd.img\n}\n"
    )
    (drive / "isos").mkdir()
    iso = drive / "isos" / "live.iso"
    iso.write_text(str(inside))
    (drive / "isos" / "bad name; init=x.iso").write_text(str(inside))
    if sign:
        subprocess.run(
            [
                *("gpg", "--homedir", str(owner.home), "--batch", "--local-user", owner.fpr),
                *("--detach-sign", "--output", f"{iso}.sig", str(iso)),
            ],
            check=True,
            capture_output=True,
        )
    ram = tmp_path / "ram"
    ram.mkdir()
    return Drives(drive, ram=ram)


def test_iso_entries_follow_the_drive_s_and_plain_names_only(tmp_path: Path, owner: Owner) -> None:
    drives = _iso_drive(tmp_path, owner, sign=True)
    listed = list_usb(keyring=owner.keyring, say=drives.lines.append, access=drives.access)
    assert isinstance(listed, UsbEntries)
    assert listed.titles == ("Drive entry", "isos/live.iso: Live ISO")
    assert listed.signed == (False, True)
    assert any("only letters, digits" in line for line in drives.lines)


def test_signed_iso_boots_from_its_copy_with_digests_and_where_it_is(
    tmp_path: Path, owner: Owner
) -> None:
    drives = _iso_drive(tmp_path, owner, sign=True)
    effect = UsbBoot(2, "isos/live.iso: Live ISO")
    result, booted = _boot(drives, effect, owner, ModeConfig(restricted=True))
    assert result == 7, drives.lines
    ((root, plan),) = booted.plans
    assert root == tmp_path / "iso-inside"
    assert plan.kernel.sha256 == hashlib.sha256(KERNEL).digest()
    assert "iso-scan/filename=/isos/live.iso" in plan.cmdline
    assert "findiso=/isos/live.iso" in plan.cmdline
    assert plan.verified_by is not None
    assert "isos/live.iso" in plan.verified_by
    assert list((tmp_path / "ram").iterdir()) == []  # the copy is gone


def test_changed_iso_is_refused_and_unsigned_one_needs_consent(
    tmp_path: Path, owner: Owner
) -> None:
    drives = _iso_drive(tmp_path, owner, sign=True)
    iso = tmp_path / "drive" / "isos" / "live.iso"
    iso.write_text(str(tmp_path / "iso-inside") + "\n")  # same tree, other bytes
    bad, booted = _boot(drives, UsbBoot(2, "isos/live.iso: Live ISO"), owner)
    assert isinstance(bad, Failed)
    assert "ISO signature verification failed" in bad.reason
    assert not booted.plans
    assert booted.measured == 0
    (tmp_path / "drive" / "isos" / "live.iso.sig").unlink()
    restricted, booted = _boot(
        drives,
        UsbBoot(2, "isos/live.iso: Live ISO", unsigned=True),
        owner,
        ModeConfig(restricted=True),
    )
    assert isinstance(restricted, Failed)
    result, booted = _boot(drives, UsbBoot(2, "isos/live.iso: Live ISO", unsigned=True), owner)
    assert result == 7
    ((_root, plan),) = booted.plans
    assert plan.kernel.sha256 is None
