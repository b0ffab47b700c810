"""Prediction (calcfuturepcr) and the PolicyPCR digest of predicted values."""

from __future__ import annotations

import hashlib
import struct

import pytest
from test_eventlog_builder import EV_EFI_ACTION, EV_SEPARATOR, Ev, agile_log

from conftest import TESTDATA
from heads.core.digest import HashAlg
from heads.core.eventlog import Measurement, parse_tcg, policy_pcr_digest, predict_pcr, replay_logs
from heads.core.pcr import PcrSelection
from heads.errors import UsageError

S256 = HashAlg.SHA256
Z = b"\0" * 32


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ext(p: bytes, d: bytes) -> bytes:
    return sha(p + d)


def test_heads_worked_example() -> None:
    """docs/heads-compat.md §PCR prediction, with an x86 coreboot log that leaves PCR 4 at zero."""
    firmware = replay_logs([parse_tcg(agile_log([Ev(2, EV_SEPARATOR, b"\0\0\0\0")]))])
    sealed = predict_pcr(firmware, S256, 4).value
    assert sealed == Z
    booted = predict_pcr(firmware, S256, 4, [Measurement.string("generic")])
    assert booted.value == ext(Z, sha(b"generic"))
    recov = predict_pcr(firmware, S256, 4, [Measurement.string("recovery")])
    assert recov.value == ext(Z, sha(b"recovery"))
    luks = b"sha256sum listing of LUKS headers\n"
    assert predict_pcr(None, S256, 6, [Measurement.data("luksDump.txt", luks)]).value == ext(
        Z, sha(luks)
    )
    files = [("/.gnupg/pubring.kbx", b"keys"), ("/etc/config.user", b"CONFIG_X=y\n")]
    items: list[Measurement] = []
    want = Z
    for path, content in files:
        items += [Measurement.string(path), Measurement.data(path, content)]
        want = ext(ext(want, sha(path.encode())), sha(content))
    assert predict_pcr(None, S256, 7, items).value == want


def test_prediction_starts_from_the_firmware_part() -> None:
    data = (TESTDATA / "eventlogs" / "tt-event-arch-linux.bin").read_bytes()
    firmware = replay_logs([parse_tcg(data)])
    p = predict_pcr(firmware, S256, 4, [Measurement.digest("ab" * 32)])
    assert p.firmware_value == firmware.pcrs[S256][4]
    assert p.value == ext(firmware.pcrs[S256][4], bytes.fromhex("ab" * 32))
    assert p.to_json()["extends"][0]["kind"] == "digest"  # type: ignore[index]


def test_digest_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(UsageError, match="sha256 bank needs 32"):
        predict_pcr(None, S256, 4, [Measurement.digest("00" * 20)])
    with pytest.raises(UsageError, match="not hex"):
        Measurement.digest("xyz")


def test_bank_missing_from_the_log_is_refused() -> None:
    firmware = replay_logs([parse_tcg(agile_log([Ev(4, EV_EFI_ACTION, b"x")], [S256]))])
    with pytest.raises(UsageError, match="no sha1 bank"):
        predict_pcr(firmware, HashAlg.SHA1, 4)


def test_policy_pcr_digest_follows_part3_23_7() -> None:
    sel = PcrSelection.parse("sha256:0,1,2,3,4,7")
    values = {int(i): bytes([i]) * 32 for i in sel.indices}
    tpml = struct.pack(">IHB", 1, 0x000B, 3) + bytes([0x9F, 0, 0])
    want = sha(Z + struct.pack(">I", 0x17F) + tpml + sha(b"".join(values[i] for i in sel.indices)))
    assert policy_pcr_digest(sel, values) == want


def test_policy_needs_every_selected_value() -> None:
    sel = PcrSelection.parse("sha256:0,4")
    with pytest.raises(ValueError, match="PCR 4"):
        policy_pcr_digest(sel, {0: Z})
