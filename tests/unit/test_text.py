"""shown(): untrusted text made one visible line, unambiguously."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.text import scrub, shown, shown_bytes

_CONTROL = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in _CONTROL for ch in text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("vmlinuz-6.1", "vmlinuz-6.1"),
        ("zz: ok\n  verdict:   OK\x1b[8m", "zz: ok\\n  verdict:   OK\\x1b[8m"),
        ("a\rb\tc", "a\\rb\\tc"),
        ("back\\slash", "back\\\\slash"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85", "c1\\u0085"),
        ("exe.\u202egpj", "exe.\\u202egpj"),
        ("iso\u2066x\u2069", "iso\\u2066x\\u2069"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("nul\x00", "nul\\x00"),
        ("tag\U000e0001", "tag\\U000e0001"),
        ("caf\u00e9 \u6587", "caf\u00e9 \u6587"),
    ],
)
def test_shown_escapes_controls_and_backslash(raw: str, expected: str) -> None:
    assert shown(raw) == expected


def test_undecodable_bytes_are_hex_and_differ_from_c1_characters() -> None:
    assert shown_bytes(b"k\xff\x85") == "k\\xff\\x85"
    assert shown_bytes("k\x85".encode()) == "k\\u0085"
    assert shown_bytes(b"\\xff") == "\\\\xff"  # a literal backslash-x name stays distinct


def test_scrub_keeps_backslashes_and_leaves_shown_text_alone() -> None:
    assert scrub("a\\b\nc\u202e") == "a\\b\\nc\\u202e"
    once = shown("x\n\\y")
    assert scrub(once) == once


@settings(max_examples=500)
@given(st.text())
def test_shown_never_contains_a_control_character(text: str) -> None:
    out = shown(text)
    assert not _has_control(out)
    assert "\n" not in out
    assert not _has_control(scrub(text))


@settings(max_examples=500)
@given(st.text(), st.text())
def test_distinct_inputs_give_distinct_outputs(a: str, b: str) -> None:
    if a != b:
        assert shown(a) != shown(b)


@settings(max_examples=300)
@given(st.binary(), st.binary())
def test_distinct_names_give_distinct_outputs(a: bytes, b: bytes) -> None:
    assert not _has_control(shown_bytes(a))
    if a != b:
        assert shown_bytes(a) != shown_bytes(b)


_ALPHABET = st.sampled_from(["\\", "x", "u", "0", "8", "5", "\x85", "\udc85", "\n", "n", "a"])


@settings(max_examples=500)
@given(st.lists(_ALPHABET, max_size=8), st.lists(_ALPHABET, max_size=8))
def test_distinct_outputs_on_escape_lookalikes(a: list[str], b: list[str]) -> None:
    # Random text rarely holds a backslash next to "x85": this alphabet is mostly such pieces.
    sa, sb = "".join(a), "".join(b)
    if sa != sb:
        assert shown(sa) != shown(sb)
