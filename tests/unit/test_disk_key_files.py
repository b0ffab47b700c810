"""The disk unlock key's pure parts: Heads' /boot files, the PCR 6 listing, policy, key initrd."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import TESTDATA
from heads.core.cpio import read_newc
from heads.core.digest import HashAlg, zero_digest
from heads.core.disk_key import (
    CrypttabOverride,
    KeyDevice,
    check_passphrase,
    disk_key_selection,
    format_devices,
    format_overrides,
    header_listing,
    initrd_padding,
    key_initrd,
    parse_devices,
    parse_lvm,
    parse_overrides,
    pcr6_after,
    predicted_values,
)
from heads.core.secret import Secret
from heads.errors import FormatError, HeadsError, UsageError
from heads.flows.disk_key import firmware_pcrs

UUID = "4c6d2dfc-6882-492b-8e20-db173e996234"
UUID2 = "b6a69c3e-9690-4111-98d0-5ae0dec98217"


def test_devices_round_trip_in_heads_format() -> None:
    devs = (KeyDevice("/dev/sda2", UUID), KeyDevice("/dev/nvme0n1p3", UUID2))
    data = format_devices(devs)
    assert data == f"/dev/sda2 {UUID}\n/dev/nvme0n1p3 {UUID2}\n".encode()
    assert parse_devices(data) == devs


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no device"),
        (b"/dev/sda2\n", "expected"),
        (b"sda2 " + UUID.encode() + b"\n", "expected"),
        (b"/dev/../etc/x " + UUID.encode() + b"\n", "expected"),
        (b"/dev/sda2 not-a-uuid\n", "UUID"),
        (b"/dev/sda2 " + UUID.encode() + b"\x1b[2J\n", "control|UUID"),
        (f"/dev/sda2 {UUID}\n/dev/sda2 {UUID2}\n".encode(), "twice"),
        ("/dev/sdä2 x\n".encode(), "ASCII"),
    ],
)
def test_hostile_device_files(data: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason) as exc:
        parse_devices(data, source="/boot/kexec_key_devices.txt")
    assert exc.value.source == "/boot/kexec_key_devices.txt"


def test_lvm_file() -> None:
    assert parse_lvm(b"qubes_dom0\n") == "qubes_dom0"
    assert parse_lvm(b"\n") is None
    with pytest.raises(FormatError):
        parse_lvm(b"a\nb\n")
    with pytest.raises(FormatError):
        parse_lvm(b"--help\n")


def test_overrides_round_trip() -> None:
    data = b"/cryptroot/crypttab:luks-1234 UUID=1234 /secret.key luks,discard\n"
    parsed = parse_overrides(data)
    assert parsed == (
        CrypttabOverride("/cryptroot/crypttab", "luks-1234 UUID=1234 /secret.key luks,discard"),
    )
    assert format_overrides(parsed) == data
    with pytest.raises(FormatError, match="line 1"):
        parse_overrides(b"/../etc/shadow:x\n")


def test_listing_is_sha256sum_output_in_glob_order() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    listing = header_listing({"/dev/vdb": b, "/dev/nvme1n1": a})
    assert listing == (
        f"{a.hex()}  /tmp/lukshdr-_dev_nvme1n1\n{b.hex()}  /tmp/lukshdr-_dev_vdb\n".encode()
    )
    z = zero_digest(HashAlg.SHA256)
    assert pcr6_after(listing) == hashlib.sha256(z + hashlib.sha256(listing).digest()).digest()


def test_selection_per_profile() -> None:
    assert disk_key_selection("coreboot").indices == tuple(range(8))
    assert disk_key_selection("uefi").indices == (*range(8), 9)
    with pytest.raises(UsageError):
        disk_key_selection("arm")


def test_predicted_values_take_pcr4_firmware_and_pcr6_from_the_listing() -> None:
    sel = disk_key_selection("uefi")
    measured = {i: bytes([i]) * 32 for i in (0, 1, 2, 3, 4, 7, 9)}
    values = predicted_values(sel, measured, pcr4_firmware=b"\x44" * 32, listing=b"L")
    assert values[4] == b"\x44" * 32
    assert values[5] == bytes(32)
    assert values[6] == pcr6_after(b"L")
    assert values[9] == bytes([9]) * 32
    with pytest.raises(UsageError, match="PCR 1, 2, 3, 7, 9 "):
        predicted_values(sel, {0: bytes(32)}, pcr4_firmware=bytes(32), listing=b"")


def test_passphrase_rule() -> None:
    check_passphrase(Secret(b"twelve chars"), Secret(b"twelve chars"))
    with pytest.raises(UsageError, match="12"):
        check_passphrase(Secret(b"short"), Secret(b"short"))
    with pytest.raises(UsageError, match="differ"):
        check_passphrase(Secret(b"twelve chars"), Secret(b"twelve charz"))


def test_key_initrd_generic_crypttab() -> None:
    key = Secret(bytes(range(128)))
    archive = key_initrd(key, [KeyDevice("/dev/sda2", UUID)])
    members = {m.name: m for m in read_newc(archive.reveal(), source="key")}
    assert members["secret.key"].data == bytes(range(128))
    assert members["secret.key"].mode & 0o777 == 0o400
    line = f"luks-{UUID} UUID={UUID} /secret.key luks,discard\n".encode()
    assert members["etc/crypttab"].data == line
    assert members["cryptroot/crypttab"].data == line
    assert repr(archive) == "Secret(****)"


def test_key_initrd_with_overrides() -> None:
    over = (CrypttabOverride("/etc/crypttab", "root UUID=x /secret.key luks"),)
    members = {
        m.name: m for m in read_newc(key_initrd(Secret(b"k"), [], over).reveal(), source="key")
    }
    assert members["etc/crypttab"].data == b"root UUID=x /secret.key luks\n"
    assert "cryptroot/crypttab" not in members


@given(st.integers(0, 10**7))
def test_padding_aligns_to_512(size: int) -> None:
    assert (size + len(initrd_padding(size))) % 512 == 0
    assert len(initrd_padding(size)) < 512


@given(st.binary(max_size=400))
def test_fuzz_boot_files(data: bytes) -> None:
    for parse in (parse_devices, parse_lvm, parse_overrides):
        with contextlib.suppress(FormatError):
            parse(data)


def test_firmware_pcrs_replay_the_lab_ovmf_log() -> None:
    # PCRs 4-6 as OVMF left them, from a real guest's log and the values its sysfs showed.
    lab = TESTDATA / "eventlogs" / "lab"
    expected = json.loads((lab / "expected.json").read_text())["logs"]["ovmf-swtpm.bin"]
    values = firmware_pcrs((lab / "ovmf-swtpm.bin").read_bytes(), source="ovmf-swtpm.bin")
    for pcr in (4, 5, 6):
        assert values[pcr].hex().upper() == expected["pcrs"]["sha256"][str(pcr)]


def test_firmware_pcrs_refuse_a_damaged_log() -> None:
    data = (TESTDATA / "eventlogs" / "lab" / "ovmf-swtpm.bin").read_bytes()
    with pytest.raises(HeadsError) as exc:
        firmware_pcrs(data[:-7], source="cut.bin")
    assert "cut.bin" in exc.value.message


def test_firmware_values_from_the_newest_transcript_that_shows_them(tmp_path: Path) -> None:
    from heads.flows.qemu_luks import firmware_values_from_transcripts
    from heads.flows.qemu_platform import Machine

    machine = Machine(root=tmp_path)
    with pytest.raises(UsageError, match="PCRs 5 and 6") as exc:
        firmware_values_from_transcripts(machine)
    assert exc.value.hint is not None
    assert "boot it once first" in exc.value.hint
    for n, byte in (("001", "aa"), ("002", "bb")):
        (tmp_path / "boots" / n).mkdir(parents=True)
        (tmp_path / "boots" / n / "console.log").write_text(
            f"[  71.258] heads: firmware PCR 5 {byte * 32}\n"
            f"[  71.259] heads: firmware PCR 6 {'cc' * 32}\n"
        )
    (tmp_path / "boots" / "003").mkdir()
    (tmp_path / "boots" / "003" / "console.log").write_text("[ 1.0] heads: init\n")
    values = firmware_values_from_transcripts(machine)
    assert values == {5: bytes.fromhex("bb" * 32), 6: bytes.fromhex("cc" * 32)}
