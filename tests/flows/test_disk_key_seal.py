"""The disk unlock key on a real swtpm and real LUKS2 images: seal, measure, release."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from disk_key_support import DRK, DUK, luks_image, seal_test_key
from heads.adapters import cryptsetup
from heads.adapters.tpm import DISK_KEY_HANDLE, Tpm, open_tpm
from heads.core.disk_key import parse_devices
from heads.core.secret import Secret
from heads.errors import AuthError, LockoutError, UnsealError
from heads.flows.disk_key import (
    DiskTarget,
    check_listing,
    measure_headers,
    read_listing,
    seal_disk_key,
    unseal_disk_key,
    values_from_live,
    wipe_disk_key,
)
from heads.testing.swtpm import Swtpm

pytestmark = [pytest.mark.swtpm, pytest.mark.cryptsetup]


@pytest.fixture
def tpm(swtpm: Swtpm) -> Iterator[Tpm]:
    with open_tpm(swtpm.tcti) as t:
        yield t


@pytest.fixture
def disk(tmp_path: Path) -> DiskTarget:
    return luks_image(tmp_path)


def test_seal_measure_unseal_round_trip(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    seal_test_key(tpm, disk, boot)
    devices = parse_devices((boot / "kexec_key_devices.txt").read_bytes())
    assert [d.device for d in devices] == ["/dev/nvme1n1"]
    assert devices[0].uuid == cryptsetup.luks_uuid(disk.path)
    listing = measure_headers(tpm, None, [disk])
    assert check_listing(boot, listing) is True
    key = unseal_disk_key(tpm, DUK)
    assert len(key) == 128
    assert cryptsetup.opens_with(disk.path, key, slot=cryptsetup.DUK_SLOT_LUKS2)
    assert cryptsetup.opens_with(disk.path, DRK)
    assert wipe_disk_key(tpm)
    assert not tpm.object_exists(DISK_KEY_HANDLE)


def test_unsealed_only_after_pcr6_is_measured(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    with pytest.raises(UnsealError) as exc:
        unseal_disk_key(tpm, DUK)
    assert exc.value.changed_pcrs == (6,)


def test_changed_header_moves_pcr6(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    seal_test_key(tpm, disk, boot)
    # Someone adds a key slot of their own: the header changes.
    cryptsetup.add_key(disk.path, DRK, Secret(b"attacker's key"), slot=5)
    listing = measure_headers(tpm, None, [disk])
    assert check_listing(boot, listing) is False
    with pytest.raises(UnsealError, match="PCR 6 changed") as exc:
        unseal_disk_key(tpm, DUK)
    assert exc.value.changed_pcrs == (6,)


def test_wrong_passphrase_counts_down_to_lockout(
    tpm: Tpm, disk: DiskTarget, tmp_path: Path
) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    measure_headers(tpm, None, [disk])
    with pytest.raises(AuthError, match="wrong passphrase") as first:
        unseal_disk_key(tpm, Secret(b"not the passphrase"))
    left = first.value.tries_left
    assert left is not None
    assert "tries left" in first.value.message or "try left" in first.value.message
    with pytest.raises(LockoutError, match="lockout"):  # noqa: PT012 - counts down to it
        for _ in range(left + 1):
            with contextlib.suppress(AuthError):
                unseal_disk_key(tpm, Secret(b"not the passphrase"))


def test_recovery_passphrase_is_checked_first(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    before, _, _ = read_listing([disk])
    boot = tmp_path / "boot"
    boot.mkdir()
    with pytest.raises(AuthError, match="does not open /dev/nvme1n1"):
        seal_disk_key(
            tpm,
            targets=[disk],
            recovery=Secret(b"wrong"),
            passphrase=DUK,
            boot_dir=boot,
            values=values_from_live(tpm, profile="coreboot", event_log=None),
            profile="coreboot",
        )
    assert read_listing([disk])[0] == before  # nothing changed
    assert not tpm.object_exists(DISK_KEY_HANDLE)


def test_key_and_passphrases_never_in_argv_files_or_logs(
    tpm: Tpm, disk: DiskTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
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
        seal_test_key(tpm, disk, tmp_path / "boot")
    finally:
        stop.set()
        thread.join()
    measure_headers(tpm, None, [disk])
    key = unseal_disk_key(tpm, DUK).reveal()
    assert any(b"luksAddKey" in c for c in seen), "the sampler never saw cryptsetup"
    needles = (key[:16], key.hex()[:32].encode(), DRK.reveal(), DUK.reveal())
    assert not any(n in c for c in seen for n in needles)
    # Every file but the LUKS image and the TPM's own storage (the simulator's NV).
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != disk.path and "swtpm-state" not in path.parts:
            data = path.read_bytes()
            assert not any(n in data for n in needles), path
    assert not any(n.decode("latin-1") in caplog.text for n in needles)
