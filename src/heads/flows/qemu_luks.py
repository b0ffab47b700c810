"""The QEMU machine's encrypted volume and its disk unlock key (docs/disk-key.md §QEMU).

:func:`add_disk_key` gives a provisioned machine that has booted once (so its TOTP secret is
sealed) what a Heads owner has after "add a disk unlock key":

* a LUKS2 volume ``os-luks.img`` (the guest's ``/dev/nvme1n1``) whose recovery passphrase (DRK)
  is the owner's;
* a demo OS initrd with cryptsetup (and its libraries, from this host), an ``/etc/crypttab``
  naming the volume with no key file, and an init that opens it: with ``/secret.key`` when
  the runtime handed one over (``heads-demo-os: luks opened by key file``), otherwise after
  asking the DRK on the serial console (``... by passphrase``);
* the disk key in the volume's key slot 31, sealed in the machine's TPM to the PCRs of its
  next boot (those the TOTP secret is sealed to, with PCRs 5 and 6 as the firmware leaves
  them, read from the last boot's console) and the owner's DUK passphrase;
* /boot re-signed with ``kexec_key_devices.txt`` and ``kexec_lukshdr_hash.txt``.

The host kernel has no device-mapper: everything here works on the image file; the volume is
opened only inside the guest.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters import cryptsetup
from heads.adapters._run import require_tool, run
from heads.adapters.gpg import Signer
from heads.adapters.swtpm import serve_tcp
from heads.adapters.tpm import open_tpm
from heads.core.cpio import CpioEntry, build_newc
from heads.core.openpgp import OwnerKeySigner, export_secret, import_secret
from heads.core.platform import MARK_FIRMWARE_PCR
from heads.core.secret import Secret
from heads.errors import ToolError, UsageError
from heads.flows.boot_signing import sign_boot
from heads.flows.crypttab_overrides import write_crypttab_overrides
from heads.flows.disk_key import DiskTarget, SealResult, seal_disk_key, values_from_totp_record
from heads.flows.qemu_platform import (
    LUKS_DISK_NAME,
    OS_APPEND,
    OS_INITRD_NAME,
    OS_MARKER,
    BootResult,
    Machine,
    _make_disk,
    _owner_key,
    _write_default_entry,
    stop_owner_agent,
)

__all__ = [
    "DEMO_DISK_KEY_PASSPHRASE",
    "DEMO_DISK_RECOVERY_PASSPHRASE",
    "GUEST_LUKS_DEVICE",
    "OS_LUKS_BY_KEY_FILE",
    "OS_LUKS_BY_PASSPHRASE",
    "OS_LUKS_PROMPT",
    "DiskKeyTiming",
    "add_demo_disk_key",
    "add_disk_key",
    "add_luks_volume",
    "dialogs_of",
    "disk_key_answers",
    "disk_key_timing",
    "firmware_values",
    "firmware_values_from_transcripts",
    "luks_os_initramfs",
    "owner_backup_drive",
    "say_timing",
    "to_kexec_s",
    "unlock_checks",
    "untouched",
]

#: The volume as the guest sees it (the second NVMe disk, after the OS disk).
GUEST_LUKS_DEVICE: Final = "/dev/nvme1n1"
OS_LUKS_BY_KEY_FILE: Final = "heads-demo-os: luks opened by key file"
OS_LUKS_BY_PASSPHRASE: Final = "heads-demo-os: luks opened by passphrase"  # noqa: S105 - a console line
OS_LUKS_PROMPT: Final = "heads-demo-os: enter the LUKS recovery passphrase"
#: The demo's disk passphrases: published, as the factory reset's (heads.flows.qemu_blank),
#: so they protect nothing (a demo machine only).  The DUK passphrase needs 12 characters.
DEMO_DISK_RECOVERY_PASSPHRASE: Final = "demo-disk-recovery"  # noqa: S105 - published on purpose
DEMO_DISK_KEY_PASSPHRASE: Final = "demo-disk-unlock-key"  # noqa: S105 - published on purpose
#: The factory reset's key backup file (heads.runtime.owner_signer.BACKUP_SECRET: flows do
#: not import the runtime).
_BACKUP_SECRET: Final = "heads-owner-key.asc"  # noqa: S105 - a file name
_MAPPING: Final = "demo-luks"
_DIALOG: Final = r"heads: dialog ([\w-]+): "  # the line renderer's line per dialog
_LUKS_MIB: Final = 24  # the LUKS2 header area takes 16 MiB
_BUSYBOX: Final = Path("/bin/busybox")
_LIB_RE: Final = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")

Say = Callable[[str], None]


def _os_init() -> str:
    # The OS's own crypttab says "none": the key file exists only when Heads appended one
    # (its /etc/crypttab then replaces this one).  Input is not echoed while the DRK is typed.
    return f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mkdir -p /run/cryptsetup
# The volume is attached read-only unless the host says otherwise: open it read-only.
ro="--readonly --disable-locks"
/bin/busybox echo "{OS_MARKER}"
/bin/busybox echo "heads-demo-os: kernel command line: $(/bin/busybox cat /proc/cmdline)"
while read -r name spec keyfile opts; do
  case "$name" in ""|"#"*) continue;; esac
  dev=""
  for d in /dev/nvme*n1; do
    [ "UUID=$(/sbin/cryptsetup luksUUID "$d" 2>/dev/null)" = "$spec" ] && dev="$d"
  done
  [ -n "$dev" ] || {{ /bin/busybox echo "heads-demo-os: no device for $spec"; continue; }}
  if [ "$keyfile" != none ] && [ -r "$keyfile" ] &&
     /sbin/cryptsetup open $ro --key-file "$keyfile" "$dev" "$name"; then
    /bin/busybox echo "{OS_LUKS_BY_KEY_FILE}"
  else
    /bin/busybox stty -F /dev/console -echo || /bin/busybox echo "heads-demo-os: stty failed"
    /bin/busybox echo "{OS_LUKS_PROMPT}"
    read -r pw < /dev/console
    /bin/busybox stty -F /dev/console echo
    if /bin/busybox printf %s "$pw" |
       /sbin/cryptsetup open $ro --key-file=- "$dev" "$name"; then
      /bin/busybox echo "{OS_LUKS_BY_PASSPHRASE}"
    else
      /bin/busybox echo "heads-demo-os: luks NOT opened"
    fi
  fi
  size=$(/bin/busybox blockdev --getsize64 "/dev/mapper/$name" 2>&1)
  /bin/busybox echo "heads-demo-os: /dev/mapper/$name: $size bytes"
done < /etc/crypttab
/bin/busybox poweroff -f
"""


def _libraries(binary: Path) -> list[Path]:
    require_tool("ldd", package="libc-bin")
    out = run(["ldd", str(binary)], desc=f"list the libraries of {binary}").stdout.decode()
    return sorted({Path(m.group(1)) for m in _LIB_RE.finditer(out)})


def luks_os_initramfs(uuid: str) -> bytes:
    """The demo OS initrd with cryptsetup, its libraries and a crypttab for volume ``uuid``.

    Raises:
        ToolError: busybox or cryptsetup missing on this host.
    """
    if not _BUSYBOX.is_file():
        raise ToolError(f"{_BUSYBOX} is missing", hint="apt-get install busybox-static")
    binary = Path(require_tool("cryptsetup", package="cryptsetup-bin"))
    entries = [
        CpioEntry.file("init", _os_init().encode(), executable=True),
        CpioEntry.file("bin/busybox", _BUSYBOX.read_bytes(), executable=True),
        CpioEntry.file("sbin/cryptsetup", binary.read_bytes(), executable=True),
        CpioEntry.file("etc/crypttab", f"{_MAPPING} UUID={uuid} none luks\n".encode()),
        CpioEntry.directory("proc"),
        CpioEntry.directory("sys"),
        CpioEntry.directory("run"),
        CpioEntry.char_device("dev/console", 5, 1),
    ]
    # Each library at the path the loader looks for it (symlinks resolved to their bytes).
    entries += [
        CpioEntry.file(str(lib).lstrip("/"), lib.resolve().read_bytes(), executable=True)
        for lib in _libraries(binary)
    ]
    return build_newc(entries, mtime=0)


def firmware_values(boot: BootResult) -> dict[int, bytes]:
    """PCRs 5 and 6 as the firmware left them, from a boot's console.

    Raises:
        UsageError: the boot did not print them.
    """
    values: dict[int, bytes] = {}
    for line in boot.lines:
        m = re.search(MARK_FIRMWARE_PCR, line.text)
        if m is not None:
            values[int(m.group(1))] = bytes.fromhex(m.group(2))
    if 5 not in values or 6 not in values:
        raise UsageError(
            f"the boot did not show the firmware's PCRs 5 and 6 (see {boot.transcript})"
        )
    return values


def firmware_values_from_transcripts(machine: Machine) -> dict[int, bytes]:
    """PCRs 5 and 6 as the firmware left them, from the newest boot transcript showing them.

    Raises:
        UsageError: no boot of this machine showed them (boot it once first).
    """
    pattern = re.compile(MARK_FIRMWARE_PCR[1:])  # transcript lines start with "[  t] "
    for transcript in sorted((machine.root / "boots").glob("*/console.log"), reverse=True):
        values: dict[int, bytes] = {}
        for line in transcript.read_text(encoding="utf-8", errors="replace").splitlines():
            m = pattern.search(line)
            if m is not None:
                values[int(m.group(1))] = bytes.fromhex(m.group(2))
        if 5 in values and 6 in values:
            return values
    raise UsageError(
        f"no boot of {machine.root} showed the firmware's PCRs 5 and 6",
        hint=f"boot it once first: heads qemu boot {machine.root}",
    )


def add_disk_key(
    machine: Machine,
    *,
    recovery: Secret,
    passphrase: Secret,
    firmware: Mapping[int, bytes],
    say: Say | None = None,
    extra_slots: Sequence[Secret] = (),
    signer: Signer | None = None,
    owner_auth: Secret | None = None,
) -> SealResult:
    """Give the machine a LUKS volume and a disk unlock key for it (see the module text).

    ``extra_slots``: more passphrases put in the volume's other slots (tests).  ``signer``
    signs /boot instead of the host's owner key (a machine whose owner key was made in the
    guest); ``owner_auth`` is the TPM owner passphrase, when the owner set one.

    Raises:
        UsageError: the machine is not provisioned or has no TOTP seal record.
        HeadsError: from cryptsetup, gpg, swtpm or mkfs.
    """
    tell = say or (lambda _m: None)
    volume = _make_volume(machine, recovery, extra_slots, tell)
    uuid = cryptsetup.luks_uuid(volume)
    boot = machine.os_boot
    (boot / OS_INITRD_NAME).write_bytes(luks_os_initramfs(uuid))
    _write_default_entry(boot, OS_APPEND)
    fpr = _owner_key(machine) if signer is None else None
    try:
        with serve_tcp(machine.tpm_state) as server, open_tpm(server.tcti) as tpm:
            result = seal_disk_key(
                tpm,
                targets=[DiskTarget(GUEST_LUKS_DEVICE, volume)],
                recovery=recovery,
                passphrase=passphrase,
                boot_dir=boot,
                values=values_from_totp_record(tpm, firmware),
                profile="uefi",
                owner_auth=owner_auth,
                say=tell,
            )
            # The OS initrd's own crypttab, its key file set (kexec-save-default.sh).
            write_crypttab_overrides(boot, say=tell)
            signed = sign_boot(boot, gnupghome=machine.gnupghome, key=fpr, tpm=tpm, signer=signer)
    finally:
        if fpr is not None:
            stop_owner_agent(machine)
    _make_disk(machine)
    tell(f"/boot signed again (rollback counter {signed.counter_value}); OS disk rebuilt")
    return result


def _make_volume(
    machine: Machine, recovery: Secret, extra_slots: Sequence[Secret], tell: Say
) -> Path:
    if not machine.os_disk.is_file():
        raise UsageError(f"{machine.os_disk} is missing", hint="provision the machine first")
    volume = machine.root / LUKS_DISK_NAME
    tmp = volume.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.truncate(_LUKS_MIB << 20)
    cryptsetup.format_luks(tmp, recovery)
    for i, extra in enumerate(extra_slots, start=1):
        cryptsetup.add_key(tmp, recovery, extra, slot=i)
    tmp.replace(volume)
    uuid = cryptsetup.luks_uuid(volume)
    tell(f"{LUKS_DISK_NAME}: LUKS2 volume {uuid} (the guest's {GUEST_LUKS_DEVICE})")
    return volume


def add_luks_volume(
    machine: Machine,
    *,
    recovery: Secret,
    say: Say | None = None,
    extra_slots: Sequence[Secret] = (),
) -> str:
    """Give the machine the LUKS volume and the demo OS that opens it, without a disk unlock
    key: the owner sets one up in the guest's menus (docs/disk-key.md §In the menus).

    /boot (its OS initrd changed) is signed again with the host's owner key.  Returns the
    volume's UUID.

    Raises:
        UsageError: the machine is not provisioned.
        HeadsError: from cryptsetup, gpg, swtpm or mkfs.
    """
    tell = say or (lambda _m: None)
    volume = _make_volume(machine, recovery, extra_slots, tell)
    uuid = cryptsetup.luks_uuid(volume)
    boot = machine.os_boot
    (boot / OS_INITRD_NAME).write_bytes(luks_os_initramfs(uuid))
    _write_default_entry(boot, OS_APPEND)
    fpr = _owner_key(machine)
    try:
        with serve_tcp(machine.tpm_state) as server, open_tpm(server.tcti) as tpm:
            signed = sign_boot(boot, gnupghome=machine.gnupghome, key=fpr, tpm=tpm)
    finally:
        stop_owner_agent(machine)
    _make_disk(machine)
    tell(f"/boot signed again (rollback counter {signed.counter_value}); OS disk rebuilt")
    return uuid


def owner_backup_drive(
    machine: Machine, path: Path, passphrase: Secret, *, size_mib: int = 32
) -> Path:
    """A FAT USB drive image holding the host owner key's backup, protected by
    ``passphrase``, as the factory reset writes one: the guest signs /boot with it
    ("GPG key backup drive").  The key is re-protected in memory; only the protected form
    is written.

    Raises:
        HeadsError: from gpg, the key or mtools.
    """
    require_tool("mformat", package="mtools")
    fpr = _owner_key(machine)
    try:
        clear = run(
            ["gpg", "--homedir", str(machine.gnupghome), "--batch", "--export-secret-keys", fpr],
            desc="export the owner's key (unprotected on this demo machine)",
        ).stdout
    finally:
        stop_owner_agent(machine)
    key = import_secret(clear, Secret(b""), source=f"{machine.gnupghome} ({fpr})")
    # A low S2K count: the guest runs the S2K under emulation (this protects a test key).
    armored = export_secret(key, passphrase, rng=os.urandom, s2k_count=0)
    with path.open("wb") as f:
        f.truncate(size_mib << 20)
    sectors = (size_mib << 20) // 512
    run(
        [
            "mformat",
            "-i",
            str(path),
            "-v",
            "HEADS-KEY",
            "-T",
            str(sectors),
            "-h",
            "64",
            "-s",
            "32",
            "::",
        ],
        desc="format the backup drive",
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / _BACKUP_SECRET
        src.write_bytes(armored)
        run(
            ["mcopy", "-i", str(path), str(src), f"::{_BACKUP_SECRET}"], desc="write the key backup"
        )
    return path


def _boot_from_disk(machine: Machine, scratch: Path) -> None:
    """Replace the host's copy of /boot with the OS disk's, which the guest signed."""
    from heads.flows.qemu_blank import os_boot_files  # noqa: PLC0415 - it imports this module's base

    dumped = os_boot_files(machine, scratch / "boot")
    # lost+found stays: the signed tree is the one the disk holds (mkfs.ext4 keeps it).
    shutil.rmtree(machine.os_boot)
    shutil.move(dumped, machine.os_boot)


def add_demo_disk_key(
    machine: Machine, *, backup: Path, firmware: Mapping[int, bytes], say: Say | None = None
) -> SealResult:
    """:func:`add_disk_key` for the demo's machine, owned by a factory reset in the guest.

    Its owner key exists only on the key-backup drive ``backup``: the host imports it in
    memory with the demo's backup passphrase to sign /boot again, takes /boot from the OS
    disk (the guest signed it there) and seals with the demo's TPM owner passphrase.  The
    volume's DRK and the DUK passphrase are :data:`DEMO_DISK_RECOVERY_PASSPHRASE` and
    :data:`DEMO_DISK_KEY_PASSPHRASE`.

    Raises:
        HeadsError: from debugfs, mtools, the key backup, cryptsetup, swtpm or mkfs.
    """
    from heads.flows.qemu_blank import (  # noqa: PLC0415 - it imports this module's base
        DEMO_BACKUP_PASSPHRASE,
        DEMO_OWNER_PASSPHRASE,
        usb_file,
    )

    with tempfile.TemporaryDirectory(dir=machine.root) as tmp:
        scratch = Path(tmp)
        _boot_from_disk(machine, scratch)
        armored = usb_file(backup, _BACKUP_SECRET, scratch / _BACKUP_SECRET).read_bytes()
    key = import_secret(
        armored,
        Secret(DEMO_BACKUP_PASSPHRASE.encode()),
        source=f"{backup.name}:{_BACKUP_SECRET}",
    )
    return add_disk_key(
        machine,
        recovery=Secret(DEMO_DISK_RECOVERY_PASSPHRASE.encode()),
        passphrase=Secret(DEMO_DISK_KEY_PASSPHRASE.encode()),
        firmware=firmware,
        say=say,
        signer=OwnerKeySigner(key, time.time),
        owner_auth=Secret(DEMO_OWNER_PASSPHRASE.encode()),
    )


def disk_key_answers() -> list[tuple[str, str]]:
    """The scripted answers that boot the default entry typing the demo's DUK passphrase.
    They hold a passphrase: hand them only to :func:`heads.flows.qemu_platform.boot_machine`
    (a 0600 answer file, removed after the boot)."""
    return [("main-menu", "d"), ("disk-key-passphrase", DEMO_DISK_KEY_PASSPHRASE)]


def dialogs_of(boot: BootResult) -> list[str]:
    """The ids of the dialogs the boot showed, in order."""
    return [m.group(1) for ln in boot.lines if (m := re.search(_DIALOG, ln.text))]


@dataclass(frozen=True, slots=True)
class DiskKeyTiming:
    """What the disk unlock key took in a boot, in seconds (from the console's timestamps).

    Attributes:
        headers_s: /boot verified ("default entry") to "headers measured into PCR 6".
        released_s: the passphrase dialog to "disk key: released".
        unseal_s: the TPM unseal alone, as the runtime reported it.
        to_kexec_s: /boot verified to kexec (compare with a boot without the key).
    """

    headers_s: float
    released_s: float
    unseal_s: float
    to_kexec_s: float


def _t(boot: BootResult, pattern: str) -> tuple[float, re.Match[str]] | None:
    regex = re.compile(pattern)
    for line in boot.lines:
        m = regex.search(line.text)
        if m is not None:
            return line.t_s, m
    return None


def to_kexec_s(boot: BootResult) -> float | None:
    """Seconds from /boot verified (the default entry shown) to kexec, if both appear."""
    start, kexec = _t(boot, r"^heads: default entry:"), _t(boot, r"^heads: kexec ")
    return None if start is None or kexec is None else kexec[0] - start[0]


def disk_key_timing(boot: BootResult) -> DiskKeyTiming | None:
    """The disk key's steps in a boot that released it, or None when it did not."""
    start = _t(boot, r"^heads: default entry:")
    measured = _t(boot, r"^heads: disk key: LUKS headers .* measured into PCR 6")
    asked = _t(boot, r"heads: dialog disk-key-passphrase: ")
    released = _t(boot, r"^heads: disk key: released in ([\d.]+) s")
    total = to_kexec_s(boot)
    if start is None or measured is None or asked is None or released is None or total is None:
        return None
    return DiskKeyTiming(
        headers_s=measured[0] - start[0],
        released_s=released[0] - asked[0],
        unseal_s=float(released[1].group(1)),
        to_kexec_s=total,
    )


def _has(boot: BootResult, text: str) -> bool:
    return any(text in line.text for line in boot.lines)


def unlock_checks(label: str, boot: BootResult) -> list[tuple[str, bool]]:
    """The demo's checks of a boot typing the DUK passphrase (:func:`disk_key_answers`);
    ``label`` names the boot in them ("boot 2")."""
    return [
        (
            f"{label}: DUK passphrase asked once (dialog disk-key-passphrase)",
            dialogs_of(boot).count("disk-key-passphrase") == 1,
        ),
        (
            f"{label}: disk key released and handed to the OS initrd",
            disk_key_timing(boot) is not None,
        ),
        (
            f"{label}: OS opened its LUKS volume by key file (no DRK prompt)",
            _has(boot, OS_LUKS_BY_KEY_FILE) and not _has(boot, OS_LUKS_PROMPT),
        ),
        (
            f"{label}: DUK passphrase never on the console",
            not _has(boot, DEMO_DISK_KEY_PASSPHRASE),
        ),
    ]


def untouched(boot: BootResult) -> bool:
    """No disk-key step ran: no header measured, no passphrase asked, no key archive, no OS."""
    return (
        "disk-key-passphrase" not in dialogs_of(boot)
        and not _has(boot, "heads: disk key")
        and not boot.os_up
    )


def say_timing(boot: BootResult, baseline: BootResult, say: Say) -> None:
    """Print what the disk key added to ``boot``, against ``baseline`` (a boot without it)."""
    timing = disk_key_timing(boot)
    base = to_kexec_s(baseline)
    if timing is None or base is None:
        say("disk key: no timing (the key was not released; see the console transcript)")
        return
    say(
        f"disk key (guest, TCG): headers measured {timing.headers_s:.2f} s after /boot "
        f"verified; passphrase to key released {timing.released_s:.2f} s (TPM unseal "
        f"{timing.unseal_s:.2f} s); /boot verified to kexec {timing.to_kexec_s:.1f} s, "
        f"{base:.1f} s without the key (+{timing.to_kexec_s - base:.1f} s)"
    )
