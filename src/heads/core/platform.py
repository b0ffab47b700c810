"""Platform facts in one place: PCR roles, TOTP profiles, paths, the default TPM, console lines.

Everything here is a fact about the machine Heads runs on or a promise the runtime keeps to
whoever reads its console (docs/pcr-layout.md, docs/guest-host-contract.md).  The runtime,
the flows, the CLI and the QEMU host side read them from here, so a change is made once.
Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "ANSWERS_FW_CFG",
    "BOARD_FILE",
    "CONSOLE_PREFIX",
    "DEFAULT_TCTI",
    "EVENT_LOG",
    "FIRMWARE_EVENT_LOG",
    "MARK_FIRMWARE_PCR",
    "MARK_INIT",
    "MARK_KEXEC",
    "MARK_LOG",
    "MARK_REPORT",
    "MARK_TOTP",
    "MARK_URI",
    "PAYLOAD_CMDLINE",
    "PAYLOAD_INITRD",
    "PAYLOAD_KERNEL",
    "PCR_BOOT_MODE",
    "PCR_LUKS_HEADERS",
    "PCR_MODULES",
    "PCR_PAYLOAD_STUB",
    "PCR_USER_FILES",
    "PROFILES",
    "USER_FILE_PREFIX",
]

# PCR roles (docs/pcr-layout.md).
#: Boot mode strings: "generic" before kexec, "recovery" on any failure, "usb" for USB boot.
PCR_BOOT_MODE: Final = 4
#: Kernel modules the payload loads, each file before it is loaded.
PCR_MODULES: Final = 5
#: LUKS headers of the disks whose key the TPM releases.
PCR_LUKS_HEADERS: Final = 6
#: The firmware image's user files: path string, then bytes, in image order.
PCR_USER_FILES: Final = 7
#: UEFI only: the kernel's EFI stub measures the payload's initrd and command line here.
PCR_PAYLOAD_STUB: Final = 9

#: SHA-256 PCRs the TOTP/HOTP secret is sealed to, per platform profile (PCR 4 at its
#: firmware-only value; PCR 9 only where UEFI firmware measures the payload's initrd there).
PROFILES: Final[Mapping[str, tuple[int, ...]]] = {
    "coreboot": (0, 1, 2, 3, PCR_BOOT_MODE, PCR_USER_FILES),
    "uefi": (0, 1, 2, 3, PCR_BOOT_MODE, PCR_USER_FILES, PCR_PAYLOAD_STUB),
}

# Paths.
#: The firmware's TCG event log as the kernel exposes it.
FIRMWARE_EVENT_LOG: Final = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
#: Our own measurement log (CEL JSON lines) on tmpfs: gone at power-off, as the PCRs are.
EVENT_LOG: Final = Path("/run/heads/measurements.cel.jsonl")
#: The TPM through the kernel's resource manager.
DEFAULT_TCTI: Final = "device:/dev/tpmrm0"
#: CBFS prefix of the user files (Heads' cbfs-init): ``heads/initrd/etc/config.user`` is
#: written to ``/etc/config.user`` and measured under that name.
USER_FILE_PREFIX: Final = "heads/initrd"
#: The payload in the firmware image's CBFS (outside ``heads/``: keeping the owner's files
#: across a flash copies ``heads/*`` from the old image, and a payload must never travel that
#: way): the kernel with its EFI stub, the compressed initramfs, the kernel command line.
PAYLOAD_KERNEL: Final = "payload/kernel"
PAYLOAD_INITRD: Final = "payload/initrd"
PAYLOAD_CMDLINE: Final = "payload/cmdline"
#: One line naming the board an image is built for (a flash refuses another board's image).
BOARD_FILE: Final = "board"
#: fw_cfg name of a scripted boot's answers to the menus (``ID=CHOICE`` lines), which the
#: QEMU host side writes and the runtime reads.
ANSWERS_FW_CFG: Final = "opt/heads/answers"

# The runtime's console lines, as the host side of the QEMU platform matches them
# (docs/guest-host-contract.md).  OVMF leaves terminal escape sequences at the start of the
# first kernel line, so the init marker is not anchored at the start.
CONSOLE_PREFIX: Final = "heads: "
MARK_INIT: Final = r"heads: init$"
MARK_TOTP: Final = r"^heads: TOTP (\d{6}) at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"
MARK_URI: Final = r"^heads: TOTP URI (otpauth://\S+)"
MARK_KEXEC: Final = r"^heads: kexec "
MARK_REPORT: Final = r"^heads: INTEGRITY REPORT: (.*)"
MARK_LOG: Final = r"^heads: log #\d+ PCR (\d+) (\w+) (.*)"
#: PCRs 5 and 6 as the firmware leaves them (replayed from its event log).
MARK_FIRMWARE_PCR: Final = r"^heads: firmware PCR (\d+) ([0-9a-f]{64})$"
