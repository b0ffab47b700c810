"""`heads tpm ...` as a user runs it: a separate process, real swtpm, exit codes and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heads.errors import ExitCode
from heads.testing.swtpm import Swtpm
from heads.testing.tpm_proxy import SilentTpm

pytestmark = pytest.mark.swtpm


def heads(
    *args: str,
    stdin: bytes = b"",
    pass_fds: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "heads", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=60,
        pass_fds=pass_fds,
        env=full_env,
    )


def passphrase_fd(text: bytes) -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, text)
    os.close(write_end)
    return read_end


def test_status_json_is_stable(swtpm: Swtpm) -> None:
    out = heads("tpm", "status", "--json", "--tcti", swtpm.tcti)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert set(status) == {
        "tcti",
        "manufacturer",
        "vendor",
        "firmware_version",
        "spec_revision",
        "banks",
        "endorsement_key",
        "lockout",
        "objects",
    }
    assert status["banks"] == ["sha1", "sha256"]
    assert status["lockout"]["tries_left"] == status["lockout"]["max_tries"]
    assert status["objects"] == {}


def test_pcrs_json_and_extend_via_env_tcti(swtpm: Swtpm, tmp_path: Path) -> None:
    env = {"HEADS_TCTI": swtpm.tcti, "HEADS_EVENT_LOG": str(tmp_path / "log.jsonl")}
    out = heads("tpm", "extend", "7", "--string", "hello", env=env)
    assert out.returncode == 0, out.stderr
    pcrs = json.loads(heads("tpm", "pcrs", "--json", env=env).stdout)
    assert set(pcrs) == {"sha1", "sha256"}
    assert len(pcrs["sha256"]) == 24
    assert f"PCR 7 sha256: {pcrs['sha256']['7']}" in out.stdout.decode()
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 1
    only = json.loads(heads("tpm", "pcrs", "--bank", "sha1", "--json", env=env).stdout)
    assert set(only) == {"sha1"}


def test_seal_unseal_extend_refuse_round_trip(swtpm: Swtpm, tmp_path: Path) -> None:
    env = {"HEADS_TCTI": swtpm.tcti, "HEADS_EVENT_LOG": str(tmp_path / "log.jsonl")}
    secret = os.urandom(20)
    seal = heads(
        "tpm", "seal", "--handle", "0x81004d47", "--pcrs", "0,1,2,3,4,7", stdin=secret, env=env
    )
    assert seal.returncode == 0, seal.stderr
    unseal = heads("tpm", "unseal", "--handle", "0x81004d47", env=env)
    assert unseal.returncode == 0, unseal.stderr
    assert unseal.stdout == secret
    heads("tpm", "extend", "7", "--digest", "sha256:" + "11" * 32, env=env)
    refused = heads("tpm", "unseal", "--handle", "0x81004d47", env=env)
    assert refused.returncode == ExitCode.VERIFICATION_FAILED
    assert refused.stdout == b""
    assert b"PCR 7 changed" in refused.stderr
    assert secret.hex().encode() not in refused.stderr


def test_wrong_passphrase_reports_tries_left(swtpm: Swtpm) -> None:
    env = {"HEADS_TCTI": swtpm.tcti}
    fd = passphrase_fd(b"a long enough passphrase\n")
    seal = heads(
        "tpm", "seal", "--handle", "0x81000003", "--pcrs", "0-7", "--passphrase-fd", str(fd),
        stdin=b"k" * 64, pass_fds=(fd,), env=env,
    )  # fmt: skip
    os.close(fd)
    assert seal.returncode == 0, seal.stderr
    fd = passphrase_fd(b"not it\n")
    wrong = heads(
        "tpm", "unseal", "--handle", "0x81000003", "--passphrase-fd", str(fd),
        pass_fds=(fd,), env=env,
    )  # fmt: skip
    os.close(fd)
    assert wrong.returncode == ExitCode.ERROR
    assert b"wrong passphrase" in wrong.stderr
    assert b"tries left" in wrong.stderr
    assert b"not it" not in wrong.stderr


def test_counter_commands(swtpm: Swtpm) -> None:
    env = {"HEADS_TCTI": swtpm.tcti}
    created = json.loads(heads("tpm", "counter", "create", "--json", env=env).stdout)
    bumped = json.loads(
        heads("tpm", "counter", "increment", created["id"], "--json", env=env).stdout
    )
    assert bumped == {"id": created["id"], "value": created["value"] + 1}
    read = heads("tpm", "counter", "read", created["id"], env=env)
    assert read.stdout.decode().strip() == f"{created['id']}: {created['value'] + 1}"


def test_reset_needs_confirmation_then_works(swtpm: Swtpm) -> None:
    env = {"HEADS_TCTI": swtpm.tcti}
    refused = heads("tpm", "reset", env=env)
    assert refused.returncode == ExitCode.USAGE
    assert b"--yes" in refused.stderr
    done = heads("tpm", "reset", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    status = json.loads(heads("tpm", "status", "--json", env=env).stdout)
    assert status["objects"] == {"0x81000000": "storage primary key"}
    assert status["lockout"]["max_tries"] == 10


@pytest.mark.parametrize(
    ("tcti", "code", "text"),
    [
        ("device:/dev/heads-no-such-tpm", ExitCode.TPM_NOT_FOUND, b"no TPM"),
        ("bogus:thing", ExitCode.TPM_UNREACHABLE, b"bad TCTI"),
        ("swtpm:host=127.0.0.1,port=1", ExitCode.TPM_UNREACHABLE, b"cannot reach"),
    ],
)
def test_tpm_trouble_has_its_own_exit_code(tcti: str, code: int, text: bytes) -> None:
    out = heads("tpm", "status", "--tcti", tcti)
    assert out.returncode == code
    assert text in out.stderr
    assert b"Traceback" not in out.stderr
    assert b"hint:" in out.stderr


def test_usage_errors_exit_2(swtpm: Swtpm) -> None:
    out = heads("tpm", "extend", "24", "--string", "x", "--tcti", swtpm.tcti)
    assert out.returncode == ExitCode.USAGE
    out = heads("tpm", "seal", "--handle", "0x81004d47", "--pcrs", "0,99", "--tcti", swtpm.tcti)
    assert out.returncode == ExitCode.USAGE
    assert b"outside 0-23" in out.stderr


def test_tpm_demo_runs() -> None:
    out = heads("tpm", "demo")
    assert out.returncode == 0, out.stderr
    assert b"refused" in out.stdout
    assert b"PCR 7 changed" in out.stdout


def test_a_tpm_that_never_answers_is_exit_6_not_a_hang(tmp_path: Path) -> None:
    env = {"HEADS_TPM_TIMEOUT": "1"}
    with SilentTpm() as silent:
        status = heads("tpm", "status", "--tcti", silent.tcti, env=env)
        boot = tmp_path / "boot"
        boot.mkdir()
        verify = heads(
            "boot", "verify", str(boot), "--keyring", str(tmp_path / "k.gpg"),
            "--tcti", silent.tcti, env=env,
        )  # fmt: skip
    for out in (status, verify):
        assert out.returncode == ExitCode.TPM_UNREACHABLE, out.stderr
        assert b"did not answer within 1 s" in out.stderr
        assert b"HEADS_TPM_TIMEOUT" in out.stderr
        assert b"Traceback" not in out.stderr


def test_a_bad_tpm_timeout_is_a_usage_error(swtpm: Swtpm) -> None:
    out = heads("tpm", "status", "--tcti", swtpm.tcti, env={"HEADS_TPM_TIMEOUT": "soon"})
    assert out.returncode == ExitCode.USAGE
    assert b"HEADS_TPM_TIMEOUT" in out.stderr


def test_a_file_is_not_a_tpm_and_is_left_untouched(tmp_path: Path) -> None:
    # tpm2-tss' device TCTI would open it read-write and write TPM commands into it.
    victim = tmp_path / "passwd"
    victim.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    out = heads("tpm", "status", "--tcti", f"device:{victim}")
    assert out.returncode == ExitCode.TPM_UNREACHABLE
    assert f"{victim} is not a TPM device".encode() in out.stderr
    assert b"Context not large enough" not in out.stderr
    assert victim.read_bytes() == b"root:x:0:0:root:/root:/bin/bash\n"


def test_another_character_device_is_not_a_tpm() -> None:
    if not Path("/sys/dev/char").is_dir():
        pytest.skip("no sysfs: character devices cannot be told apart")
    out = heads("tpm", "status", "--tcti", "device:/dev/null")
    assert out.returncode == ExitCode.TPM_UNREACHABLE
    assert b"/dev/null is not a TPM device (a mem device)" in out.stderr


def test_unsealing_without_the_needed_passphrase_says_so(swtpm: Swtpm) -> None:
    env = {"HEADS_TCTI": swtpm.tcti}
    fd = passphrase_fd(b"a long enough passphrase\n")
    seal = heads(
        "tpm", "seal", "--handle", "0x81000003", "--pcrs", "0-7", "--passphrase-fd", str(fd),
        stdin=b"k" * 64, pass_fds=(fd,), env=env,
    )  # fmt: skip
    os.close(fd)
    assert seal.returncode == 0, seal.stderr
    without = heads("tpm", "unseal", "--handle", "0x81000003", env=env)
    assert without.returncode == ExitCode.USAGE
    assert b"0x81000003 is sealed with a passphrase as well" in without.stderr
    assert b"--passphrase-fd" in without.stderr
    assert b"seal it again" not in without.stderr
    status = json.loads(heads("tpm", "status", "--json", env=env).stdout)
    assert status["lockout"]["failed_tries"] == 0


def test_a_passphrase_for_an_object_without_one_is_refused_before_the_tpm(swtpm: Swtpm) -> None:
    env = {"HEADS_TCTI": swtpm.tcti}
    seal = heads(
        "tpm", "seal", "--handle", "0x81004d47", "--pcrs", "0,1,2,3,4,7", stdin=b"s" * 20, env=env
    )
    assert seal.returncode == 0, seal.stderr
    fd = passphrase_fd(b"not needed\n")
    out = heads(
        "tpm", "unseal", "--handle", "0x81004d47", "--passphrase-fd", str(fd),
        pass_fds=(fd,), env=env,
    )  # fmt: skip
    os.close(fd)
    assert out.returncode == ExitCode.USAGE
    assert b"without a passphrase" in out.stderr


def test_unseal_pcrs_option_overrides_the_record(swtpm: Swtpm) -> None:
    env = {"HEADS_TCTI": swtpm.tcti}
    heads("tpm", "seal", "--handle", "0x81004d47", "--pcrs", "0,7", stdin=b"s" * 20, env=env)
    wrong = heads("tpm", "unseal", "--handle", "0x81004d47", "--pcrs", "0,1,7", env=env)
    assert wrong.returncode == ExitCode.VERIFICATION_FAILED
    assert b"it is sealed to PCRs sha256:0,7, not sha256:0,1,7" in wrong.stderr
    right = heads("tpm", "unseal", "--handle", "0x81004d47", "--pcrs", "sha256:0,7", env=env)
    assert right.returncode == 0, right.stderr
    assert right.stdout == b"s" * 20
    bad = heads("tpm", "unseal", "--handle", "0x81004d47", "--pcrs", "0,99", env=env)
    assert bad.returncode == ExitCode.USAGE
