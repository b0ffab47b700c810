"""ISO paths that may reach a kernel command line, and the kernel parameters that say where the
ISO is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.runtime.iso_boot import iso_rules, plain_iso_name


@pytest.mark.parametrize(
    ("rel", "plain"),
    [
        ("debian-12.iso", True),
        ("isos/tails-6.0+1.iso", True),
        ("a b.iso", False),
        ("x.iso init=/bin/sh", False),
        ("../up.iso", False),
        ("isos/../../up.iso", False),
        (".hidden.iso", False),
        ("isos//x.iso", False),
        ("caf\u00e9.iso", False),
        ("", False),
    ],
)
def test_plain_iso_names(rel: str, plain: bool) -> None:
    assert plain_iso_name(rel) is plain


@given(st.text(max_size=40))
def test_a_plain_name_is_one_command_line_word(rel: str) -> None:
    if plain_iso_name(rel):
        words = iso_rules(rel).add.split()
        assert len(words) == 3
        assert all(w.endswith("=/" + rel) for w in words)
        assert ".." not in rel.split("/")
