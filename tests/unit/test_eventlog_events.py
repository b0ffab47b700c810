"""Decoding event data for display: names, variables, device paths, GPT, tags, strings."""

from __future__ import annotations

import json
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TESTDATA
from heads.core.digest import HashAlg
from heads.core.eventlog import (
    EVENT_TYPE_NAMES,
    Event,
    EventLog,
    decode_event,
    device_path_text,
    event_summary,
    event_type_name,
    guid_text,
    parse_tcg,
)
from heads.core.eventlog.events import event_type_from_name


def _log(name: str) -> EventLog:
    return parse_tcg((TESTDATA / "eventlogs" / name).read_bytes(), name)


def test_event_type_names_round_trip() -> None:
    for value, name in EVENT_TYPE_NAMES.items():
        assert event_type_name(value) == name
        assert event_type_from_name(name) == value
    assert event_type_name(0x1234) == "EV_UNKNOWN_0x00001234"
    assert event_type_from_name("EV_UNKNOWN_0x00001234") == 0x1234


def test_guid_is_mixed_endian() -> None:
    raw = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c").bytes_le
    assert guid_text(raw) == "8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _node(ntype: int, sub: int, body: bytes) -> bytes:
    return struct.pack("<BBH", ntype, sub, 4 + len(body)) + body


def test_device_path_text() -> None:
    part = uuid.UUID("1a504613-19b5-4b44-a83d-d926d40daa1c")
    path = (
        _node(2, 1, struct.pack("<II", 0x0A0341D0, 0))
        + _node(1, 1, bytes([0, 0x1F]))
        + _node(4, 1, struct.pack("<IQQ", 1, 0x800, 0x100000) + part.bytes_le + b"\x02\x02")
        + _node(4, 4, "\\EFI\\BOOT\\BOOTX64.EFI\0".encode("utf-16-le"))
        + _node(0x7F, 0xFF, b"")
    )
    assert device_path_text(path) == (
        "PciRoot(0x0)/Pci(0x1f,0x0)/HD(1,GPT,1a504613-19b5-4b44-a83d-d926d40daa1c,0x800,"
        "0x100000)/\\EFI\\BOOT\\BOOTX64.EFI"
    )


def test_malformed_device_path_ends_with_a_marker() -> None:
    assert device_path_text(b"\x01\x01\x02\x00").endswith("<malformed>")


def test_boot_variables_decode_their_load_options() -> None:
    log = _log("tt-event-arch-linux.bin")
    decoded = decode_event(log.events[19])
    assert decoded["variable"] == "Boot0000"
    option = decoded["load_option"]
    assert isinstance(option, dict)
    assert option["description"] == "Linux Boot Manager"
    assert "HD(1,GPT," in str(option["device_path"])
    order = decode_event(log.events[18])
    assert order["boot_order"] == ["Boot0000", "Boot0003", "Boot0002"]


def test_secure_boot_variables_and_signature_lists() -> None:
    log = _log("tt-event-arch-linux.bin")
    assert decode_event(log.events[3])["variable"] == "SecureBoot"
    db = decode_event(log.events[6])
    assert db["variable"] == "db"
    assert db["signature_lists"]


def test_gpt_event_lists_partitions() -> None:
    log = _log("tt-event-arch-linux.bin")
    gpt = decode_event(log.events[17])
    assert gpt["disk_guid"] == "f9f4bb69-5418-46bb-9501-2d615a3edc79"
    parts = gpt["partitions"]
    assert isinstance(parts, list)
    assert parts
    assert all("first_lba" in p for p in parts)


def test_boot_application_shows_its_device_path() -> None:
    log = _log("tt-event-arch-linux.bin")
    assert "Sata(" in event_summary(log.events[22])


def test_spec_id_and_startup_locality_and_tags() -> None:
    log = _log("tt-event-bootorder.bin")
    spec = decode_event(log.events[0])
    assert spec["signature"] == "Spec ID Event03"
    assert spec["spec_version"] == "2.0.0"
    assert spec["algorithms"] == [
        {"algorithm_id": "0x0004", "digest_size": 20},
        {"algorithm_id": "0x000b", "digest_size": 32},
    ]
    sl = Event(1, 0, 3, {}, b"StartupLocality\0\x03")
    assert decode_event(sl)["startup_locality"] == 3
    body = b"Linux initrd\0"
    tag = Event(2, 9, 6, {}, struct.pack("<II", 0x8F3B22EC, len(body)) + body)
    assert decode_event(tag)["tag"] == "Linux initrd"


def test_utf16_ipl_strings_decode() -> None:
    log = _log("tt-event-sd-boot-fedora37.bin")
    texts = [decode_event(e).get("text") for e in log.events if e.pcr == 12]
    # systemd-boot keeps the command line's leading and trailing blanks.
    assert texts == [" console=ttyS0 console=tty0 efi=debug "] * 2


@pytest.mark.parametrize("name", sorted(p.name for p in (TESTDATA / "eventlogs").glob("*.bin")))
def test_every_event_of_every_real_log_decodes_without_error(name: str) -> None:
    for ev in _log(name).events:
        decoded = decode_event(ev)
        assert "error" not in decoded, (name, ev.number, decoded)
        assert isinstance(event_summary(ev), str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(EVENT_TYPE_NAMES)), st.binary(max_size=200))
def test_decoding_never_raises(etype: int, data: bytes) -> None:
    ev = Event(0, 0, etype, {HashAlg.SHA256: b"\0" * 32}, data)
    json.dumps(decode_event(ev))  # JSON-ready: `heads pcr log --json` prints it as is
    assert isinstance(event_summary(ev), str)


def test_summary_escapes_control_characters() -> None:
    summary = event_summary(Event(0, 8, 0x0D, {}, b"grub_cmd: echo hi\nnext"))
    assert summary == "grub_cmd: echo hi\\x0anext"
    # Text with terminal escapes is not shown as text at all.
    assert "\x1b" not in event_summary(Event(1, 8, 0x0D, {}, b"echo \x1b[2Jcleared"))


_nodes = st.lists(
    st.tuples(st.integers(0, 0x7F), st.integers(0, 0x20), st.binary(max_size=48)), max_size=8
)


@settings(max_examples=300, deadline=None)
@given(_nodes)
def test_device_path_text_never_raises(nodes: list[tuple[int, int, bytes]]) -> None:
    assert isinstance(device_path_text(b"".join(_node(t, s, b) for t, s, b in nodes)), str)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["Boot0001", "BootOrder", "SecureBoot", "db", "MokList", "Other"]),
    st.binary(max_size=120),
    st.sampled_from([0x80000001, 0x80000002, 0x8000000C, 0x800000E0]),
)
def test_well_framed_variables_with_random_values_decode(
    name: str, value: bytes, etype: int
) -> None:
    raw_name = name.encode("utf-16-le")
    data = uuid.uuid4().bytes_le + struct.pack("<QQ", len(name), len(value)) + raw_name + value
    decoded = decode_event(Event(0, 7, etype, {}, data))
    json.dumps(decoded)
    assert decoded["variable"] == name
