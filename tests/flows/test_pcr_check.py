"""On a real swtpm: predictions equal the TPM, our PolicyPCR digest equals the TPM's, and
`check` explains a PCR that differs from the logs."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from heads.adapters.tpm import Tpm, open_tpm
from heads.core.digest import HashAlg
from heads.core.eventlog import EventLog, Measurement, policy_pcr_digest
from heads.core.pcr import PcrSelection
from heads.flows.measure import EventLogWriter, measure_digests, measure_file, measure_string
from heads.flows.pcr_check import (
    check_pcrs,
    default_logs,
    predict_from_logs,
    predicted_policy,
    read_log,
    read_measurement_file,
)
from heads.testing.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

BANKS = (HashAlg.SHA1, HashAlg.SHA256)
FIRMWARE = [  # (pcr, event type, data): a small UEFI-like boot
    (0, 0x80000008, b"\x00\x00\x82\x00\x00\x00\x00\x00\x00\x00\x0e\x00\x00\x00\x00\x00"),
    (7, 0x80000001, b"SecureBoot variable"),
    (4, 0x80000007, b"Calling EFI Application from Boot Option"),
    (2, 0x80000004, b"option rom"),
    *[(pcr, 4, b"\0\0\0\0") for pcr in range(8)],
]


def _h(alg: HashAlg, data: bytes) -> bytes:
    return hashlib.new(alg.value, data).digest()


def _firmware_log_bytes() -> bytes:
    """A crypto-agile log (PFP §10.2): Spec ID Event03 header, then TCG_PCR_EVENT2s."""
    spec = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(BANKS))
    spec += b"".join(struct.pack("<HH", a.tpm_alg_id, a.digest_size) for a in BANKS) + b"\0"
    out = struct.pack("<II20sI", 0, 3, b"\0" * 20, len(spec)) + spec
    for pcr, etype, data in FIRMWARE:
        out += struct.pack("<III", pcr, etype, len(BANKS))
        out += b"".join(struct.pack("<H", a.tpm_alg_id) + _h(a, data) for a in BANKS)
        out += struct.pack("<I", len(data)) + data
    return out


@pytest.fixture
def tpm(swtpm: Swtpm) -> Iterator[Tpm]:
    with open_tpm(swtpm.tcti) as t:
        yield t


@pytest.fixture
def firmware(tpm: Tpm, tmp_path: Path) -> EventLog:
    """Play the firmware: extend the log's digests into the TPM, and keep the log."""
    for pcr, _etype, data in FIRMWARE:
        tpm.extend_digests(pcr, {a: _h(a, data) for a in BANKS})
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(_firmware_log_bytes())
    return read_log(path)


def test_predicted_values_equal_the_tpm_after_the_same_extends(
    tpm: Tpm, firmware: EventLog, tmp_path: Path
) -> None:
    module = tmp_path / "usbhid.ko"
    module.write_bytes(b"\x7fELF module bytes")
    digest = bytes(range(32))
    plan = [
        Measurement.string("generic"),
        read_measurement_file(module),
        Measurement.digest(digest.hex()),
    ]
    prediction = predict_from_logs([firmware], HashAlg.SHA256, 4, plan)
    sha1_prediction = predict_from_logs([firmware], HashAlg.SHA1, 4, plan[:2])
    # The runtime's measurements, through the real measuring flow.
    measure_string(tpm, None, 4, "generic")
    measure_file(tpm, None, 4, module)
    assert tpm.read_pcrs(HashAlg.SHA1, [4])[4] == sha1_prediction.value
    measure_digests(tpm, None, 4, {HashAlg.SHA256: digest})
    assert tpm.read_pcrs(HashAlg.SHA256, [4])[4] == prediction.value
    # The firmware-only value is what the log replays to (calcfuturepcr 4, no items).
    assert predict_from_logs([firmware], HashAlg.SHA256, 4, []).value == prediction.firmware_value


def read_measurement(path: Path) -> Measurement:
    from heads.flows.pcr_check import read_measurement_file

    return read_measurement_file(path)


def test_policy_digest_of_predicted_pcrs_equals_the_tpms_trial(
    tpm: Tpm, firmware: EventLog
) -> None:
    selection = PcrSelection.parse("sha256:0,1,2,3,4,7")
    prediction = predict_from_logs([firmware], HashAlg.SHA256, 4, [Measurement.string("generic")])
    ours, values = predicted_policy(selection, prediction, tpm)
    assert ours == tpm.policy_pcr_digest_trial(selection, values)
    # And for the current values, with no values given to the TPM at all.
    current = tpm.read_pcrs(HashAlg.SHA256, selection.indices)
    assert policy_pcr_digest(selection, current) == tpm.policy_pcr_digest_trial(selection, None)
    # After the extend the predicted policy is the TPM's current policy.
    measure_string(tpm, None, 4, "generic")
    assert ours == tpm.policy_pcr_digest_trial(selection, None)


def test_check_matches_then_explains_an_unlogged_extend(
    tpm: Tpm, firmware: EventLog, tmp_path: Path
) -> None:
    cel_path = tmp_path / "measurements.cel.jsonl"
    writer = EventLogWriter(cel_path)
    measure_string(tpm, writer, 7, "/etc/config.user", description="user file")
    measure_string(tpm, writer, 4, "generic", description="boot mode")
    ours = read_log(cel_path)
    result = check_pcrs(tpm, [ours, firmware])  # order does not matter: firmware first
    assert [lg.source for lg in result.logs] == [firmware.source, ours.source]
    assert not result.comparison.differing
    assert {r.pcr for r in result.comparison.results} >= set(range(8))

    tpm.extend_digests(4, {a: _h(a, b"something nobody logged") for a in BANKS})
    result = check_pcrs(tpm, [firmware, ours])
    bad = result.comparison.differing
    assert {(r.alg, r.pcr) for r in bad} == {(HashAlg.SHA1, 4), (HashAlg.SHA256, 4)}
    assert all(r.kind == "log-incomplete" for r in bad)
    assert "incomplete" in bad[0].explanation


def test_check_names_the_first_logged_event_the_tpm_never_saw(
    tpm: Tpm, firmware: EventLog, tmp_path: Path
) -> None:
    cel_path = tmp_path / "measurements.cel.jsonl"
    writer = EventLogWriter(cel_path)
    measure_string(tpm, writer, 4, "generic", description="boot mode")
    # A record the TPM never received (written by hand, as a forged log would be).
    text = cel_path.read_text()
    text += text.replace('"recnum":0', '"recnum":1').replace("generic", "recovery")
    cel_path.write_text(text)
    ours = read_log(cel_path)
    digests = {a: _h(a, b"recovery") for a in BANKS}
    assert dict(ours.events[1].digests) != digests  # still the "generic" digest
    result = check_pcrs(tpm, [firmware, ours], pcrs=[4])
    (r256,) = [r for r in result.comparison.results if r.alg is HashAlg.SHA256]
    assert r256.kind == "log-ahead"
    assert r256.first_unexplained is not None
    assert r256.first_unexplained.source == str(cel_path)
    assert r256.first_unexplained.number == 1
    assert "not in the TPM" in r256.explanation


def test_default_logs_prefer_the_kernels_copy_then_cbmem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fw = tmp_path / "binary_bios_measurements"
    cel = tmp_path / "measurements.cel.jsonl"
    fw.write_bytes(_firmware_log_bytes())
    cel.write_text("")
    logs = default_logs(fw, cel)
    assert [lg.source for lg in logs] == [str(fw), str(cel)]
    # Linux shows coreboot's TPM2 log as an empty file: fall back to `cbmem -L`.  Real cbmem
    # needs coreboot firmware, so a stand-in prints what coreboot's cbmem prints.
    fw.write_bytes(b"")
    digest = _h(HashAlg.SHA256, b"fmap").hex()
    stub = tmp_path / "bin" / "cbmem"
    stub.parent.mkdir()
    stub.write_text(
        f"#!/bin/sh\nprintf 'coreboot TPM log:\\n\\n PCR-2 {digest} SHA256 [FMAP: FMAP]\\n'\n"
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:/usr/bin:/bin")
    (firmware,) = default_logs(fw, tmp_path / "absent.cel")
    assert firmware.source == "cbmem -L"
    assert firmware.events[0].description == "FMAP: FMAP"
    # No coreboot tables (cbmem fails): no firmware log at all.
    stub.write_text("#!/bin/sh\necho 'No coreboot table found.' >&2\nexit 1\n")
    assert default_logs(fw, tmp_path / "absent.cel") == []
