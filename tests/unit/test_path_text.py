"""heads.core.path_text spells a path as pathlib does."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.path_text import posix_path_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "."),
        (".", "."),
        ("./a//b/./", "a/b"),
        ("/", "/"),
        ("//x", "//x"),
        ("///x/", "/x"),
        ("../a/..", "../a/.."),
    ],
)
def test_examples(text: str, expected: str) -> None:
    assert posix_path_text(text) == expected


@settings(max_examples=500)
@given(st.lists(st.sampled_from(["/", ".", "..", "a", "b c", "é", "\udcff", ""]), max_size=8))
def test_any_path_is_spelled_as_pathlib_spells_it(parts: list[str]) -> None:
    text = "".join(parts)
    assert posix_path_text(text) == str(PurePosixPath(text))
