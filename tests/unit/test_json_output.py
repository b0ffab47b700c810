"""The --json writer prints exactly what json.dumps(indent=2, sort_keys=True) prints."""

from __future__ import annotations

import enum
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.cli.json_output import json_text, print_json


class _Code(enum.IntEnum):
    OK = 0
    TAMPERED = 3


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.sampled_from(list(_Code))
)
_KEYS = st.text() | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(_KEYS, inner, max_size=3)
    ),
    max_leaves=25,
)


def _json_or_error(obj: object) -> tuple[str, str]:
    try:
        return "text", json.dumps(obj, indent=2, sort_keys=True)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


def _ours_or_error(obj: object) -> tuple[str, str]:
    try:
        return "text", json_text(obj)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


@given(_VALUES)
def test_same_text_or_error_as_json(obj: object) -> None:
    assert _ours_or_error(obj) == _json_or_error(obj)


def test_surrogates_control_characters_and_non_ascii_are_escaped_as_json_does() -> None:
    obj = {"b": "\ud800\x1b[8m\n", "a": ["é€😀", 1.5, float("nan"), -float("inf"), None]}
    assert json_text(obj) == json.dumps(obj, indent=2, sort_keys=True)


def test_values_json_refuses_are_refused_the_same_way() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_text({"a": {1, 2}})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text(loop)


def test_print_json_ends_with_a_newline(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"pcrs": {"0": "00"}})
    assert capsys.readouterr().out == '{\n  "pcrs": {\n    "0": "00"\n  }\n}\n'
