"""The product-side software TPM of a QEMU machine: one swtpm state directory per machine.

A machine's TPM is manufactured once (``swtpm_setup``: EK, sha1+sha256 banks) and then lives
in its state directory across boots, like a soldered-down TPM.  It is served two ways:

* to QEMU, over a unix control socket (``--ctrl type=unixio``; QEMU sends CMD_INIT and the
  firmware sends TPM2_Startup), with ``--terminate`` so swtpm exits with QEMU;
* to the host while the guest is off (owner tools sign /boot against the machine's rollback
  counter), over TCP on a free loopback port, started with ``startup-clear``.

swtpm locks its state directory, so the two never run at once (docs/guest-host-contract.md
§The TPM).  See docs/qemu-platform.md §Pitfalls (absolute state paths; poll for the socket
instead of sleeping).
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess  # noqa: TID251 - swtpm is a long-running child: Popen, not adapters._run
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from heads.adapters._run import require_tool, run
from heads.errors import ToolError

__all__ = [
    "SwtpmServer",
    "is_manufactured",
    "manufacture",
    "serve_qemu",
    "serve_tcp",
]

_log = logging.getLogger(__name__)
_START_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 10.0
# The file swtpm keeps NV, persistent objects and the EK in (libtpms "permall" state).
_PERMALL: Final = "tpm2-00.permall"


def is_manufactured(state_dir: Path) -> bool:
    """True when ``state_dir`` already holds a manufactured TPM."""
    return (state_dir / _PERMALL).is_file()


def manufacture(state_dir: Path, *, banks: str = "sha1,sha256") -> None:
    """Create a new TPM in ``state_dir``: EK and the given PCR banks (about 0.6 s).

    Runs ``swtpm_setup --tpm2 --createek --pcr-banks BANKS``.

    Raises:
        ToolError: swtpm_setup is missing or failed.
    """
    require_tool("swtpm_setup", package="swtpm-tools")
    state_dir.mkdir(parents=True, exist_ok=True)
    run(
        [
            "swtpm_setup",
            "--tpm2",
            "--tpmstate",
            str(state_dir.resolve()),
            "--createek",
            "--pcr-banks",
            banks,
            "--overwrite",
        ],
        desc="manufacture the machine's TPM",
        timeout_s=120,
    )


def free_port_pair() -> tuple[int, int]:
    """Two free consecutive ports: the swtpm TCTI looks for the control channel at port + 1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port, port + 1
    raise ToolError("no two consecutive free loopback ports for swtpm")


class SwtpmServer:
    """A running swtpm process; stop it with :meth:`stop` (SIGTERM flushes the state)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], *, log_path: Path, tcti: str = "", ctrl: Path | None
    ) -> None:
        self._proc = proc
        self.log_path = log_path
        #: TCTI string for host-side tools (TCP mode only).
        self.tcti = tcti
        #: the unix control socket QEMU connects to (QEMU mode only).
        self.ctrl_socket = ctrl

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """Wait for swtpm to exit by itself (``--terminate`` after QEMU); None on timeout."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()


def _spawn(argv: list[str], what: str) -> subprocess.Popen[bytes]:
    require_tool("swtpm", package="swtpm")
    _log.debug("start swtpm (%s): %s", what, " ".join(argv))
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise ToolError(f"cannot start swtpm ({what}): {exc.strerror}") from exc


def _failed(proc: subprocess.Popen[bytes], what: str, state_dir: Path) -> ToolError:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
    return ToolError(
        f"swtpm did not come up ({what}) for state {state_dir}",
        details=tuple(err.splitlines()[-6:]),
        hint="another swtpm or QEMU may be using this machine's TPM state; stop it first",
    )


@contextmanager
def serve_tcp(state_dir: Path) -> Iterator[SwtpmServer]:
    """Serve the machine's TPM to host tools over TCP on 127.0.0.1 (guest must be off).

    Raises:
        ToolError: swtpm is missing or did not start listening.
    """
    state = state_dir.resolve()  # swtpm needs an absolute path (docs/qemu-platform.md §Pitfalls)
    log_path = state / "swtpm-host.log"
    for _attempt in range(5):
        port, ctrl_port = free_port_pair()
        proc = _spawn(
            [
                "swtpm",
                "socket",
                "--tpm2",
                "--tpmstate",
                f"dir={state}",
                "--server",
                f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={ctrl_port},bindaddr=127.0.0.1",
                "--flags",
                "not-need-init,startup-clear",
                "--log",
                f"file={log_path},level=1",
            ],
            "host",
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    up = True
                    break
            except OSError:
                time.sleep(0.005)
        if up:
            server = SwtpmServer(
                proc, log_path=log_path, tcti=f"swtpm:host=127.0.0.1,port={port}", ctrl=None
            )
            try:
                yield server
            finally:
                server.stop()
            return
        if proc.poll() is None:  # port race: try another pair
            proc.kill()
            proc.wait()
            continue
        raise _failed(proc, "host", state)
    raise ToolError(f"swtpm did not start listening for state {state}")


@contextmanager
def serve_qemu(state_dir: Path) -> Iterator[SwtpmServer]:
    """Serve the machine's TPM to QEMU on a unix control socket; exits when QEMU does.

    The socket lives in a short private temporary directory: unix socket paths are limited to
    about 108 bytes and machine directories can be deep.

    Raises:
        ToolError: swtpm is missing or the socket did not appear.
    """
    state = state_dir.resolve()
    log_path = state / "swtpm-qemu.log"
    sock_dir = Path(tempfile.mkdtemp(prefix="heads-swtpm-"))
    sock = sock_dir / "ctrl"
    try:
        proc = _spawn(
            [
                "swtpm",
                "socket",
                "--tpm2",
                "--tpmstate",
                f"dir={state}",
                "--ctrl",
                f"type=unixio,path={sock}",
                "--terminate",
                "--log",
                f"file={log_path},level=1",
            ],
            "QEMU",
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise _failed(proc, "QEMU", state)
            time.sleep(0.002)
        server = SwtpmServer(proc, log_path=log_path, ctrl=sock)
        try:
            yield server
        finally:
            # After QEMU exits, --terminate ends swtpm by itself; give it a moment to flush.
            server.wait(2.0)
            server.stop()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
