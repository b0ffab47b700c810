"""Python distributions as pinned build inputs: download, verify, build a wheel, read it.

The artifact is fetched once with ``pip download`` into a cache (or taken from an inputs
directory written by ``heads build --export-inputs``) and checked against its pinned SHA-256
on every use.  An sdist is built into a wheel by :func:`build_wheel` in a controlled build:
a clean environment, ``SOURCE_DATE_EPOCH``, the C compiler told to write no build path
(``-ffile-prefix-map``) and no debug information, and no network (``--no-index``, no build
isolation: its build tools are the ones ``requirements-build.lock`` installed).  Two such
builds, in different directories or on different machines with the same tools, give the same
files.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Final

from heads.adapters._run import run
from heads.adapters.atomic import copy_atomic
from heads.adapters.pinned import check_pinned, download_one, from_inputs
from heads.core.payload_lock import PythonPin
from heads.errors import FormatError, HashMismatchError, ToolError

__all__ = ["build_wheel", "download", "fetch", "wheel_files", "wheel_sha256"]

_MAX_MEMBER: Final = 256 << 20
_MAX_SDIST: Final = 256 << 20
# Where an sdist's build directory appears in what the compiler writes.
_BUILD_ROOT: Final = "/usr/src/python-build"


def download(name: str, version: str, dest_dir: Path, *, sdist: bool | None = None) -> Path:
    """``pip download --no-deps name==version`` into ``dest_dir``: the file pip picks.

    ``sdist=True`` asks for the source distribution, ``False`` for a wheel only; ``None`` lets
    pip choose (a wheel for this interpreter when one exists).  The file appears in
    ``dest_dir`` only when complete.

    Raises:
        ToolError: pip failed (unknown version, no network...).
    """
    args = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation"]
    args += ["--disable-pip-version-check", "-d", "{dir}"]
    if sdist is True:
        args += ["--no-binary", name]
    elif sdist is False:
        args += ["--only-binary", ":all:"]
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
            got = download(pin.name, pin.version, cache_dir, sdist=not pin.is_wheel)
            if got.name != pin.file:
                got.unlink()
                raise HashMismatchError(
                    f"the index serves {got.name} for {what}, not the pinned {pin.file}",
                    hint="review the change and run `heads build --update-lock`",
                )
    return check_pinned(path, pin.sha256, what, source="index")


def _extract_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack an sdist (tar.gz or zip) safely; returns its one top-level directory."""
    if sdist.stat().st_size > _MAX_SDIST:
        raise FormatError("sdist larger than 256 MiB", source=str(sdist))
    try:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as zf:
                for info in zf.infolist():
                    _check_member(info.filename, sdist)
                zf.extractall(dest)  # noqa: S202 - every member checked just above
        else:
            with tarfile.open(sdist, "r:gz") as tar:
                members = tar.getmembers()
                symlinks = {_key(m.name) for m in members if m.issym()}
                for member in members:
                    _check_tar_member(member, sdist, symlinks)
                tar.extractall(dest, members=members)  # noqa: S202 - every member checked
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"unreadable sdist: {exc}", source=str(sdist)) from None
    tops = sorted(dest.iterdir())
    if len(tops) != 1 or not tops[0].is_dir():
        raise FormatError("an sdist holds exactly one top-level directory", source=str(sdist))
    return tops[0]


def _key(name: str) -> str:
    return "/".join(PurePosixPath(name).parts)


def _check_tar_member(member: tarfile.TarInfo, source: Path, symlinks: set[str]) -> None:
    """Regular files, directories and links that stay inside the tree; nothing else.

    Links are judged by their text, so nothing may be reached through another link of the
    archive (``a -> ..`` then ``b -> a/../..`` would leave the tree, and a member written
    below a link to a directory lands wherever that link points).
    """
    _check_member(member.name, source)
    parts = PurePosixPath(member.name).parts
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in symlinks:
            raise FormatError(
                f"member {member.name!r} is below the link {'/'.join(parts[:i])!r}",
                source=str(source),
            )
    if member.issym() or member.islnk():
        # A symlink is relative to its directory, a hard link to the archive's root.
        base = PurePosixPath(member.name).parent.parts if member.issym() else ()
        if not _stays_inside(base, PurePosixPath(member.linkname), symlinks):
            raise FormatError(
                f"link {member.name!r} points outside the archive", source=str(source)
            )
    elif not (member.isfile() or member.isdir()):
        raise FormatError(f"member {member.name!r} is not a file or directory", source=str(source))


def _stays_inside(base: tuple[str, ...], target: PurePosixPath, symlinks: set[str]) -> bool:
    """Whether ``target``, followed from ``base``, stays in the tree without passing through
    one of ``symlinks`` (its last component may be a link: that link is checked on its own)."""
    if target.is_absolute():
        return False
    where = list(base)
    for i, part in enumerate(target.parts):
        if part == "..":
            if not where:
                return False
            where.pop()
            continue
        where.append(part)
        if i < len(target.parts) - 1 and "/".join(where) in symlinks:
            return False
    return True


def _check_member(name: str, source: Path) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise FormatError(f"member {name!r} points outside the archive", source=str(source))


def build_wheel(sdist: Path, out_dir: Path, *, source_date_epoch: int) -> Path:
    """Build the wheel of an sdist reproducibly; returns its path in ``out_dir``.

    Raises:
        FormatError: the sdist is malformed.
        ToolError: the build failed (the end of its output is in the details).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="heads-wheel-") as tmp:
        root = Path(tmp)
        tree = _extract_sdist(sdist, root / "src")
        # The build directory's name is fixed (the sdist's own); its location is mapped away.
        flags = f"-ffile-prefix-map={root / 'src'}={_BUILD_ROOT} -g0 -O2"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root / "home"),
            "LC_ALL": "C",
            "TZ": "UTC",
            "SOURCE_DATE_EPOCH": str(source_date_epoch),
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "CFLAGS": flags,
            "CXXFLAGS": flags,
            "LDFLAGS": "",
            "CPPFLAGS": "",
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        wheels = root / "wheels"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--no-cache-dir",
                "-w",
                wheels,
                tree,
            ],
            desc=f"build a wheel from {sdist.name}",
            timeout_s=1800,
            env=env,
            inherit_env=False,
            cwd=tree,
        )
        built = sorted(wheels.glob("*.whl"))
        if len(built) != 1:
            raise ToolError(f"building {sdist.name} produced {len(built)} wheels, not 1")
        final = out_dir / built[0].name
        copy_atomic(built[0], final)
    return final


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
