"""How heads reaches a TPM: the TCTI string, a deadline for every command, device checks.

``swtpm:`` TPMs are spoken to by :class:`SwtpmTcti`, a TCTI written here (tpm2-pytss'
``PyTCTI``) instead of tpm2-tss' ``libtss2-tcti-swtpm``: that one blocks forever on an endpoint
that accepts and never answers (already while being initialised), and ESAPI's synchronous calls
wait without limit (they set the TCTI timeout to "block" around their ``_Finish``;
``Esys_SetTimeout`` applies to the asynchronous API only).  Here every
command has a deadline: ``$HEADS_TPM_TIMEOUT`` seconds (default 30 s, far above the 1-2 s a
real TPM needs for key generation) from sending the command to the last byte of its response.

The protocol is swtpm's command channel: each command and each response is a TPM 2.0 command or
response buffer as is, its header's size field giving the length (TPM 2.0 Part 1 §18.2 and Part
3 §5.2).  swtpm's control channel (the command port + 1) is not used: heads always talks at
locality 0, swtpm's default, and starts the TPM with TPM2_Startup.

``device:`` TPMs keep tpm2-tss' device TCTI; the kernel's TPM driver aborts a command the chip
does not finish within its TCG duration.  :func:`check_device` refuses a path that is not a TPM
character device *before* anything opens it: the device TCTI would otherwise write TPM commands
into whatever file it is given.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tpm2_pytss import TSS2_Exception
from tpm2_pytss.constants import TSS2_RC
from tpm2_pytss.TCTI import PyTCTI

from heads.errors import TpmNotFoundError, TpmUnreachableError, UsageError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "SwtpmAddress",
    "SwtpmTcti",
    "check_device",
    "parse_swtpm",
    "timeout_from_env",
]

TIMEOUT_ENV: Final = "HEADS_TPM_TIMEOUT"
DEFAULT_TIMEOUT_S: Final = 30.0
_MAX_TIMEOUT_S: Final = 3600.0
_SWTPM_DEFAULT_HOST: Final = "localhost"
_SWTPM_DEFAULT_PORT: Final = 2321
_HEADER: Final = struct.Struct(">HII")  # tag, size, command code / response code
_MAX_RESPONSE: Final = 4096  # TPM_BUFFER_MAX of tpm2-tss (and the kernel's TPM_BUFSIZE)
# Linux sysfs class of TPM character devices (/dev/tpmN and /dev/tpmrmN).
_TPM_CLASSES: Final = frozenset({"tpm", "tpmrm"})


def timeout_from_env() -> float:
    """The per-command deadline: ``$HEADS_TPM_TIMEOUT`` seconds, else 30.

    Raises:
        UsageError: the variable is not a positive number of seconds.
    """
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= _MAX_TIMEOUT_S:
        raise UsageError(
            f"${TIMEOUT_ENV} must be a number of seconds (0 < s <= {_MAX_TIMEOUT_S:.0f}), "
            f"not {text!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class SwtpmAddress:
    """Where a swtpm's command channel listens: TCP ``host:port``, or a unix socket ``path``."""

    host: str = _SWTPM_DEFAULT_HOST
    port: int = _SWTPM_DEFAULT_PORT
    path: str | None = None

    def __str__(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"


def parse_swtpm(tcti: str, conf: str) -> SwtpmAddress:
    """The address in a ``swtpm:host=H,port=P`` (or ``swtpm:path=SOCKET``) configuration.

    Raises:
        TpmUnreachableError: an unknown key or a bad port (a bad TCTI is exit status 6).
    """
    fields: dict[str, str] = {}
    for item in filter(None, conf.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in ("host", "port", "path") or key in fields or not value:
            raise TpmUnreachableError(
                f"bad TCTI {tcti!r}: cannot read {item!r}",
                hint="use swtpm:host=127.0.0.1,port=2321 or swtpm:path=/run/swtpm.sock",
            )
        fields[key] = value
    port_text = fields.get("port", str(_SWTPM_DEFAULT_PORT))
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TpmUnreachableError(
            f"bad TCTI {tcti!r}: port {port_text!r} is not a TCP port",
            hint="use swtpm:host=127.0.0.1,port=2321",
        )
    if "path" in fields and ("host" in fields or "port" in fields):
        raise TpmUnreachableError(
            f"bad TCTI {tcti!r}: give either path= or host=/port=",
            hint="use swtpm:host=127.0.0.1,port=2321 or swtpm:path=/run/swtpm.sock",
        )
    return SwtpmAddress(
        host=fields.get("host", _SWTPM_DEFAULT_HOST), port=int(port_text), path=fields.get("path")
    )


def check_device(path: str) -> None:
    """Refuse a ``device:`` path that is not a TPM character device, before anyone opens it.

    Raises:
        TpmNotFoundError: the path does not exist (exit status 5).
        TpmUnreachableError: it exists but is not a TPM (exit status 6).
    """
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        raise TpmNotFoundError(
            f"no TPM: {path} does not exist",
            hint="this machine has no TPM 2.0 (or its driver is not loaded); "
            "for a software TPM pass --tcti swtpm:host=127.0.0.1,port=N",
        ) from None
    except OSError as exc:
        raise TpmUnreachableError(f"cannot open the TPM at {path}: {exc.strerror}") from None
    hint = "a TPM is /dev/tpmrm0 (or /dev/tpm0); for a software TPM pass --tcti swtpm:port=N"
    if not stat.S_ISCHR(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a character device"
        raise TpmUnreachableError(f"{path} is not a TPM device ({kind})", hint=hint)
    # sysfs names the driver class of every character device; without sysfs, trust the path.
    subsystem = Path(f"/sys/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/subsystem")
    with contextlib.suppress(OSError):
        name = subsystem.resolve(strict=True).name
        if name not in _TPM_CLASSES:
            raise TpmUnreachableError(
                f"{path} is not a TPM device (a {name} device)",
                hint=hint,
            )


class SwtpmTcti(PyTCTI):  # type: ignore[misc]  # tpm2-pytss ships no type information
    """swtpm's command channel with a deadline on every command (see the module docstring).

    After a missed deadline or a lost connection the transport is *broken*: further commands
    fail at once rather than each waiting out the deadline again, and a late response can never
    be taken for the answer to a later command.
    """

    def __init__(self, tcti: str, address: SwtpmAddress, timeout_s: float) -> None:
        super().__init__(max_size=_MAX_RESPONSE, magic=b"HEADSSW\0")
        self.tcti = tcti
        self.address = address
        self.timeout_s = timeout_s
        self.timed_out = False
        self.broken: str | None = None
        self._deadline = 0.0
        self._sock = self._connect()

    def _connect(self) -> socket.socket:
        try:
            if self.address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout_s)
                    sock.connect(self.address.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(
                    (self.address.host, self.address.port), timeout=self.timeout_s
                )
        except TimeoutError:
            within = f"no connection within {self.timeout_s:g} s"
            raise TpmUnreachableError(
                f"cannot reach the TPM at {self.tcti!r}: {within}",
                hint=f"is swtpm running there? (the deadline is ${TIMEOUT_ENV} seconds)",
            ) from None
        except OSError as exc:
            raise TpmUnreachableError(
                f"cannot reach the TPM at {self.tcti!r}: {exc.strerror or exc}",
                hint="is swtpm running and listening there?",
            ) from None
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _fail(self, why: str, *, timeout: bool = False) -> TSS2_Exception:
        self.broken = why
        self.timed_out = timeout
        with contextlib.suppress(OSError):
            self._sock.close()
        return TSS2_Exception(TSS2_RC.TCTI_RC_IO_ERROR)

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._fail("no answer", timeout=True)
        return left

    def do_transmit(self, command: bytes) -> None:
        if self.broken is not None:
            raise TSS2_Exception(TSS2_RC.TCTI_RC_IO_ERROR)
        self._deadline = time.monotonic() + self.timeout_s
        try:
            self._sock.settimeout(self._remaining())
            self._sock.sendall(command)
        except TimeoutError:
            raise self._fail("no answer", timeout=True) from None
        except OSError:
            raise self._fail("connection lost") from None

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                self._sock.settimeout(self._remaining())
                chunk = self._sock.recv(n - len(buf))
            except TimeoutError:
                raise self._fail("no answer", timeout=True) from None
            except OSError:
                raise self._fail("connection lost") from None
            if not chunk:
                raise self._fail("connection lost")
            buf += chunk
        return bytes(buf)

    def do_receive(self, timeout: int) -> bytes:
        if self.broken is not None:
            raise TSS2_Exception(TSS2_RC.TCTI_RC_IO_ERROR)
        header = self._read(_HEADER.size)
        _, size, _ = _HEADER.unpack(header)
        if not _HEADER.size <= size <= _MAX_RESPONSE:
            raise self._fail(f"not a TPM response (size field {size})")
        return header + self._read(size - _HEADER.size)

    def do_finalize(self) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
