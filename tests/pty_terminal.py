"""Drive a program on a pseudo-terminal as a person at the console would (whiptail tests)."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Mapping, Sequence

#: A hang guard, not a timing assertion: whiptail draws in well under a second.
_HANG_GUARD_S = 60


def run_on_terminal(
    argv: Sequence[str], env: Mapping[str, str], *, ready: bytes, keys: Sequence[bytes]
) -> tuple[int, bytes]:
    """Run ``argv`` on a new pseudo-terminal; once ``ready`` is on the screen, press ``keys``.

    Returns:
        The exit status and everything the program drew.
    """
    master, slave = os.openpty()
    proc = subprocess.Popen(
        list(argv),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dict(env),
        start_new_session=True,
    )
    os.close(slave)
    screen = bytearray()

    def drain(wait_s: float) -> bool:
        ready_fds, _w, _x = select.select([master], [], [], wait_s)
        if not ready_fds:
            return False
        try:
            chunk = os.read(master, 65536)
        except OSError:
            return False
        screen.extend(chunk)
        return bool(chunk)

    try:
        deadline = time.monotonic() + _HANG_GUARD_S
        while ready not in screen and time.monotonic() < deadline:
            drain(1)
        assert ready in screen, bytes(screen)
        for key in keys:
            os.write(master, key)
        status = proc.wait(timeout=_HANG_GUARD_S)
        while drain(0.2):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return status, bytes(screen)
