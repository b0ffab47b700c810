"""heads.core.frozen_record behaves as the frozen slotted dataclasses it replaces."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.core.digest import HashAlg
from heads.core.eventlog.model import Event, EventLog, LogFormat, LogWarning


@dataclasses.dataclass(frozen=True, slots=True)
class LogWarningAsDataclass:
    message: str
    offset: int | None = None
    event_number: int | None = None


_OPTIONAL_INT = st.none() | st.integers(-5, 5)


@given(st.text(max_size=5), _OPTIONAL_INT, _OPTIONAL_INT, st.text(max_size=5), _OPTIONAL_INT)
def test_equality_hash_and_repr_are_the_dataclass_ones(
    message: str, offset: int | None, number: int | None, message2: str, offset2: int | None
) -> None:
    ours, ours2 = LogWarning(message, offset, number), LogWarning(message2, offset2, number)
    theirs = LogWarningAsDataclass(message, offset, number)
    theirs2 = LogWarningAsDataclass(message2, offset2, number)
    assert (ours == ours2) == (theirs == theirs2)
    assert hash(ours) == hash(theirs)
    assert repr(ours) == repr(theirs).replace("LogWarningAsDataclass", "LogWarning")
    assert ours != theirs  # another class, as for dataclasses


def test_fields_cannot_be_assigned_or_deleted() -> None:
    warning = LogWarning("odd", 3)
    with pytest.raises(AttributeError):
        warning.message = "other"  # type: ignore[misc]  # what is tested
    with pytest.raises(AttributeError):
        del warning.offset
    assert warning.message == "odd"


def test_replace_copies_with_changes_and_refuses_unknown_fields() -> None:
    event = Event(1, 4, 0xD, {HashAlg.SHA256: b"\1" * 32}, data=b"x", source="log")
    changed = event.replace(digests={HashAlg.SHA256: b"\2" * 32})
    assert changed.digests == {HashAlg.SHA256: b"\2" * 32}
    assert (changed.number, changed.pcr, changed.data, changed.source) == (1, 4, b"x", "log")
    assert event.digests == {HashAlg.SHA256: b"\1" * 32}
    with pytest.raises(TypeError, match="no field 'colour'"):
        event.replace(colour="red")


def test_defaults_are_the_dataclass_ones() -> None:
    log = EventLog(LogFormat.CEL, "x", (), ())
    other = EventLog(LogFormat.CEL, "x", (), ())
    assert (log.spec_id, log.warnings, log.truncated, log.size_bytes, log.extra) == (
        None,
        (),
        False,
        0,
        {},
    )
    assert log == other
    assert log.extra is not other.extra  # a fresh dict each, as default_factory=dict
