"""The pending copy of the TOTP secret for a firmware update, on a real swtpm
(docs/firmware-update.md §Pending seal).

The copy is sealed to predicted PCR values; PCR 7 is then extended as the new image's user
files would move it.  A right prediction releases the copy and promotes it; a wrong one fails
like any unexpected change; a promotion cut after any TPM command leaves a copy that releases
the same secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from heads.adapters.tpm import TOTP_HANDLE, Tpm, open_tpm
from heads.core.digest import HashAlg, extend_string
from heads.core.otp import totp_code
from heads.core.sealing import seal_policy_digest
from heads.core.secret import Secret
from heads.errors import HeadsError, UnsealError, UsageError
from heads.flows.totp import (
    PENDING_HANDLE,
    pending_exists,
    seal_pending,
    seal_totp,
    show_totp,
    totp_selection,
    unseal_totp,
    wipe_totp,
)
from heads.testing.swtpm import Swtpm
from heads.testing.tpm_proxy import TpmProxy

pytestmark = pytest.mark.swtpm

NOW = datetime(2026, 11, 25, 21, 0, 10, tzinfo=UTC)
SELECTION = totp_selection("coreboot")


@pytest.fixture
def tpm(swtpm: Swtpm) -> Iterator[Tpm]:
    with open_tpm(swtpm.tcti) as t:
        yield t


def _sealed(tpm: Tpm) -> Secret:
    return seal_totp(
        tpm,
        pcr4_firmware=None,
        profile="coreboot",
        label="TPMTOTP",
        rng=os.urandom,
        event_log=None,
    ).secret


def _after(tpm: Tpm, text: str) -> dict[int, bytes]:
    """The profile's PCRs as they will be once PCR 7 is extended with ``text``."""
    values = tpm.read_pcrs(HashAlg.SHA256, SELECTION.indices)
    values[7] = extend_string(HashAlg.SHA256, values[7], text)
    return values


def _extend(tpm: Tpm, text: str) -> None:
    tpm.extend_digests(7, {HashAlg.SHA256: HashAlg.SHA256.hash(text.encode())})


def test_a_right_prediction_releases_the_copy_and_promotes_it(tpm: Tpm) -> None:
    secret = _sealed(tpm)
    seal_pending(tpm, secret, _after(tpm, "new config.user"), profile="coreboot")
    assert pending_exists(tpm)
    _extend(tpm, "new config.user")
    said: list[str] = []
    assert show_totp(tpm, now=NOW, say=said.append) == totp_code(secret, NOW)
    compared = [ln for ln in said if ln.startswith("pending seal: PCR ")]
    assert [ln.split()[3] for ln in compared] == ["0", "1", "2", "3", "4", "7"]
    assert all(ln.endswith(": matched") for ln in compared), said
    assert any("promoted" in ln for ln in said), said
    assert not pending_exists(tpm)
    # The current object now holds the secret for the new values: no copy is needed.
    said.clear()
    assert show_totp(tpm, now=NOW, say=said.append) == totp_code(secret, NOW)
    assert said == []


def test_a_wrong_prediction_fails_like_an_unexpected_change(tpm: Tpm) -> None:
    secret = _sealed(tpm)
    seal_pending(tpm, secret, _after(tpm, "predicted config.user"), profile="coreboot")
    _extend(tpm, "what was really flashed")
    said: list[str] = []
    with pytest.raises(UnsealError) as refused:
        show_totp(tpm, now=NOW, say=said.append)
    assert refused.value.message == "TOTP secret not released: PCR 7 changed since it was sealed"
    assert refused.value.changed_pcrs == (7,)
    assert any("PCR 7 predicted" in d and d.endswith("DIFFERS") for d in refused.value.details)
    assert any("refused as well" in ln for ln in said), said
    # Nothing was thrown away: both objects are still there, as they were.
    assert pending_exists(tpm)
    assert tpm.object_exists(TOTP_HANDLE)


def test_a_copy_for_a_flash_that_did_not_happen_is_dropped(tpm: Tpm) -> None:
    secret = _sealed(tpm)
    seal_pending(tpm, secret, _after(tpm, "never flashed"), profile="coreboot")
    said: list[str] = []
    assert show_totp(tpm, now=NOW, say=said.append) == totp_code(secret, NOW)
    assert any("did not boot" in ln for ln in said), said
    assert not pending_exists(tpm)


def test_a_copy_needs_every_pcr_of_the_profile(tpm: Tpm) -> None:
    secret = _sealed(tpm)
    values = _after(tpm, "x")
    del values[7]
    with pytest.raises(UsageError, match="PCR 7"):
        seal_pending(tpm, secret, values, profile="coreboot")
    assert not pending_exists(tpm)


def test_wiping_the_secret_removes_the_copy_too(tpm: Tpm) -> None:
    secret = _sealed(tpm)
    seal_pending(tpm, secret, _after(tpm, "x"), profile="coreboot")
    assert wipe_totp(tpm)
    assert not pending_exists(tpm)
    assert not tpm.object_exists(TOTP_HANDLE)


def test_a_promotion_cut_after_any_command_keeps_a_copy_that_releases(swtpm: Swtpm) -> None:
    secret = Secret(b"twenty bytes secret!")
    code = totp_code(secret, NOW)
    with open_tpm(swtpm.tcti) as tpm:
        stale = tpm.read_pcrs(HashAlg.SHA256, SELECTION.indices)
        _extend(tpm, "the new image")
        live = tpm.read_pcrs(HashAlg.SHA256, SELECTION.indices)

    def arrange() -> None:
        # The current object sealed to the values before the flash, the copy to today's.
        with open_tpm(swtpm.tcti) as tpm:
            tpm.seal(TOTP_HANDLE, secret, SELECTION, pcr_values=stale)
            seal_pending(tpm, secret, live, profile="coreboot")

    arrange()
    with TpmProxy(swtpm.port) as proxy:
        proxy.arm(None)
        with open_tpm(proxy.tcti) as tpm:
            assert show_totp(tpm, now=NOW) == code
        total = len(proxy.commands)
        assert total > 10
        cuts = 0
        for n in range(1, total + 1):
            arrange()
            proxy.arm(n)
            try:
                with open_tpm(proxy.tcti) as tpm:
                    show_totp(tpm, now=NOW)
            except HeadsError:
                cuts += 1
            with open_tpm(swtpm.tcti) as tpm:
                assert show_totp(tpm, now=NOW) == code, n
                # Whatever the cut left, the next boot settles it: one object, no copy.
                assert not pending_exists(tpm), n
                assert show_totp(tpm, now=NOW) == code, n
        assert cuts > total // 2
    with open_tpm(swtpm.tcti) as tpm:
        assert not tpm.object_exists(PENDING_HANDLE)


def test_the_copy_policy_is_the_predicted_values_policy(tpm: Tpm) -> None:
    """Prediction -> policy digest: ours, the record's and the TPM's trial session agree."""
    secret = _sealed(tpm)
    values = _after(tpm, "predicted")
    record = seal_pending(tpm, secret, values, profile="coreboot")
    ours = seal_policy_digest(SELECTION, values, with_auth=False)
    assert record.policy == ours
    assert tpm.policy_pcr_digest_trial(SELECTION, values) == ours
    assert tpm.seal_record(PENDING_HANDLE) == record
    # A different prediction gives another policy.
    assert seal_policy_digest(SELECTION, _after(tpm, "other"), with_auth=False) != ours


def test_with_an_owner_passphrase_the_copy_is_used_without_costing_da_tries(tpm: Tpm) -> None:
    owner = Secret(b"owner passphrase")
    tpm.reset(owner_auth=owner)
    secret = seal_totp(
        tpm,
        pcr4_firmware=None,
        profile="coreboot",
        label="TPMTOTP",
        rng=os.urandom,
        event_log=None,
        owner_auth=owner,
    ).secret
    seal_pending(tpm, secret, _after(tpm, "new firmware"), profile="coreboot", owner_auth=owner)
    _extend(tpm, "new firmware")
    tries = tpm.lockout_state().failed_tries
    said: list[str] = []
    assert show_totp(tpm, now=NOW, say=said.append) == totp_code(secret, NOW)
    assert any("not promoted (the TPM has an owner passphrase)" in ln for ln in said), said
    assert pending_exists(tpm)
    assert tpm.lockout_state().failed_tries == tries
    # With the passphrase (a later reseal in the menus), the copy is promoted.
    said.clear()
    assert unseal_totp(tpm, owner_auth=owner, say=said.append).reveal() == secret.reveal()
    assert any("promoted to 0x81004d47" in ln for ln in said), said
    assert not pending_exists(tpm)
