"""``kexec_rollback.txt``: the binding of a signed /boot to the TPM rollback counter.

Format (docs/heads-compat.md §kexec_rollback.txt; port of ``kexec-sign-config.sh -r`` and
``verify_rollback_counter``): one ``sha256sum`` line ``<sha256>  /tmp/counter-<id>\\n`` where
the named runtime file holds ``"<id>: <value>\\n"``; ``<id>`` is the TPM2 NV index in lowercase
hex without ``0x`` (``1a2b3c4``, Heads makes it ``"1"`` + 6 random hex digits) and ``<value>``
the 8-byte counter as 16 hex digits (``tpm2 nvread | xxd -p``).  At boot Heads writes the TPM's
value into that file and runs ``sha256sum -c``; we compute the same digest in memory.

The digest hides the signed value; :func:`check_rollback` searches the values around the
TPM's to name it in the report ("signed at 40, TPM at 41").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from heads.core.manifest import parse_sha256sum_line
from heads.errors import FormatError

__all__ = [
    "MAX_ROLLBACK_BYTES",
    "ROLLBACK_NAME",
    "RUNTIME_COUNTER_DIR",
    "RollbackBinding",
    "RollbackCheck",
    "RollbackState",
    "check_rollback",
    "counter_state_bytes",
]

ROLLBACK_NAME: Final = "kexec_rollback.txt"
# Heads' runtime directory is the initramfs's /tmp; the path is part of the signed bytes.
RUNTIME_COUNTER_DIR: Final = b"/tmp"
MAX_ROLLBACK_BYTES: Final = 4096
_ID: Final = re.compile(rb"counter-([0-9a-fA-F]+)")
_MAX_COUNTER: Final = (1 << 64) - 1
# How far below (older signings) and above the TPM value check_rollback looks for the signed one.
_SEARCH_BELOW: Final = 4096
_SEARCH_ABOVE: Final = 16


def counter_state_bytes(counter_id: str, value: int) -> bytes:
    """The runtime counter file Heads hashes: ``"<id>: <16 hex digits>\\n"``."""
    return f"{counter_id}: {value:016x}\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class RollbackBinding:
    """A parsed ``kexec_rollback.txt``."""

    digest: bytes
    counter_id: str
    raw: bytes

    @property
    def nv_index(self) -> int:
        """The TPM NV index of the counter."""
        return int(self.counter_id, 16)

    @classmethod
    def for_counter(cls, nv_index: int, value: int) -> RollbackBinding:
        """The binding Heads writes after incrementing counter ``nv_index`` to ``value``."""
        counter_id = f"{nv_index:x}"
        digest = hashlib.sha256(counter_state_bytes(counter_id, value)).digest()
        raw = (
            digest.hex().encode()
            + b"  "
            + RUNTIME_COUNTER_DIR
            + b"/counter-"
            + counter_id.encode()
            + b"\n"
        )
        return cls(digest, counter_id, raw)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = ROLLBACK_NAME) -> RollbackBinding:
        """Parse ``kexec_rollback.txt``.

        Raises:
            FormatError: too large, not exactly one newline-terminated sha256sum line, or no
                ``counter-<hex id>`` in its file name.
        """
        if len(data) > MAX_ROLLBACK_BYTES:
            raise FormatError(f"larger than {MAX_ROLLBACK_BYTES} bytes", source=source)
        if not data.endswith(b"\n"):
            raise FormatError("truncated: no newline at the end", source=source, line=1)
        lines = data[:-1].split(b"\n")
        if len(lines) != 1:
            raise FormatError(f"expected one line, found {len(lines)}", source=source, line=2)
        entry = parse_sha256sum_line(lines[0], source=source, lineno=1)
        found = _ID.search(entry.name)
        if found is None:
            raise FormatError(
                "the file name has no counter-<hex id> (which TPM counter is this?)",
                source=source,
                line=1,
            )
        counter_id = found.group(1).decode("ascii")
        if int(counter_id, 16) > 0xFFFFFFFF:
            raise FormatError(f"counter id {counter_id[:20]} is not a TPM NV index", source=source)
        return cls(entry.digest, counter_id, data)

    def to_bytes(self) -> bytes:
        return self.raw

    def matches(self, value: int) -> bool:
        """True when this binding was written for the counter at ``value``."""
        if not 0 <= value <= _MAX_COUNTER:
            return False
        return hashlib.sha256(counter_state_bytes(self.counter_id, value)).digest() == self.digest


class RollbackState(Enum):
    OK = "ok"
    ROLLED_BACK = "rolled back"  # signed at a value below the TPM's: an older /boot
    MISMATCH = "mismatch"  # signed value not found near the TPM's (other TPM, forged, reset)


@dataclass(frozen=True, slots=True)
class RollbackCheck:
    state: RollbackState
    counter_id: str
    tpm_value: int
    signed_value: int | None

    def describe(self) -> str:
        if self.state is RollbackState.OK:
            return f"rollback counter 0x{self.counter_id} is {self.tpm_value}, as signed"
        if self.signed_value is not None:
            return (
                f"rollback counter 0x{self.counter_id} is {self.tpm_value} in the TPM, "
                f"{self.signed_value} in {ROLLBACK_NAME}"
            )
        return (
            f"rollback counter 0x{self.counter_id} is {self.tpm_value} in the TPM; "
            f"{ROLLBACK_NAME} was not written for that value or any near it"
        )


def check_rollback(binding: RollbackBinding, tpm_value: int) -> RollbackCheck:
    """Compare the binding with the counter value the TPM reports (pure)."""
    if binding.matches(tpm_value):
        return RollbackCheck(RollbackState.OK, binding.counter_id, tpm_value, tpm_value)
    for delta in range(1, _SEARCH_BELOW + 1):
        if binding.matches(tpm_value - delta):
            return RollbackCheck(
                RollbackState.ROLLED_BACK, binding.counter_id, tpm_value, tpm_value - delta
            )
    for delta in range(1, _SEARCH_ABOVE + 1):
        if binding.matches(tpm_value + delta):
            return RollbackCheck(
                RollbackState.MISMATCH, binding.counter_id, tpm_value, tpm_value + delta
            )
    return RollbackCheck(RollbackState.MISMATCH, binding.counter_id, tpm_value, None)
