"""The flash chip through ``flashrom``: size, read, write (docs/firmware-image.md §Flashing).

The programmer string is passed through as ``-p``: ``internal`` on hardware,
``dummy:emulate=W25Q128FV,image=FILE`` for a file-backed chip in tests (the file must exist
and have the chip's size).  Images travel through private temporary files, never pipes:
flashrom reads and writes whole files.  Writing uses ``--noverify`` because the caller reads
the whole chip back and compares it itself (:func:`heads.flows.firmware.flash`), which also
tells where the first difference is.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters._run import run
from heads.core.cbfs import MAX_IMAGE_BYTES
from heads.errors import FlashError, ToolError

__all__ = ["Flashrom"]

_TIMEOUT_S: Final = 900.0  # a 32 MiB chip on a slow SPI programmer takes minutes


@dataclass(frozen=True, slots=True)
class Flashrom:
    """One programmer (``flashrom -p PROGRAMMER``)."""

    programmer: str
    timeout_s: float = _TIMEOUT_S

    def _run(self, *args: str, desc: str) -> bytes:
        try:
            result = run(
                ["flashrom", "-p", self.programmer, *args],
                desc=desc,
                timeout_s=self.timeout_s,
                check=False,
            )
        except ToolError as exc:
            raise FlashError(exc.message, hint="install flashrom", details=exc.details) from exc
        if result.returncode != 0:
            tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
            out = result.stdout.decode("utf-8", "replace").strip().splitlines()[-6:]
            raise FlashError(
                f"{desc}: flashrom -p {self.programmer} exited with status {result.returncode}",
                details=(*out, *tail),
            )
        return result.stdout

    def chip_size(self) -> int:
        """The chip's size in bytes (``--flash-size``).

        Raises:
            FlashError: flashrom failed or found no chip.
        """
        out = self._run("--flash-size", desc="probe the flash chip")
        last = out.decode("utf-8", "replace").strip().splitlines()[-1:]
        if not last or not last[0].isdigit():
            raise FlashError("flashrom --flash-size printed no size")
        return int(last[0])

    def read(self) -> bytes:
        """The whole chip.

        Raises:
            FlashError: flashrom failed, or the chip is larger than any image heads reads.
        """
        with tempfile.TemporaryDirectory(prefix="heads-flash-") as tmp:
            path = Path(tmp) / "read.rom"
            self._run("-r", str(path), desc="read the flash chip")
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise FlashError(f"the chip is larger than {MAX_IMAGE_BYTES} bytes")
            return path.read_bytes()

    def write(self, image: bytes) -> None:
        """Erase and write the whole chip with ``image`` (no verification: see the module).

        Raises:
            FlashError: flashrom failed; the chip may then hold part of the new image.
        """
        with tempfile.TemporaryDirectory(prefix="heads-flash-") as tmp:
            path = Path(tmp) / "write.rom"
            path.write_bytes(image)
            self._run("--noverify", "-w", str(path), desc="write the flash chip")
