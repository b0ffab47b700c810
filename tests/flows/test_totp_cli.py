"""`heads totp` / `heads hotp` run in-process against a real swtpm."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path

import pexpect  # type: ignore[import-untyped]  # pexpect ships no type information
import pytest

from heads.adapters.tpm import open_tpm
from heads.cli.main import main
from heads.core.otp import parse_base32, totp_code
from heads.core.secret import Secret
from heads.flows.measure import measure_string
from heads.testing.swtpm import Swtpm
from qrscan import pixels_from_half_blocks, write_png, zbarimg

pytestmark = pytest.mark.swtpm

AT = "2026-11-25T21:00:10Z"
_BLOCKS = re.compile(r"^[ \u2580\u2584\u2588]+$")


def _seal(swtpm: Swtpm, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    rc = main(["totp", "seal", "--tcti", swtpm.tcti, "--profile", "coreboot", "--force", *extra])
    assert rc == 0
    return capsys.readouterr().out


def _base32(out: str) -> str:
    m = re.search(r"^  ((?:[A-Z2-7]{1,4} ?)+)$", out, re.MULTILINE)
    assert m is not None, out
    return m.group(1).replace(" ", "")


def test_seal_prints_a_qr_code_that_decodes_to_the_uri(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = _seal(swtpm, capsys, "--label", "Heads laptop")
    qr = "\n".join(line for line in out.splitlines() if line and _BLOCKS.match(line))
    png = tmp_path / "screen.png"
    write_png(pixels_from_half_blocks(qr), png)
    assert zbarimg(png) == f"otpauth://totp/Heads%20laptop?secret={_base32(out)}"
    assert "sha256:0,1,2,3,4,7" in out


def test_show_prints_the_code_for_the_given_time(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = Secret(parse_base32(_base32(_seal(swtpm, capsys, "--no-qr"))))
    expected = totp_code(secret, datetime.fromisoformat(AT))
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == 0
    line = capsys.readouterr().out
    assert line == f"TOTP {expected.code}  2026-11-25 21:00:10 UTC  (20 s left)\n"
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "code": expected.code,
        "seconds_left": 20,
        "step": expected.step,
        "time_utc": "2026-11-25T21:00:10Z",
        "valid_until_utc": "2026-11-25T21:00:30Z",
    }


def test_show_after_pcr7_extend_exits_3_naming_pcr7(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    _seal(swtpm, capsys, "--no-qr")
    with open_tpm(swtpm.tcti) as tpm:
        measure_string(tpm, None, 7, "/etc/config.user")
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == 3
    err = capsys.readouterr().err
    assert "error: TOTP secret not released: PCR 7 changed since it was sealed" in err
    assert "hint:" in err


def test_show_with_clock_before_build_exits_1(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    _seal(swtpm, capsys, "--no-qr")
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", "2015-01-01T00:00:00Z"]) == 1
    assert "before this build" in capsys.readouterr().err


def test_wipe_then_show_says_nothing_is_provisioned(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    _seal(swtpm, capsys, "--no-qr")
    assert main(["totp", "wipe", "--tcti", swtpm.tcti, "--force"]) == 0
    assert "Wiped" in capsys.readouterr().out
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == 1
    err = capsys.readouterr().err
    assert "no TOTP secret is sealed" in err
    assert "heads totp seal" in err


def test_replacing_needs_force_without_a_terminal(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    _seal(swtpm, capsys, "--no-qr")
    rc = main(["totp", "seal", "--tcti", swtpm.tcti, "--profile", "coreboot", "--no-qr"])
    assert rc == 2
    assert "--force" in capsys.readouterr().err


def test_hotp_check_without_counter_is_explained(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _seal(swtpm, capsys, "--no-qr")
    rc = main(["hotp", "check", "--tcti", swtpm.tcti, "--boot-dir", str(tmp_path)])
    assert rc == 1
    assert "no HOTP counter" in capsys.readouterr().err


def test_watch_refreshes_until_a_key_press(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    _seal(swtpm, capsys, "--no-qr")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "heads", "totp", "show", "--watch", "--tcti", swtpm.tcti, "--time", AT],
        encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect("Press any key to stop.")
        child.expect(r"TOTP \d{6}  2026-11-25 21:00:10 UTC  \(20 s left\)")
        # A second refresh (still from the one unseal) proves it loops rather than exits.
        child.expect(r"\rTOTP \d{6}")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
