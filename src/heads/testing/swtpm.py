"""A real swtpm on a free loopback port with its own state directory, for tests and benchmarks.

Nothing in the product imports this module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess  # noqa: TID251 - a long-running child needs Popen, not adapters._run
import time
from pathlib import Path

from heads.adapters.swtpm import free_port_pair, manufacture

__all__ = [
    "Swtpm",
    "SwtpmUnavailableError",
    "free_port_pair",
    "manufacture",
    "swtpm_missing_reason",
]

_START_TIMEOUT_S = 10.0


class SwtpmUnavailableError(RuntimeError):
    """swtpm or swtpm_setup is not installed."""


def swtpm_missing_reason() -> str | None:
    """Why swtpm can't run here, or None when it can."""
    for tool in ("swtpm", "swtpm_setup"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install swtpm swtpm-tools)"
    return None


class Swtpm:
    """One swtpm process serving TPM 2.0 over TCP on 127.0.0.1.

    The state directory survives :meth:`stop`; :meth:`start` again on it models a reboot
    (PCRs reset, NV and persistent objects kept).
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()  # swtpm needs an absolute path
        self.log_path = self.state_dir / "swtpm.log"
        self.port = 0
        self.ctrl_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) swtpm; retries on a port race."""
        if self.running:
            raise RuntimeError("swtpm already running")
        if swtpm_missing_reason() is not None:
            raise SwtpmUnavailableError(swtpm_missing_reason())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(5):
            self.port, self.ctrl_port = free_port_pair()
            self._proc = subprocess.Popen(
                [
                    "swtpm",
                    "socket",
                    "--tpm2",
                    "--tpmstate",
                    f"dir={self.state_dir}",
                    "--server",
                    f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                    "--ctrl",
                    f"type=tcp,port={self.ctrl_port},bindaddr=127.0.0.1",
                    "--flags",
                    "not-need-init,startup-clear",
                    "--log",
                    f"file={self.log_path},level=1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + _START_TIMEOUT_S
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return
                except OSError:
                    time.sleep(0.005)
            stderr = self._proc.stderr.read().decode() if self._proc.stderr else ""
            last_error = stderr.strip() or "did not start listening"
            self.stop()
        raise RuntimeError(f"swtpm failed to start: {last_error}")

    def stop(self) -> None:
        """Stop swtpm (SIGTERM: state is flushed)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> None:
        """Stop and start on the same state: a power cycle."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Swtpm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def env_without_tcti() -> dict[str, str]:
    """The environment minus HEADS_TCTI, for subprocess tests that pass --tcti."""
    env = dict(os.environ)
    env.pop("HEADS_TCTI", None)
    return env
