"""coreboot: the CBMEM table (both header sizes) and the three `cbmem -L` text formats."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_eventlog_builder import cb_table, fold, h

from heads.cli.main import main
from heads.core.digest import HashAlg
from heads.core.eventlog import LogFormat, detect_format, parse_log, replay_logs
from heads.errors import ExitCode, FormatError

S256 = HashAlg.SHA256
Z = b"\0" * 32
STAGES = ["FMAP: FMAP", "CBFS: bootblock", "CBFS: fallback/romstage", "CBFS: fallback/payload"]


@pytest.mark.parametrize("pad", [False, True])
def test_cb_table_replays_pcr2_like_calcfuturepcr(pad: bool) -> None:
    entries = [(2, S256, h(S256, s.encode()), s) for s in STAGES]
    data = cb_table(entries, pad=pad)
    assert detect_format(data) is LogFormat.COREBOOT_CB
    log = parse_log(data, "tcpa.bin")
    assert [e.description for e in log.events] == STAGES
    replay = replay_logs([log])
    assert replay.pcrs[S256][2] == fold(S256, Z, [d for _p, _a, d, _n in entries])


def test_cb_table_with_sha1_entries() -> None:
    entries = [(2, HashAlg.SHA1, h(HashAlg.SHA1, b"a"), "a")]
    log = parse_log(cb_table(entries, pad=True), "t", "coreboot")
    assert log.banks == (HashAlg.SHA1,)


def test_cb_table_with_bad_digest_length_is_rejected() -> None:
    data = bytearray(cb_table([(2, S256, b"\1" * 32, "x")], pad=True))
    data[8 + 78] = 20  # digest_length of entry 0
    with pytest.raises(FormatError) as info:
        parse_log(bytes(data), "t.bin", "coreboot")
    assert info.value.offset == 8 + 78


CB_TEXT = """coreboot TPM log:

 PCR-2 {d0} SHA256 [FMAP: FMAP]
 PCR-2 {d1} SHA256 [CBFS: bootblock]
"""

TCPA_TEXT = """TCPA log:
\tSpecification: 1.21
\tPlatform class: PC Client
TCPA log entry 1:
\tPCR: 2
\tEvent type: Action
\tDigest: {s0}
\tEvent data: FMAP: FMAP
TCPA log entry 2:
\tPCR: 2
\tEvent type: No action
\tDigest: {z1}
\tEvent data not provided
TCPA log entry 3:
\tPCR: 2
\tEvent type: Unknown (0x80000008 >= 19)
\tDigest: {s1}
\tEvent data: 00ff
"""

TPM2_TEXT = """TPM2 log:
\tSpecification: 2.00
\tPlatform class: PC Client
TPM2 log entry 1:
\tPCR: 2
\tEvent type: Action
\tDigests:
\t\t SHA256: {d0}
\t\t SHA1: {s0}
\tEvent data: FMAP: FMAP
TPM2 log entry 2:
\tPCR: 2
\tEvent type: Action
\tDigests:
\t\t SHA256: {d1}
\t\t SHA1: {s1}
\tEvent data: CBFS: bootblock
"""


def _fill(text: str) -> bytes:
    return text.format(
        d0=h(S256, b"fmap").hex(),
        d1=h(S256, b"bootblock").hex(),
        s0=h(HashAlg.SHA1, b"fmap").hex(),
        s1=h(HashAlg.SHA1, b"bootblock").hex(),
        z1="00" * 20,
    ).encode()


def test_cbmem_text_coreboot_format() -> None:
    data = _fill(CB_TEXT)
    assert detect_format(data) is LogFormat.COREBOOT_TEXT
    log = parse_log(data, "cbmem.txt")
    assert [e.description for e in log.events] == ["FMAP: FMAP", "CBFS: bootblock"]
    assert log.events[1].line == 4
    replay = replay_logs([log])
    assert replay.pcrs[S256][2] == fold(S256, Z, [h(S256, b"fmap"), h(S256, b"bootblock")])


def test_cbmem_text_tcpa_format_skips_no_action() -> None:
    log = parse_log(_fill(TCPA_TEXT), "cbmem.txt")
    assert [e.event_type for e in log.events] == [5, 3, 0x80000008]
    replay = replay_logs([log])
    sha1 = HashAlg.SHA1
    assert replay.pcrs[sha1][2] == fold(sha1, b"\0" * 20, [h(sha1, b"fmap"), h(sha1, b"bootblock")])


def test_cbmem_text_tpm2_format_has_both_banks() -> None:
    log = parse_log(_fill(TPM2_TEXT), "cbmem.txt")
    assert set(log.banks) == {S256, HashAlg.SHA1}
    replay = replay_logs([log])
    assert replay.pcrs[S256][2] == fold(S256, Z, [h(S256, b"fmap"), h(S256, b"bootblock")])


def test_cbmem_text_errors_name_the_line_and_event() -> None:
    broken = _fill(TPM2_TEXT).replace(
        b"\t\t SHA1: " + h(HashAlg.SHA1, b"bootblock").hex().encode(), b"\t\t SHA1: abcd"
    )
    with pytest.raises(FormatError) as info:
        parse_log(broken, "cbmem.txt")
    assert info.value.line == 16
    assert "event 1" in info.value.message


@pytest.mark.parametrize("pcr", ["\u00b2", "\u0663", "12345678901", "-1", ""])
def test_a_pcr_that_is_not_an_ascii_number_is_refused_by_pcr_replay(
    pcr: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # str.isdigit() accepts "²", which int() refuses: `heads pcr replay` used to crash.
    path = tmp_path / "cbmem.txt"
    path.write_bytes(_fill(TPM2_TEXT).replace(b"\tPCR: 2\n", f"\tPCR: {pcr}\n".encode(), 1))
    assert main(["pcr", "replay", str(path)]) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}, line 5: event 0: bad PCR")
    assert "Traceback" not in err


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_after_a_cbmem_header_gives_a_log_or_a_format_error(text: str) -> None:
    for head in ("coreboot TPM log:\n", "TCPA log:\n", "TPM2 log:\n"):
        with contextlib.suppress(FormatError):
            parse_log((head + text).encode(), "t", "coreboot")
