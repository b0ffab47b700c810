"""TPM endpoints that misbehave, for tests: a proxy that cuts the connection, a silent TPM.

:class:`TpmProxy` forwards a swtpm's command channel (``swtpm socket --server``: each command
and response is a raw TPM 2.0 buffer whose header's size field gives its length), counts the
commands, and after the N-th one has been executed by the TPM closes both sides without passing
its response on: the client sees the connection drop while the TPM has done the command.  This
is the worst moment for a power cut or a killed process, and looping N over every command of an
operation tests that each intermediate state is safe.

:class:`TpmProxy` can also change responses on their way back (:meth:`TpmProxy.tamper`), as an
interposer on a real TPM's bus could.

:class:`SilentTpm` accepts connections and never answers.

Nothing in the product imports this module.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["SilentTpm", "TpmProxy"]

_HEADER: Final = struct.Struct(">HII")  # tag, size, command code or response code
_MAX_BUFFER: Final = 4096
_POLL_S: Final = 0.1


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_buffer(sock: socket.socket) -> tuple[int, bytes] | None:
    """One TPM command or response: (command/response code, whole buffer), None at EOF."""
    header = _read_exact(sock, _HEADER.size)
    if header is None:
        return None
    _, size, code = _HEADER.unpack(header)
    if not _HEADER.size <= size <= _MAX_BUFFER:
        return None
    rest = _read_exact(sock, size - _HEADER.size)
    if rest is None:
        return None
    return code, header + rest


class _Listener:
    """A loopback listening socket with an accept thread; subclasses handle each client."""

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self._server.settimeout(_POLL_S)
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        self._accepter.start()

    def stop(self) -> None:
        self._stop.set()
        self._accepter.join()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join()
        self._server.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.append(sock)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._track(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


class SilentTpm(_Listener):
    """Accepts every connection and never answers (the client's commands are read and dropped)."""

    def _serve(self, client: socket.socket) -> None:
        while not self._stop.is_set() and _read_exact(client, 1) is not None:
            pass

    def __enter__(self) -> SilentTpm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TpmProxy(_Listener):
    """Forwards to the swtpm command port ``target_port``; cuts once, after the N-th command.

    :meth:`arm` sets N (None: never cut) and resets the count; :attr:`commands` lists the
    command codes forwarded since, :attr:`cut` says whether the cut happened.  The count runs
    over every connection, so N counts the commands of a whole CLI invocation; after the cut,
    new connections are forwarded again.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        super().__init__()
        self._target = (target_host, target_port)
        self.cut_after: int | None = None
        self.commands: list[int] = []
        self.cut = False
        self._tamper: dict[int, Callable[[bytes], bytes]] = {}
        self.tampered = 0

    def tamper(self, command_code: int, change: Callable[[bytes], bytes] | None) -> None:
        """Pass every response to ``command_code`` through ``change`` (None: stop)."""
        with self._lock:
            if change is None:
                self._tamper.pop(command_code, None)
            else:
                self._tamper[command_code] = change

    def arm(self, cut_after: int | None) -> None:
        with self._lock:
            self.cut_after = cut_after
            self.commands = []
            self.cut = False

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target)
        except OSError:
            client.close()
            return
        self._track(upstream)
        try:
            self._forward(client, upstream)
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        while True:
            command = _read_buffer(client)
            if command is None:
                return
            code, data = command
            with self._lock:
                self.commands.append(code)
                cut_here = self.cut_after is not None and len(self.commands) >= self.cut_after
                if cut_here:  # once: later connections (the next command run) go through
                    self.cut_after = None
            upstream.sendall(data)
            response = _read_buffer(upstream)
            if response is None:
                return
            if cut_here:
                with self._lock:
                    self.cut = True
                return  # the TPM did the command; its response never arrives
            data = response[1]
            with self._lock:
                change = self._tamper.get(code)
            if change is not None:
                data = change(data)
                with self._lock:
                    self.tampered += 1
            client.sendall(data)

    def __enter__(self) -> TpmProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
