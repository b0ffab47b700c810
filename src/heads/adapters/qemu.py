"""QEMU with OVMF and a software TPM, its serial console driven from Python.

The machine of docs/qemu-platform.md (§The machine, §What OVMF measures): q35,
``-bios OVMF.fd`` (Debian's unified image; UEFI variables in RAM, so PCR 1/7 are the same on
every boot), ``-nodefaults`` (no NIC option ROM in PCR 2, no CD-ROM boot attempt in PCR 1/4),
a fixed ``-m`` (PCR 0 and the kernel's PCR 4 digest depend on it), swtpm as a TPM 2.0 on
``tpm-crb``, and direct kernel boot: OVMF measures the kernel into PCR 4, the kernel's EFI stub
measures the initrd and the command line into PCR 9.

The console is ``-serial stdio`` on pipes: a reader thread splits it into lines, stamps each
with the seconds since QEMU was spawned and appends it to a transcript file, which is kept
(and named in the error) when an expectation fails.

Accelerator: TCG, unless ``/sys/module/kvm_intel`` or ``/sys/module/kvm_amd`` exists and a
probe start with ``-accel kvm -cpu host`` succeeds (docs/qemu-platform.md §Accelerator: a
nested paravirtual KVM exists on some hosts and fails in odd ways; it has neither module).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess  # noqa: TID251 - QEMU is a long-running child with a live console: Popen
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from heads.adapters._run import require_tool, run
from heads.core.qemu_flash import FLASH_DEVICE_SERIAL
from heads.errors import ToolError

__all__ = [
    "DEFAULT_MEMORY_MIB",
    "OVMF_BIOS",
    "ConsoleLine",
    "QemuConsole",
    "QemuSpec",
    "choose_accel",
    "qemu_argv",
    "run_interactive",
]

_log = logging.getLogger(__name__)

QEMU: Final = "qemu-system-x86_64"
OVMF_BIOS: Final = Path("/usr/share/ovmf/OVMF.fd")
#: Fixed guest RAM: PCR 0 and the kernel's PCR 4 digest depend on it (docs/qemu-platform.md
#: §Guest RAM).
DEFAULT_MEMORY_MIB: Final = 1024
_KVM_MODULES: Final = ("/sys/module/kvm_intel", "/sys/module/kvm_amd")


@dataclass(frozen=True, slots=True)
class QemuSpec:
    """Everything that defines one boot of the machine.

    Attributes:
        kernel: the payload kernel (bzImage with EFI stub), passed with ``-kernel``.
        initrd: the payload initramfs, ``-initrd``.
        append: the kernel command line (measured into PCR 9: keep it fixed).
        tpm_socket: swtpm's unix control socket, or None for a machine without TPM.
        fw_cfg: (name, file) pairs exposed through fw_cfg (``opt/...`` names).
        fw_cfg_strings: (name, value) pairs exposed through fw_cfg.
        disks: raw disk images attached as NVMe devices, in order (read-only unless
            ``disks_writable``).
        disks_writable: the guest may write the disks (signing /boot from the runtime).
        usb_disks: raw disk images attached writable as USB mass-storage devices on an xHCI
            controller, in order (a key-backup drive, an update package): ``/dev/sdX`` in
            the guest.
        flash: the firmware's flash image, attached writable as one more NVMe device whose
            serial is ``heads-flash`` (the guest flashes it with flashrom).
        memory_mib: guest RAM.
        firmware: the OVMF image given to ``-bios``.
        accel: ``tcg`` or ``kvm``.
    """

    kernel: Path
    initrd: Path
    append: str
    tpm_socket: Path | None = None
    fw_cfg: tuple[tuple[str, Path], ...] = ()
    fw_cfg_strings: tuple[tuple[str, str], ...] = ()
    disks: tuple[Path, ...] = ()
    disks_writable: bool = False
    usb_disks: tuple[Path, ...] = ()
    flash: Path | None = None
    memory_mib: int = DEFAULT_MEMORY_MIB
    firmware: Path = OVMF_BIOS
    accel: str = "tcg"


def qemu_argv(spec: QemuSpec) -> list[str]:
    """The exact QEMU command line for ``spec`` (serial console on stdio)."""
    argv = [
        QEMU,
        "-machine",
        "q35",
        "-accel",
        spec.accel,
        "-m",
        str(spec.memory_mib),
        "-smp",
        "1",
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-rtc",
        "base=utc",
        "-bios",
        str(spec.firmware),
        "-kernel",
        str(spec.kernel),
        "-initrd",
        str(spec.initrd),
        "-append",
        spec.append,
    ]
    if spec.accel == "kvm":
        argv += ["-cpu", "host"]
    if spec.tpm_socket is not None:
        argv += [
            "-chardev",
            f"socket,id=chrtpm,path={spec.tpm_socket}",
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            "tpm-crb,tpmdev=tpm0",
        ]
    for name, path in spec.fw_cfg:
        argv += ["-fw_cfg", f"name={name},file={path}"]
    for name, value in spec.fw_cfg_strings:
        argv += ["-fw_cfg", f"name={name},string={value}"]
    for i, disk in enumerate(spec.disks):
        # NVMe, the disk of most laptops Heads runs on (the payload kernel also has AHCI and
        # virtio-blk built in).  Guest name: /dev/nvme{i}n1.
        argv += [
            "-drive",
            f"file={disk},format=raw,if=none,id=disk{i}"
            + ("" if spec.disks_writable else ",readonly=on"),
            "-device",
            f"nvme,serial=heads-disk{i},drive=disk{i}",
        ]
    if spec.usb_disks:
        argv += ["-device", "qemu-xhci,id=xhci"]
    for i, disk in enumerate(spec.usb_disks):
        argv += [
            "-drive",
            f"file={disk},format=raw,if=none,id=usb{i}",
            "-device",
            f"usb-storage,bus=xhci.0,drive=usb{i},removable=on",
        ]
    if spec.flash is not None:
        # After the OS disks, so they keep their names; the guest finds it by its serial.
        argv += [
            "-drive",
            f"file={spec.flash},format=raw,if=none,id=flash",
            "-device",
            f"nvme,serial={FLASH_DEVICE_SERIAL},drive=flash",
        ]
    return argv


def choose_accel() -> str:
    """``kvm`` only where hardware virtualisation is loaded and a probe start works."""
    if not any(Path(p).exists() for p in _KVM_MODULES) or not os.access("/dev/kvm", os.W_OK):
        return "tcg"
    try:
        # A paused machine with the host CPU model: fails fast where KVM is unusable.
        run(
            [
                QEMU,
                "-machine",
                "q35",
                "-accel",
                "kvm",
                "-cpu",
                "host",
                "-nodefaults",
                "-S",
                "-display",
                "none",
                "-monitor",
                "stdio",
            ],
            desc="probe KVM",
            stdin=b"quit\n",
            timeout_s=15,
        )
    except ToolError as exc:
        _log.info("KVM probe failed, using TCG: %s", exc)
        return "tcg"
    return "kvm"


@dataclass(frozen=True, slots=True)
class ConsoleLine:
    """One console line and when it arrived (seconds since QEMU was spawned)."""

    t_s: float
    text: str


class QemuConsole:
    """A running QEMU whose serial console is read line by line.

    Use as a context manager: leaving it kills QEMU if it is still running.
    """

    def __init__(
        self,
        spec: QemuSpec,
        *,
        transcript: Path,
        echo: Callable[[ConsoleLine], None] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        require_tool(QEMU, package="qemu-system-x86")
        if not spec.firmware.is_file():
            raise ToolError(
                f"firmware image {spec.firmware} is missing", hint="apt-get install ovmf"
            )
        self.spec = spec
        self.transcript = transcript
        self.lines: list[ConsoleLine] = []
        self._echo = echo
        # The transcript is a file: what the guest shows once to a person (a provisioned
        # secret) must not be kept in it.  The lines kept in memory are unchanged.
        self._redact = redact or (lambda text: text)
        self._cond = threading.Condition()
        self._eof = False
        self._partial = b""
        transcript.parent.mkdir(parents=True, exist_ok=True)
        self._tfile: IO[str] = transcript.open("w", encoding="utf-8")
        self._stderr_path = transcript.with_suffix(".qemu-stderr")
        self._stderr_file = self._stderr_path.open("wb")
        argv = qemu_argv(spec)
        self._tfile.write("# " + " ".join(argv) + "\n")
        _log.debug("start QEMU: %s", " ".join(argv))
        self.t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr_file,
            )
        except OSError as exc:
            self._tfile.close()
            self._stderr_file.close()
            raise ToolError(f"cannot start {QEMU}: {exc.strerror}") from exc
        self._reader = threading.Thread(target=self._read_loop, name="qemu-console", daemon=True)
        self._reader.start()

    # -- reading ------------------------------------------------------------------------
    def _add_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        line = ConsoleLine(time.monotonic() - self.t0, text)
        self._tfile.write(f"[{line.t_s:8.3f}] {self._redact(text)}\n")
        self._tfile.flush()
        self.lines.append(line)
        if self._echo is not None:
            self._echo(line)

    def _read_loop(self) -> None:
        assert self._proc.stdout is not None  # noqa: S101 - set by Popen(stdout=PIPE)
        fd = self._proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    if self._partial:
                        self._add_line(self._partial)
                        self._partial = b""
                    self._eof = True
                    self._cond.notify_all()
                    return
                data = self._partial + chunk
                *complete, self._partial = data.split(b"\n")
                for raw in complete:
                    self._add_line(raw)
                self._cond.notify_all()

    def expect(
        self, pattern: str, *, timeout_s: float, start: int = 0
    ) -> tuple[int, re.Match[str]]:
        """Wait for a console line (at index >= ``start``) matching ``pattern``.

        Returns:
            the line's index and the match.

        Raises:
            ToolError: timeout, or QEMU's console ended first; names the transcript.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        index = start
        with self._cond:
            while True:
                while index < len(self.lines):
                    m = regex.search(self.lines[index].text)
                    if m is not None:
                        return index, m
                    index += 1
                if self._eof:
                    raise self._failure(f"the console ended before a line matching {pattern!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._failure(
                        f"no console line matching {pattern!r} within {timeout_s:g} s"
                    )
                self._cond.wait(remaining)

    def find(self, pattern: str, *, start: int = 0) -> list[tuple[int, re.Match[str]]]:
        """All lines seen so far matching ``pattern``."""
        regex = re.compile(pattern)
        with self._cond:
            snapshot = list(enumerate(self.lines))[start:]
        return [(i, m) for i, line in snapshot if (m := regex.search(line.text)) is not None]

    def send_line(self, text: str) -> None:
        """Type ``text`` and Enter on the serial console."""
        if self._proc.stdin is None:
            raise ToolError("QEMU's console input is closed")
        try:
            self._proc.stdin.write(text.encode() + b"\n")
            self._proc.stdin.flush()
        except OSError as exc:
            raise ToolError(f"cannot type on QEMU's console: {exc.strerror}") from exc

    def wait(self, *, timeout_s: float) -> int:
        """Wait for QEMU to exit (the guest powered off); returns QEMU's exit status.

        Raises:
            ToolError: QEMU still runs after ``timeout_s`` (it is then killed).
        """
        try:
            rc = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self._failure(f"the guest did not power off within {timeout_s:g} s") from None
        self._reader.join(timeout=5)
        return rc

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)

    def close(self) -> None:
        self.kill()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._tfile.close()
        self._stderr_file.close()

    def stderr_tail(self) -> list[str]:
        try:
            text = self._stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return text.strip().splitlines()[-5:]

    def _failure(self, message: str) -> ToolError:
        tail = [line.text for line in self.lines[-8:]]
        return ToolError(
            f"QEMU: {message}",
            details=(*self.stderr_tail(), *tail, f"console transcript: {self.transcript}"),
            hint=f"read the console transcript {self.transcript}",
        )

    def __enter__(self) -> QemuConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_interactive(spec: QemuSpec, *, extra_env: Sequence[tuple[str, str]] = ()) -> int:
    """Run QEMU with the serial console on this terminal (the user types); returns its status.

    Raises:
        ToolError: QEMU could not be started.
    """
    require_tool(QEMU, package="qemu-system-x86")
    env = dict(os.environ)
    env.update(extra_env)
    try:
        proc = subprocess.Popen(qemu_argv(spec), env=env)
    except OSError as exc:
        raise ToolError(f"cannot start {QEMU}: {exc.strerror}") from exc
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
