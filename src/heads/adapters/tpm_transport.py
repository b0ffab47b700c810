"""How heads reaches a TPM: the TCTI string, the two transports, a deadline for every command.

A transport moves one TPM 2.0 command buffer to the TPM and brings its response back; the
command layer (heads.core.tpm2) makes and reads the buffers.  Every command has a deadline:
``$HEADS_TPM_TIMEOUT`` seconds (default 30 s, far above the 1-2 s a real TPM needs for key
generation) from sending the command to the last byte of its response.

``swtpm:host=H,port=P`` / ``swtpm:path=SOCKET`` is swtpm's command channel: each command and
each response is a TPM 2.0 command or response buffer as is, its header's size field giving the
length (TPM 2.0 Part 1 §18.2 and Part 3 §5.2).  swtpm's control channel (the command port + 1)
is not used: heads always talks at locality 0, swtpm's default, and starts the TPM with
TPM2_Startup.

``device:/dev/tpmrm0`` (or ``/dev/tpm0``) is the kernel's TPM character device: write one
command, read one response.  :func:`check_device` refuses a path that is not a TPM character
device *before* anything opens it, so TPM commands are never written into some other file
(docs/tpm-objects.md §Reaching the TPM).

After a missed deadline or a lost connection a transport is *broken*: further commands fail
at once rather than each waiting out the deadline again, and a late response can never be
taken for the answer to a later command.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from heads.errors import TpmNotFoundError, TpmUnreachableError, UsageError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "DeviceTransport",
    "SwtpmAddress",
    "SwtpmTransport",
    "Transport",
    "TransportError",
    "check_device",
    "open_transport",
    "parse_swtpm",
    "timeout_from_env",
]

TIMEOUT_ENV: Final = "HEADS_TPM_TIMEOUT"
DEFAULT_TIMEOUT_S: Final = 30.0
_MAX_TIMEOUT_S: Final = 3600.0
_SWTPM_DEFAULT_HOST: Final = "localhost"
_SWTPM_DEFAULT_PORT: Final = 2321
_HEADER: Final = struct.Struct(">HII")  # tag, size, command code / response code
_MAX_RESPONSE: Final = 4096  # the kernel's TPM_BUFSIZE; no response heads asks for is larger
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


class TransportError(Exception):
    """The command did not get a response: the connection broke or the deadline passed."""

    def __init__(self, why: str, *, timed_out: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.timed_out = timed_out


class Transport(Protocol):
    """One TPM reached one way."""

    tcti: str
    timeout_s: float
    broken: str | None
    timed_out: bool

    def transact(self, command: bytes) -> bytes:
        """Send one command buffer, return its response buffer.

        Raises:
            TransportError: no response (the transport is broken from then on).
        """
        ...

    def close(self) -> None: ...


def _check_header(response: bytes) -> int:
    _, size, _ = _HEADER.unpack_from(response)
    return int(size)


class _Deadlined:
    """What both transports share: the broken state and the per-command deadline."""

    tcti: str
    timeout_s: float

    def __init__(self) -> None:
        self.broken: str | None = None
        self.timed_out = False
        self._deadline = 0.0

    def _fail(self, why: str, *, timeout: bool = False) -> TransportError:
        self.broken = why
        self.timed_out = timeout
        self._drop()
        return TransportError(why, timed_out=timeout)

    def _drop(self) -> None:
        raise NotImplementedError

    def _start(self) -> None:
        if self.broken is not None:
            raise TransportError(self.broken, timed_out=self.timed_out)
        self._deadline = time.monotonic() + self.timeout_s

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._fail("no answer", timeout=True)
        return left


class SwtpmTransport(_Deadlined):
    """swtpm's command channel, over TCP or a unix socket."""

    def __init__(self, tcti: str, address: SwtpmAddress, timeout_s: float) -> None:
        super().__init__()
        self.tcti = tcti
        self.address = address
        self.timeout_s = timeout_s
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

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

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

    def transact(self, command: bytes) -> bytes:
        self._start()
        try:
            self._sock.settimeout(self._remaining())
            self._sock.sendall(command)
        except TimeoutError:
            raise self._fail("no answer", timeout=True) from None
        except OSError:
            raise self._fail("connection lost") from None
        header = self._read(_HEADER.size)
        size = _check_header(header)
        if not _HEADER.size <= size <= _MAX_RESPONSE:
            raise self._fail(f"not a TPM response (size field {size})")
        return header + self._read(size - _HEADER.size)

    def close(self) -> None:
        self._drop()


class DeviceTransport(_Deadlined):
    """The kernel's TPM character device: one write of the command, one read of the response.

    The kernel driver finishes (or aborts, after the TCG duration) a command within the write;
    the deadline bounds the wait for the response to become readable.
    """

    def __init__(self, tcti: str, path: str, timeout_s: float) -> None:
        super().__init__()
        self.tcti = tcti
        self.path = path
        self.timeout_s = timeout_s
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise TpmUnreachableError(
                f"cannot open the TPM at {path}: {exc.strerror or exc}",
                hint="is another program holding /dev/tpm0? use /dev/tpmrm0; are you root?",
            ) from None

    def _drop(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def transact(self, command: bytes) -> bytes:
        self._start()
        fd = self._fd
        if fd is None:
            raise self._fail("closed")
        try:
            written = os.write(fd, command)
            if written != len(command):
                raise self._fail(f"the device took {written} of {len(command)} bytes")
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(self._remaining() * 1000):
                raise self._fail("no answer", timeout=True)
            response = os.read(fd, _MAX_RESPONSE)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                raise self._fail("interrupted") from None
            raise self._fail(f"{exc.strerror or exc}") from None
        if len(response) < _HEADER.size or _check_header(response) != len(response):
            raise self._fail("not a TPM response (its size field does not match)")
        return response

    def close(self) -> None:
        self._drop()


def open_transport(tcti: str, timeout_s: float | None = None) -> Transport:
    """The transport for a TCTI string (``device:PATH`` or ``swtpm:...``).

    Raises:
        UsageError: ``$HEADS_TPM_TIMEOUT`` is not a number of seconds.
        TpmNotFoundError: the device node does not exist.
        TpmUnreachableError: the TCTI is malformed, or names something that is not a TPM, or
            nothing answers there.
    """
    kind, _, conf = tcti.partition(":")
    if kind == "device":
        path = conf or "/dev/tpmrm0"
        check_device(path)
        deadline = timeout_s if timeout_s is not None else timeout_from_env()
        return DeviceTransport(tcti, path, deadline)
    if kind == "swtpm":
        address = parse_swtpm(tcti, conf)
        deadline = timeout_s if timeout_s is not None else timeout_from_env()
        return SwtpmTransport(tcti, address, deadline)
    raise TpmUnreachableError(
        f"bad TCTI {tcti!r}: the kind {kind!r} is neither device nor swtpm",
        hint="use device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321",
    )
