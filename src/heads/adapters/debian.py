"""Debian packages as pinned build inputs: download, verify, read their files.

``apt-get download`` fetches a ``.deb`` (name and exact version) from the host's configured
archive into a cache directory; :func:`fetch` checks its SHA-256 against the pin on every use, so
a warm cache builds offline and a swapped file is refused.  Package contents are read with
``dpkg-deb --fsys-tarfile`` into memory (:class:`DebFiles`); nothing is installed or unpacked
as root onto the host.  The ``dpkg-query``/``apt-cache`` helpers answer the questions
``heads build --update-lock`` asks (which package owns this library, which version is current).
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from heads.adapters._run import run
from heads.adapters.pinned import check_pinned, download_one, from_inputs, sha256_file
from heads.core.payload_lock import DebPin
from heads.errors import FormatError, ToolError

__all__ = [
    "DebFile",
    "DebFiles",
    "DebPin",
    "available",
    "candidate_version",
    "depends_of",
    "download",
    "fetch",
    "owner_of",
    "read_files",
    "sha256_file",
]

_MAX_DATA_TAR: Final = 1 << 30  # the kernel package's tar is about 110 MB


@dataclass(frozen=True, slots=True)
class DebFile:
    """A file, directory or symlink from a package, as stored in its data.tar."""

    path: str  # absolute, normalised: "/usr/bin/gpgv"
    kind: str  # "file", "dir" or "symlink"
    mode: int
    data: bytes
    target: str = ""


class DebFiles:
    """The file tree of one or more packages, held in memory, keyed by absolute path."""

    def __init__(self) -> None:
        self._files: dict[str, DebFile] = {}
        self._origin: dict[str, str] = {}

    def add(self, package: str, files: list[DebFile]) -> None:
        """Merge a package's files (a later package's file replaces an earlier one)."""
        for f in files:
            self._files[f.path] = f
            self._origin[f.path] = package

    def get(self, path: str) -> DebFile | None:
        """The entry at ``path`` without following symlinks."""
        return self._files.get(path)

    def origin(self, path: str) -> str | None:
        """The package that provided ``path``."""
        return self._origin.get(path)

    def resolve(self, path: str, *, max_links: int = 40) -> DebFile | None:
        """Follow symlinks (absolute or relative, in any component) to a file or directory.

        Debian 12 packages still ship some files under ``/lib`` and others under ``/usr/lib``;
        on an installed system ``/lib`` is a symlink to ``usr/lib`` (usrmerge), so a lookup
        under one also tries the other.
        """
        seen = 0
        current = _norm(path)
        while True:
            entry = self._files.get(current) or self._files.get(_usrmerge_alias(current))
            if entry is None:
                # A symlinked parent directory ("/usr/lib64/x" with /usr/lib64 -> lib): resolve
                # the longest linked prefix and retry.
                parent = self._resolve_parent(current)
                if parent is None or parent == current:
                    return None
                current = parent
            elif entry.kind != "symlink":
                return entry
            else:
                base = PurePosixPath(current).parent
                current = _norm(str(base / entry.target))
            seen += 1
            if seen > max_links:
                return None

    def _resolve_parent(self, path: str) -> str | None:
        parts = PurePosixPath(path).parts
        for i in range(len(parts) - 1, 1, -1):
            prefix = str(PurePosixPath(*parts[:i]))
            entry = self._files.get(prefix) or self._files.get(_usrmerge_alias(prefix))
            if entry is not None and entry.kind == "symlink":
                target = PurePosixPath(prefix).parent / entry.target
                return _norm(str(target.joinpath(*parts[i:])))
        return None

    def paths(self) -> list[str]:
        """Every path, sorted."""
        return sorted(self._files)


def _norm(path: str) -> str:
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/" + "/".join(out)


def _usrmerge_alias(path: str) -> str:
    for short in ("/lib", "/lib64", "/bin", "/sbin"):
        if path.startswith(short + "/"):
            return "/usr" + path
        if path.startswith("/usr" + short + "/"):
            return path[4:]
    return path


def download(name: str, version: str | None, dest_dir: Path) -> Path:
    """``apt-get download`` one package (the candidate version if ``version`` is None).

    The file appears in ``dest_dir`` under apt's name only when complete (fetched into a
    private temporary directory first, then renamed).

    Raises:
        ToolError: apt-get failed (not in the archive, no network...).
    """
    spec = f"{name}={version}" if version else name
    return download_one(
        ["apt-get", "download", "-q", spec],
        dest_dir,
        desc=f"download Debian package {spec}",
        timeout_s=600,
    )


def fetch(pin: DebPin, cache_dir: Path, *, inputs: Path | None = None) -> Path:
    """The pinned .deb, after checking its SHA-256: from ``inputs`` (offline: never
    downloaded) or from the cache (downloaded into it once).

    Raises:
        HashMismatchError: the file is not the pinned one.
        ToolError: not in ``inputs``, or the download failed.
    """
    if inputs is not None:
        path = from_inputs(inputs, "debs", pin.filename, pin.filename)
    else:
        path = cache_dir / pin.filename
        if not path.exists():
            path = download(pin.name, pin.version, cache_dir)
    return check_pinned(path, pin.sha256, f"{pin.name} {pin.version}", source="archive")


def available(name: str, version: str, arch: str) -> bool:
    """Whether the host's archive (apt's package lists) still offers this exact version.

    Raises:
        ToolError: apt-cache failed for another reason than "no such version".
    """
    result = run(
        ["apt-cache", "show", "--no-all-versions", f"{name}:{arch}={version}"],
        desc=f"look up {name} {version}",
        timeout_s=60,
        check=False,
    )
    if result.returncode == 0:
        return b"Package: " in result.stdout
    err = result.stderr.decode("utf-8", "replace")
    if "Unable to locate" in err or "No packages found" in err or "Can't select" in err:
        return False
    raise ToolError(f"apt-cache show {name}={version} failed", details=tuple(err.splitlines()[-4:]))


def read_files(deb: Path) -> list[DebFile]:
    """Every file, directory and symlink in a package's data.tar (``dpkg-deb --fsys-tarfile``).

    Raises:
        ToolError: dpkg-deb failed.
        FormatError: the data tar is unreadable or holds a member type we do not handle.
    """
    tar_bytes = run(
        ["dpkg-deb", "--fsys-tarfile", deb], desc=f"read {deb.name}", timeout_s=300
    ).stdout
    if len(tar_bytes) > _MAX_DATA_TAR:
        raise FormatError("data.tar is larger than 1 GiB", source=str(deb))
    out: list[DebFile] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for member in tar:
                path = _norm(member.name)
                if path == "/":
                    continue
                if member.isdir():
                    out.append(DebFile(path, "dir", member.mode & 0o7777, b""))
                elif member.issym():
                    out.append(DebFile(path, "symlink", 0o777, b"", member.linkname))
                elif member.isfile() or member.islnk():
                    # tarfile resolves a hard link to its target's contents.
                    fh = tar.extractfile(member)
                    data = fh.read() if fh is not None else b""
                    out.append(DebFile(path, "file", member.mode & 0o7777, data))
                else:
                    raise FormatError(
                        f"member {member.name!r} has an unsupported tar type", source=str(deb)
                    )
    except (tarfile.TarError, KeyError) as exc:
        raise FormatError(f"unreadable data.tar: {exc}", source=str(deb)) from exc
    return out


def candidate_version(name: str) -> tuple[str, str]:
    """(version, architecture) apt would install for ``name`` now.

    Raises:
        ToolError: apt-cache failed or knows no candidate.
    """
    out = run(
        ["apt-cache", "show", "--no-all-versions", name], desc=f"look up {name}", timeout_s=60
    ).stdout.decode("utf-8", "replace")
    version = re.search(r"^Version: (\S+)$", out, re.MULTILINE)
    arch = re.search(r"^Architecture: (\S+)$", out, re.MULTILINE)
    if version is None or arch is None:
        raise ToolError(f"apt knows no installable version of {name}")
    return version.group(1), arch.group(1)


def depends_of(name: str) -> list[str]:
    """Direct ``Depends:`` package names of ``name`` (used to resolve metapackages).

    Raises:
        ToolError: apt-cache failed.
    """
    out = run(
        ["apt-cache", "depends", "--no-recommends", "--no-suggests", name],
        desc=f"dependencies of {name}",
        timeout_s=60,
    ).stdout.decode("utf-8", "replace")
    return re.findall(r"^\s+Depends: ([a-z0-9][a-z0-9+.-]+)", out, re.MULTILINE)


def owner_of(filename: str) -> str | None:
    """The installed package that ships a file named ``filename`` in a library directory.

    Used only by ``--update-lock`` to find which package provides a shared library that a
    pinned binary needs; the answer is then pinned like every other package.

    Raises:
        ToolError: dpkg-query failed for another reason than "not found".
    """
    result = run(
        ["dpkg-query", "-S", f"*/x86_64-linux-gnu/{filename}"],
        desc=f"find the package of {filename}",
        timeout_s=60,
        check=False,
    )
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        pkgs, _, path = line.partition(": ")
        if PurePosixPath(path.strip()).name == filename:
            return pkgs.split(",")[0].split(":")[0].strip()
    return None
