"""The HotpToken contract, run against the simulator and (with a token attached) the real tool."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.adapters.token import (
    HotpCheck,
    HotpToken,
    HotpVerificationToken,
    parse_hotp_verification_info,
)
from heads.core.otp import hotp_code
from heads.core.secret import Secret
from heads.errors import AuthError, ToolError
from heads.testing.token_sim import FACTORY_ADMIN_PIN, SimulatedToken

SECRET = Secret(b"12345678901234567890")

# A programmed token and the counter of the next code it expects.
ProgrammedToken = tuple[HotpToken, int]


def _simulated() -> ProgrammedToken:
    token = SimulatedToken()
    token.program(SECRET, admin_pin=FACTORY_ADMIN_PIN, counter=7)
    return token, 7


def _hardware() -> ProgrammedToken:
    # A real token cannot be programmed by heads (the tool wants secrets in argv), so the
    # contract runs only against a token the tester programmed with SECRET and whose next
    # counter they state.  It also consumes codes: state the new counter on each run.
    if shutil.which("hotp_verification") is None:
        pytest.skip("hotp_verification is not installed (not packaged in Debian 12)")
    counter = os.environ.get("HEADS_TEST_TOKEN_COUNTER")
    if counter is None:
        pytest.skip(
            "needs a Nitrokey/Librem Key programmed with the RFC 4226 test secret; "
            "set HEADS_TEST_TOKEN_COUNTER to its next counter"
        )
    return HotpVerificationToken(), int(counter)


@pytest.fixture(params=[_simulated, _hardware], ids=["simulator", "hotp_verification"])
def programmed(request: pytest.FixtureRequest) -> ProgrammedToken:
    factory: Callable[[], ProgrammedToken] = request.param
    return factory()


def test_contract_accepts_the_expected_code(programmed: ProgrammedToken) -> None:
    token, counter = programmed
    assert token.check(hotp_code(SECRET, counter)) is HotpCheck.VERIFIED


def test_contract_rejects_a_replayed_code(programmed: ProgrammedToken) -> None:
    token, counter = programmed
    code = hotp_code(SECRET, counter)
    assert token.check(code) is HotpCheck.VERIFIED
    assert token.check(code) is HotpCheck.INVALID
    assert token.check(hotp_code(SECRET, counter + 1)) is HotpCheck.VERIFIED


def test_contract_rejects_codes_from_behind(programmed: ProgrammedToken) -> None:
    token, counter = programmed
    assert token.check(hotp_code(SECRET, counter - 1)) is HotpCheck.INVALID


def test_contract_resynchronises_within_the_window(programmed: ProgrammedToken) -> None:
    token, counter = programmed
    assert token.check(hotp_code(SECRET, counter + 3)) is HotpCheck.VERIFIED
    # The skipped codes are now behind the counter and dead.
    assert token.check(hotp_code(SECRET, counter + 1)) is HotpCheck.INVALID
    assert token.check(hotp_code(SECRET, counter + 4)) is HotpCheck.VERIFIED


def test_contract_rejects_malformed_codes(programmed: ProgrammedToken) -> None:
    token, _ = programmed
    assert token.check("12345") is HotpCheck.INVALID
    assert token.check("abcdef") is HotpCheck.INVALID


def test_contract_info_names_the_token(programmed: ProgrammedToken) -> None:
    token, _ = programmed
    info = token.info()
    assert info.brand
    assert info.pin_retries is None or info.pin_retries >= 0


def test_simulator_rejects_codes_beyond_the_window() -> None:
    token, counter = _simulated()
    assert token.check(hotp_code(SECRET, counter + 11)) is HotpCheck.INVALID
    assert token.check(hotp_code(SECRET, counter + 10)) is HotpCheck.VERIFIED


def test_simulator_unprogrammed_slot() -> None:
    assert SimulatedToken().check("123456") is HotpCheck.NOT_PROGRAMMED


def test_simulator_pin_retries_count_down_block_and_reset() -> None:
    token = SimulatedToken(max_pin_retries=3)
    with pytest.raises(AuthError) as first:
        token.program(SECRET, admin_pin=Secret(b"wrong"), counter=0)
    assert first.value.tries_left == 2
    token.program(SECRET, admin_pin=FACTORY_ADMIN_PIN, counter=0)
    assert token.pin_retries == 3
    for left in (2, 1, 0):
        with pytest.raises(AuthError) as info:
            token.program(SECRET, admin_pin=Secret(b"wrong"), counter=0)
        assert info.value.tries_left == left
        assert "wrong" not in str(info.value)
    # Blocked: even the right PIN is refused now.
    with pytest.raises(AuthError, match="blocked"):
        token.program(SECRET, admin_pin=FACTORY_ADMIN_PIN, counter=0)


def test_simulator_unplugged_token_does_not_answer() -> None:
    token = SimulatedToken()
    token.program(SECRET, admin_pin=FACTORY_ADMIN_PIN, counter=7)
    counter = 7
    token.present = False
    with pytest.raises(ToolError, match="no security token"):
        token.check(hotp_code(SECRET, counter))
    token.present = True
    assert token.check(hotp_code(SECRET, counter)) is HotpCheck.VERIFIED


def test_real_backend_refuses_to_put_secrets_in_argv() -> None:
    with pytest.raises(ToolError, match="command-line arguments"):
        HotpVerificationToken().program(SECRET, admin_pin=FACTORY_ADMIN_PIN, counter=0)


def test_real_backend_reports_missing_tool() -> None:
    token = HotpVerificationToken(tool="hotp_verification-not-installed")
    with pytest.raises(ToolError, match="not installed"):
        token.check("123456")


# The two shapes of `hotp_verification info` (its src/main.c), as printed by a device.
PRO_INFO = """HOTP code verification application, version 1.6
Connected device status:
\tCard serial: 0x1A2B3C
\tFirmware: v0.15
\tCard counters: Admin 3, User 3
Operation success
"""

NK3_INFO = """HOTP code verification application, version 1.6
Connected device status:
\tCard serial: 0x2F0A
\tFirmware Nitrokey 3: v1.7.0
\tFirmware Secrets App: v4.11
\tSecrets app PIN counter: 8
\tGPG Card counters: Admin 3, User 3
Operation success
"""


def test_parse_info_pro_and_librem_key() -> None:
    info = parse_hotp_verification_info(PRO_INFO)
    assert info.serial == "0x1A2B3C"
    assert info.firmware == "0.15"
    assert info.pin_retries == 3
    assert "Librem Key" in info.brand


def test_parse_info_nitrokey3_uses_secrets_app_pin() -> None:
    info = parse_hotp_verification_info(NK3_INFO)
    assert info.brand == "Nitrokey 3"
    assert info.firmware == "1.7.0"
    assert info.pin_retries == 8


def test_parse_info_unset_pin_and_serial() -> None:
    text = "\tCard serial: N/A\n\tFirmware: v0.8\n\tCard counters: PIN is not set\n"
    info = parse_hotp_verification_info(text)
    assert info.serial is None
    assert info.pin_retries is None


@given(offsets=st.lists(st.integers(-3, 14), max_size=30))
def test_simulator_never_accepts_a_counter_twice(offsets: list[int]) -> None:
    token = SimulatedToken()
    token.program(SECRET, admin_pin=FACTORY_ADMIN_PIN, counter=5)
    accepted: list[int] = []
    for offset in offsets:
        counter = max(0, token.counter + offset)
        if token.check(hotp_code(SECRET, counter)) is HotpCheck.VERIFIED:
            accepted.append(counter)
    # Accepted counters strictly increase: no code works twice, none from behind.
    assert accepted == sorted(set(accepted))
    assert all(c >= 5 for c in accepted)
