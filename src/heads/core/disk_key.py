"""The disk unlock key (DUK): Heads' /boot files, the PCR 6 listing, the sealing policy and the
key initrd (docs/disk-key.md).  Pure: bytes in, bytes out.

Files, byte-compatible with Heads' ``kexec-save-key.sh``/``kexec-seal-key.sh``/
``kexec-insert-key.sh``:

* ``kexec_key_devices.txt``: ``<device> <LUKS UUID>`` per line;
* ``kexec_key_lvm.txt``: one volume-group name (activated before the headers are read);
* ``kexec_lukshdr_hash.txt``: the header listing below, as sealed;
* ``kexec_initrd_crypttab_overrides.txt``: ``<path in the OS initrd>:<crypttab line>`` lines.

The *header listing* is ``sha256sum /tmp/lukshdr-*`` over the header backups (device path with
``/`` turned into ``_``, in glob order); PCR 6 is extended once with its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from heads.core.cpio import CpioEntry, Kind, build_newc
from heads.core.digest import HashAlg, extend, zero_digest
from heads.core.pcr import PcrIndex, PcrSelection
from heads.core.platform import PCR_BOOT_MODE, PCR_LUKS_HEADERS, PCR_MODULES, PROFILES
from heads.core.sealing import pcr_values_for
from heads.core.secret import Secret
from heads.errors import FormatError, UsageError

__all__ = [
    "CRYPTTAB_OVERRIDES_FILE",
    "DEVICES_FILE",
    "HEADER_LISTING_FILE",
    "KEY_BYTES",
    "KEY_PATH",
    "LVM_FILE",
    "MIN_PASSPHRASE_CHARS",
    "CrypttabOverride",
    "KeyDevice",
    "check_passphrase",
    "crypttab_overrides",
    "disk_key_selection",
    "format_devices",
    "format_overrides",
    "header_listing",
    "initrd_padding",
    "key_initrd",
    "parse_devices",
    "parse_lvm",
    "parse_overrides",
    "pcr6_after",
    "predicted_values",
]

DEVICES_FILE: Final = "kexec_key_devices.txt"
LVM_FILE: Final = "kexec_key_lvm.txt"
HEADER_LISTING_FILE: Final = "kexec_lukshdr_hash.txt"
CRYPTTAB_OVERRIDES_FILE: Final = "kexec_initrd_crypttab_overrides.txt"
#: 128 random bytes, as Heads (the largest secret a TPM 2.0 sealed object holds).
KEY_BYTES: Final = 128
#: Where the OS initrd finds the key (crypttab's key-file column).
KEY_PATH: Final = "/secret.key"
MIN_PASSPHRASE_CHARS: Final = 12
_MAX_FILE_BYTES: Final = 64 * 1024
_MAX_DEVICES: Final = 64
# Heads' runtime scratch directory is the root-level tmp; the listing names files in it.
_BACKUP_PREFIX: Final = "/tmp/lukshdr-"  # noqa: S108 - a name in the listing, never opened
_DEVICE_RE: Final = re.compile(r"/dev/[A-Za-z0-9_./:+-]+")
_UUID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_VG_RE: Final = re.compile(r"[A-Za-z0-9_.+-]+")
_OVERRIDE_PATH_RE: Final = re.compile(r"/?[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")


@dataclass(frozen=True, slots=True)
class KeyDevice:
    """A LUKS device that holds the disk key in one of its key slots."""

    device: str
    uuid: str


@dataclass(frozen=True, slots=True)
class CrypttabOverride:
    """A crypttab file of the OS initrd, rewritten to use the key (one line of it)."""

    path: str
    line: str


def _text_lines(data: bytes, source: str) -> list[str]:
    if len(data) > _MAX_FILE_BYTES:
        raise FormatError(f"{len(data)} bytes: larger than {_MAX_FILE_BYTES}", source=source)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FormatError("not ASCII", source=source, offset=exc.start) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in line):
            raise FormatError("control character", source=source, line=n)
    return lines


def parse_devices(data: bytes, *, source: str = DEVICES_FILE) -> tuple[KeyDevice, ...]:
    """Read ``kexec_key_devices.txt``.

    Raises:
        FormatError: a line is not ``/dev/NAME UUID``, a device repeats, or there is none.
    """
    devices: list[KeyDevice] = []
    for n, line in enumerate(_text_lines(data, source), 1):
        parts = line.split(" ")
        if len(parts) != 2 or not _DEVICE_RE.fullmatch(parts[0]) or ".." in parts[0]:
            raise FormatError("expected '/dev/NAME UUID'", source=source, line=n)
        if not _UUID_RE.fullmatch(parts[1]):
            raise FormatError("bad LUKS UUID", source=source, line=n)
        if any(d.device == parts[0] for d in devices):
            raise FormatError("device listed twice", source=source, line=n)
        devices.append(KeyDevice(parts[0], parts[1]))
    if not devices:
        raise FormatError("no device listed", source=source)
    if len(devices) > _MAX_DEVICES:
        raise FormatError(f"more than {_MAX_DEVICES} devices", source=source)
    return tuple(devices)


def format_devices(devices: Iterable[KeyDevice]) -> bytes:
    return "".join(f"{d.device} {d.uuid}\n" for d in devices).encode("ascii")


def parse_lvm(data: bytes, *, source: str = LVM_FILE) -> str | None:
    """Read ``kexec_key_lvm.txt``: the volume group, or None when the file is empty.

    Raises:
        FormatError: more than one line, or not a volume-group name.
    """
    lines = [x for x in _text_lines(data, source) if x]
    if not lines:
        return None
    if len(lines) > 1 or not _VG_RE.fullmatch(lines[0]) or lines[0].startswith("-"):
        raise FormatError("expected one volume-group name", source=source, line=1)
    return lines[0]


def parse_overrides(
    data: bytes, *, source: str = CRYPTTAB_OVERRIDES_FILE
) -> tuple[CrypttabOverride, ...]:
    """Read ``kexec_initrd_crypttab_overrides.txt``.

    Raises:
        FormatError: a line lacks the ``path:`` part or the path could climb out of the
            initrd.
    """
    out: list[CrypttabOverride] = []
    for n, line in enumerate(_text_lines(data, source), 1):
        path, sep, rest = line.partition(":")
        if not sep or not _OVERRIDE_PATH_RE.fullmatch(path) or ".." in path.split("/"):
            raise FormatError("expected '/path/in/initrd:crypttab line'", source=source, line=n)
        out.append(CrypttabOverride(path, rest))
    return tuple(out)


def format_overrides(overrides: Iterable[CrypttabOverride]) -> bytes:
    return "".join(f"{o.path}:{o.line}\n" for o in overrides).encode("ascii")


def _with_key_file(line: str) -> str:
    """A crypttab line (``name device [key-file [options]]``) with its key file replaced by
    :data:`KEY_PATH` (added when the line has none), its fields joined by single spaces (the
    overrides file holds no tabs)."""
    fields = line.split()
    if len(fields) < 2:
        return " ".join(fields)
    return " ".join([*fields[:2], KEY_PATH, *fields[3:]])


def crypttab_overrides(
    files: Iterable[tuple[str, bytes]], *, source: str
) -> tuple[CrypttabOverride, ...]:
    """The overrides for the crypttab files of an OS initrd (Heads' ``kexec-save-default.sh``:
    every file whose name holds ``crypttab``, its comment and blank lines left out, each
    line's key file set to :data:`KEY_PATH`).  ``files``: (path in the initrd, content).

    Raises:
        FormatError: a crypttab that is not ASCII text, or a path the overrides file cannot
            name (both name the initrd and the file).
    """
    out: list[CrypttabOverride] = []
    for name, data in files:
        path = "/" + name.lstrip("./").lstrip("/")
        where = f"{source}: {path}"
        if not _OVERRIDE_PATH_RE.fullmatch(path) or ".." in path.split("/"):
            raise FormatError("a crypttab path the overrides file cannot name", source=where)
        # Tabs separate crypttab fields; any other control character is refused.
        for line in _text_lines(data.replace(b"\t", b" "), where):
            kept = line.strip(" ")
            if not kept or kept.startswith("#"):
                continue
            out.append(CrypttabOverride(path, _with_key_file(kept)))
    return tuple(out)


def header_listing(digests: Mapping[str, bytes]) -> bytes:
    """Heads' ``luksDump.txt``: device path -> SHA-256 of its header backup, in glob order."""
    names = sorted((_BACKUP_PREFIX + device.replace("/", "_")).encode() for device in digests)
    by_name = {(_BACKUP_PREFIX + d.replace("/", "_")).encode(): v for d, v in digests.items()}
    return b"".join(by_name[name].hex().encode() + b"  " + name + b"\n" for name in names)


def pcr6_after(listing: bytes, *, previous: bytes | None = None) -> bytes:
    """PCR 6 (sha256) after the boot measured ``listing`` (from zero unless ``previous``)."""
    alg = HashAlg.SHA256
    start = zero_digest(alg) if previous is None else previous
    return extend(alg, start, hashlib.sha256(listing).digest())


def disk_key_selection(profile: str) -> PcrSelection:
    """PCRs 0-7, plus every other PCR the profile's TOTP policy has (9 on ``uefi``).

    Raises:
        UsageError: unknown profile.
    """
    if profile not in PROFILES:
        raise UsageError(f"unknown platform profile {profile!r} (known: {', '.join(PROFILES)})")
    indices = sorted({*range(8), *PROFILES[profile]})
    return PcrSelection(HashAlg.SHA256, tuple(PcrIndex(i) for i in indices))


def predicted_values(
    selection: PcrSelection,
    measured: Mapping[int, bytes],
    *,
    pcr4_firmware: bytes,
    listing: bytes,
    pcr5: bytes | None = None,
    pcr6_firmware: bytes | None = None,
) -> dict[int, bytes]:
    """The PCR values the key is sealed to: the boot's values at the moment it unseals.

    ``measured`` holds what firmware and payload set before the runtime's own boot-mode
    extends (PCRs 0-3, 7 and 9); PCR 4 is its firmware-only value; PCR 5 what the firmware
    left in it (the payload loads no modules; zero on coreboot, OVMF extends a separator and
    ExitBootServices); PCR 6 the listing measured once over the firmware's value (zero on
    coreboot, a separator on OVMF).

    Raises:
        UsageError: a selected PCR has no value.
    """
    values = dict(measured)
    values[PCR_BOOT_MODE] = pcr4_firmware
    values[PCR_MODULES] = pcr5 if pcr5 is not None else zero_digest(HashAlg.SHA256)
    values[PCR_LUKS_HEADERS] = pcr6_after(listing, previous=pcr6_firmware)
    return pcr_values_for(selection, values, missing="no value to seal PCR {pcrs} to")


def check_passphrase(first: Secret, again: Secret) -> None:
    """Heads' rule for a new DUK passphrase: at least 12 characters, typed the same twice.

    Raises:
        UsageError: too short, not UTF-8, or the two differ.
    """
    try:
        chars = len(first.reveal().decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError("the disk unlock key passphrase is not UTF-8 text") from None
    if chars < MIN_PASSPHRASE_CHARS:
        raise UsageError(
            f"the disk unlock key passphrase needs at least {MIN_PASSPHRASE_CHARS} characters"
        )
    if first != again:
        raise UsageError("the two disk unlock key passphrases differ")


def initrd_padding(size: int) -> bytes:
    """Zeros that bring an initrd of ``size`` bytes to a 512-byte boundary (as Heads pads it
    before appending the key archive; the kernel needs the next cpio 4-byte aligned)."""
    return bytes(-size % 512)


def key_initrd(
    key: Secret,
    devices: Sequence[KeyDevice],
    overrides: Sequence[CrypttabOverride] = (),
) -> Secret:
    """The cpio newc archive appended to the OS initrd: ``/secret.key`` and crypttab files.

    With overrides, each named file gets its lines (in order); without, Heads' generic line
    ``luks-UUID UUID=UUID /secret.key luks,discard`` per device goes to both ``etc/crypttab``
    and ``cryptroot/crypttab``.  The archive holds the key, so it is a Secret too.
    """
    files: dict[str, list[str]] = {}
    if overrides:
        for o in overrides:
            files.setdefault(o.path.lstrip("/"), []).append(o.line)
    else:
        lines = [f"luks-{d.uuid} UUID={d.uuid} {KEY_PATH} luks,discard" for d in devices]
        files["etc/crypttab"] = lines
        files["cryptroot/crypttab"] = list(lines)
    # Readable by root only, as the OS expects of a key file.
    entries = [CpioEntry(KEY_PATH.lstrip("/"), Kind.FILE, 0o400, key.reveal())]
    entries += [
        CpioEntry.file(path, "".join(f"{x}\n" for x in lines).encode("ascii"))
        for path, lines in files.items()
    ]
    return Secret(build_newc(entries, mtime=0))
