"""Two logs recorded on our own QEMU machines (SeaBIOS and OVMF, each with swtpm), kept in
tests/data/eventlogs/lab with the PCR values the guest's sysfs showed: replay equals them.

How they were recorded: docs/qemu-platform.md; where the files come from: tests/data/SOURCES.md.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from conftest import TESTDATA
from heads.core.digest import HashAlg
from heads.core.eventlog import decode_event, event_summary, parse_log, replay_logs

LAB = TESTDATA / "eventlogs" / "lab"
LOGS = ["seabios-swtpm.bin", "ovmf-swtpm.bin"]


def _expected(name: str) -> dict[str, Any]:
    logs: dict[str, dict[str, Any]] = json.loads((LAB / "expected.json").read_bytes())["logs"]
    return logs[name]


def test_every_lab_log_has_its_expectations() -> None:
    on_disk = sorted(p.name for p in LAB.glob("*.bin"))
    assert on_disk == sorted(LOGS)
    for name in LOGS:
        assert _expected(name)["pcrs"]["sha256"]


@pytest.mark.parametrize("name", LOGS)
def test_lab_log_replays_to_the_pcrs_sysfs_showed(name: str) -> None:
    data = (LAB / name).read_bytes()
    expected = _expected(name)
    assert len(data) == expected["bytes"]
    assert hashlib.sha256(data).hexdigest() == expected["sha256"]
    log = parse_log(data, name)
    assert not log.truncated
    replay = replay_logs([log])
    table: dict[str, dict[str, str | None]] = expected["pcrs"]
    assert table["sha256"]
    for bank, values in table.items():
        alg = HashAlg.from_name(bank)
        for index, want in values.items():
            pcr = int(index)
            if want is None:  # never extended: sysfs showed zeros
                assert pcr not in replay.pcrs[alg]
                continue
            assert replay.pcrs[alg][pcr].hex().upper() == want, (name, bank, pcr)
    for ev in log.events:
        assert "error" not in decode_event(ev)


def test_ovmf_log_shows_the_payload_events() -> None:
    log = parse_log((LAB / "ovmf-swtpm.bin").read_bytes(), "ovmf")
    kernel = next(e for e in log.events if e.event_type == 0x80000003)
    assert event_summary(kernel) == "VenMedia(1428f772-b64a-441e-b8c3-9ebdd7f893c7)/kernel"
    assert kernel.digests[HashAlg.SHA256].hex().startswith("d9a94638e33862e5")
    tags = [decode_event(e).get("tag") for e in log.events if e.pcr == 9]
    assert tags == ["LOADED_IMAGE::LoadOptions", "Linux initrd"]
