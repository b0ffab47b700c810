"""The TPM adapter against a real swtpm."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from heads.adapters.tpm import DISK_KEY_HANDLE, TOTP_HANDLE, open_tpm
from heads.core.cel import replay_cel
from heads.core.digest import HashAlg, extend, zero_digest
from heads.core.pcr import PcrSelection
from heads.core.sealing import seal_policy_digest
from heads.core.secret import Secret
from heads.errors import (
    AuthError,
    LockoutError,
    TpmError,
    TpmFailureModeError,
    TpmNotFoundError,
    TpmUnreachableError,
    UnsealError,
)
from heads.flows.measure import EventLogWriter, measure_digests, measure_file, measure_string
from heads.testing.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

TOTP_PCRS = PcrSelection.parse("sha256:0,1,2,3,4,7")
SECRET = Secret(b"\x01\x02 twenty byte secret"[:20])


def test_seal_then_unseal_returns_the_secret(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS)
        assert tpm.unseal(TOTP_HANDLE) == SECRET


def test_unseal_fails_after_pcr7_extend_and_names_pcr7(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS)
        measure_string(tpm, None, 7, "config.user changed")
        with pytest.raises(UnsealError) as info:
            tpm.unseal(TOTP_HANDLE)
    assert info.value.changed_pcrs == (7,)
    assert "PCR 7 changed" in info.value.message
    assert SECRET.reveal().hex() not in str(info.value)


def test_refusal_is_explained_after_a_power_cycle(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS)
    swtpm.restart()
    with open_tpm(swtpm.tcti) as tpm:
        assert tpm.unseal(TOTP_HANDLE) == SECRET  # persistent object survived
        measure_string(tpm, None, 4, "recovery")
        measure_string(tpm, None, 0, "firmware changed")
        with pytest.raises(UnsealError) as info:
            tpm.unseal(TOTP_HANDLE)
    assert info.value.changed_pcrs == (0, 4)


def test_seal_to_future_values_releases_only_in_that_future(swtpm: Swtpm) -> None:
    future7 = extend(HashAlg.SHA256, zero_digest(HashAlg.SHA256), HashAlg.SHA256.hash(b"later"))
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS, pcr_values={7: future7})
        with pytest.raises(UnsealError) as info:
            tpm.unseal(TOTP_HANDLE)
        assert info.value.changed_pcrs == (7,)
        measure_string(tpm, None, 7, "later")
        assert tpm.unseal(TOTP_HANDLE) == SECRET


def test_passphrase_secret_refuses_wrong_passphrase_and_counts_tries(swtpm: Swtpm) -> None:
    good, bad = Secret(b"correct horse battery"), Secret(b"wrong passphrase")
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(DISK_KEY_HANDLE, Secret(b"k" * 128), TOTP_PCRS, auth=good)
        assert tpm.unseal(DISK_KEY_HANDLE, auth=good).reveal() == b"k" * 128
        max_tries = tpm.lockout_state().max_tries
        seen = []
        for _ in range(max_tries - 1):
            with pytest.raises(AuthError) as info:
                tpm.unseal(DISK_KEY_HANDLE, auth=bad)
            seen.append(info.value.tries_left)
            assert "tries left" in info.value.message or "try left" in info.value.message
        assert seen == list(range(max_tries - 1, 0, -1))
        with pytest.raises(LockoutError) as locked:
            tpm.unseal(DISK_KEY_HANDLE, auth=bad)
        assert locked.value.recovery_s is not None
        assert locked.value.recovery_s > 0
        assert tpm.lockout_state().in_lockout
        with pytest.raises(LockoutError, match="lockout"):
            tpm.unseal(DISK_KEY_HANDLE, auth=good)


def test_passphrase_secret_also_needs_the_pcrs(swtpm: Swtpm) -> None:
    good = Secret(b"correct horse battery")
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(DISK_KEY_HANDLE, Secret(b"k" * 32), TOTP_PCRS, auth=good)
        measure_string(tpm, None, 3, "changed")
        with pytest.raises(UnsealError) as info:
            tpm.unseal(DISK_KEY_HANDLE, auth=good)
    assert info.value.changed_pcrs == (3,)


def test_counter_only_goes_up_and_survives_restart(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        index = tpm.nv_counter_create()
        assert index >> 24 == 0x01
        first = tpm.nv_counter_read(index)
        values = [tpm.nv_counter_increment(index) for _ in range(3)]
    assert values == [first + 1, first + 2, first + 3]
    swtpm.restart()
    with open_tpm(swtpm.tcti) as tpm:
        assert tpm.nv_counter_read(index) == first + 3
        assert tpm.nv_counter_increment(index) == first + 4
        assert tpm.nv_exists(index)
        with pytest.raises(TpmError, match="no NV counter"):
            tpm.nv_counter_read(index ^ 0x1)


def test_pcrs_equal_the_replay_of_our_event_log(swtpm: Swtpm, tmp_path: Path) -> None:
    log = EventLogWriter(tmp_path / "log.jsonl")
    config = tmp_path / "config.user"
    config.write_bytes(b'export CONFIG_BOOT_DEV="/dev/vda1"\n')
    with open_tpm(swtpm.tcti) as tpm:
        measure_string(tpm, log, 7, "/.gnupg/pubring.kbx", description="path")
        measure_file(tpm, log, 7, config)
        measure_string(tpm, log, 4, "generic")
        measure_digests(tpm, log, 5, {HashAlg.SHA256: bytes(range(32))})
        replayed = replay_cel(log.records())
        for alg in (HashAlg.SHA256, HashAlg.SHA1):
            live = tpm.read_pcrs(alg, range(24))
            for pcr, value in replayed[alg].items():
                assert live[pcr] == value, (alg, pcr)
    assert [r.recnum for r in log.records()] == [0, 1, 2, 3]
    assert 5 not in replayed[HashAlg.SHA1]  # a sha256-only digest leaves sha1 alone


def test_policy_digest_we_compute_equals_the_tpms(swtpm: Swtpm) -> None:
    given: dict[int, bytes] = {i: bytes([i]) * 32 for i in TOTP_PCRS.indices}
    with open_tpm(swtpm.tcti) as tpm:
        live = tpm.read_pcrs(HashAlg.SHA256, TOTP_PCRS.indices)
        assert tpm.policy_pcr_digest_trial(TOTP_PCRS) == seal_policy_digest(
            TOTP_PCRS, live, with_auth=False
        )
        assert tpm.policy_pcr_digest_trial(TOTP_PCRS, given) == seal_policy_digest(
            TOTP_PCRS, given, with_auth=False
        )


def test_reset_destroys_secrets_and_sets_dictionary_attack_parameters(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS)
        counter = tpm.nv_counter_create()
        tpm.reset()
        assert not tpm.object_exists(TOTP_HANDLE)
        assert not tpm.nv_exists(counter)
        lock = tpm.lockout_state()
        assert (lock.max_tries, lock.recovery_interval_s) == (10, 3600)
        assert tpm.info().objects == {0x81000000: "storage primary key"}
        with pytest.raises(TpmError, match="no sealed secret"):
            tpm.unseal(TOTP_HANDLE)


def test_locked_platform_hierarchy_leaves_only_the_lockout_route(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        tpm.lock_platform_hierarchy()
        with pytest.raises(TpmError, match="lock the platform hierarchy"):
            tpm.lock_platform_hierarchy()  # needs the old platform auth, now unknown
        tpm.reset()  # falls back to the lockout hierarchy
        assert tpm.info().objects == {0x81000000: "storage primary key"}
    swtpm.restart()  # a power cycle resets the platform auth
    with open_tpm(swtpm.tcti) as tpm:
        tpm.lock_platform_hierarchy()


def test_owner_passphrase_is_required_after_reset_with_one(swtpm: Swtpm) -> None:
    owner = Secret(b"owner passphrase")
    with open_tpm(swtpm.tcti) as tpm:
        tpm.reset(owner_auth=owner)
        with pytest.raises(AuthError, match="owner passphrase was refused"):
            tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS)
        tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS, owner_auth=owner)
        assert tpm.unseal(TOTP_HANDLE) == SECRET


def test_evict_removes_object_and_record(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(TOTP_HANDLE, SECRET, TOTP_PCRS)
        assert tpm.seal_record(TOTP_HANDLE) is not None
        tpm.evict(TOTP_HANDLE)
        assert not tpm.object_exists(TOTP_HANDLE)
        assert tpm.seal_record(TOTP_HANDLE) is None


def test_random_bytes(swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        a, b = tpm.get_random(100), tpm.get_random(100)
    assert len(a) == len(b) == 100
    assert a != b


def test_secrets_do_not_reach_the_logs(swtpm: Swtpm, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    passphrase = Secret(b"hunter2-passphrase")
    with open_tpm(swtpm.tcti) as tpm:
        tpm.seal(DISK_KEY_HANDLE, SECRET, TOTP_PCRS, auth=passphrase)
        tpm.unseal(DISK_KEY_HANDLE, auth=passphrase)
        with pytest.raises(AuthError) as info:
            tpm.unseal(DISK_KEY_HANDLE, auth=Secret(b"another-guess"))
    text = caplog.text + str(info.value) + repr(passphrase)
    for secret in (b"hunter2-passphrase", b"another-guess", SECRET.reveal()):
        assert secret.decode("latin-1") not in text


def test_missing_device_is_reported_as_no_tpm() -> None:
    with (
        pytest.raises(TpmNotFoundError, match="does not exist"),
        open_tpm("device:/dev/heads-no-such-tpm"),
    ):
        pass


@pytest.mark.parametrize("tcti", ["bogus:xyz", "swtpm:host=127.0.0.1,port=notaport"])
def test_bad_tcti_strings_are_reported(tcti: str) -> None:
    with pytest.raises(TpmUnreachableError, match="bad TCTI"), open_tpm(tcti):
        pass


def test_unreachable_swtpm_is_reported(swtpm: Swtpm) -> None:
    tcti = swtpm.tcti
    swtpm.stop()
    with pytest.raises(TpmUnreachableError, match="cannot reach") as info, open_tpm(tcti):
        pass
    assert info.value.hint is not None
    assert "swtpm" in info.value.hint


def test_uninitialised_swtpm_is_reported_as_failure_mode(tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    from conftest import require
    from heads.testing.swtpm import free_port_pair, swtpm_missing_reason

    require(swtpm_missing_reason())
    port, ctrl_port = free_port_pair()
    # A raw, never initialised swtpm (no swtpm_setup, no not-need-init): it answers every
    # command with TPM_RC_FAILURE, the same as a TPM in failure mode.
    proc = subprocess.Popen(
        [
            "swtpm",
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={tmp_path}",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={ctrl_port},bindaddr=127.0.0.1",
        ]
    )
    try:
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.01)
        with (
            pytest.raises(TpmFailureModeError) as info,
            open_tpm(f"swtpm:host=127.0.0.1,port={port}"),
        ):
            pass
        assert info.value.hint is not None
        assert "not-need-init" in info.value.hint
    finally:
        proc.terminate()
        proc.wait()
