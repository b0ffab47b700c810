"""Running Debian's ``whiptail`` on the controlling terminal (docs/runtime-menus.md).

whiptail draws on the terminal it inherits and writes the answer to ``--output-fd``: here a
pipe, read back by this process, so an answer (a passphrase from ``--passwordbox``) never
appears in argv, in the environment or on the screen.
"""

from __future__ import annotations

import os
import subprocess  # noqa: TID251 - whiptail needs our terminal and a pipe it writes to: Popen
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from heads.adapters._run import require_tool
from heads.errors import ToolError

__all__ = ["run_whiptail"]

_MAX_ANSWER: Final = 64 * 1024
#: whiptail's exit status: 0 OK/Yes, 1 Cancel/No, 255 Esc (or an error).
_EXPECTED: Final = (0, 1, 255)


def run_whiptail(
    build_argv: Callable[[int], Sequence[str]],
    *,
    env: Mapping[str, str | None],
    whiptail: str = "whiptail",
) -> tuple[int, bytes]:
    """Run whiptail on our terminal; return its exit status and what it wrote to the pipe.

    Args:
        build_argv: the arguments after the program name, given the pipe's descriptor.
        env: variables to set (a value of None removes the variable).
        whiptail: the program.

    Raises:
        ToolError: whiptail is missing or failed.
    """
    tool = require_tool(whiptail, package="whiptail")
    full_env = dict(os.environ)
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    read_fd, write_fd = os.pipe()
    try:
        argv = [tool, *build_argv(write_fd)]
        try:
            proc = subprocess.Popen(argv, env=full_env, pass_fds=(write_fd,))
        except OSError as exc:
            raise ToolError(f"cannot run {whiptail}: {exc.strerror}") from None
        os.close(write_fd)
        write_fd = -1
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(read_fd, 4096):
            if size < _MAX_ANSWER:
                chunks.append(chunk)
                size += len(chunk)
        code = proc.wait()
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if code not in _EXPECTED:
        raise ToolError(f"{whiptail} failed (exit status {code})")
    return code, b"".join(chunks)
