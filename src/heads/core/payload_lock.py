"""The pinned inputs of a payload build (``payload/lock.json``) and Python's requirement pins.

A lock names every input by what is downloaded: each Debian package by name, version,
architecture and the SHA-256 of its ``.deb``; each Python distribution by name, version, the
file name of the wheel taken from the package index and that file's SHA-256.  Pure parsing and
formatting: no I/O.

``requirements.lock`` (``name==version --hash=sha256:...``, as ``pip --require-hashes`` reads
it) is parsed here too, so that the two locks can be checked against each other.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from heads.errors import FormatError

__all__ = [
    "DEFAULT_EXTRA_MODULES",
    "KERNEL_SOURCE_PREFIX",
    "LOCK_FORMAT",
    "DebPin",
    "LockChange",
    "PayloadLock",
    "PythonPin",
    "normalize_dist",
    "parse_requirement_hashes",
]

LOCK_FORMAT: Final = 2
DEFAULT_EXTRA_MODULES: Final = ("runpy", "encodings.idna", "encodings.ascii", "encodings.latin_1")
#: The payload kernel is built from Debian's kernel source: ``linux-source-X.Y``.
KERNEL_SOURCE_PREFIX: Final = "linux-source-"
_KERNEL_METAPACKAGE: Final = "linux-source"
_MAX_LOCK_BYTES: Final = 1 << 20
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION_RE: Final = re.compile(r"^[A-Za-z0-9.+~:-]+$")
_SHA_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_DIST_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ARTIFACT_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\.whl$")


@dataclass(frozen=True, slots=True)
class DebPin:
    """One pinned Debian package: exact version and the SHA-256 of its .deb file."""

    name: str
    version: str
    arch: str
    sha256: str

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"not a Debian package name: {self.name!r}")
        if not _VERSION_RE.fullmatch(self.version):
            raise ValueError(f"not a Debian version: {self.version!r}")
        if not _NAME_RE.fullmatch(self.arch):
            raise ValueError(f"not a Debian architecture: {self.arch!r}")
        if not _SHA_RE.fullmatch(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lower-case hex digits")

    @property
    def filename(self) -> str:
        """The archive's file name (apt writes the epoch colon as ``%3a``)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass(frozen=True, slots=True)
class PythonPin:
    """A Python distribution: the artifact downloaded from the index, by file name and SHA-256.

    Only wheels: the payload ships them as downloaded and builds nothing from source.
    """

    name: str
    version: str
    file: str
    sha256: str

    def __post_init__(self) -> None:
        if not _DIST_RE.fullmatch(self.name):
            raise ValueError(f"not a Python distribution name: {self.name!r}")
        if not _DIST_RE.fullmatch(self.version):
            raise ValueError(f"{self.name}: not a version: {self.version!r}")
        if not _ARTIFACT_RE.fullmatch(self.file) or ".." in self.file:
            raise ValueError(f"{self.name}: not a wheel file name: {self.file!r}")
        if not _SHA_RE.fullmatch(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lower-case hex digits")


@dataclass(frozen=True, slots=True)
class LockChange:
    """One input that differs between the published lock and the one a build used."""

    locked: str  # "name version" as pinned, or "-" when the input is new
    used: str  # "name version" as built, or "-" when the input was dropped

    def __str__(self) -> str:
        return f"{self.locked} -> {self.used}"


@dataclass(frozen=True, slots=True)
class PayloadLock:
    """The pinned inputs of a payload build."""

    source_date_epoch: int
    kernel: str
    debs: tuple[DebPin, ...]
    python: tuple[PythonPin, ...]
    extra_modules: tuple[str, ...] = DEFAULT_EXTRA_MODULES
    kernel_metapackage: str = _KERNEL_METAPACKAGE
    changes: tuple[LockChange, ...] = field(default=(), compare=False)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> PayloadLock:
        """Parse a lock file.

        Raises:
            FormatError: not JSON, another format version, or a malformed pin.
        """
        if len(data) > _MAX_LOCK_BYTES:
            raise FormatError("lock file larger than 1 MiB", source=source)
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict):
                raise FormatError("not a JSON object", source=source)
            if obj.get("format") != LOCK_FORMAT:
                raise FormatError(
                    f"lock format {obj.get('format')!r} is not {LOCK_FORMAT}",
                    source=source,
                    hint="re-pin it with `heads build --update-lock`",
                )
            debs = tuple(
                DebPin(str(d["name"]), str(d["version"]), str(d["arch"]), str(d["sha256"]))
                for d in obj["debian"]
            )
            python = tuple(
                PythonPin(str(p["name"]), str(p["version"]), str(p["file"]), str(p["sha256"]))
                for p in obj["python"]
            )
            epoch = int(obj["source_date_epoch"])
            kernel = str(obj["kernel"])
            meta = str(obj.get("kernel_metapackage", _KERNEL_METAPACKAGE))
            extra = tuple(str(m) for m in obj.get("extra_modules", DEFAULT_EXTRA_MODULES))
        except FormatError:
            raise
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as exc:
            raise FormatError(f"malformed lock: {exc}", source=source) from None
        if epoch < 0:
            raise FormatError("source_date_epoch is negative", source=source)
        for kind, names in (
            ("Debian", [d.name for d in debs]),
            ("Python", [p.name for p in python]),
        ):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise FormatError(f"{kind} package pinned twice: {', '.join(dup)}", source=source)
        if kernel not in {d.name for d in debs}:
            raise FormatError(f"kernel package {kernel} is not pinned", source=source)
        if not kernel.startswith(KERNEL_SOURCE_PREFIX):
            raise FormatError(
                f"kernel package {kernel} is not a {KERNEL_SOURCE_PREFIX}* package (the payload "
                "kernel is built from Debian's kernel source)",
                source=source,
                hint="re-pin it with `heads build --update-lock`",
            )
        return cls(epoch, kernel, debs, python, extra, meta)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys and pins), ending in a newline."""
        obj = {
            "format": LOCK_FORMAT,
            "source_date_epoch": self.source_date_epoch,
            "kernel": self.kernel,
            "kernel_metapackage": self.kernel_metapackage,
            "extra_modules": list(self.extra_modules),
            "debian": [
                {"name": d.name, "version": d.version, "arch": d.arch, "sha256": d.sha256}
                for d in sorted(self.debs, key=lambda d: d.name)
            ],
            "python": [
                {"name": p.name, "version": p.version, "file": p.file, "sha256": p.sha256}
                for p in sorted(self.python, key=lambda p: normalize_dist(p.name))
            ],
        }
        return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()

    @property
    def kernel_pin(self) -> DebPin:
        """The pin of the kernel source package."""
        return next(d for d in self.debs if d.name == self.kernel)

    def digest(self) -> str:
        """SHA-256 of the canonical form (recorded in the manifest)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def with_debs(self, debs: Iterable[DebPin], *, kernel: str | None = None) -> PayloadLock:
        """The same lock with other Debian pins (and kernel package), changes recorded."""
        new = tuple(sorted(debs, key=lambda d: d.name))
        kernel = kernel or self.kernel
        old_by = {d.name: d for d in self.debs}
        new_by = {d.name: d for d in new}
        changes = []
        for name in sorted(set(old_by) | set(new_by)):
            a, b = old_by.get(name), new_by.get(name)
            if a != b:
                changes.append(
                    LockChange(
                        f"{name} {a.version}" if a else "-", f"{name} {b.version}" if b else "-"
                    )
                )
        return replace(self, kernel=kernel, debs=new, changes=(*self.changes, *changes))


def normalize_dist(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement_hashes(text: str, *, source: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``{normalized name: (version, {sha256, ...})}`` from a ``--require-hashes`` file.

    Raises:
        FormatError: a requirement without an exact version or without a hash.
    """
    out: dict[str, tuple[str, frozenset[str]]] = {}
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("--hash") else raw
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            logical.append((start, buf.strip()))
        buf = ""
    for number, line in logical:
        m = re.match(
            r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)$", line
        )
        if m is None:
            raise FormatError("not `name==version --hash=sha256:...`", source=source, line=number)
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(3)))
        out[normalize_dist(m.group(1))] = (m.group(2), hashes)
    return out
