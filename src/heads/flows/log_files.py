"""Read an event log file and parse it (docs/eventlog.md).

Apart from heads.flows.pcr_check so that `heads pcr replay` and `heads pcr log` load only the
parsers and the replay, not the comparison, prediction and `cbmem` code
(docs/architecture.md §Performance targets).
"""

from __future__ import annotations

import os

from heads.core.eventlog.model import MAX_LOG_BYTES
from heads.core.eventlog.parse import parse_log
from heads.errors import UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from pathlib import Path

    from heads.core.eventlog.model import EventLog

__all__ = ["read_capped", "read_log"]


def read_capped(path: Path | str, cap: int, what: str) -> bytes:
    """The bytes of ``path``, refused when larger than ``cap``.

    ``path`` may be text as ``str(Path(...))`` spells it (heads.core.path_text), so that
    `heads pcr replay` need not import pathlib.

    Raises:
        UsageError: missing, a directory, unreadable, or larger than ``cap``.
    """
    try:
        with open(path, "rb") as fh:  # noqa: PTH123 - path may be text
            data = fh.read(cap + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory") from None
    except OSError as exc:
        from heads.core.platform import FIRMWARE_EVENT_LOG  # noqa: PLC0415 - errors only

        firmware = os.fspath(path) == os.fspath(FIRMWARE_EVENT_LOG)
        hint = "reading the firmware log needs root" if firmware else None
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}", hint=hint) from None
    if len(data) > cap:
        raise UsageError(f"{what} {path} is larger than {cap} bytes")
    return data


def read_log(path: Path | str, fmt: str = "auto") -> EventLog:
    """Read and parse one log file (any format; ``fmt`` as for ``parse_log``).

    Raises:
        UsageError: the file cannot be read or is larger than the cap.
        FormatError: the file is not a log of that format (offset/line and event named).
    """
    data = read_capped(path, MAX_LOG_BYTES, "event log")
    return parse_log(data, str(path), fmt)
