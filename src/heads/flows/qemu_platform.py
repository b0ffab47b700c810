"""The QEMU platform: a machine directory, its provisioning on the host, its boots, the demo.

A machine directory holds what a real Heads machine would hold in hardware, plus the owner's
side::

    machine.json        fixed machine settings (RAM, kernel command line, TOTP label, flash
                        chip size)
    tpm/                the machine's swtpm state (manufactured once, kept across boots)
    flash.rom           the firmware: a flash image (FMAP + CBFS, :mod:`heads.core.qemu_flash`)
                        holding the board name, the payload (payload/kernel, payload/initrd,
                        payload/cmdline) and the user files heads/initrd/.gnupg/pubring.kbx
                        and heads/initrd/etc/config.user;
                        the guest sees it as a writable NVMe disk and flashes it with flashrom
    loaded/             what the host loaded out of flash.rom for the current boot, as coreboot
                        would: the payload's kernel and initramfs (OVMF's -kernel/-initrd) and
                        user.rom, a small CBFS of the user files for fw_cfg (a change moves
                        PCR 7 only)
    os-disk.img         the OS disk: ext4 made with ``mkfs.ext4 -d`` from os-boot/ (never
                        mounted on the host); the guest sees it as /dev/nvme0n1 = /boot
    os-boot/            the disk's content: a kernel (the payload's own: the demo OS needs
                        nothing more than it has built in), a small OS initramfs whose init
                        prints ``heads-demo-os: up`` and powers off, grub/grub.cfg, and the
                        signed Heads files (kexec_hashes.txt, kexec.sig, ...)
    owner/gnupg/        the owner's GNUPGHOME: the private key never enters the guest
    boots/NNN/          console transcript of each boot

The payload and the user files are read out of flash.rom at every boot, so what the guest
flashed is what the next boot runs.  The owner's side runs on the host while the guest is
off: the signing flow bumps the rollback counter in the machine's own TPM, reached over TCP
(``heads.adapters.swtpm.serve_tcp``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from heads.adapters._run import require_tool, run
from heads.adapters.atomic import write_atomic
from heads.adapters.pinned import sha256_file
from heads.adapters.qemu import (
    DEFAULT_MEMORY_MIB,
    ConsoleLine,
    QemuConsole,
    QemuSpec,
    choose_accel,
    run_interactive,
)
from heads.adapters.swtpm import is_manufactured, manufacture, serve_qemu, serve_tcp
from heads.adapters.tpm import open_tpm
from heads.core.answers import format_answers
from heads.core.bootcfg import BootEntry, EntryKind
from heads.core.cbfs import CbfsFile
from heads.core.cpio import CpioEntry, build_newc
from heads.core.flash_image import FlashImage
from heads.core.otp import parse_otpauth_uri, totp_code
from heads.core.platform import (
    ANSWERS_FW_CFG,
    MARK_INIT,
    MARK_KEXEC,
    MARK_LOG,
    MARK_REPORT,
    MARK_TOTP,
    MARK_URI,
)
from heads.core.qemu_flash import (
    CONFIG_USER,
    DEFAULT_FLASH_SIZE,
    FW_CFG_FLASH_CONFIG_USER,
    build_flash,
    fitting_flash_size,
    payload_of,
    user_file_rom,
    user_files_of,
)
from heads.errors import FormatError, ToolError, UsageError
from heads.flows.boot_signing import sign_boot

__all__ = [
    "BootResult",
    "DemoPayload",
    "DemoReport",
    "Machine",
    "Provisioned",
    "boot_interactive",
    "boot_machine",
    "cached_payload",
    "create_machine",
    "demo_flash_size",
    "flash_size_for",
    "provision_machine",
    "redact_console",
    "run_demo",
    "stop_owner_agent",
    "tamper_os_kernel",
    "totp_matches",
    "write_os_disk",
    "write_payload",
]

Say = Callable[[str], None]

MACHINE_FORMAT: Final = 1
#: The payload's kernel command line.  It is measured into PCR 9: never vary it per boot.
DEFAULT_APPEND: Final = "console=ttyS0 quiet"
OS_MARKER: Final = "heads-demo-os: up"
OS_KERNEL_NAME: Final = "vmlinuz-demo"
OS_INITRD_NAME: Final = "initrd.img-demo"
OS_APPEND: Final = "console=ttyS0 quiet heads_demo_os=1"
OWNER_UID: Final = "Heads QEMU owner <owner@heads.invalid>"
_DISK_MIB: Final = 64
#: A LUKS volume of the demo OS (flows/qemu_luks.py), attached after the OS disk when present.
LUKS_DISK_NAME: Final = "os-luks.img"
_BUSYBOX: Final = Path("/bin/busybox")
_BOOT_TIMEOUT_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class Machine:
    """A machine directory and its fixed settings."""

    root: Path
    memory_mib: int = DEFAULT_MEMORY_MIB
    append: str = DEFAULT_APPEND
    label: str = "heads-qemu"
    flash_size: int = DEFAULT_FLASH_SIZE

    @property
    def tpm_state(self) -> Path:
        return self.root / "tpm"

    @property
    def flash(self) -> Path:
        return self.root / "flash.rom"

    @property
    def loaded(self) -> Path:
        return self.root / "loaded"

    @property
    def rom(self) -> Path:
        """The user-file CBFS handed to fw_cfg (made from flash.rom at each boot)."""
        return self.loaded / "user.rom"

    @property
    def os_boot(self) -> Path:
        return self.root / "os-boot"

    @property
    def os_disk(self) -> Path:
        return self.root / "os-disk.img"

    @property
    def gnupghome(self) -> Path:
        return self.root / "owner" / "gnupg"

    @property
    def keyring(self) -> Path:
        return self.root / "owner" / "pubring.gpg"

    @classmethod
    def load(cls, root: Path) -> Machine:
        """Read ``root/machine.json``.

        Raises:
            UsageError: not a machine directory.
            FormatError: machine.json is malformed.
        """
        path = root / "machine.json"
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"{root} is not a machine directory ({path}: {exc.strerror})",
                hint=f"create it first: heads qemu create {root}",
            ) from None
        try:
            obj = json.loads(raw)
            if obj.get("format") != MACHINE_FORMAT:
                raise ValueError(f"unknown format {obj.get('format')!r}")
            return cls(
                root=root,
                memory_mib=int(obj["memory_mib"]),
                append=str(obj["append"]),
                label=str(obj["label"]),
                flash_size=int(obj.get("flash_size", DEFAULT_FLASH_SIZE)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"bad machine settings: {exc}", source=str(path)) from None

    def save(self) -> None:
        obj = {
            "format": MACHINE_FORMAT,
            "memory_mib": self.memory_mib,
            "append": self.append,
            "label": self.label,
            "flash_size": self.flash_size,
        }
        write_atomic(self.root / "machine.json", json.dumps(obj, indent=2).encode() + b"\n")


def create_machine(
    root: Path,
    *,
    force: bool = False,
    say: Say | None = None,
    flash_size: int = DEFAULT_FLASH_SIZE,
) -> Machine:
    """Make a new machine directory with a freshly manufactured TPM and a flash chip of
    ``flash_size`` bytes (16 MiB unless the payload does not fit: :func:`flash_size_for`).

    Raises:
        UsageError: the directory exists and ``force`` is not set, or a bad chip size.
        ToolError: swtpm_setup failed.
    """
    tell = say or (lambda _m: None)
    if flash_size < 1024 * 1024 or flash_size > 64 * 1024 * 1024 or flash_size & (flash_size - 1):
        raise UsageError(f"a flash chip of {flash_size} bytes is not a power of two of 1-64 MiB")
    if root.exists() and any(root.iterdir()):
        if not force:
            raise UsageError(
                f"{root} already exists and is not empty",
                hint="pick another directory or pass --force to start over",
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    machine = Machine(root=root.resolve(), flash_size=flash_size)
    machine.save()
    manufacture(machine.tpm_state)
    tell(
        f"machine created in {root} (TPM manufactured: sha1+sha256 banks; "
        f"{flash_size // 2**20} MiB flash chip)"
    )
    return machine


# ------------------------------------------------------------------------------ provisioning


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What provisioning made: the owner key and the files the guest will see."""

    fingerprint: str
    flash: Path
    os_disk: Path
    signed_files: tuple[str, ...] = ()


def _gpg(home: Path, *args: str, desc: str) -> bytes:
    return run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args], desc=desc, timeout_s=120
    ).stdout


def _owner_key(machine: Machine) -> str:
    """The owner's signing key (generated once: ed25519, no passphrase on this demo machine)."""
    home = machine.gnupghome
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    listing = _gpg(home, "--with-colons", "--list-secret-keys", desc="list owner keys").decode()
    if "\nfpr:" not in "\n" + listing:
        _gpg(
            home,
            "--passphrase",
            "",
            "--quick-gen-key",
            OWNER_UID,
            "ed25519",
            "sign",
            "never",
            desc="generate the owner's OpenPGP key",
        )
        listing = _gpg(home, "--with-colons", "--list-secret-keys", desc="list owner keys").decode()
    for line in listing.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise ToolError(f"gpg made no key in {home}")


def _user_files(machine: Machine, keyring: bytes) -> list[CbfsFile]:
    config = (
        "# heads user configuration (firmware image, measured into PCR 7)\n"
        'export CONFIG_BOOT_DEV="/dev/nvme0n1"\n'
        f'export CONFIG_TOTP_LABEL="{machine.label}"\n'
    ).encode()
    return [
        CbfsFile("heads/initrd/.gnupg/pubring.kbx", keyring),
        CbfsFile(CONFIG_USER, config),
    ]


def flash_size_for(payload_bytes: int) -> int:
    """16 MiB when a payload of ``payload_bytes`` fits it, else the next size that does.

    Raises:
        UsageError: no chip of up to 64 MiB holds it.
    """
    try:
        return fitting_flash_size(payload_bytes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _write_flash(machine: Machine, kernel: bytes, initramfs: bytes, files: list[CbfsFile]) -> None:
    try:
        image = build_flash(
            kernel, initramfs, files, cmdline=machine.append, size=machine.flash_size
        )
    except ValueError as exc:
        raise UsageError(
            str(exc),
            hint=f"make the machine with a larger chip: heads qemu create --force "
            f"--flash-size {flash_size_for(len(kernel) + len(initramfs)) // 2**20} "
            f"{machine.root}",
        ) from None
    write_atomic(machine.flash, image.to_bytes())


def _read_flash(machine: Machine) -> FlashImage:
    try:
        data = machine.flash.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"cannot read the flash image {machine.flash}: {exc.strerror}",
            hint=f"provision the machine first: heads qemu provision {machine.root}",
        ) from None
    return FlashImage.from_bytes(data, source=str(machine.flash), expected_size=machine.flash_size)


def write_payload(machine: Machine, *, kernel: Path, initramfs: Path) -> None:
    """Put another payload into flash.rom, keeping the user files (as an external programmer
    would write a new build with the owner's settings kept).

    Raises:
        UsageError: no flash image yet, or the payload does not fit.
        FormatError: flash.rom is not a valid image.
    """
    files = user_files_of(_read_flash(machine))
    _write_flash(machine, kernel.read_bytes(), initramfs.read_bytes(), files)


_OS_INIT: Final = f"""#!/bin/busybox sh
# The demo OS: proves that kexec reached it, then powers off.
/bin/busybox mount -t proc proc /proc
/bin/busybox echo "{OS_MARKER}"
/bin/busybox echo "heads-demo-os: kernel command line: $(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
"""


def _os_initramfs() -> bytes:
    if not _BUSYBOX.is_file():
        raise ToolError(f"{_BUSYBOX} is missing", hint="apt-get install busybox-static")
    entries = [
        CpioEntry.file("init", _OS_INIT.encode(), executable=True),
        CpioEntry.file("bin/busybox", _BUSYBOX.read_bytes(), executable=True),
        CpioEntry.directory("proc"),
        CpioEntry.char_device("dev/console", 5, 1),
    ]
    return build_newc(entries, mtime=0)


def _grub_cfg(append: str) -> str:
    return (
        "set default=0\nset timeout=5\n\n"
        "menuentry 'Heads demo OS' {\n"
        f"\tlinux /{OS_KERNEL_NAME} {append}\n"
        f"\tinitrd /{OS_INITRD_NAME}\n"
        "}\n"
    )


def stop_owner_agent(machine: Machine) -> None:
    """Stop the gpg-agent that signing with the owner's key in ``machine`` started (a test
    or demo must leave no daemon behind)."""
    run(
        ["gpgconf", "--homedir", str(machine.gnupghome), "--kill", "gpg-agent"],
        desc="stop the owner's gpg-agent",
        check=False,
    )


def _make_disk(machine: Machine) -> None:
    require_tool("mkfs.ext4", package="e2fsprogs")
    tmp = machine.os_disk.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with tmp.open("wb") as f:
        f.truncate(_DISK_MIB * 1024 * 1024)
    # -d copies the tree without mounting; fixed UUID/hash seed keep the image stable.
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "boot",
            "-U",
            "6c1b4a9e-2d3f-4b5a-8c7d-1e2f3a4b5c6d",
            "-E",
            "hash_seed=0b6e7f2a-1c3d-4e5f-9a8b-7c6d5e4f3a2b,root_owner=0:0",
            "-d",
            str(machine.os_boot),
            str(tmp),
        ],
        desc="build the OS disk",
        timeout_s=120,
        env={"E2FSPROGS_FAKE_TIME": "1700000000"},
    )
    tmp.replace(machine.os_disk)


def _write_default_entry(boot: Path, append: str) -> None:
    """kexec_default.1.txt + kexec_default_hashes.txt (kexec-save-default.sh formats)."""
    entry = BootEntry(
        title="Heads demo OS",
        kind=EntryKind.ELF,
        kernel=f"/{OS_KERNEL_NAME}",
        initrds=(f"/{OS_INITRD_NAME}",),
        cmdline=append,
    )
    (boot / "kexec_default.1.txt").write_text(entry.to_line() + "\n")
    hashes = "".join(f"{sha256_file(boot / p.lstrip('/'))}  .{p}\n" for p in entry.files)
    (boot / "kexec_default_hashes.txt").write_text(hashes)


def provision_machine(
    machine: Machine,
    *,
    kernel: Path,
    initramfs: Path,
    os_kernel: Path | None = None,
    say: Say | None = None,
) -> Provisioned:
    """The owner's side: key, the flash image (payload + user files), OS disk with a signed
    /boot.

    Args:
        machine: the machine (guest off).
        kernel: the payload kernel written into the flash image.
        initramfs: the payload initramfs written into the flash image.
        os_kernel: the Debian kernel the OS disk boots (default: the payload kernel).
        say: progress lines.

    Raises:
        UsageError: no TPM, missing files, or the payload does not fit the flash chip.
        HeadsError: from gpg, swtpm, signing or mkfs.
    """
    tell = say or (lambda _m: None)
    os_kernel = os_kernel or kernel
    if not is_manufactured(machine.tpm_state):
        raise UsageError(f"{machine.root} has no TPM yet", hint="run heads qemu create first")
    for path in (kernel, initramfs, os_kernel):
        if not path.is_file():
            raise UsageError(
                f"no payload file at {path}",
                hint="build the payload first (heads build) or pass --payload DIR",
            )
    payload_kernel, payload_initramfs = kernel.read_bytes(), initramfs.read_bytes()
    fpr = _owner_key(machine)
    keyring = _gpg(machine.gnupghome, "--export", fpr, desc="export the owner's public key")
    write_atomic(machine.keyring, keyring)
    _write_flash(machine, payload_kernel, payload_initramfs, _user_files(machine, keyring))
    tell(
        f"owner key {fpr[-16:]}; payload, public keyring and config.user written to "
        f"{machine.flash.name} ({machine.flash_size // 2**20} MiB)"
    )

    boot = machine.os_boot
    if boot.exists():
        shutil.rmtree(boot)
    (boot / "grub").mkdir(parents=True)
    # mkfs.ext4 makes lost+found; sign the tree as the disk will hold it.
    (boot / "lost+found").mkdir()
    shutil.copyfile(os_kernel, boot / OS_KERNEL_NAME)
    (boot / OS_INITRD_NAME).write_bytes(_os_initramfs())
    (boot / "grub" / "grub.cfg").write_text(_grub_cfg(OS_APPEND))
    _write_default_entry(boot, OS_APPEND)
    try:
        with serve_tcp(machine.tpm_state) as server, open_tpm(server.tcti) as tpm:
            result = sign_boot(boot, gnupghome=machine.gnupghome, key=fpr, tpm=tpm)
    finally:
        stop_owner_agent(machine)
    _make_disk(machine)
    tell(
        f"OS disk {machine.os_disk.name}: /boot signed ({result.files_hashed} files, "
        f"rollback counter {result.counter_value})"
    )
    return Provisioned(fpr, machine.flash, machine.os_disk, result.signed_files)


def tamper_os_kernel(machine: Machine) -> str:
    """Flip one byte of the OS kernel inside the disk image; returns the file's /boot path.

    Raises:
        UsageError: the kernel's data could not be located in the image.
    """
    kernel = (machine.os_boot / OS_KERNEL_NAME).read_bytes()
    image = bytearray(machine.os_disk.read_bytes())
    # A 4 KiB block from the middle of the kernel: ext4 stores it whole and block-aligned.
    probe_at = (len(kernel) // 2) // 4096 * 4096
    probe = kernel[probe_at : probe_at + 4096]
    pos = image.find(probe)
    if pos < 0 or image.find(probe, pos + 1) >= 0:
        raise UsageError(f"cannot locate {OS_KERNEL_NAME} uniquely in {machine.os_disk}")
    image[pos + 100] ^= 0x01
    write_atomic(machine.os_disk, bytes(image))
    return f"/{OS_KERNEL_NAME}"


def write_os_disk(machine: Machine, *, sign: bool) -> None:
    """Rebuild the OS disk from the host's copy of /boot (``machine.os_boot``) after a change
    to it, signed first by the owner's key with the machine's TPM counter when ``sign``.

    Raises:
        UsageError: the machine has no owner key yet (provision it first).
        HeadsError: from gpg, swtpm, signing or mkfs.
    """
    if not sign:
        _make_disk(machine)
        return
    if not machine.gnupghome.is_dir():
        raise UsageError(f"{machine.root} has no owner key", hint="provision the machine first")
    fpr = _owner_key(machine)
    try:
        with serve_tcp(machine.tpm_state) as server, open_tpm(server.tcti) as tpm:
            sign_boot(machine.os_boot, gnupghome=machine.gnupghome, key=fpr, tpm=tpm)
    finally:
        stop_owner_agent(machine)
    _make_disk(machine)


# ----------------------------------------------------------------------------------- booting


@dataclass(frozen=True, slots=True)
class BootResult:
    """What one boot showed on the console.

    Attributes:
        transcript: the console transcript file.
        returncode: QEMU's exit status.
        marks: seconds from QEMU start to ``init`` (first line of /init), ``python``
            (interpreter up), ``runtime`` (runtime imported), ``totp`` (code shown),
            ``kexec`` and ``os`` (the OS's marker); absent when not reached.
        totp: (code, UTC time string) the runtime showed, if any.
        otpauth_uri: the provisioning URI (first boot only).
        os_up: the OS printed its marker.
        refusal: the integrity report's reason, if the boot was refused.
        report: the integrity report's detail lines.
        log: our measurement log as printed: (pcr, kind, what) per record.
        lines: the whole console.
    """

    transcript: Path
    returncode: int
    marks: dict[str, float]
    totp: tuple[str, str] | None
    otpauth_uri: str | None
    os_up: bool
    refusal: str | None
    report: tuple[str, ...]
    log: tuple[tuple[int, str, str], ...]
    lines: tuple[ConsoleLine, ...] = field(repr=False)


_RE_SECRET: Final = re.compile(r"(secret=)[A-Za-z2-7=]+")
_QR_CHARS: Final = frozenset("█▀▄ ")


def redact_console(text: str) -> str:
    """A console line fit for the transcript file: TOTP secrets and QR codes removed."""
    if len(text) > 8 and set(text) <= _QR_CHARS:
        return "[QR code line not kept]"
    return _RE_SECRET.sub(r"\1****", text)


def _next_boot_dir(machine: Machine) -> Path:
    boots = machine.root / "boots"
    boots.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(p.name) for p in boots.iterdir() if p.name.isdigit()), default=0)
    path = boots / f"{n:03d}"
    path.mkdir()
    return path


def _load_firmware(machine: Machine) -> tuple[Path, Path, str]:
    """Read the payload and the user files out of flash.rom into loaded/, as coreboot would.

    Returns:
        The kernel and initramfs files for OVMF and the command line the image carries
        (``machine.rom`` holds the user files).

    Raises:
        UsageError: no flash image yet.
        FormatError: flash.rom is damaged or lacks the payload.
    """
    image = _read_flash(machine)
    kernel, initramfs, cmdline = payload_of(image)
    machine.loaded.mkdir(exist_ok=True)
    paths = (machine.loaded / "kernel", machine.loaded / "initramfs")
    write_atomic(paths[0], kernel)
    write_atomic(paths[1], initramfs)
    write_atomic(machine.rom, user_file_rom(user_files_of(image)))
    return paths[0], paths[1], cmdline


def _spec(
    machine: Machine,
    tpm_socket: Path,
    mode: str,
    extra_fw_cfg: tuple[tuple[str, Path], ...] = (),
    *,
    usb_disks: tuple[Path, ...] = (),
    disks_writable: bool = False,
) -> QemuSpec:
    if not machine.os_disk.is_file():
        raise UsageError(f"{machine.os_disk} is missing", hint="provision the machine first")
    kernel, initrd, cmdline = _load_firmware(machine)
    return QemuSpec(
        kernel=kernel,
        initrd=initrd,
        append=cmdline,
        tpm_socket=tpm_socket,
        fw_cfg=(("opt/heads/rom", machine.rom), *extra_fw_cfg),
        fw_cfg_strings=(("opt/heads/mode", mode),),
        disks=(machine.os_disk, *[d for d in (machine.root / LUKS_DISK_NAME,) if d.is_file()]),
        disks_writable=disks_writable,
        usb_disks=usb_disks,
        flash=machine.flash,
        memory_mib=machine.memory_mib,
        accel=choose_accel(),
    )


def _first(lines: Sequence[ConsoleLine], pattern: str) -> tuple[ConsoleLine, re.Match[str]] | None:
    regex = re.compile(pattern)
    for line in lines:
        m = regex.search(line.text)
        if m is not None:
            return line, m
    return None


def _result(transcript: Path, rc: int, lines: Sequence[ConsoleLine]) -> BootResult:
    marks: dict[str, float] = {}
    for name, pattern in (
        ("init", MARK_INIT),
        ("python", r"^heads: python started"),
        ("runtime", r"^heads: runtime started"),
        ("totp", MARK_TOTP),
        ("kexec", MARK_KEXEC),
        ("os", "^" + re.escape(OS_MARKER)),
    ):
        hit = _first(lines, pattern)
        if hit is not None:
            marks[name] = hit[0].t_s
    totp = _first(lines, MARK_TOTP)
    uri = _first(lines, MARK_URI)
    refusal = _first(lines, MARK_REPORT)
    report: list[str] = []
    if refusal is not None:
        start = lines.index(refusal[0]) + 1
        for line in lines[start:]:
            if not line.text.startswith("heads:   "):
                break
            report.append(line.text.removeprefix("heads:   "))
    log = tuple(
        (int(m.group(1)), m.group(2), m.group(3))
        for line in lines
        if (m := re.search(MARK_LOG, line.text)) is not None
    )
    return BootResult(
        transcript=transcript,
        returncode=rc,
        marks=marks,
        totp=(totp[1].group(1), totp[1].group(2)) if totp else None,
        otpauth_uri=uri[1].group(1) if uri else None,
        os_up="os" in marks,
        refusal=refusal[1].group(1) if refusal else None,
        report=tuple(report),
        log=log,
        lines=tuple(lines),
    )


def boot_machine(
    machine: Machine,
    *,
    echo: Callable[[ConsoleLine], None] | None = None,
    timeout_s: float = _BOOT_TIMEOUT_S,
    answers: Sequence[tuple[str, str]] = (),
    flash_config_user: bytes | None = None,
    usb_disks: Sequence[Path] = (),
    disks_writable: bool = False,
    typed: Sequence[tuple[str, str]] = (),
    replies: Sequence[tuple[str, str]] = (),
) -> BootResult:
    """Boot the machine once from its flash image, non-interactively, until it powers off.

    Args:
        machine: the provisioned machine.
        echo: called with each console line as it arrives.
        timeout_s: the guest must power off within this.
        flash_config_user: ask the guest to flash its image with this ``config.user`` once
            the boot passed the integrity gate (it then powers off instead of kexec).
        usb_disks: disk images plugged in as USB drives (writable).
        disks_writable: the guest may write the OS disk (the runtime signs /boot).
        typed: (pattern, text) pairs: once a console line matches the pattern (after the
            previous one's), type the text and Enter.  Such a boot is interactive (fw_cfg
            ``opt/heads/mode``): the recovery shell starts instead of a power-off, so the
            text must end the boot (``poweroff -f``).
        replies: (pattern, line) pairs, in order: once a console line matches the next
            pattern, the line is typed on the serial console (the demo OS's prompts).

    ``answers`` (dialog id, choice) drive the runtime's menus (docs/runtime-menus.md); the
    guest reads them from fw_cfg ``opt/heads/answers``.  Without answers the runtime takes
    its unattended path.  The answer file may hold passphrases: it is readable by its owner
    only and removed when the boot ends.

    Raises:
        UsageError: the machine is not provisioned.
        FormatError: flash.rom is damaged.
        ToolError: QEMU or swtpm failed, or the guest did not power off in time (the error
            names the console transcript, which is kept).
    """
    boot_dir = _next_boot_dir(machine)
    transcript = boot_dir / "console.log"
    extra: tuple[tuple[str, Path], ...] = ()
    if flash_config_user is not None:
        request = boot_dir / "flash-config.user"
        write_atomic(request, flash_config_user)
        extra = ((FW_CFG_FLASH_CONFIG_USER, request),)
    answers_file = boot_dir / "answers" if answers else None
    if answers_file is not None:
        write_atomic(answers_file, format_answers(answers), mode=0o600)
        extra = (*extra, (ANSWERS_FW_CFG, answers_file))
    try:
        with serve_qemu(machine.tpm_state) as swtpm:
            assert swtpm.ctrl_socket is not None  # noqa: S101 - serve_qemu always sets it
            spec = _spec(
                machine,
                swtpm.ctrl_socket,
                "interactive" if typed else "batch",
                extra,
                usb_disks=tuple(usb_disks),
                disks_writable=disks_writable,
            )
            pending = list(replies)
            typing: list[QemuConsole] = []

            def on_line(line: ConsoleLine) -> None:
                if echo is not None:
                    echo(line)
                if pending and typing and re.search(pending[0][0], line.text):
                    typing[0].send_line(pending.pop(0)[1])

            with QemuConsole(
                spec, transcript=transcript, echo=on_line, redact=redact_console
            ) as console:
                typing.append(console)
                after = 0
                for pattern, text in typed:
                    after, _match = console.expect(pattern, timeout_s=timeout_s, start=after)
                    after += 1
                    console.send_line(text)
                rc = console.wait(timeout_s=timeout_s)
                lines = list(console.lines)
    finally:
        if answers_file is not None:
            answers_file.unlink(missing_ok=True)
    return _result(transcript, rc, lines)


def boot_interactive(machine: Machine) -> int:
    """Boot from the flash image with the serial console on this terminal; returns QEMU's
    exit status.

    Raises:
        UsageError: the machine is not provisioned.
        ToolError: QEMU or swtpm failed to start.
    """
    with serve_qemu(machine.tpm_state) as swtpm:
        assert swtpm.ctrl_socket is not None  # noqa: S101 - serve_qemu always sets it
        spec = _spec(machine, swtpm.ctrl_socket, "interactive")
        return run_interactive(spec)


# -------------------------------------------------------------------------------------- demo


@dataclass(frozen=True, slots=True)
class DemoPayload:
    """The payload the demo boots."""

    kernel: Path
    initramfs: Path
    built: bool  # False: reused from an earlier build of the same inputs


def _payload_key(lock_path: Path, sources: Path) -> str:
    """Digest of what the payload is built from: the lock and every file of the package."""
    h = hashlib.sha256(lock_path.read_bytes())
    for path in sorted(sources.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(sources)).encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def cached_payload(out_dir: Path, *, cache_dir: Path, say: Say | None = None) -> DemoPayload:
    """Build the payload into ``out_dir``, or reuse the one there if its inputs are the same.

    Raises:
        HeadsError: from the payload builder.
    """
    import heads  # noqa: PLC0415 - only to locate the package sources for the cache key
    from heads.flows.image_build import DEFAULT_LOCK, build_payload  # noqa: PLC0415 - heavy

    tell = say or (lambda _m: None)
    key = _payload_key(DEFAULT_LOCK, Path(heads.__file__).resolve().parent)
    stamp = out_dir / "demo-inputs.sha256"
    kernel, initramfs = out_dir / "vmlinuz", out_dir / "initramfs.cpio.zst"
    try:
        reuse = stamp.read_text().strip() == key and kernel.is_file() and initramfs.is_file()
    except OSError:
        reuse = False
    if reuse:
        tell(f"payload: reusing {out_dir} (same inputs)")
        return DemoPayload(kernel, initramfs, built=False)
    tell(f"payload: building into {out_dir} (the first build downloads the pinned packages)")
    # Warnings (pinned packages gone from the archive: not the published payload) reach the user.
    payload = build_payload(
        out_dir,
        cache_dir=cache_dir,
        lock_path=DEFAULT_LOCK,
        progress=lambda m: tell(m) if m.startswith("warning") else None,
    )
    if not payload.published:
        tell(f"payload: NOT the published one; built from {payload.resolved_lock}")
    write_atomic(stamp, key.encode() + b"\n")
    return DemoPayload(payload.kernel, payload.initramfs, built=True)


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The demo's three boots and what each proved."""

    machine: Path
    payload_bytes: int
    boots: tuple[BootResult, ...]
    checks: tuple[tuple[str, bool], ...]

    @property
    def ok(self) -> bool:
        return all(passed for _name, passed in self.checks)


def demo_flash_size(payload: DemoPayload, say: Say) -> int:
    """The chip for the demo: 16 MiB, or the next size up while the payload does not fit."""
    size = payload.kernel.stat().st_size + payload.initramfs.stat().st_size
    chip = flash_size_for(size)
    if chip != DEFAULT_FLASH_SIZE:
        say(
            f"flash: the payload ({size / 2**20:.1f} MiB) does not fit a "
            f"{DEFAULT_FLASH_SIZE // 2**20} MiB chip: using a {chip // 2**20} MiB chip"
        )
    return chip


def totp_matches(uri: str | None, shown: tuple[str, str] | None) -> bool:
    """Does the code the guest showed equal RFC 6238 over the provisioned secret at its time?"""
    if uri is None or shown is None:
        return False
    code, at = shown
    try:
        secret = parse_otpauth_uri(uri).secret
        when = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (FormatError, ValueError):
        return False
    return totp_code(secret, when).code == code


def run_demo(
    root: Path,
    payload: DemoPayload,
    *,
    say: Say,
    echo: Callable[[ConsoleLine], None] | None = None,
) -> DemoReport:
    """Create a blank machine, take ownership of it in the guest (the factory reset), boot
    with the menus (the TOTP secret generated, the OS booted), give the OS a LUKS volume and
    seal a disk unlock key (docs/disk-key.md §QEMU), boot typing its passphrase (the OS opens
    the volume by key file), update the firmware from a USB drive in the guest and boot it,
    tamper with the OS kernel, boot again.

    Raises:
        HeadsError: a step could not run (QEMU, swtpm, gpg...); a boot that runs but shows
            the wrong thing is reported in the checks instead.
    """
    from heads.flows import qemu_blank as blank  # noqa: PLC0415 - it builds on this module
    from heads.flows import qemu_luks as luks  # noqa: PLC0415 - it builds on this module

    machine = blank.create_blank_machine(
        root,
        kernel=payload.kernel,
        initramfs=payload.initramfs,
        flash_size=demo_flash_size(payload, say),
        force=True,
        say=say,
    )
    backup = blank.blank_usb_disk(machine.root / "key-backup.img")
    boots: list[BootResult] = []
    checks: list[tuple[str, bool]] = []

    def boot(
        n: int, what: str, answers: Sequence[tuple[str, str]] = (), *, owner: bool = False
    ) -> BootResult:
        say(f"boot {n}: {what}")
        result = boot_machine(
            machine,
            echo=echo,
            answers=answers,
            usb_disks=[backup] if owner else [],
            disks_writable=owner,
        )
        boots.append(result)
        marks = ", ".join(f"{k} {v:.1f} s" for k, v in result.marks.items())
        say(f"boot {n}: done ({marks}); console: {result.transcript}")
        return result

    say(
        "the demo's passphrases are published (heads.flows.qemu_blank): TPM owner "
        f"{blank.DEMO_OWNER_PASSPHRASE!r}, key backup {blank.DEMO_BACKUP_PASSPHRASE!r}"
    )
    owned = boot(
        0,
        "factory reset in the guest: TPM reset, owner key generated and backed up to a USB "
        "drive, keyring and config.user flashed, /boot signed",
        blank.factory_reset_answers(
            blank.DEMO_OWNER_PASSPHRASE, blank.DEMO_BACKUP_PASSPHRASE, user_id=OWNER_UID
        ),
        owner=True,
    )
    checks.append(
        (
            "boot 0: factory reset complete (owner key generated, /boot signed)",
            any("OEM Factory Reset / Re-Ownership Complete" in ln.text for ln in owned.lines),
        )
    )
    first = boot(
        1,
        "first boot with the menus: generate the TOTP secret behind the integrity gate, "
        "verify /boot, kexec the OS",
        (
            ("totp-failed", "g"),
            ("gate-passed", "y"),
            ("tpm-owner-auth", blank.DEMO_OWNER_PASSPHRASE),
            ("totp-sealed", "ok"),
            ("main-menu", "d"),
        ),
    )
    uri = first.otpauth_uri
    checks.append(("boot 1: TOTP secret provisioned (otpauth URI shown)", uri is not None))
    checks.append(
        ("boot 1: TOTP code matches the provisioned secret", totp_matches(uri, first.totp))
    )
    checks.append(("boot 1: OS booted (marker seen)", first.os_up))
    say(
        "disk key: LUKS volume for the OS, disk unlock key sealed to boot 1's PCRs (DRK "
        f"{luks.DEMO_DISK_RECOVERY_PASSPHRASE!r}, DUK passphrase "
        f"{luks.DEMO_DISK_KEY_PASSPHRASE!r}), /boot signed with the backup key"
    )
    luks.add_demo_disk_key(machine, backup=backup, firmware=luks.firmware_values(first), say=say)
    second = boot(
        2, "second boot: same secret, current code, DUK passphrase typed", luks.disk_key_answers()
    )
    checks.append(("boot 2: no new secret provisioned", second.otpauth_uri is None))
    checks.append(
        ("boot 2: TOTP code matches the provisioned secret", totp_matches(uri, second.totp))
    )
    checks.append(("boot 2: OS booted (marker seen)", second.os_up))
    checks.extend(luks.unlock_checks("boot 2", second))
    luks.say_timing(second, first, say)
    # A firmware update from a USB drive in the guest, the TOTP resealed to the new PCRs
    # (docs/firmware-update.md); before the tamper step, which would close the gate.
    from heads.flows import qemu_update as update  # noqa: PLC0415 - imports this module

    update_boots, update_checks = update.demo_update(
        machine,
        uri,
        say=say,
        echo=echo,
        owner_passphrase=blank.DEMO_OWNER_PASSPHRASE,
        signer=update.backup_signer(backup, blank.DEMO_BACKUP_PASSPHRASE),
        # The flash boot keeps the disk unlock key (a copy sealed to the new firmware's
        # PCRs); the new firmware's boot releases it, and the OS opens its volume by key file.
        flash_answers=(("disk-key-update-passphrase", luks.DEMO_DISK_KEY_PASSPHRASE),),
        after_answers=luks.disk_key_answers(),
    )
    boots.extend(update_boots)
    checks.extend(update_checks)
    checks.append(
        (
            "update: disk unlock key kept for the new firmware",
            any("disk key reseal: pending copy sealed" in ln.text for ln in update_boots[0].lines),
        )
    )
    checks.extend(luks.unlock_checks("update: new firmware's boot", update_boots[1]))
    tampered = tamper_os_kernel(machine)
    say(f"tamper: flipped one byte of {tampered} on the OS disk")
    third = boot(3, "third boot: the tampered kernel must be refused")
    named = any(tampered.lstrip("/") in line for line in third.report)
    checks.append(("boot 3: refused with an integrity report", third.refusal is not None))
    checks.append((f"boot 3: report names {tampered}", named))
    checks.append(("boot 3: OS marker never appears", not third.os_up))
    checks.append(
        (
            'boot 3: PCR 4 extended with "recovery" (runtime log)',
            (4, "string", "recovery") in third.log,
        )
    )
    checks.append(("boot 3: no disk-key step, no key archive, no OS", luks.untouched(third)))
    size = payload.kernel.stat().st_size + payload.initramfs.stat().st_size
    return DemoReport(machine.root, size, tuple(boots), tuple(checks))
