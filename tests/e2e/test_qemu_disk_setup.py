"""The disk unlock key set up and resealed in the guest's menus (QEMU, TCG, OVMF, swtpm;
docs/disk-key.md §In the menus).

One machine, three boots:

A. "make default" finds the LUKS volume and no key: the owner adds one (recovery passphrase,
   new passphrase twice), /boot is signed again with the owner key from its backup drive,
   and the same boot starts the default entry: the OS opens its volume with the key file;
B. the owner added a key slot from the OS (here: the host, with cryptsetup): the headers
   changed, the owner declines the recovery key and reseals, wiping the other slots; then
   re-encrypts the volume from the TPM menu (a new volume key, only the recovery key's slot
   kept) and reseals again;
C. the resealed key is released and the OS opens its volume with it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters import cryptsetup
from heads.adapters.qemu import OVMF_BIOS
from heads.core.secret import Secret
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_blank import os_boot_files
from heads.flows.qemu_luks import (
    OS_LUKS_BY_KEY_FILE,
    OS_LUKS_BY_PASSPHRASE,
    OS_LUKS_PROMPT,
    add_luks_volume,
    owner_backup_drive,
)
from heads.flows.qemu_platform import (
    LUKS_DISK_NAME,
    BootResult,
    boot_machine,
    cached_payload,
    create_machine,
    provision_machine,
)

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.swtpm,
    pytest.mark.gpg,
    pytest.mark.cryptsetup,
]

REPO = Path(__file__).resolve().parents[2]
DRK = "owner recovery passphrase"
DUK = "correct horse battery staple 42"
DUK2 = "another long disk passphrase"
BACKUP = "backup drive passphrase"
NO_TOTP = ("totp-failed", "i")  # no TOTP secret was ever sealed on this machine


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _has(result: BootResult, text: str) -> bool:
    return any(text in line.text for line in result.lines)


def _dialogs(result: BootResult) -> list[str]:
    return [
        m.group(1) for ln in result.lines if (m := re.search(r"heads: dialog ([\w-]+): ", ln.text))
    ]


def _volume_key_digest(volume: Path) -> str:
    """The LUKS2 digest of the volume key (a new volume key gives a new one)."""
    dump = subprocess.run(
        ["cryptsetup", "luksDump", "--dump-json-metadata", str(volume)],
        capture_output=True,
        check=True,
    ).stdout
    digests = json.loads(dump)["digests"]
    return str(sorted((d["salt"], d["digest"]) for d in digests.values()))


def _secrets_hidden(result: BootResult) -> bool:
    return not any(s in ln.text for ln in result.lines for s in (DRK, DUK, DUK2, BACKUP))


def test_set_up_reseal_and_release_in_the_guest(tmp_path: Path) -> None:
    require_tools(
        "qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "mkfs.ext4", "cryptsetup", "mformat"
    )
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    m = create_machine(tmp_path / "machine")
    provision_machine(m, kernel=payload.kernel, initramfs=payload.initramfs)
    add_luks_volume(m, recovery=Secret(DRK.encode()))
    volume = m.root / LUKS_DISK_NAME
    backup = owner_backup_drive(m, tmp_path / "backup.img", Secret(BACKUP.encode()))
    assert not (m.os_boot / "kexec_key_devices.txt").exists()

    # A: set-up after "make default", then the default boot with the new key.
    a = boot_machine(
        m,
        answers=[
            NO_TOTP,
            ("main-menu", "o"),
            ("options", "b"),
            ("boot-options", "m"),
            ("boot-select", "1"),
            ("boot-confirm", "d"),
            ("backup-key-passphrase", BACKUP),
            ("signed", "ok"),
            ("disk-key-add", "y"),
            ("disk-key-devices", "a"),
            ("disk-key-drk", DRK),
            ("disk-key-new", DUK),
            ("disk-key-new-again", DUK),
            ("disk-key-sealed", "ok"),
            ("backup-key-passphrase", BACKUP),
            ("signed", "ok"),
            ("main-menu", "d"),
            ("disk-key-passphrase", DUK),
        ],
        usb_disks=[backup],
        disks_writable=True,
    )
    assert "disk-key-add" in _dialogs(a), _where(a)
    assert _has(a, "disk key: sealed for /dev/nvme1n1"), _where(a)
    # The OS initrd's own crypttab (uncompressed archive) with the key file set.
    assert _has(a, "kexec_initrd_crypttab_overrides.txt: 1 line(s) for /etc/crypttab"), _where(a)
    assert _has(a, "disk key: released in"), _where(a)
    assert _has(a, OS_LUKS_BY_KEY_FILE), _where(a)
    assert not _has(a, OS_LUKS_PROMPT), _where(a)
    assert _secrets_hidden(a), _where(a)
    assert cryptsetup.opens_with(volume, Secret(DRK.encode()))
    assert cryptsetup.active_slots(volume) == (0, cryptsetup.DUK_SLOT_LUKS2)

    # B: a key slot added from the OS changes the headers; reseal, wiping that slot.
    cryptsetup.add_key(volume, Secret(DRK.encode()), Secret(b"added from the OS"), slot=2)
    volume_key_before = _volume_key_digest(volume)
    b = boot_machine(
        m,
        answers=[
            NO_TOTP,
            ("main-menu", "d"),
            ("disk-key-recovery", "n"),
            ("disk-key-reseal", "y"),
            ("disk-key-drk", DRK),
            ("disk-key-wipe-slots", "y"),
            ("disk-key-new", DUK2),
            ("disk-key-new-again", DUK2),
            ("disk-key-sealed", "ok"),
            ("backup-key-passphrase", BACKUP),
            ("signed", "ok"),
            # Re-encrypt: a new volume key; only the DRK's slot stays, so reseal again.
            ("main-menu", "o"),
            ("options", "t"),
            ("tpm-options", "e"),
            ("disk-key-drk", DRK),
            ("disk-reencrypt-confirm", "y"),
            ("disk-reencrypted", "ok"),
            ("disk-key-reseal", "y"),
            ("disk-key-drk", DRK),
            ("disk-key-wipe-slots", "n"),
            ("disk-key-new", DUK2),
            ("disk-key-new-again", DUK2),
            ("disk-key-sealed", "ok"),
            ("backup-key-passphrase", BACKUP),
            ("signed", "ok"),
            ("tpm-options", "m"),
            ("main-menu", "p"),
        ],
        usb_disks=[backup],
        disks_writable=True,
    )
    assert _has(b, "Encrypted disk keys have changed"), _where(b)
    assert "disk-key-passphrase" not in _dialogs(b), _where(b)
    assert _has(b, "disk key: /dev/nvme1n1: key slot 2 wiped"), _where(b)
    assert _has(b, "disk key: /dev/nvme1n1: re-encrypted"), _where(b)
    assert _dialogs(b).count("disk-key-sealed") == 2, _where(b)
    assert not b.os_up, _where(b)
    assert _secrets_hidden(b), _where(b)
    # cryptsetup moved the recovery key to a new slot while re-encrypting.
    drk_slot = cryptsetup.slot_of(volume, Secret(DRK.encode()))
    assert drk_slot is not None
    assert cryptsetup.active_slots(volume) == (drk_slot, cryptsetup.DUK_SLOT_LUKS2)
    assert not cryptsetup.opens_with(volume, Secret(b"added from the OS"))
    assert volume_key_before != _volume_key_digest(volume)
    boot = os_boot_files(m, tmp_path / "boot-b")
    assert (boot / "kexec_key_devices.txt").read_text().startswith("/dev/nvme1n1 ")
    overrides = (boot / "kexec_initrd_crypttab_overrides.txt").read_text()
    assert overrides.startswith("/etc/crypttab:"), overrides
    assert " /secret.key " in overrides, overrides

    # C: the resealed key is released (the old passphrase no longer is the key's).
    c = boot_machine(
        m,
        answers=[NO_TOTP, ("main-menu", "d"), ("disk-key-passphrase", DUK2)],
        replies=[(re.escape(OS_LUKS_PROMPT), DRK)],
    )
    assert _has(c, "disk key: released in"), _where(c)
    assert _has(c, OS_LUKS_BY_KEY_FILE), _where(c)
    assert not _has(c, OS_LUKS_BY_PASSPHRASE), _where(c)
    shutil.rmtree(boot)
