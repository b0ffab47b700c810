"""A frozen value class, for the modules short commands load, without dataclasses.

Importing :mod:`dataclasses` (which loads inspect, ast and dis) and decorating a class (which
compiles its methods) cost `heads pcr replay` and `heads boot verify` more than their own work
(docs/architecture.md §Command start-up).  A subclass declares its fields as annotations, with
defaults as for a dataclass, and gets the constructor, equality, hash and repr of a frozen
dataclass with the same fields, and refuses assignment; type checkers see it as one
(``dataclass_transform``).  A class made in bulk (an event per log entry) may list its fields
in ``__slots__`` and set them in its own ``__init__`` through :func:`object.__setattr__`,
which is faster than the shared constructor.
"""

from __future__ import annotations

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import ClassVar, Self, dataclass_transform
else:

    def dataclass_transform(**_: object) -> object:
        return lambda cls: cls


__all__ = ["FrozenRecord"]

_set = object.__setattr__


@dataclass_transform(frozen_default=True, eq_default=True)
class FrozenRecord:
    """Base of the value classes: constructor, equality, hash and repr over the fields."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, object]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The class's own annotations, in order (strings: `from __future__ import annotations`);
        # inspect.get_annotations would import inspect, the cost this class exists to avoid.
        own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
        names = tuple(n for n, a in own.items() if not str(a).startswith(("ClassVar", "Final")))
        slots = cls.__dict__.get("__slots__", ())
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__ and n not in slots}
        cls._fields = (*cls._fields, *names)
        cls._defaults = {**cls._defaults, **defaults}

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{self.__class__.__name__} takes {len(fields)} fields")
        values = dict(zip(fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in fields or name in values:
                raise TypeError(f"{self.__class__.__name__}: unexpected or repeated {name!r}")
            values[name] = value
        for name in fields:
            if name in values:
                _set(self, name, values[name])
            elif name in self._defaults:
                _set(self, name, self._defaults[name])
            else:
                raise TypeError(f"{self.__class__.__name__}: missing {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrozenRecord) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{self.__class__.__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen value")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen value")

    def replace(self, **changes: object) -> Self:
        """A copy with some fields changed (as :func:`dataclasses.replace`)."""
        copy = object.__new__(self.__class__)
        for name in self._fields:
            _set(copy, name, changes.pop(name, getattr(self, name)))
        if changes:
            raise TypeError(f"{self.__class__.__name__} has no field {next(iter(changes))!r}")
        return copy
