"""PCR selections ("sha256:0,1,2,3,4,7") and the Heads PCR layout (docs/pcr-layout.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NewType

from heads.core.digest import HashAlg
from heads.errors import UsageError

__all__ = [
    "PCR_COUNT",
    "PcrIndex",
    "PcrSelection",
    "parse_pcr_list",
]

PcrIndex = NewType("PcrIndex", int)

PCR_COUNT: Final = 24


def parse_pcr_list(text: str) -> tuple[PcrIndex, ...]:
    """Parse "0,1,2,4-7" into sorted unique indices.

    Raises:
        UsageError: on anything but decimal indices and ranges within 0-23.
    """
    out: set[int] = set()
    if not text.strip():
        raise UsageError("empty PCR list", hint="give indices like 0,1,2,3,4,7 or 0-7")
    for part in text.split(","):
        item = part.strip()
        lo_s, sep, hi_s = item.partition("-")
        try:
            lo = int(lo_s, 10)
            hi = int(hi_s, 10) if sep else lo
        except ValueError:
            raise UsageError(
                f"bad PCR list {text!r}: {item!r} is not an index or range",
                hint="give indices like 0,1,2,3,4,7 or 0-7",
            ) from None
        if not (0 <= lo <= hi < PCR_COUNT):
            raise UsageError(f"bad PCR list {text!r}: {item!r} is outside 0-{PCR_COUNT - 1}")
        out.update(range(lo, hi + 1))
    return tuple(PcrIndex(i) for i in sorted(out))


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """One bank and a set of PCR indices."""

    alg: HashAlg
    indices: tuple[PcrIndex, ...]

    def __post_init__(self) -> None:
        if list(self.indices) != sorted(set(self.indices)):
            raise ValueError("PcrSelection indices must be sorted and unique")
        if any(not 0 <= i < PCR_COUNT for i in self.indices):
            raise ValueError("PcrSelection index out of range")

    @classmethod
    def parse(cls, text: str) -> PcrSelection:
        """Parse "sha256:0,1,2"; raises UsageError."""
        bank, sep, pcrs = text.partition(":")
        if not sep:
            raise UsageError(f"bad PCR selection {text!r}", hint='write it as "sha256:0,1,2"')
        try:
            alg = HashAlg.from_name(bank)
        except ValueError as exc:
            raise UsageError(f"bad PCR selection {text!r}: {exc}") from None
        return cls(alg, parse_pcr_list(pcrs))

    def __str__(self) -> str:
        return f"{self.alg.value}:{','.join(str(i) for i in self.indices)}"

    def bitmap(self) -> bytes:
        """pcrSelect of a TPMS_PCR_SELECTION (3 bytes for 24 PCRs)."""
        bits = bytearray(3)
        for i in self.indices:
            bits[i // 8] |= 1 << (i % 8)
        return bytes(bits)
