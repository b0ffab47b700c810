"""A LUKS2 image and a disk unlock key sealed on swtpm, as the disk key's flow tests use them."""

from __future__ import annotations

from pathlib import Path

from conftest import require_tools
from heads.adapters import cryptsetup
from heads.adapters.pinned import sha256_file
from heads.adapters.tpm import Tpm
from heads.core.bootcfg.entry import BootEntry, EntryKind
from heads.core.secret import Secret
from heads.flows.disk_key import DiskTarget, seal_disk_key, values_from_live

DRK = Secret(b"recovery passphrase")
DUK = Secret(b"disk unlock passphrase")
#: The device name the key files list (the image stands for it).
DEVICE = "/dev/nvme1n1"


def luks_image(directory: Path) -> DiskTarget:
    """A 20 MiB LUKS2 image opened by :data:`DRK`, standing for :data:`DEVICE`."""
    require_tools("cryptsetup")
    path = directory / "os-luks.img"
    with path.open("wb") as f:
        f.truncate(20 << 20)
    cryptsetup.format_luks(path, DRK)
    return DiskTarget(DEVICE, path)


def seal_test_key(
    tpm: Tpm, disk: DiskTarget, boot: Path, *, owner_auth: Secret | None = None
) -> None:
    """Seal a key for ``disk`` with :data:`DUK` to this boot's PCRs; key files go to ``boot``."""
    boot.mkdir(exist_ok=True)
    seal_disk_key(
        tpm,
        targets=[disk],
        recovery=DRK,
        passphrase=DUK,
        boot_dir=boot,
        values=values_from_live(tpm, profile="coreboot", event_log=None),
        profile="coreboot",
        owner_auth=owner_auth,
    )


def default_entry(boot: Path, initrd: bytes) -> None:
    """Make ``boot`` hold a default entry (kernel ``/vmlinuz``, initrd ``/initrd.img``)."""
    (boot / "vmlinuz").write_bytes(b"kernel")
    (boot / "initrd.img").write_bytes(initrd)
    entry = BootEntry(
        title="OS", kind=EntryKind.ELF, kernel="/vmlinuz", initrds=("/initrd.img",), cmdline="ro"
    )
    (boot / "kexec_default.1.txt").write_text(entry.to_line() + "\n")
    hashes = "".join(f"{sha256_file(boot / p.lstrip('/'))}  .{p}\n" for p in entry.files)
    (boot / "kexec_default_hashes.txt").write_text(hashes)
