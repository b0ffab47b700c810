"""A frozen value class with slots, for the modules short commands load, without dataclasses.

Importing :mod:`dataclasses` (which loads inspect, ast and dis) and decorating a class (which
compiles its methods) cost `heads pcr replay` more than replaying a firmware log
(docs/architecture.md §Command start-up).  A subclass lists its fields in ``__slots__`` and
sets them in ``__init__`` through :func:`object.__setattr__`; it then compares, hashes and
prints as a frozen dataclass with the same fields would, and refuses assignment.
"""

from __future__ import annotations

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Self

__all__ = ["FrozenRecord"]


class FrozenRecord:
    """Base of the value classes: equality, hash and repr over ``__slots__``, no assignment."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrozenRecord) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen value")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen value")

    def replace(self, **changes: object) -> Self:
        """A copy with some fields changed (as :func:`dataclasses.replace`)."""
        copy = object.__new__(self.__class__)
        for name in self.__slots__:
            object.__setattr__(copy, name, changes.pop(name, getattr(self, name)))
        if changes:
            raise TypeError(f"{self.__class__.__name__} has no field {next(iter(changes))!r}")
        return copy
