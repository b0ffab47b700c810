"""Files pinned by SHA-256 (build inputs): hash one, take it from an inputs directory, check it.

Shared by the Debian and Python input adapters, which differ only in the command that
downloads a missing file.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

from heads.adapters._run import run
from heads.errors import HashMismatchError, ToolError

__all__ = ["check_pinned", "download_one", "from_inputs", "sha256_file"]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def from_inputs(inputs: Path, sub: str, filename: str, what: str) -> Path:
    """``inputs/sub/filename``, which must exist: an offline build never downloads.

    Raises:
        ToolError: the file is not there.
    """
    path = inputs / sub / filename
    if not path.is_file():
        raise ToolError(
            f"{what} is not in the inputs directory {inputs}",
            hint="export the inputs of this lock with `heads build --export-inputs DIR`",
        )
    return path


def check_pinned(path: Path, sha256: str, what: str, *, source: str) -> Path:
    """``path`` itself when its SHA-256 is the pinned one.

    Raises:
        HashMismatchError: it is not; the hint says what to do about the ``source`` it came
            from (an archive, an index).
    """
    actual = sha256_file(path)
    if actual != sha256:
        raise HashMismatchError(
            f"{path}: sha256 {actual} is not the pinned {sha256} ({what})",
            hint=f"delete the file to download it again; if the {source} changed the file, "
            "review the change and run `heads build --update-lock`",
        )
    return path


def download_one(argv: Sequence[str], dest_dir: Path, *, desc: str, timeout_s: float) -> Path:
    """Run a download command (``{dir}`` in ``argv`` stands for where it must write) that
    fetches exactly one file; the file appears in ``dest_dir`` only when complete.

    Raises:
        ToolError: the command failed or wrote other than one file.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".dl-") as tmp:
        run(
            [a.replace("{dir}", tmp) for a in argv],
            desc=desc,
            timeout_s=timeout_s,
            cwd=Path(tmp),
        )
        got = sorted(Path(tmp).iterdir())
        if len(got) != 1:
            raise ToolError(f"{desc}: {len(got)} files were downloaded, not 1")
        final = dest_dir / got[0].name
        got[0].replace(final)
    return final
