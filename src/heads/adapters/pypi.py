"""Python distributions as pinned build inputs: download, verify, read a wheel.

The wheel is fetched once with ``pip download`` into a cache (or taken from an inputs
directory written by ``heads build --export-inputs``) and checked against its pinned SHA-256
on every use.  The payload ships wheels as downloaded; nothing is built from source
(docs/reproducible-builds.md).
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Final

from heads.adapters.pinned import check_pinned, download_one, from_inputs
from heads.core.payload_lock import PythonPin
from heads.errors import FormatError, HashMismatchError

__all__ = ["download", "fetch", "wheel_files", "wheel_sha256"]

_MAX_MEMBER: Final = 256 << 20


def download(name: str, version: str, dest_dir: Path) -> Path:
    """``pip download --no-deps --only-binary :all: name==version`` into ``dest_dir``: the
    wheel pip picks for this interpreter.  The file appears in ``dest_dir`` only when complete.

    Raises:
        ToolError: pip failed (unknown version, no network...).
    """
    args = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation"]
    args += ["--disable-pip-version-check", "--only-binary", ":all:", "-d", "{dir}"]
    return download_one(
        [*args, f"{name}=={version}"],
        dest_dir,
        desc=f"download Python distribution {name} {version}",
        timeout_s=900,
    )


def fetch(pin: PythonPin, cache_dir: Path, *, inputs: Path | None = None) -> Path:
    """The pinned artifact, after checking its SHA-256: from ``inputs`` (offline, never
    downloaded) or from the cache (downloaded into it once).

    Raises:
        HashMismatchError: the file is not the pinned one.
        ToolError: not in ``inputs``, or the download failed.
    """
    what = f"{pin.name} {pin.version}"
    if inputs is not None:
        path = from_inputs(inputs, "python", pin.file, f"{pin.file} ({what})")
    else:
        path = cache_dir / pin.file
        if not path.exists():
            got = download(pin.name, pin.version, cache_dir)
            if got.name != pin.file:
                got.unlink()
                raise HashMismatchError(
                    f"the index serves {got.name} for {what}, not the pinned {pin.file}",
                    hint="review the change and run `heads build --update-lock`",
                )
    return check_pinned(path, pin.sha256, what, source="index")


def _check_member(name: str, source: Path) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise FormatError(f"member {name!r} points outside the archive", source=str(source))


def wheel_files(wheel: Path) -> dict[str, bytes]:
    """Every regular file of a wheel, by its path in the archive.

    Raises:
        FormatError: not a zip, a member outside the tree, or too large.
    """
    out: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                _check_member(info.filename, wheel)
                if info.file_size > _MAX_MEMBER:
                    raise FormatError(f"member {info.filename!r} is too large", source=str(wheel))
                out[info.filename] = zf.read(info)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"unreadable wheel: {exc}", source=str(wheel)) from None
    return out


def wheel_sha256(files: dict[str, bytes]) -> str:
    """A digest of a wheel's contents (names and bytes), independent of zip metadata."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return h.hexdigest()
