"""The payload's size budget: what each component weighs, and what to say when it is over.

A real machine's flash holds coreboot, the payload (kernel + compressed initramfs) and the
owner's files; the payload's share is the budget (docs/reproducible-builds.md §Size budget).
Members are grouped into components an owner or a packager can act on: the kernel, each
program, each shared library, the Python interpreter, its standard library, each Python
distribution and heads itself.  Pure: sizes in, report out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_BUDGET",
    "BudgetCheck",
    "check_budget",
    "component_of",
    "components",
]

#: Kernel + compressed initramfs: what fits a 16 MiB chip beside coreboot and the user files
#: (12 MiB is also the whole flash of some boards' BIOS region).
DEFAULT_BUDGET: Final = 12 * 1024 * 1024

_SITE: Final = "usr/lib/python3/heads-site/"
_LIBDIRS: Final = ("lib/x86_64-linux-gnu/", "usr/lib/x86_64-linux-gnu/", "lib64/")
_PROGRAMS: Final = {
    "bin/busybox": "busybox",
    "sbin/kexec": "kexec-tools",
    "usr/bin/gpgv": "gpgv",
    "usr/sbin/flashrom": "flashrom",
    "usr/bin/whiptail": "whiptail",
    "usr/bin/python3.11": "python interpreter",
}


def component_of(path: str) -> str:
    """The component an initramfs member belongs to (``path`` as in the archive)."""
    if path in _PROGRAMS:
        return _PROGRAMS[path]
    if path.startswith(_SITE):
        top = path[len(_SITE) :].split("/", 1)[0]
        if top == "heads":
            return "heads"
        name = top.split(".", 1)[0].split("-", 1)[0]
        return f"python: {name}"
    if path == "usr/lib/python311.zip" or path.startswith("usr/lib/python3.11/"):
        return "python stdlib"
    for libdir in _LIBDIRS:
        if path.startswith(libdir):
            soname = path[len(libdir) :]
            return f"library {soname.split('.so', 1)[0]}"
    if path in {"init"} or path.startswith("etc/heads/"):
        return "heads"
    return "other"


def components(sizes: Mapping[str, int]) -> dict[str, int]:
    """Uncompressed bytes per component, from the size of each member."""
    out: dict[str, int] = {}
    for path, size in sizes.items():
        name = component_of(path)
        out[name] = out.get(name, 0) + size
    return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """A payload's size against its budget.

    Attributes:
        total: kernel + compressed initramfs, in bytes.
        budget: the limit, in bytes.
        lines: what weighs what: the components that grew since the previous build (largest
            growth first), or the largest components when there is no previous build.
    """

    total: int
    budget: int
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.total <= self.budget


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def check_budget(
    total: int,
    budget: int,
    now: Mapping[str, int],
    before: Mapping[str, int] | None = None,
    *,
    limit: int = 12,
) -> BudgetCheck:
    """Compare a payload with its budget and say which components to look at.

    Args:
        total: kernel + compressed initramfs of this build.
        budget: the limit.
        now: this build's components (uncompressed bytes; the kernel as shipped).
        before: the previous build's components, when there was one.
        limit: at most this many lines.
    """
    lines: list[str] = []
    if before:
        grown = sorted((before.get(k, 0) - now.get(k, 0), k) for k in set(now) | set(before))
        for shrink, name in grown[:limit]:
            delta = -shrink
            if delta <= 0:
                break
            was = before.get(name)
            since = f"was {_mib(was)}" if was is not None else "new"
            lines.append(f"{name}: {_mib(now.get(name, 0))} (+{_mib(delta)}; {since})")
    if not lines:
        for name, size in sorted(now.items(), key=lambda kv: -kv[1])[:limit]:
            lines.append(f"{name}: {_mib(size)}")
    return BudgetCheck(total, budget, tuple(lines))
