"""A package's names loaded from their submodules on first use (PEP 562 ``__getattr__``).

Short commands import a package for one of its names; importing every submodule up front cost
them more than their own work (docs/architecture.md §Command start-up).
"""

from __future__ import annotations

import sys

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping

__all__ = ["lazy_getattr"]


def lazy_getattr(
    package: str, submodules: Mapping[str, str], namespace: MutableMapping[str, object]
) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: ``submodules`` maps a name to the submodule
    that defines it; a loaded name is kept in ``namespace`` (the package's globals)."""

    def load(name: str) -> object:
        submodule = submodules.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # __import__ and sys.modules, not importlib: importing importlib costs a short command
        # about as much as the submodule itself (docs/architecture.md §Command start-up).
        module_name = f"{package}.{submodule}"
        __import__(module_name)
        value: object = getattr(sys.modules[module_name], name)
        namespace[name] = value
        return value

    return load
