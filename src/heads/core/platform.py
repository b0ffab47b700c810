"""Platform facts the command line needs before any flow is imported.

The TOTP/HOTP secret's PCR selection per platform profile (docs/pcr-layout.md §Platform
profiles) and where Linux exposes the firmware's event log.  Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = ["FIRMWARE_EVENT_LOG", "PROFILES"]

#: The firmware's TCG event log as the kernel exposes it.
FIRMWARE_EVENT_LOG: Final = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
#: SHA-256 PCRs the TOTP/HOTP secret is sealed to, per platform profile (PCR 4 at its
#: firmware-only value; PCR 9 only where UEFI firmware measures the payload's initrd there).
PROFILES: Final[Mapping[str, tuple[int, ...]]] = {
    "coreboot": (0, 1, 2, 3, 4, 7),
    "uefi": (0, 1, 2, 3, 4, 7, 9),
}
