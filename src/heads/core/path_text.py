"""A path as :class:`pathlib.PurePosixPath` spells it, without importing pathlib.

`heads pcr replay` names each log in its messages as ``str(Path(LOG))`` always did (``./a//b``
is ``a/b``); pathlib (with urllib.parse, ipaddress and fnmatch) costs that command a tenth of
its run (docs/architecture.md §Command start-up).  A test compares this with pathlib.
"""

from __future__ import annotations

__all__ = ["posix_path_text"]


def posix_path_text(text: str) -> str:
    """``str(PurePosixPath(text))``: empty and ``.`` parts dropped, ``..`` kept.

    Exactly two leading slashes stay two (POSIX leaves their meaning to the system); more
    than two are one.
    """
    rel = text.lstrip("/")
    leading = len(text) - len(rel)
    root = "" if leading == 0 else ("//" if leading == 2 else "/")
    return root + "/".join(p for p in rel.split("/") if p and p != ".") or "."
