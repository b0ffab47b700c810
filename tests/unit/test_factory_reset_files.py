"""The factory reset's files: the new config.user and the key backup as read from a drive."""

from __future__ import annotations

from pathlib import Path

import pytest

from heads.core.heads_config import parse_config
from heads.core.secret import Secret
from heads.errors import FormatError, UsageError
from heads.runtime.factory_reset import new_config_user
from heads.runtime.owner_signer import BACKUP_SECRET, MAX_BACKUP_BYTES, load_backup_key, read_backup


def test_config_user_keeps_the_owners_settings() -> None:
    current = b'# mine\nexport CONFIG_AUTO_BOOT_TIMEOUT="5"\nexport CONFIG_BOOT_DEV="/dev/sda1"\n'
    new = new_config_user(current, boot_device="/dev/nvme0n1", source="config.user")
    config = parse_config(new, source="new")
    assert config.get("CONFIG_BOOT_DEV") == "/dev/nvme0n1"
    assert config.get("CONFIG_HAVE_GPG_KEY_BACKUP") == "y"
    assert config.get("CONFIG_AUTO_BOOT_TIMEOUT") == "5"
    assert new.startswith(b"# mine\n")
    assert new.count(b"CONFIG_BOOT_DEV") == 1


def test_config_user_from_nothing() -> None:
    new = new_config_user(None, boot_device="/dev/nvme0n1", source="config.user")
    assert parse_config(new, source="new").items() == {
        "CONFIG_BOOT_DEV": "/dev/nvme0n1",
        "CONFIG_HAVE_GPG_KEY_BACKUP": "y",
    }


def test_a_damaged_config_user_is_named_not_overwritten() -> None:
    with pytest.raises(FormatError, match=r"config\.user.*line 2"):
        new_config_user(b"# ok\nexport CONFIG_X='\n", boot_device="/dev/sda", source="config.user")


def test_read_backup(tmp_path: Path) -> None:
    assert read_backup(tmp_path) is None
    (tmp_path / BACKUP_SECRET).write_bytes(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n")
    assert read_backup(tmp_path) == b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n"


def test_read_backup_refuses_links_directories_and_huge_files(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"x")
    drive = tmp_path / "drive"
    drive.mkdir()
    (drive / BACKUP_SECRET).symlink_to(elsewhere)
    with pytest.raises(UsageError, match="not a regular file"):
        read_backup(drive)
    (drive / BACKUP_SECRET).unlink()
    (drive / BACKUP_SECRET).mkdir()
    with pytest.raises(UsageError, match="not a regular file"):
        read_backup(drive)
    (drive / BACKUP_SECRET).rmdir()
    (drive / BACKUP_SECRET).write_bytes(b"A" * (MAX_BACKUP_BYTES + 1))
    with pytest.raises(UsageError, match="larger than"):
        read_backup(drive)


def test_no_drive_no_key() -> None:
    with pytest.raises(UsageError, match="no USB drive found"):
        load_backup_key(Secret(b"passphrase"), say=lambda _m: None, disks=[])
