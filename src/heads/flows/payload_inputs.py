"""The payload's pinned inputs: load the lock, cope with a Debian archive that moved on,
export every input for an offline rebuild.

Debian keeps only the current version of a package in its archive; an exact pin stops being
downloadable days after a security update.  :func:`resolve_debian` finds the pins that are
gone and, unless the build is ``locked``, replaces each by the version apt offers now (the
kernel source through its metapackage: a new kernel series is a new package name).  The lock
it returns records every change, so the build can say plainly that its payload is not the
published one.
:func:`export_inputs` writes every pinned file with a checksum list; a build given that
directory (``inputs``) reads nothing else, downloads nothing, and rebuilds the published payload
byte for byte, months later or on a machine without network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters import debian, pypi
from heads.adapters.atomic import copy_atomic, write_atomic
from heads.core.payload_lock import KERNEL_SOURCE_PREFIX, DebPin, PayloadLock
from heads.errors import FormatError, ToolError, UsageError, VerificationError

__all__ = [
    "INPUTS_LOCK",
    "INPUTS_SUMS",
    "RESOLVED_LOCK",
    "ExportSummary",
    "MissingPinsError",
    "export_inputs",
    "inputs_lock",
    "load_lock",
    "read_debs",
    "resolve_debian",
]

INPUTS_LOCK: Final = "lock.json"
#: Written beside a build's outputs when it could not use the published lock as it is.
RESOLVED_LOCK: Final = "resolved-lock.json"
INPUTS_SUMS: Final = "SHA256SUMS"

Progress = Callable[[str], None]


class MissingPinsError(VerificationError):
    """Pinned Debian versions the archive no longer offers (refused by a ``locked`` build)."""

    def __init__(self, missing: tuple[DebPin, ...]) -> None:
        super().__init__(
            f"{len(missing)} pinned Debian package(s) are gone from the archive",
            details=tuple(f"{d.name} {d.version} ({d.arch})" for d in missing),
            hint="rebuild the published payload from its exported inputs (`heads build --inputs "
            "DIR`), or build without --locked to use the current versions (the result is then "
            "not the published payload); if apt's package lists are old, run `apt-get update`",
        )
        self.missing = missing


def load_lock(path: Path) -> PayloadLock:
    """Read and parse a lock file.

    Raises:
        UsageError: the file does not exist.
        FormatError: it is not a lock of this format.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"lock file {path} does not exist",
            hint="create it with `heads build --update-lock`",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read the lock file {path}: {exc.strerror}") from None
    return PayloadLock.from_bytes(data, source=str(path))


def _cached(pin: DebPin, debs_dir: Path) -> bool:
    # Presence only: reading the packages checks every one against its pin anyway, and
    # hashing them here too would read the kernel package twice per build.
    return (debs_dir / pin.filename).is_file()


def resolve_debian(
    lock: PayloadLock, cache_dir: Path, *, locked: bool, say: Progress
) -> PayloadLock:
    """The lock to build from: ``lock`` itself when every pin can be had (cached or in the
    archive), else, unless ``locked``, one with the vanished pins replaced by current versions.

    Raises:
        MissingPinsError: pins are gone and ``locked`` is set.
        ToolError: apt cannot answer or download.
    """
    debs_dir = cache_dir / "debs"
    missing = tuple(
        pin
        for pin in sorted(lock.debs, key=lambda d: d.name)
        if not _cached(pin, debs_dir) and not debian.available(pin.name, pin.version, pin.arch)
    )
    if not missing:
        return lock
    if locked:
        raise MissingPinsError(missing)
    pins = {d.name: d for d in lock.debs}
    kernel = lock.kernel
    for pin in missing:
        name = pin.name
        if name == lock.kernel:
            kernels = [
                d
                for d in debian.depends_of(lock.kernel_metapackage)
                if d.startswith(KERNEL_SOURCE_PREFIX)
            ]
            if not kernels:
                raise ToolError(
                    f"{lock.kernel_metapackage} depends on no {KERNEL_SOURCE_PREFIX}* package",
                    hint="run `apt-get update`",
                )
            name = kernel = kernels[0]
        version, arch = debian.candidate_version(name)
        path = debs_dir / DebPin(name, version, arch, "0" * 64).filename
        if not path.is_file():
            path = debian.download(name, version, debs_dir)
        del pins[pin.name]
        pins[name] = DebPin(name, version, arch, debian.sha256_file(path))
        say(f"warning: {pin.name} {pin.version} is gone from the archive; using {name} {version}")
    return lock.with_debs(pins.values(), kernel=kernel)


def read_debs(
    lock: PayloadLock, cache_dir: Path, inputs: Path | None, say: Progress
) -> debian.DebFiles:
    """Every pinned package's files, verified against the pins, but the kernel source's: that
    package is a source tarball, unpacked only to build the kernel (flows.kernel_build).

    Raises:
        HashMismatchError: a package is not the pinned one.
        ToolError: a package is missing from ``inputs`` or cannot be downloaded.
    """
    files = debian.DebFiles()
    debs_dir = cache_dir / "debs"
    for pin in sorted(lock.debs, key=lambda d: d.name):
        if pin.name == lock.kernel:
            continue
        path = debian.fetch(pin, debs_dir, inputs=inputs)
        files.add(pin.name, debian.read_files(path))
    where = f"the inputs in {inputs}" if inputs is not None else "the cache"
    say(f"read {len(lock.debs) - 1} pinned Debian packages from {where}")
    return files


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What :func:`export_inputs` wrote."""

    directory: Path
    files: int
    total_bytes: int
    lock_sha256: str


def export_inputs(lock: PayloadLock, cache_dir: Path, dest: Path, say: Progress) -> ExportSummary:
    """Write every input of ``lock`` (debs, Python artifacts), the lock and ``SHA256SUMS``.

    Nothing is resolved: an input the archive no longer has must be in the cache.

    Raises:
        MissingPinsError: a pin is neither cached nor downloadable.
        HashMismatchError: a cached file is not the pinned one.
        UsageError: ``dest`` exists and is not an empty directory or an earlier export.
    """
    if dest.exists() and any(dest.iterdir()) and not (dest / INPUTS_SUMS).is_file():
        raise UsageError(
            f"{dest} is not empty and holds no earlier export ({INPUTS_SUMS} is missing)",
            hint="give a new or empty directory",
        )
    resolve_debian(lock, cache_dir, locked=True, say=say)
    (dest / "debs").mkdir(parents=True, exist_ok=True)
    (dest / "python").mkdir(parents=True, exist_ok=True)
    sums: list[tuple[str, str]] = []
    total = 0
    for deb in sorted(lock.debs, key=lambda d: d.name):
        src = debian.fetch(deb, cache_dir / "debs")
        copy_atomic(src, dest / "debs" / deb.filename)
        sums.append((deb.sha256, f"debs/{deb.filename}"))
        total += src.stat().st_size
    for py in sorted(lock.python, key=lambda p: p.file):
        src = pypi.fetch(py, cache_dir / "python")
        copy_atomic(src, dest / "python" / py.file)
        sums.append((py.sha256, f"python/{py.file}"))
        total += src.stat().st_size
    lock_bytes = lock.to_bytes()
    write_atomic(dest / INPUTS_LOCK, lock_bytes)
    sums.append((hashlib.sha256(lock_bytes).hexdigest(), INPUTS_LOCK))
    # The format `sha256sum -c` reads, so the set can be checked without heads.
    listing = "".join(f"{digest}  {name}\n" for digest, name in sorted(sums, key=lambda x: x[1]))
    write_atomic(dest / INPUTS_SUMS, listing.encode())
    say(f"exported {len(sums)} files ({total / 2**20:.1f} MiB) to {dest}")
    return ExportSummary(dest, len(sums), total, lock.digest())


def inputs_lock(inputs: Path) -> PayloadLock:
    """The lock an inputs directory was exported from.

    Raises:
        UsageError: ``inputs`` is not an export.
        FormatError: its lock is malformed.
    """
    path = inputs / INPUTS_LOCK
    if not path.is_file():
        raise UsageError(
            f"{inputs} is not an inputs directory ({INPUTS_LOCK} is missing)",
            hint="write one with `heads build --export-inputs DIR`",
        )
    lock = load_lock(path)
    if not lock.python and not lock.debs:
        raise FormatError("the lock pins nothing", source=str(path))
    return lock
