"""HOTP/TOTP against the RFC vectors and Debian's oathtool; base32 and otpauth URIs."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import require
from heads.core.otp import (
    base32_encode,
    check_clock,
    find_hotp_counter,
    group_base32,
    hotp_code,
    parse_base32,
    parse_otpauth_uri,
    totp_code,
    totp_uri,
)
from heads.core.secret import Secret
from heads.errors import FormatError

RFC_SECRET = Secret(b"12345678901234567890")

# RFC 4226 Appendix D: HOTP values for counters 0..9 with the ASCII secret above.
RFC4226_CODES = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]

# RFC 6238 Appendix B, SHA1 column, truncated to 6 digits (the RFC prints 8).
RFC6238_SHA1 = [
    (59, "94287082", 1),
    (1111111109, "07081804", 37037036),
    (1111111111, "14050471", 37037037),
    (1234567890, "89005924", 41152263),
    (2000000000, "69279037", 66666666),
    (20000000000, "65353130", 666666666),
]


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC4226_CODES)))
def test_hotp_matches_rfc4226_appendix_d(counter: int, expected: str) -> None:
    assert hotp_code(RFC_SECRET, counter) == expected


@pytest.mark.parametrize(("unix", "eight", "step"), RFC6238_SHA1)
def test_totp_matches_rfc6238_appendix_b(unix: int, eight: str, step: int) -> None:
    code = totp_code(RFC_SECRET, datetime.fromtimestamp(unix, tz=UTC))
    assert code.step == step
    assert code.code == eight[-6:]
    assert hotp_code(RFC_SECRET, step, digits=8) == eight


def test_totp_seconds_left_counts_down_within_a_step() -> None:
    start = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)  # a multiple of 30 s
    assert totp_code(RFC_SECRET, start).seconds_left == 30
    assert totp_code(RFC_SECRET, start + timedelta(seconds=29.9)).seconds_left == 1
    later = totp_code(RFC_SECRET, start + timedelta(seconds=30))
    assert later.seconds_left == 30
    assert later.step == totp_code(RFC_SECRET, start).step + 1
    assert later.valid_until == start + timedelta(seconds=60)


def test_totp_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        totp_code(RFC_SECRET, datetime(2026, 1, 1))


def test_hotp_rejects_counter_beyond_eight_bytes() -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        hotp_code(RFC_SECRET, 2**64)


def _oathtool(*args: str) -> str:
    if shutil.which("oathtool") is None:
        require("oathtool is not installed (apt-get install oathtool)")
    out = subprocess.run(
        ["oathtool", *args], check=True, capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip()


@given(secret=st.binary(min_size=20, max_size=20), counter=st.integers(0, 2**40))
def test_hotp_equals_oathtool(secret: bytes, counter: int) -> None:
    expected = _oathtool("--hotp", f"--counter={counter}", secret.hex())
    assert hotp_code(Secret(secret), counter) == expected


@given(
    secret=st.binary(min_size=20, max_size=20),
    unix=st.integers(0, 2**33),
)
def test_totp_equals_oathtool(secret: bytes, unix: int) -> None:
    now = datetime.fromtimestamp(unix, tz=UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    expected = _oathtool("--totp", f"--now={stamp}", secret.hex())
    assert totp_code(Secret(secret), now).code == expected


def test_totp_base32_secret_equals_oathtool_base32_mode() -> None:
    secret = bytes(range(20))
    now = datetime(2026, 11, 25, 20, 0, 7, tzinfo=UTC)
    expected = _oathtool(
        "--totp", "--base32", "--now=2026-11-25 20:00:07 UTC", base32_encode(secret)
    )
    assert totp_code(Secret(secret), now).code == expected


def test_find_hotp_counter_looks_ahead_and_not_behind() -> None:
    assert find_hotp_counter(RFC_SECRET, RFC4226_CODES[5], counter=2, look_ahead=3) == 5
    assert find_hotp_counter(RFC_SECRET, RFC4226_CODES[6], counter=2, look_ahead=3) is None
    assert find_hotp_counter(RFC_SECRET, RFC4226_CODES[1], counter=2) is None
    assert find_hotp_counter(RFC_SECRET, "not a code", counter=0) is None


def test_base32_round_trip_and_grouping() -> None:
    secret = b"12345678901234567890"
    text = base32_encode(secret)
    assert text == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert group_base32(text) == "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
    assert parse_base32(group_base32(text).lower()) == secret
    assert parse_base32("MZXW6===") == b"foo"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("GEZ1", "position 3"),
        ("A", "not a length"),
        ("ABC", "not a length"),
        ("A" * 2000, "longer than"),
    ],
)
def test_parse_base32_names_the_problem(text: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_base32(text)


@given(st.text(max_size=80))
def test_parse_base32_only_raises_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        parse_base32(text)


@given(st.binary(max_size=64))
def test_base32_round_trips_any_bytes(data: bytes) -> None:
    if data:
        assert parse_base32(base32_encode(data)) == data


def test_totp_uri_round_trips() -> None:
    uri = totp_uri(RFC_SECRET, "Heads: my laptop", issuer="Heads")
    assert uri.startswith("otpauth://totp/Heads:%20my%20laptop?secret=GEZDGNBV")
    parsed = parse_otpauth_uri(uri)
    assert parsed.label == "Heads: my laptop"
    assert parsed.secret == RFC_SECRET
    assert parsed.issuer == "Heads"


def test_totp_uri_is_heads_shape() -> None:
    assert totp_uri(Secret(b"foo"), "TPMTOTP") == "otpauth://totp/TPMTOTP?secret=MZXW6"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("otpauth://hotp/X?secret=MZXW6", "otpauth://totp/"),
        ("https://totp/X?secret=MZXW6", "otpauth://totp/"),
        ("otpauth://totp/X", "no secret"),
        ("otpauth://totp/?secret=MZXW6", "label"),
        ("otpauth://totp/X?secret=MZXW6&digits=8", "digits=8"),
        ("otpauth://totp/X?secret=MZXW6&algorithm=SHA256", "algorithm"),
        ("otpauth://totp/X?secret=MZXW6&secret=MZXW6", "2 times"),
        ("otpauth://totp/X?secret=MZ!W6", "not base32"),
        ("otpauth://totp/X?secret=MZXW6&foo=1", "unknown parameter"),
        ("otpauth://totp/%ff?secret=MZXW6", "label"),
    ],
)
def test_parse_otpauth_uri_refuses_with_reason(uri: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_otpauth_uri(uri)


@given(st.text(max_size=200))
def test_parse_otpauth_uri_only_raises_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        parse_otpauth_uri("otpauth://totp/" + text)
    with contextlib.suppress(FormatError):
        parse_otpauth_uri(text)


def test_secret_never_appears_in_uri_errors() -> None:
    with pytest.raises(FormatError) as info:
        parse_otpauth_uri("otpauth://totp/X?secret=GEZDGNBVGY3TQOJQ&digits=8")
    assert "GEZDGNBV" not in str(info.value)


def test_check_clock_refuses_time_before_build() -> None:
    build = datetime(2026, 11, 1, tzinfo=UTC)
    bad = check_clock(datetime(2020, 1, 1, tzinfo=UTC), not_before=build)
    assert not bad.plausible
    assert "2020-01-01" in bad.reason
    assert "2026-11-01" in bad.reason
    assert check_clock(datetime(2026, 11, 25, tzinfo=UTC), not_before=build).plausible
