"""The two logs the platform lab recorded on this machine (SeaBIOS and OVMF under QEMU with
swtpm), kept in ../shared/lab as base64 with the PCR values sysfs showed: replay equals them."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from conftest import require, shared_testdata
from heads.core.digest import HashAlg
from heads.core.eventlog import decode_event, event_summary, parse_log, replay_logs


def _appendix(doc: str) -> tuple[bytes, str, dict[str, dict[int, str]]]:
    path: Path = shared_testdata().parent / "lab" / doc
    if not path.is_file():
        require(f"lab notes not found at {path}")
    text = path.read_text(encoding="utf-8")
    appendix = text[text.index("## Appendix A") :]
    appendix = appendix[: appendix.index("## Appendix B")]
    blob = re.search(r"```\n([A-Za-z0-9+/=\n]+)```", appendix)
    assert blob is not None
    data = base64.b64decode(blob.group(1))
    # "(3121 bytes, sha256 `...`)" / "The log has 5256 bytes ...; its sha256 is `...`".
    stated = re.search(
        r"(?:bytes, sha256|its sha256 is)\s+`([0-9a-f]{64})`", appendix.replace("\n", " ")
    )
    assert stated is not None
    table: dict[str, dict[int, str]] = {"sha1": {}, "sha256": {}}
    for row in re.finditer(r"^\| ([0-9, ]+) \| ([0-9A-F]{40}|0…0) \| ([0-9A-F]{64}|0…0) \|$",
                           appendix, re.MULTILINE):  # fmt: skip
        for pcr in (int(p) for p in row.group(1).split(",")):
            table["sha1"][pcr] = row.group(2)
            table["sha256"][pcr] = row.group(3)
    return data, stated.group(1), table


@pytest.mark.parametrize("doc", ["platform-notes.md", "ovmf-measured-boot.md"])
def test_lab_log_replays_to_the_pcrs_sysfs_showed(doc: str) -> None:
    data, digest, table = _appendix(doc)
    assert hashlib.sha256(data).hexdigest() == digest
    log = parse_log(data, doc)
    assert not log.truncated
    replay = replay_logs([log])
    assert table["sha256"]
    for bank, values in table.items():
        alg = HashAlg.from_name(bank)
        for pcr, want in values.items():
            if want == "0…0":
                assert pcr not in replay.pcrs[alg]
                continue
            assert replay.pcrs[alg][pcr].hex().upper() == want, (doc, bank, pcr)
    for ev in log.events:
        assert "error" not in decode_event(ev)


def test_ovmf_log_shows_the_payload_events() -> None:
    data, _digest, _table = _appendix("ovmf-measured-boot.md")
    log = parse_log(data, "ovmf")
    kernel = next(e for e in log.events if e.event_type == 0x80000003)
    assert event_summary(kernel) == "VenMedia(1428f772-b64a-441e-b8c3-9ebdd7f893c7)/kernel"
    assert kernel.digests[HashAlg.SHA256].hex().startswith("d9a94638e33862e5")
    tags = [decode_event(e).get("tag") for e in log.events if e.pcr == 9]
    assert tags == ["LOADED_IMAGE::LoadOptions", "Linux initrd"]
