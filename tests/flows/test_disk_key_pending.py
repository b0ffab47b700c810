"""The disk unlock key across a firmware update, on a real swtpm and a real LUKS2 image
(docs/disk-key.md §Firmware updates).

The key is sealed, then a copy is sealed for a "new image" whose prediction moves PCR 7;
the new boot is simulated by extending PCR 7 as predicted (PCR 6 keeps the one header listing
it holds, as the next boot measures it once again from its firmware value).  The copy must
release the key and be promoted; a wrong passphrase or a wrong prediction must not lose
anything; a promotion cut after any TPM command must leave a copy that releases the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from disk_key_support import DUK, luks_image, seal_test_key
from heads.adapters import cryptsetup
from heads.adapters.tpm import DISK_KEY_HANDLE, Tpm, open_tpm
from heads.core.digest import HashAlg, extend_string
from heads.core.disk_key import disk_key_selection
from heads.core.pcr_predict import Prediction
from heads.core.platform import PROFILES
from heads.core.secret import Secret
from heads.errors import AuthError, HeadsError, UnsealError, UsageError
from heads.flows.disk_key import (
    DiskTarget,
    headers_measured,
    measure_headers_once,
    unseal_disk_key,
    wipe_disk_key,
)
from heads.flows.disk_key_pending import (
    PENDING_DISK_KEY_HANDLE,
    pending_disk_key_exists,
    seal_pending_disk_key,
)
from heads.flows.measure import EventLogWriter
from heads.flows.update_reseal import reseal_disk_key_for_update
from heads.testing.swtpm import Swtpm
from heads.testing.tpm_proxy import TpmProxy

pytestmark = [pytest.mark.swtpm, pytest.mark.cryptsetup]

WRONG = Secret(b"not the passphrase")
SELECTION = disk_key_selection("coreboot")


@pytest.fixture
def tpm(swtpm: Swtpm) -> Iterator[Tpm]:
    with open_tpm(swtpm.tcti) as t:
        yield t


@pytest.fixture
def disk(tmp_path: Path) -> DiskTarget:
    return luks_image(tmp_path)


def _prediction(tpm: Tpm, text: str) -> Prediction:
    """The coreboot profile's PCRs once the new image's user files move PCR 7 with ``text``."""
    values = tpm.read_pcrs(HashAlg.SHA256, PROFILES["coreboot"])
    values[7] = extend_string(HashAlg.SHA256, values[7], text)
    values[4] = bytes(32)  # coreboot's firmware-only PCR 4
    return Prediction("coreboot", values, dict.fromkeys(values, "test"))


def _new_boot(tpm: Tpm, text: str) -> None:
    tpm.extend_digests(7, {HashAlg.SHA256: HashAlg.SHA256.hash(text.encode())})


def _reseal(tpm: Tpm, disk: DiskTarget, log: EventLogWriter, prediction: Prediction) -> None:
    reseal_disk_key_for_update(
        tpm,
        DUK,
        prediction,
        profile="coreboot",
        firmware_log=None,
        targets=[disk],
        log=log,
    )


def test_the_copy_releases_the_key_after_the_update_and_is_promoted(
    tpm: Tpm, disk: DiskTarget, tmp_path: Path
) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    log = EventLogWriter(tmp_path / "log.jsonl")
    _reseal(tpm, disk, log, _prediction(tpm, "new config.user"))
    assert pending_disk_key_exists(tpm)
    assert headers_measured(log) is not None
    _new_boot(tpm, "new config.user")
    said: list[str] = []
    key = unseal_disk_key(tpm, DUK, say=said.append)
    assert cryptsetup.opens_with(disk.path, key, slot=cryptsetup.DUK_SLOT_LUKS2)
    assert any("released by the pending copy" in ln for ln in said), said
    assert any("promoted to 0x81000003" in ln for ln in said), said
    assert not pending_disk_key_exists(tpm)
    # The current object now holds the key for the new values, with the same passphrase.
    said.clear()
    assert unseal_disk_key(tpm, DUK, say=said.append) == key
    assert said == []
    with pytest.raises(AuthError):
        unseal_disk_key(tpm, WRONG)


def test_headers_are_measured_once_per_boot(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    log = EventLogWriter(tmp_path / "log.jsonl")
    listing, extended = measure_headers_once(tpm, log, [disk])
    after_first = tpm.read_pcrs(HashAlg.SHA256, [6])
    again, extended_again = measure_headers_once(tpm, log, [disk])
    assert (extended, extended_again) == (True, False)
    assert again == listing
    assert tpm.read_pcrs(HashAlg.SHA256, [6]) == after_first
    assert [r.pcr for r in log.records()] == [6]


def test_a_wrong_passphrase_seals_no_copy(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    with pytest.raises(AuthError):
        reseal_disk_key_for_update(
            tpm,
            WRONG,
            _prediction(tpm, "x"),
            profile="coreboot",
            firmware_log=None,
            targets=[disk],
            log=None,
        )
    assert not pending_disk_key_exists(tpm)


def test_a_wrong_passphrase_at_the_new_boot_keeps_both(
    tpm: Tpm, disk: DiskTarget, tmp_path: Path
) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    _reseal(tpm, disk, EventLogWriter(tmp_path / "log.jsonl"), _prediction(tpm, "new"))
    _new_boot(tpm, "new")
    with pytest.raises(AuthError):
        unseal_disk_key(tpm, WRONG)
    assert pending_disk_key_exists(tpm)
    assert tpm.object_exists(DISK_KEY_HANDLE)
    unseal_disk_key(tpm, DUK)  # then the right one promotes it
    assert not pending_disk_key_exists(tpm)


def test_a_wrong_prediction_is_refused_like_any_change(
    tpm: Tpm, disk: DiskTarget, tmp_path: Path
) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    _reseal(tpm, disk, EventLogWriter(tmp_path / "log.jsonl"), _prediction(tpm, "predicted"))
    _new_boot(tpm, "what was really flashed")
    said: list[str] = []
    with pytest.raises(UnsealError) as refused:
        unseal_disk_key(tpm, DUK, say=said.append)
    assert refused.value.changed_pcrs == (7,)
    assert any("pending copy" in d for d in refused.value.details)
    assert any("refused too" in ln for ln in said), said
    assert pending_disk_key_exists(tpm)
    assert tpm.object_exists(DISK_KEY_HANDLE)


def test_a_copy_for_a_flash_that_did_not_happen_is_dropped(
    tpm: Tpm, disk: DiskTarget, tmp_path: Path
) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    _reseal(tpm, disk, EventLogWriter(tmp_path / "log.jsonl"), _prediction(tpm, "never"))
    said: list[str] = []
    unseal_disk_key(tpm, DUK, say=said.append)
    assert any("dropping the pending copy" in ln for ln in said), said
    assert not pending_disk_key_exists(tpm)


def test_an_incomplete_prediction_seals_nothing(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    prediction = _prediction(tpm, "x")
    incomplete = Prediction("coreboot", prediction.values, {}, {2: "not in the log"})
    with pytest.raises(UsageError, match="cannot be predicted"):
        _reseal(tpm, disk, EventLogWriter(tmp_path / "log.jsonl"), incomplete)
    with pytest.raises(UsageError, match="PCR 1, 2, 3, 4, 5, 6, 7"):
        seal_pending_disk_key(tpm, Secret(b"k" * 128), DUK, {0: bytes(32)}, profile="coreboot")
    assert not pending_disk_key_exists(tpm)


def test_wiping_the_key_removes_the_copy_too(tpm: Tpm, disk: DiskTarget, tmp_path: Path) -> None:
    seal_test_key(tpm, disk, tmp_path / "boot")
    _reseal(tpm, disk, EventLogWriter(tmp_path / "log.jsonl"), _prediction(tpm, "x"))
    assert wipe_disk_key(tpm)
    assert not pending_disk_key_exists(tpm)
    assert not tpm.object_exists(DISK_KEY_HANDLE)


def test_a_promotion_cut_after_any_command_keeps_a_copy_that_releases(swtpm: Swtpm) -> None:
    key = Secret(bytes(range(128)))
    with open_tpm(swtpm.tcti) as tpm:
        stale = tpm.read_pcrs(HashAlg.SHA256, SELECTION.indices)
        _new_boot(tpm, "the new image")
        live = tpm.read_pcrs(HashAlg.SHA256, SELECTION.indices)

    def arrange() -> None:
        # The current object sealed to the values before the flash, the copy to today's.
        with open_tpm(swtpm.tcti) as tpm:
            tpm.seal(DISK_KEY_HANDLE, key, SELECTION, pcr_values=stale, auth=DUK)
            seal_pending_disk_key(tpm, key, DUK, live, profile="coreboot")

    arrange()
    with TpmProxy(swtpm.port) as proxy:
        proxy.arm(None)
        with open_tpm(proxy.tcti) as tpm:
            assert unseal_disk_key(tpm, DUK) == key
        total = len(proxy.commands)
        assert total > 10
        cuts = 0
        for n in range(1, total + 1):
            arrange()
            proxy.arm(n)
            try:
                with open_tpm(proxy.tcti) as tpm:
                    unseal_disk_key(tpm, DUK)
            except HeadsError:
                cuts += 1
            with open_tpm(swtpm.tcti) as tpm:
                assert unseal_disk_key(tpm, DUK) == key, n
                # Whatever the cut left, the next unseal settles it: one object, no copy.
                assert not pending_disk_key_exists(tpm), n
                assert unseal_disk_key(tpm, DUK) == key, n
        assert cuts > total // 2
    with open_tpm(swtpm.tcti) as tpm:
        assert not tpm.object_exists(PENDING_DISK_KEY_HANDLE)


def test_a_refused_owner_passphrase_is_not_a_wrong_disk_key_passphrase(
    tpm: Tpm, disk: DiskTarget, tmp_path: Path
) -> None:
    owner = Secret(b"owner passphrase")
    tpm.reset(owner_auth=owner)
    boot = tmp_path / "boot"
    seal_test_key(tpm, disk, boot, owner_auth=owner)
    log = EventLogWriter(tmp_path / "log.jsonl")
    prediction = _prediction(tpm, "new")
    with pytest.raises(UsageError, match="the copy was not sealed"):
        _reseal(tpm, disk, log, prediction)
    assert not pending_disk_key_exists(tpm)
    reseal_disk_key_for_update(
        tpm,
        DUK,
        prediction,
        profile="coreboot",
        firmware_log=None,
        targets=[disk],
        log=log,
        owner_auth=owner,
    )
    assert pending_disk_key_exists(tpm)
    assert [r.pcr for r in log.records()] == [6]  # measured once across both tries
