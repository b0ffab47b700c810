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

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from heads.adapters import cryptsetup
from heads.adapters._run import require_tool, run
from heads.adapters.swtpm import serve_tcp
from heads.adapters.tpm import open_tpm
from heads.core.cpio import CpioEntry, build_newc
from heads.core.platform import MARK_FIRMWARE_PCR
from heads.core.secret import Secret
from heads.errors import ToolError, UsageError
from heads.flows.boot_signing import sign_boot
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
)

__all__ = [
    "GUEST_LUKS_DEVICE",
    "OS_LUKS_BY_KEY_FILE",
    "OS_LUKS_BY_PASSPHRASE",
    "OS_LUKS_PROMPT",
    "add_disk_key",
    "firmware_values",
    "firmware_values_from_transcripts",
    "luks_os_initramfs",
]

#: The volume as the guest sees it (the second NVMe disk, after the OS disk).
GUEST_LUKS_DEVICE: Final = "/dev/nvme1n1"
OS_LUKS_BY_KEY_FILE: Final = "heads-demo-os: luks opened by key file"
OS_LUKS_BY_PASSPHRASE: Final = "heads-demo-os: luks opened by passphrase"  # noqa: S105 - a console line
OS_LUKS_PROMPT: Final = "heads-demo-os: enter the LUKS recovery passphrase"
_MAPPING: Final = "demo-luks"
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
) -> SealResult:
    """Give the machine a LUKS volume and a disk unlock key for it (see the module text).

    ``extra_slots``: more passphrases put in the volume's other slots (tests).

    Raises:
        UsageError: the machine is not provisioned or has no TOTP seal record.
        HeadsError: from cryptsetup, gpg, swtpm or mkfs.
    """
    tell = say or (lambda _m: None)
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

    boot = machine.os_boot
    (boot / OS_INITRD_NAME).write_bytes(luks_os_initramfs(uuid))
    _write_default_entry(boot, OS_APPEND)
    fpr = _owner_key(machine)
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
                say=tell,
            )
            signed = sign_boot(boot, gnupghome=machine.gnupghome, key=fpr, tpm=tpm)
    finally:
        run(
            ["gpgconf", "--homedir", str(machine.gnupghome), "--kill", "gpg-agent"],
            desc="stop the owner's gpg-agent",
            check=False,
        )
    _make_disk(machine)
    tell(f"/boot signed again (rollback counter {signed.counter_value}); OS disk rebuilt")
    return result
