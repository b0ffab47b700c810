"""The ``zstd`` tool, to unpack an OS initrd compressed with it (docs/disk-key.md §Crypttab
overrides).  Python has no zstd decoder before 3.14 and the payload carries no ``zstd``."""

from __future__ import annotations

import shutil
from typing import Final

from heads.adapters._run import run

__all__ = ["zstd_available", "zstd_decompress"]

_TIMEOUT_S: Final = 300.0


def zstd_available() -> bool:
    return shutil.which("zstd") is not None


def zstd_decompress(data: bytes) -> bytes:
    """Every frame of ``data``, decompressed (``zstd -d -c``, through pipes).

    Raises:
        ToolError: zstd is missing or refused the data.
    """
    return run(
        ["zstd", "-d", "-c", "-q", "--no-progress"],
        stdin=data,
        desc="zstd -d (OS initrd)",
        timeout_s=_TIMEOUT_S,
    ).stdout
