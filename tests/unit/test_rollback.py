"""kexec_rollback.txt: Heads' exact bytes, hostile input, the pure check against a counter."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.rollback import (
    RollbackBinding,
    RollbackState,
    check_rollback,
    counter_state_bytes,
)
from heads.errors import FormatError

INDEX = 0x01A2B3C4


def test_counter_state_is_id_colon_16_hex_digits() -> None:
    assert counter_state_bytes("1a2b3c4", 5) == b"1a2b3c4: 0000000000000005\n"


def test_binding_bytes_are_sha256sum_of_the_runtime_counter_file() -> None:
    binding = RollbackBinding.for_counter(INDEX, 5)
    digest = hashlib.sha256(b"1a2b3c4: 0000000000000005\n").hexdigest()
    assert binding.to_bytes() == f"{digest}  /tmp/counter-1a2b3c4\n".encode()
    parsed = RollbackBinding.from_bytes(binding.to_bytes())
    assert parsed.nv_index == INDEX
    assert parsed.to_bytes() == binding.to_bytes()


def test_shell_heads_binding_parses() -> None:
    # What `sha256sum /tmp/counter-1a2b3c4 > kexec_rollback.txt` writes in shell Heads.
    state = b"1a2b3c4: 0000000000000009\n"
    raw = hashlib.sha256(state).hexdigest().encode() + b"  /tmp/counter-1a2b3c4\n"
    binding = RollbackBinding.from_bytes(raw)
    assert check_rollback(binding, 9).state is RollbackState.OK


def test_older_signed_boot_is_rolled_back_and_the_signed_value_is_named() -> None:
    binding = RollbackBinding.for_counter(INDEX, 40)
    result = check_rollback(binding, 41)
    assert result.state is RollbackState.ROLLED_BACK
    assert result.signed_value == 40
    assert "41 in the TPM, 40" in result.describe()


def test_binding_from_another_counter_value_far_away_is_a_mismatch() -> None:
    binding = RollbackBinding.for_counter(INDEX, 100_000)
    result = check_rollback(binding, 3)
    assert result.state is RollbackState.MISMATCH
    assert result.signed_value is None


def test_matching_value_is_ok() -> None:
    assert check_rollback(RollbackBinding.for_counter(INDEX, 7), 7).state is RollbackState.OK


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "truncated"),
        (b"00" * 32 + b"  /tmp/counter-1a2b3c4", "truncated"),
        (b"00" * 32 + b"  /tmp/counter-1a2b3c4\n" * 2, "one line"),
        (b"00" * 32 + b"  /tmp/something\n", "counter-"),
        (b"zz" * 32 + b"  /tmp/counter-1\n", "hexadecimal"),
        (b"00" * 32 + b"  /tmp/counter-123456789abcdef\n", "NV index"),
    ],
)
def test_malformed_binding_is_a_format_error(raw: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        RollbackBinding.from_bytes(raw)


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_binding_or_format_error(data: bytes) -> None:
    try:
        binding = RollbackBinding.from_bytes(data)
    except FormatError:
        return
    assert binding.to_bytes() == data


@settings(deadline=None)
@given(st.integers(0x01000000, 0x01FFFFFF), st.integers(0, 2**63))
def test_round_trip_and_check_for_any_counter(index: int, value: int) -> None:
    binding = RollbackBinding.from_bytes(RollbackBinding.for_counter(index, value).to_bytes())
    assert binding.nv_index == index
    assert check_rollback(binding, value).state is RollbackState.OK
    assert check_rollback(binding, value + 1).state is RollbackState.ROLLED_BACK
