"""Secrets sealed by shell Heads unseal with heads.

The TPM is prepared with real tpm2-tools exactly as shell Heads does it (tpmr.sh): its reset
sets the owner passphrase and persists an RSA storage key at 0x81000000 (``tpm2_reset``), its
session setup starts the salted sessions from that key (``tpm2_startsession``), and ``tpmr
seal`` seals with a trial PolicyPCR session, ``tpm2 create`` (fixedtpm|fixedparent|
adminwithpolicy, no noda), ``tpm2 load`` and ``tpm2 evictcontrol``.  Such an object has no seal
record of heads; heads must still find its PCR selection (docs/heads-compat.md §TOTP and HOTP).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from conftest import require_tools
from heads.adapters.tpm import DISK_KEY_HANDLE, TOTP_HANDLE, open_tpm
from heads.cli.main import main
from heads.core.otp import parse_base32, totp_code
from heads.core.pcr import PcrSelection
from heads.core.secret import Secret
from heads.errors import ExitCode
from heads.flows.measure import measure_string
from heads.testing.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

AT = "2026-11-25T21:00:10Z"
OWNER = b"owner passphrase"
TOTP_PCRS = "0,1,2,3,4,7"  # seal-totp.sh
DISK_PCRS = "0,1,2,3,4,5,6,7"  # kexec-seal-key.sh


class Tools:
    """tpm2-tools against the swtpm, run in a scratch directory like Heads' /tmp/secret."""

    def __init__(self, tcti: str, work: Path) -> None:
        self.dir = work
        self._env = {**os.environ, "TPM2TOOLS_TCTI": tcti, "TSS2_LOG": "all+NONE"}

    def __call__(self, *argv: str, check: bool = True) -> bytes:
        out = subprocess.run(
            argv, cwd=self.dir, env=self._env, capture_output=True, check=False, timeout=60
        )
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: {out.stderr.decode()}")
        return out.stdout


def _hex(secret: bytes) -> str:
    return "hex:" + secret.hex()  # tpmr.sh's tpm2_password_hex


@pytest.fixture
def tools(swtpm: Swtpm, tmp_path: Path) -> Tools:
    """A TPM reset and set up by shell Heads; tpm2-tools to seal with."""
    require_tools("tpm2_createprimary", "tpm2_create", "tpm2_policypcr", "tpm2_evictcontrol")
    work = tmp_path / "secret"
    work.mkdir()
    run = Tools(swtpm.tcti, work)
    # tpm2_reset: owner passphrase, RSA primary persisted at 0x81000000.
    run("tpm2_changeauth", "-c", "owner", _hex(OWNER))
    run("tpm2_createprimary", "-C", "owner", "-g", "sha256", "-G", "rsa",
        "-c", "primary.ctx", "-P", _hex(OWNER))  # fmt: skip
    run("tpm2_evictcontrol", "-C", "owner", "-c", "primary.ctx", "0x81000000", "-P", _hex(OWNER))
    # tpm2_startsession: flush what is loaded, the primary's public part, the salted session.
    for what in ("--transient-object", "--loaded-session", "--saved-session"):
        run("tpm2_flushcontext", "-Q", what)
    run("tpm2_readpublic", "-Q", "-c", "0x81000000", "-t", "primary.handle")
    run("tpm2_startauthsession", "-Q", "-c", "primary.handle", "--hmac-session", "-S", "dec.ctx")
    run("tpm2_sessionconfig", "-Q", "--disable-encrypt", "dec.ctx")
    return run


def heads_seal(
    tools: Tools, secret: bytes, handle: int, pcrs: str, *, passphrase: bytes | None = None
) -> None:
    """``tpmr seal FILE HANDLE PCRS PCRFILE`` as Heads runs it, PCR 4 at its firmware value."""
    # seal-totp.sh builds the PCR file from the current PCRs and calcfuturepcr 4 (zero here:
    # swtpm has no firmware that measures).
    pcr_file = b""
    for index in pcrs.split(","):
        if index == "4":
            pcr_file += bytes(32)
        else:
            tools("tpm2_pcrread", "-Q", "-o", "pcr.bin", f"sha256:{index}")
            pcr_file += (tools.dir / "pcr.bin").read_bytes()
    (tools.dir / "pcrf.bin").write_bytes(pcr_file)
    (tools.dir / "key.bin").write_bytes(secret)
    tools("tpm2_startauthsession", "-g", "sha256", "-S", "trial.session")
    tools("tpm2_policypcr", "-Q", "-l", f"sha256:{pcrs}", "-f", "pcrf.bin",
          "-S", "trial.session", "-L", "auth.policy")  # fmt: skip
    create_pass: tuple[str, ...] = ()
    if passphrase is not None:
        tools("tpm2_policyauthvalue", "-Q", "-S", "trial.session", "-L", "auth.policy")
        create_pass = ("-p", _hex(passphrase))
    tools("tpm2_flushcontext", "trial.session")
    tools("tpm2_create", "-Q", "-C", "primary.handle", "-i", "key.bin", "-u", "key.pub",
          "-r", "key.priv", "-L", "auth.policy", "-S", "dec.ctx",
          "-a", "fixedtpm|fixedparent|adminwithpolicy", *create_pass)  # fmt: skip
    tools("tpm2_load", "-Q", "-C", "primary.handle", "-u", "key.pub", "-r", "key.priv",
          "-c", "key.seal.ctx")  # fmt: skip
    target = f"0x{handle:08x}"
    tools("tpm2_evictcontrol", "-Q", "-C", "o", "-P", _hex(OWNER), "-c", target, check=False)
    tools("tpm2_evictcontrol", "-Q", "-C", "o", "-P", _hex(OWNER), "-c", "key.seal.ctx", target)
    # What /dev/tpmrm0 does when a tool exits (swtpm has no resource manager).
    tools("tpm2_flushcontext", "-Q", "--transient-object")


def _code(secret: bytes) -> str:
    return totp_code(Secret(secret), datetime.fromisoformat(AT)).code


def test_totp_sealed_by_shell_heads_shows_the_right_code(
    swtpm: Swtpm, tools: Tools, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = os.urandom(20)
    heads_seal(tools, secret, TOTP_HANDLE, TOTP_PCRS)
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == 0
    assert capsys.readouterr().out.split()[1] == _code(secret)


def test_tpm_unseal_of_a_shell_heads_secret_needs_no_selection(swtpm: Swtpm, tools: Tools) -> None:
    secret = os.urandom(20)
    heads_seal(tools, secret, TOTP_HANDLE, TOTP_PCRS)
    out = subprocess.run(
        [sys.executable, "-m", "heads", "tpm", "unseal", "--handle", "0x81004d47",
         "--tcti", swtpm.tcti],
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == secret


def test_pcrs_option_unseals_a_secret_sealed_to_other_pcrs(
    swtpm: Swtpm, tools: Tools, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = os.urandom(20)
    heads_seal(tools, secret, TOTP_HANDLE, "0,7")
    assert (
        main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == ExitCode.VERIFICATION_FAILED
    )
    err = capsys.readouterr().err
    assert "give the PCR selection" not in err
    assert "--pcrs" in err
    rc = main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT, "--pcrs", "sha256:0,7"])
    assert rc == 0
    assert capsys.readouterr().out.split()[1] == _code(secret)


def test_a_changed_pcr_after_a_shell_heads_seal_is_a_refusal(
    swtpm: Swtpm, tools: Tools, capsys: pytest.CaptureFixture[str]
) -> None:
    heads_seal(tools, os.urandom(20), TOTP_HANDLE, TOTP_PCRS)
    with open_tpm(swtpm.tcti) as tpm:
        measure_string(tpm, None, 7, "/.gnupg/pubring.kbx")
        assert tpm.lockout_state().failed_tries == 0
    assert (
        main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == ExitCode.VERIFICATION_FAILED
    )
    err = capsys.readouterr().err
    assert "TOTP secret not released" in err
    assert "no seal record" in err
    with open_tpm(swtpm.tcti) as tpm:  # a policy failure is not a dictionary-attack failure
        assert tpm.lockout_state().failed_tries == 0


def test_heads_replaces_a_shell_heads_secret(
    swtpm: Swtpm, tools: Tools, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    heads_seal(tools, os.urandom(20), TOTP_HANDLE, TOTP_PCRS)
    read_end, write_end = os.pipe()
    os.write(write_end, OWNER + b"\n")
    os.close(write_end)
    rc = main(["totp", "seal", "--tcti", swtpm.tcti, "--profile", "coreboot", "--force",
               "--no-qr", "--owner-passphrase-fd", str(read_end)])  # fmt: skip
    os.close(read_end)
    assert rc == 0
    secret = _parse_base32(capsys.readouterr().out)
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == 0
    assert capsys.readouterr().out.split()[1] == _code(secret)


def _parse_base32(out: str) -> bytes:
    line = next(line for line in out.splitlines() if line.startswith("  "))
    return parse_base32(line.replace(" ", ""))


def test_disk_key_sealed_by_shell_heads_asks_for_its_passphrase(swtpm: Swtpm, tools: Tools) -> None:
    key, passphrase = os.urandom(32), b"disk unlock passphrase"
    heads_seal(tools, key, DISK_KEY_HANDLE, DISK_PCRS, passphrase=passphrase)
    argv = [sys.executable, "-m", "heads", "tpm", "unseal", "--handle", "0x81000003",
            "--tcti", swtpm.tcti]  # fmt: skip
    without = subprocess.run(argv, capture_output=True, check=False, timeout=60)
    assert without.returncode == ExitCode.USAGE
    assert b"sealed with a passphrase" in without.stderr
    assert b"seal it again" not in without.stderr
    read_end, write_end = os.pipe()
    os.write(write_end, passphrase + b"\n")
    os.close(write_end)
    given = subprocess.run(
        [*argv, "--passphrase-fd", str(read_end)],
        capture_output=True, check=False, timeout=60, pass_fds=(read_end,),
    )  # fmt: skip
    os.close(read_end)
    assert given.returncode == 0, given.stderr
    assert given.stdout == key


def test_a_record_left_by_heads_does_not_mislead_when_shell_heads_seals_again(
    swtpm: Swtpm, tools: Tools, capsys: pytest.CaptureFixture[str]
) -> None:
    # heads sealed to other PCRs and kept a record; shell Heads then replaced the object
    # without knowing about the record, which now describes an object that is gone.
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, Secret(b"x" * 20), PcrSelection.parse("sha256:0,7"),
                 owner_auth=Secret(OWNER))  # fmt: skip
        assert tpm.seal_record(TOTP_HANDLE) is not None
    secret = os.urandom(20)
    heads_seal(tools, secret, TOTP_HANDLE, TOTP_PCRS)
    assert main(["totp", "show", "--tcti", swtpm.tcti, "--time", AT]) == 0
    assert capsys.readouterr().out.split()[1] == _code(secret)
