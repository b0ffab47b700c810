"""TOTP/HOTP sealed to the measured state, on a real swtpm."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import TESTDATA
from heads.adapters.token import HotpCheck
from heads.adapters.tpm import DISK_KEY_HANDLE, TOTP_HANDLE, Tpm, open_tpm
from heads.core.digest import HashAlg, extend_string, zero_digest
from heads.core.otp import hotp_code, totp_code
from heads.core.pcr import PcrSelection
from heads.core.secret import Secret
from heads.errors import (
    AuthError,
    FormatError,
    LockoutError,
    ToolError,
    TpmError,
    UnsealError,
    UsageError,
)
from heads.flows.measure import measure_string
from heads.flows.totp import (
    HOTP_INDEX_FILE,
    LEGACY_HOTP_COUNTER_FILE,
    ClockError,
    NotProvisionedError,
    TotpProvisioning,
    UnsealedSecretCache,
    check_hotp,
    firmware_pcr4,
    seal_hotp,
    seal_totp,
    show_totp,
    wipe_totp,
)
from heads.testing.swtpm import Swtpm
from heads.testing.token_sim import FACTORY_ADMIN_PIN, SimulatedToken

pytestmark = pytest.mark.swtpm

NOW = datetime(2026, 11, 25, 21, 0, 10, tzinfo=UTC)


@pytest.fixture
def tpm(swtpm: Swtpm) -> Iterator[Tpm]:
    with open_tpm(swtpm.tcti) as t:
        yield t


def _seal(tpm: Tpm, profile: str = "coreboot") -> TotpProvisioning:
    # swtpm has no firmware: PCR 4's firmware-only value is its reset value.
    pcr4 = zero_digest(HashAlg.SHA256) if profile == "uefi" else None
    return seal_totp(
        tpm, pcr4_firmware=pcr4, profile=profile, label="TPMTOTP", rng=os.urandom, event_log=None
    )


def test_seal_then_show_gives_the_code_for_the_injected_time(tpm: Tpm) -> None:
    prov = _seal(tpm)
    assert len(prov.secret) == 20
    assert prov.uri == f"otpauth://totp/TPMTOTP?secret={prov.base32}"
    shown = show_totp(tpm, now=NOW)
    assert shown == totp_code(prov.secret, NOW)
    assert shown.seconds_left == 20
    assert str(prov.selection) == "sha256:0,1,2,3,4,7"


def test_uefi_profile_also_seals_pcr9(tpm: Tpm) -> None:
    prov = _seal(tpm, profile="uefi")
    assert str(prov.selection) == "sha256:0,1,2,3,4,7,9"
    measure_string(tpm, None, 9, "Linux initrd")
    with pytest.raises(UnsealError, match="PCR 9 changed") as info:
        show_totp(tpm, now=NOW)
    assert info.value.changed_pcrs == (9,)


def test_show_refuses_after_pcr7_extend_and_names_pcr7(tpm: Tpm) -> None:
    _seal(tpm)
    measure_string(tpm, None, 7, "/etc/config.user")
    with pytest.raises(UnsealError, match="PCR 7 changed") as info:
        show_totp(tpm, now=NOW)
    assert info.value.changed_pcrs == (7,)
    assert info.value.exit_code == 3


def test_show_refuses_after_recovery_extend_of_pcr4(tpm: Tpm) -> None:
    _seal(tpm)
    measure_string(tpm, None, 4, "recovery", description="recovery shell")
    with pytest.raises(UnsealError, match="PCR 4 changed") as info:
        show_totp(tpm, now=NOW)
    assert info.value.changed_pcrs == (4,)


def test_pcr4_is_sealed_at_its_firmware_value_not_the_current_one(tpm: Tpm, swtpm: Swtpm) -> None:
    # The runtime already extended PCR 4 in this boot: sealing must not capture that.
    measure_string(tpm, None, 4, "generic")
    prov = _seal(tpm)
    assert prov.pcr_values[4] == zero_digest(HashAlg.SHA256)
    assert prov.pcr4_now_differs
    with pytest.raises(UnsealError, match="PCR 4"):
        show_totp(tpm, now=NOW)
    swtpm.restart()  # next boot: PCR 4 back at its firmware value
    with open_tpm(swtpm.tcti) as fresh:
        assert show_totp(fresh, now=NOW) == totp_code(prov.secret, NOW)


def test_pcr4_from_caller_must_agree_with_size(tpm: Tpm) -> None:
    with pytest.raises(UsageError, match="32 bytes"):
        seal_totp(
            tpm,
            pcr4_firmware=b"\0" * 20,
            profile="uefi",
            label="x",
            rng=os.urandom,
            event_log=None,
        )


def test_uefi_without_log_or_value_refuses(tpm: Tpm, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="firmware-only value is unknown"):
        seal_totp(
            tpm,
            pcr4_firmware=None,
            profile="uefi",
            label="x",
            rng=os.urandom,
            event_log=tmp_path / "missing",
        )
    assert not tpm.object_exists(TOTP_HANDLE)


def test_pcr4_comes_from_the_firmware_event_log(tpm: Tpm) -> None:
    data = TESTDATA / "eventlogs"
    expected = json.loads((data / "expected.json").read_text())["tt-event-arch-linux.bin"]
    want = bytes.fromhex(expected["expected"]["pcrs"]["sha256"]["4"])
    prov = seal_totp(
        tpm,
        pcr4_firmware=None,
        profile="uefi",
        label="x",
        rng=os.urandom,
        event_log=data / "tt-event-arch-linux.bin",
    )
    assert prov.pcr_values[4] == want
    assert "replayed" in prov.pcr4_source
    # The swtpm's PCR 4 is zero, not the logged machine's value: the seal must not unseal here.
    with pytest.raises(UnsealError, match="PCR 4"):
        show_totp(tpm, now=NOW)


def test_pcr4_value_disagreeing_with_the_log_is_refused(tpm: Tpm) -> None:
    log = TESTDATA / "eventlogs" / "tt-event-arch-linux.bin"
    with pytest.raises(UsageError, match="differs from the firmware event log"):
        seal_totp(
            tpm,
            pcr4_firmware=b"\1" * 32,
            profile="uefi",
            label="x",
            rng=os.urandom,
            event_log=log,
        )


def test_firmware_pcr4_ignores_other_pcrs_and_matches_replay() -> None:
    data = TESTDATA / "eventlogs"
    expected = json.loads((data / "expected.json").read_text())
    for name in ("tt-event-bootorder.bin", "tt-event-postcode.bin", "tt-event-uefiaction.bin"):
        want = expected[name]["expected"]["pcrs"]["sha256"]["4"]
        got = firmware_pcr4((data / name).read_bytes(), source=name)
        assert got.hex() == want, name


def test_firmware_pcr4_refuses_garbage() -> None:
    with pytest.raises(FormatError):
        firmware_pcr4(b"\x01\x02\x03", source="junk")


def test_no_secret_is_explained_and_wipe_removes_it(tpm: Tpm) -> None:
    with pytest.raises(NotProvisionedError, match="no TOTP secret"):
        show_totp(tpm, now=NOW)
    _seal(tpm)
    assert wipe_totp(tpm)
    assert not wipe_totp(tpm)
    with pytest.raises(NotProvisionedError, match="no TOTP secret") as info:
        show_totp(tpm, now=NOW)
    assert "heads totp seal" in (info.value.hint or "")


def test_replace_needs_consent(tpm: Tpm) -> None:
    first = _seal(tpm)
    with pytest.raises(UsageError, match="already sealed"):
        seal_totp(
            tpm,
            pcr4_firmware=None,
            profile="coreboot",
            label="x",
            rng=os.urandom,
            event_log=None,
            replace=False,
        )
    assert show_totp(tpm, now=NOW) == totp_code(first.secret, NOW)
    second = _seal(tpm)
    assert show_totp(tpm, now=NOW) == totp_code(second.secret, NOW)


def test_secret_mixes_tpm_and_os_randomness(tpm: Tpm) -> None:
    # With an all-zero "OS" source the secret is the TPM's bytes alone; two seals still differ.
    def zeros(n: int) -> bytes:
        return b"\0" * n

    def short(n: int) -> bytes:
        return b"\0" * (n - 1)

    first = seal_totp(
        tpm, pcr4_firmware=None, profile="coreboot", label="x", rng=zeros, event_log=None
    )
    second = seal_totp(
        tpm, pcr4_firmware=None, profile="coreboot", label="x", rng=zeros, event_log=None
    )
    assert first.secret != second.secret
    with pytest.raises(TpmError, match="random source returned 20 and 19 bytes"):
        seal_totp(tpm, pcr4_firmware=None, profile="coreboot", label="x", rng=short, event_log=None)


def test_clock_before_build_is_refused_before_unsealing(tpm: Tpm) -> None:
    _seal(tpm)
    cache = UnsealedSecretCache()
    with pytest.raises(ClockError, match="2019-"):
        show_totp(tpm, now=datetime(2019, 5, 1, tzinfo=UTC), cache=cache)
    assert cache.unseals == 0


def test_cache_unseals_once_for_totp_and_hotp(tpm: Tpm, tmp_path: Path) -> None:
    prov = _seal(tpm)
    cache = UnsealedSecretCache()
    token = SimulatedToken()
    show_totp(tpm, now=NOW, cache=cache)
    seal_hotp(tpm, token, admin_pin=FACTORY_ADMIN_PIN, boot_dir=tmp_path, cache=cache)
    assert check_hotp(tpm, token, boot_dir=tmp_path, cache=cache).check is HotpCheck.VERIFIED
    assert show_totp(tpm, now=NOW, cache=cache) == totp_code(prov.secret, NOW)
    assert cache.unseals == 1
    cache.clear()
    show_totp(tpm, now=NOW, cache=cache)
    assert cache.unseals == 2


def test_hotp_counter_moves_forward_and_survives_restart(
    tpm: Tpm, swtpm: Swtpm, tmp_path: Path
) -> None:
    prov = _seal(tpm)
    token = SimulatedToken()
    sealed = seal_hotp(tpm, token, admin_pin=FACTORY_ADMIN_PIN, boot_dir=tmp_path)
    assert (tmp_path / HOTP_INDEX_FILE).read_text() == f"0x{sealed.counter_index:08x}\n"
    first = check_hotp(tpm, token, boot_dir=tmp_path)
    second = check_hotp(tpm, token, boot_dir=tmp_path)
    assert first.check is second.check is HotpCheck.VERIFIED
    assert first.counter == sealed.next_counter
    assert second.counter == first.counter + 1
    # The simulator (like a real token) refuses the code that was just accepted.
    assert token.check(hotp_code(prov.secret, second.counter)) is HotpCheck.INVALID
    swtpm.restart()
    with open_tpm(swtpm.tcti) as fresh:
        third = check_hotp(fresh, token, boot_dir=tmp_path)
        assert third.check is HotpCheck.VERIFIED
        assert third.counter == second.counter + 1
        assert fresh.nv_counter_read(sealed.counter_index) == third.counter


def test_reseal_hotp_keeps_the_counter(tpm: Tpm, tmp_path: Path) -> None:
    _seal(tpm)
    token = SimulatedToken()
    first = seal_hotp(tpm, token, admin_pin=FACTORY_ADMIN_PIN, boot_dir=tmp_path)
    check_hotp(tpm, token, boot_dir=tmp_path)
    again = seal_hotp(tpm, token, admin_pin=FACTORY_ADMIN_PIN, boot_dir=tmp_path)
    assert again.counter_index == first.counter_index
    assert again.next_counter == first.next_counter + 1


def test_hotp_with_a_token_that_does_not_match_is_invalid(tpm: Tpm, tmp_path: Path) -> None:
    _seal(tpm)
    token = SimulatedToken()
    seal_hotp(tpm, token, admin_pin=FACTORY_ADMIN_PIN, boot_dir=tmp_path)
    # Someone re-programmed the token (or this is another machine's token).
    token.program(Secret(b"x" * 20), admin_pin=FACTORY_ADMIN_PIN, counter=0)
    assert check_hotp(tpm, token, boot_dir=tmp_path).check is HotpCheck.INVALID


def test_hotp_absent_token_does_not_burn_a_counter_value(tpm: Tpm, tmp_path: Path) -> None:
    _seal(tpm)
    token = SimulatedToken()
    sealed = seal_hotp(tpm, token, admin_pin=FACTORY_ADMIN_PIN, boot_dir=tmp_path)
    token.present = False
    with pytest.raises(ToolError, match="no security token"):
        check_hotp(tpm, token, boot_dir=tmp_path)
    assert tpm.nv_counter_read(sealed.counter_index) == sealed.next_counter - 1


def test_hotp_wrong_admin_pin_says_tries_left(tpm: Tpm, tmp_path: Path) -> None:
    _seal(tpm)
    with pytest.raises(AuthError, match="2 tries left"):
        seal_hotp(tpm, SimulatedToken(), admin_pin=Secret(b"nope"), boot_dir=tmp_path)
    assert not (tmp_path / HOTP_INDEX_FILE).exists()


def test_legacy_counter_file_is_migrated_once(tpm: Tpm, tmp_path: Path) -> None:
    prov = _seal(tpm)
    # A token shell Heads programmed, with /boot/kexec_hotp_counter saying 40 is next.
    token = SimulatedToken()
    token.program(prov.secret, admin_pin=FACTORY_ADMIN_PIN, counter=40)
    (tmp_path / LEGACY_HOTP_COUNTER_FILE).write_text("40\n")
    first = check_hotp(tpm, token, boot_dir=tmp_path)
    assert first.check is HotpCheck.VERIFIED
    assert first.counter >= 40
    assert (tmp_path / HOTP_INDEX_FILE).exists()
    # An attacker rolling the legacy file back changes nothing any more.
    (tmp_path / LEGACY_HOTP_COUNTER_FILE).write_text("1\n")
    second = check_hotp(tpm, token, boot_dir=tmp_path)
    assert second.counter == first.counter + 1
    assert second.check is HotpCheck.VERIFIED


def test_hotp_without_counter_is_not_provisioned(tpm: Tpm, tmp_path: Path) -> None:
    _seal(tpm)
    with pytest.raises(NotProvisionedError, match="no HOTP counter") as info:
        check_hotp(tpm, SimulatedToken(), boot_dir=tmp_path)
    assert "heads hotp seal" in (info.value.hint or "")


@pytest.mark.parametrize("content", ["", "0x81000000\n", "hello", "0x01000001\n0x01000002\n"])
def test_damaged_index_file_is_a_format_error(tpm: Tpm, tmp_path: Path, content: str) -> None:
    _seal(tpm)
    (tmp_path / HOTP_INDEX_FILE).write_text(content)
    with pytest.raises(FormatError, match=HOTP_INDEX_FILE):
        check_hotp(tpm, SimulatedToken(), boot_dir=tmp_path)


def test_extend_string_matches_what_the_runtime_extends() -> None:
    # The refusal tests above rely on measure_string's arithmetic (docs/pcr-layout.md).
    z = zero_digest(HashAlg.SHA256)
    assert extend_string(HashAlg.SHA256, z, "recovery") != z


@contextlib.contextmanager
def _read_only_boot(tmp_path: Path, legacy: str) -> Iterator[Path]:
    """A directory holding a legacy counter file that the caller cannot write to."""
    boot = tmp_path / "boot"
    boot.mkdir()
    if os.geteuid() != 0:
        (boot / LEGACY_HOTP_COUNTER_FILE).write_text(legacy)
        boot.chmod(0o555)
        try:
            yield boot
        finally:
            boot.chmod(0o755)
        return
    # root ignores permissions: use a read-only mount, as /boot is at run time.
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(boot)],
        capture_output=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        (boot / LEGACY_HOTP_COUNTER_FILE).write_text(legacy)
        subprocess.run(["mount", "-o", "remount,ro", str(boot)], check=True)
        yield boot
    finally:
        subprocess.run(["umount", str(boot)], check=True)


def test_legacy_migration_on_read_only_boot_creates_no_counter(tpm: Tpm, tmp_path: Path) -> None:
    _seal(tpm)
    with _read_only_boot(tmp_path, "7\n") as boot:
        with pytest.raises(UsageError, match="not writable"):
            check_hotp(tpm, SimulatedToken(), boot_dir=boot)
        assert not (boot / HOTP_INDEX_FILE).exists()


def _force_lockout(tpm: Tpm) -> None:
    """Fail passphrase unseals of a DA-protected object until the TPM locks out."""
    good = Secret(b"correct horse battery")
    selection = PcrSelection.parse("sha256:0")
    tpm.seal(DISK_KEY_HANDLE, Secret(b"k" * 32), selection, auth=good)
    for _ in range(tpm.lockout_state().max_tries + 1):
        try:
            tpm.unseal(DISK_KEY_HANDLE, auth=Secret(b"wrong passphrase"))
        except LockoutError:
            break
        except AuthError:
            continue
    assert tpm.lockout_state().in_lockout


def test_totp_still_shows_while_the_tpm_is_in_lockout(tpm: Tpm) -> None:
    # The TOTP object has no passphrase (noda): lockout must not hide the attestation.
    prov = _seal(tpm)
    _force_lockout(tpm)
    assert show_totp(tpm, now=NOW) == totp_code(prov.secret, NOW)


def test_refusal_during_lockout_mentions_the_lockout(tpm: Tpm) -> None:
    _seal(tpm)
    _force_lockout(tpm)
    measure_string(tpm, None, 7, "/etc/config.user")
    with pytest.raises(UnsealError, match="PCR 7") as info:
        show_totp(tpm, now=NOW)
    assert any("dictionary-attack lockout" in line for line in info.value.details)


def test_seal_and_wipe_need_the_owner_passphrase_once_ownership_is_taken(
    tpm: Tpm, tmp_path: Path
) -> None:
    owner = Secret(b"owner passphrase 123")
    tpm.reset(owner_auth=owner)
    with pytest.raises(AuthError, match="owner passphrase"):
        _seal(tpm)
    prov = seal_totp(
        tpm,
        pcr4_firmware=None,
        profile="coreboot",
        label="x",
        rng=os.urandom,
        event_log=None,
        owner_auth=owner,
    )
    assert show_totp(tpm, now=NOW) == totp_code(prov.secret, NOW)
    sealed = seal_hotp(
        tpm, SimulatedToken(), admin_pin=FACTORY_ADMIN_PIN, boot_dir=tmp_path, owner_auth=owner
    )
    assert tpm.nv_exists(sealed.counter_index)
    assert wipe_totp(tpm, owner_auth=owner)


def test_refusals_never_carry_the_secret(tpm: Tpm) -> None:
    prov = _seal(tpm)
    measure_string(tpm, None, 7, "x")
    with pytest.raises(UnsealError) as info:
        show_totp(tpm, now=NOW)
    text = "\n".join([str(info.value), info.value.hint or "", *info.value.details])
    assert prov.base32 not in text
    assert prov.secret.reveal().hex() not in text
    assert "****" in repr(prov)
    assert prov.base32 not in repr(prov)
