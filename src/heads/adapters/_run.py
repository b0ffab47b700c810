"""The only place heads starts a process.

Every external tool runs through :func:`run`: an argv list (never a shell), a timeout, the C
locale (so tools print what their machine-readable formats promise), and failures turned into
:class:`~heads.errors.ToolError` carrying the command, its exit status and the end of its
stderr.  Secrets never go in argv: pass them through ``stdin`` or ``pass_fds``.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # noqa: TID251 - this module is the sanctioned subprocess caller
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from heads.core.frozen_record import FrozenRecord
from heads.errors import ToolError

__all__ = ["RunResult", "require_tool", "run"]

_STDERR_TAIL = 800


def _debug(message: str, *args: object) -> None:
    """A debug record, if logging is in use at all.

    Until something imports logging (heads.cli.main does for --debug and for the commands
    that log) no handler exists and a debug record goes nowhere; importing logging only to
    drop it cost short commands such as `heads boot verify` about 10 ms
    (docs/architecture.md §Command start-up).
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).debug(message, *args)


class RunResult(FrozenRecord):
    returncode: int
    stdout: bytes
    stderr: bytes


def require_tool(name: str, *, package: str | None = None) -> str:
    """Absolute path of ``name`` on PATH (also /sbin and /usr/sbin), or ToolError with a hint."""
    found = shutil.which(name) or shutil.which(
        name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )
    if found is None:
        hint = f"install it: apt-get install {package}" if package else "install it"
        raise ToolError(f"{name} is not installed (not found on PATH)", hint=hint)
    return found


def run(
    argv: Sequence[str | Path],
    *,
    desc: str,
    timeout_s: float = 60.0,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    pass_fds: Sequence[int] = (),
    cwd: Path | None = None,
    inherit_env: bool = True,
) -> RunResult:
    """Run ``argv`` and capture its output.

    Args:
        argv: the command; ``argv[0]`` is looked up on PATH.
        desc: what this run does, for error messages ("sign kexec hashes").
        timeout_s: killed after this long.
        stdin: bytes written to the process's stdin (the route for secrets).
        env: extra environment variables (merged over ours, with LC_ALL=C).
        check: raise ToolError on a non-zero exit status.
        pass_fds: file descriptors the child inherits (e.g. a passphrase pipe).
        cwd: working directory.
        inherit_env: start from our environment (default) or from ``PATH`` alone, for builds
            whose output must not depend on the caller's variables (``CC``, ``CFLAGS``...).

    Raises:
        ToolError: the tool is missing, timed out, or (with ``check``) exited non-zero.
    """
    args = [str(a) for a in argv]
    tool = require_tool(args[0])
    full_env = dict(os.environ) if inherit_env else {"PATH": os.environ.get("PATH", "")}
    full_env["LC_ALL"] = "C"
    if env:
        full_env.update(env)
    _debug("run (%s): %s", desc, " ".join(args))
    try:
        proc = subprocess.run(
            [tool, *args[1:]],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            env=full_env,
            check=False,
            pass_fds=tuple(pass_fds),
            cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"{desc}: {args[0]} did not finish within {timeout_s:g} s",
            details=(" ".join(args),),
        ) from None
    except OSError as exc:
        raise ToolError(f"{desc}: cannot run {args[0]}: {exc.strerror}") from exc
    if check and proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        raise ToolError(
            f"{desc}: {args[0]} exited with status {proc.returncode}",
            details=(" ".join(args), *tail.splitlines()[-8:]),
        )
    return RunResult(proc.returncode, proc.stdout, proc.stderr)
