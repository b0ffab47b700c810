"""The PCRs a new firmware image will produce, from this boot's log (docs/firmware-update.md).

The TOTP/HOTP secret is sealed to sha256 PCRs (``heads.core.platform.PROFILES``); flashing a new
image moves some of them.  The prediction takes the firmware event log of the current boot,
replaces the digests of the events the image determines, and replays it; PCR 7 is then
extended with the new image's user files exactly as the runtime does.

Each substitution is first checked on the current boot: the same rule applied to the current
image must reproduce the digest the log holds.  When it does not (another machine
configuration, a chip flashed since this boot, a payload the image does not carry), the PCR is
reported as unpredictable with the reason instead of guessed: a wrong prediction would only
fail like any unexpected change, but an honest "unknown" tells the owner to reseal by hand.

uefi profile (QEMU + OVMF, direct kernel boot; the host loads the payload from the image):

* PCR 4, ``EV_EFI_BOOT_SERVICES_APPLICATION``: the Authenticode hash of the kernel as QEMU
  hands it to the firmware: its setup header patched with the command-line pointer, the
  loader type, the heap end and the initrd's address and size (the address depends on the RAM
  size and the initrd's size);
* PCR 9, ``EV_EVENT_TAG`` 0x8F3B22ED: SHA-256 of the UTF-16LE command line plus
  `` initrd=initrd`` and a NUL; ``EV_EVENT_TAG`` 0x8F3B22EC: SHA-256 of the initrd;
* PCR 0-3 and PCR 7's firmware events are the firmware's own: unchanged (the image does not
  hold OVMF).

coreboot profile (unit-tested only): PCR 2 events named ``CBFS: NAME`` take the SHA-256 of the
file's stored bytes, ``FMAP: FMAP`` the SHA-256 of the FMAP region; PCR 0, 1, 3 and 4 hold
nothing from coreboot (Heads' boards).
"""

from __future__ import annotations

# The command line is hashed as UTF-16LE, a codec looked up by name at run time: imported
# here so that the payload, which ships only what is imported, has it.
import encodings.utf_16_le  # noqa: F401
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from heads.core.authenticode import authenticode_sha256
from heads.core.cbfs import TYPE_RAW
from heads.core.digest import HashAlg
from heads.core.eventlog import EventLog, replay_logs
from heads.core.eventlog.model import Event
from heads.core.flash_image import FlashImage
from heads.core.platform import PAYLOAD_CMDLINE, PAYLOAD_INITRD, PAYLOAD_KERNEL, PROFILES
from heads.errors import FormatError

__all__ = [
    "PAYLOAD_CMDLINE",
    "PAYLOAD_INITRD",
    "PAYLOAD_KERNEL",
    "Payload",
    "Prediction",
    "cmdline_digest",
    "payload_of",
    "predict",
    "qemu_patched_kernel",
    "user_file_extends",
]

#: CBFS names of the payload in an image the host runner boots (kernel, initrd, command line).
USER_FILE_PREFIX: Final = "heads/initrd"
EV_EVENT_TAG: Final = 0x00000006
EV_EFI_BOOT_SERVICES_APPLICATION: Final = 0x80000003
TAG_LOAD_OPTIONS: Final = 0x8F3B22ED
TAG_INITRD: Final = 0x8F3B22EC
#: QEMU 7.2 (q35) keeps this much below the top of low RAM for ACPI tables.
QEMU_ACPI_DATA_SIZE: Final = 0x28000
_SHA256: Final = HashAlg.SHA256
_PCR_USER_FILES: Final = 7


@dataclass(frozen=True, slots=True)
class Payload:
    """The payload an image carries (``None`` where it carries none)."""

    kernel: bytes | None
    initrd: bytes | None
    cmdline: str | None


def payload_of(image: FlashImage) -> Payload:
    """The kernel, initrd and command line files of an image, decompressed."""

    def content(name: str) -> bytes | None:
        f = image.file(name)
        return None if f is None else f.content(source=image.source)

    cmdline = content(PAYLOAD_CMDLINE)
    return Payload(
        content(PAYLOAD_KERNEL),
        content(PAYLOAD_INITRD),
        None if cmdline is None else cmdline.decode("utf-8", "replace").rstrip("\n"),
    )


def qemu_patched_kernel(
    kernel: bytes,
    initrd_size: int | None,
    *,
    mem_below_4g: int,
    acpi_data_size: int = QEMU_ACPI_DATA_SIZE,
) -> bytes:
    """The bzImage as QEMU's ``-kernel`` hands it to the firmware (boot protocol >= 2.02).

    Raises:
        FormatError: not a bzImage QEMU would load this way.
    """
    b = bytearray(kernel)
    if len(b) < 0x240 or b[0x202:0x206] != b"HdrS":
        raise FormatError("not a bzImage (no HdrS setup header)", source="kernel", offset=0x202)
    (protocol,) = struct.unpack_from("<H", b, 0x206)
    if protocol < 0x202 or not b[0x211] & 0x01:
        raise FormatError(
            f"boot protocol {protocol:#x} or a kernel not loaded high", source="kernel"
        )
    (xloadflags,) = struct.unpack_from("<H", b, 0x236)
    if protocol >= 0x20C and xloadflags & 0x02:  # XLF_CAN_BE_LOADED_ABOVE_4G
        initrd_max = 0xFFFFFFFF
    else:
        (initrd_max,) = struct.unpack_from("<I", b, 0x22C)
    initrd_max = min(initrd_max, mem_below_4g - acpi_data_size - 1)
    cmdline_addr, real_addr = 0x20000, 0x10000
    struct.pack_into("<I", b, 0x228, cmdline_addr)
    b[0x210] = 0xB0  # type_of_loader: QEMU
    b[0x211] |= 0x80  # CAN_USE_HEAP
    struct.pack_into("<H", b, 0x224, cmdline_addr - real_addr - 0x200)
    if initrd_size is not None:
        struct.pack_into("<II", b, 0x218, (initrd_max - initrd_size) & ~4095, initrd_size)
    return bytes(b)


def cmdline_digest(cmdline: str) -> bytes:
    """PCR 9's load-options digest: OVMF appends `` initrd=initrd``; the stub hashes UTF-16LE."""
    return hashlib.sha256((cmdline + " initrd=initrd\0").encode("utf-16-le")).digest()


def user_file_extends(image: FlashImage) -> list[tuple[str, bytes]]:
    """The runtime's PCR 7 extends for the image's user files: (what, sha256 digest).

    Raises:
        FormatError: a user file is compressed or escapes the root (the runtime refuses those).
    """
    out: list[tuple[str, bytes]] = []
    for f in image.files():
        if f.type != TYPE_RAW or not f.name.startswith(USER_FILE_PREFIX + "/"):
            continue
        rel = f.name[len(USER_FILE_PREFIX) :]
        if f.compression or ".." in rel.split("/"):
            raise FormatError(f"user file {f.name} is compressed or escapes the root")
        out.append((f"name {rel}", hashlib.sha256(rel.encode()).digest()))
        out.append((f"file {rel}", hashlib.sha256(f.data).digest()))
    return out


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted sha256 PCR values, why each is what it is, and the PCRs that could not be."""

    profile: str
    values: Mapping[int, bytes]
    reasons: Mapping[int, str]
    unpredictable: Mapping[int, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.unpredictable

    def to_json(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "bank": "sha256",
            "pcrs": {str(p): v.hex() for p, v in sorted(self.values.items())},
            "reasons": {str(p): r for p, r in sorted(self.reasons.items())},
            "unpredictable": {str(p): r for p, r in sorted(self.unpredictable.items())},
            "complete": self.complete,
        }


def _tag(event: Event) -> int | None:
    if event.event_type != EV_EVENT_TAG or len(event.data) < 8:
        return None
    return int(struct.unpack_from("<I", event.data)[0])


class _UnpredictableError(Exception):
    def __init__(self, pcr: int, reason: str) -> None:
        super().__init__(reason)
        self.pcr = pcr
        self.reason = reason


def _uefi_digest(
    event: Event, current: Payload, new: Payload, mem_below_4g: int
) -> tuple[bytes, str] | None:
    """The new digest of a payload event (checked on the current payload), or None."""
    logged = event.digests.get(_SHA256)
    if event.pcr == 4 and event.event_type == EV_EFI_BOOT_SERVICES_APPLICATION:
        if current.kernel is None or new.kernel is None:
            raise _UnpredictableError(4, "the current or the new image carries no payload/kernel")

        def measured(kernel: bytes, initrd: bytes | None) -> bytes:
            size = None if initrd is None else len(initrd)
            patched = qemu_patched_kernel(kernel, size, mem_below_4g=mem_below_4g)
            return authenticode_sha256(patched, source="kernel")

        if measured(current.kernel, current.initrd) != logged:
            raise _UnpredictableError(
                4,
                "the current kernel's measurement is not the one in the log (another RAM size "
                "or machine, or the chip changed since this boot)",
            )
        return measured(new.kernel, new.initrd), "kernel (Authenticode of the QEMU-patched bzImage)"
    tag = _tag(event) if event.pcr == 9 else None
    if tag == TAG_LOAD_OPTIONS:
        if current.cmdline is None or new.cmdline is None:
            raise _UnpredictableError(9, "the current or the new image carries no payload/cmdline")
        if cmdline_digest(current.cmdline) != logged:
            raise _UnpredictableError(9, "the current command line is not the one in the log")
        return cmdline_digest(new.cmdline), "command line"
    if tag == TAG_INITRD:
        if current.initrd is None or new.initrd is None:
            raise _UnpredictableError(9, "the current or the new image carries no payload/initrd")
        if hashlib.sha256(current.initrd).digest() != logged:
            raise _UnpredictableError(9, "the current initrd is not the one in the log")
        return hashlib.sha256(new.initrd).digest(), "initrd"
    return None


def _coreboot_digest(
    event: Event, current: FlashImage, new: FlashImage
) -> tuple[bytes, str] | None:
    if event.pcr != 2:
        return None
    logged = event.digests.get(_SHA256)
    desc = event.description

    def measured(image: FlashImage) -> bytes | None:
        if desc == "FMAP: FMAP":
            try:
                return hashlib.sha256(image.region("FMAP")).digest()
            except KeyError:
                return None
        if desc.startswith("CBFS: "):
            f = image.file(desc[len("CBFS: ") :])
            return None if f is None else hashlib.sha256(f.data).digest()
        return None

    if not (desc == "FMAP: FMAP" or desc.startswith("CBFS: ")):
        return None
    was, will = measured(current), measured(new)
    if was is None or will is None or was != logged:
        raise _UnpredictableError(
            2, f"{desc!r} in the log is not reproduced from the current image"
        )
    return will, desc


def predict(
    new: FlashImage,
    current: FlashImage,
    *,
    profile: str,
    firmware_log: EventLog | None,
    mem_below_4g: int = 1 << 30,
) -> Prediction:
    """The sha256 values of ``PROFILES[profile]`` after booting ``new`` (the image as it will
    be flashed, user files carried over), from this boot's firmware log and ``current`` image.

    PCR 4 is predicted at its firmware-only value, the one the TOTP secret is sealed to.

    Raises:
        FormatError: a user file the runtime would refuse.
    """
    selection = PROFILES[profile]
    reasons: dict[int, str] = {}
    unpredictable: dict[int, str] = {}
    values: dict[int, bytes] = {}
    events: list[Event] = []
    if firmware_log is not None:
        cur_payload, new_payload = payload_of(current), payload_of(new)
        for event in firmware_log.events:
            try:
                if profile == "uefi":
                    found = _uefi_digest(event, cur_payload, new_payload, mem_below_4g)
                else:
                    found = _coreboot_digest(event, current, new)
            except _UnpredictableError as exc:
                unpredictable.setdefault(exc.pcr, exc.reason)
                found = None
            if found is None:
                events.append(event)
                continue
            digest, what = found
            if digest != event.digests.get(_SHA256):
                reasons[event.pcr] = (reasons.get(event.pcr, "") + f"; new {what}").lstrip("; ")
            events.append(event.replace(digests={**event.digests, _SHA256: digest}))
        replay = replay_logs([firmware_log.replace(events=tuple(events))], [_SHA256])
        for pcr in selection:
            try:
                values[pcr] = replay.value(_SHA256, pcr)
            except KeyError:
                unpredictable.setdefault(pcr, "the firmware log lacks sha256 digests for it")
    elif profile == "coreboot":
        for pcr in selection:
            values[pcr] = bytes(32)  # coreboot leaves 0, 1, 3 and 4 alone (Heads' boards)
        unpredictable[2] = "no coreboot event log (cbmem -L) to take PCR 2's events from"
    else:
        for pcr in selection:
            unpredictable[pcr] = "no firmware event log"
    if _PCR_USER_FILES in selection and _PCR_USER_FILES in values:
        value = values[_PCR_USER_FILES]
        for _what, digest in user_file_extends(new):
            value = hashlib.sha256(value + digest).digest()
        values[_PCR_USER_FILES] = value
        reasons.setdefault(_PCR_USER_FILES, "firmware events, then the new image's user files")
    for pcr in unpredictable:
        values.pop(pcr, None)
    for pcr in values:
        reasons.setdefault(pcr, "unchanged: the image does not determine it")
    shown = {pcr: why for pcr, why in reasons.items() if pcr in values}
    return Prediction(profile, values, shown, unpredictable)
