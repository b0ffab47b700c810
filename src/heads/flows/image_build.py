"""The boot payload, built reproducibly: our kernel and our initramfs.

The layout the runtime relies on is docs/guest-host-contract.md §Payload layout.

Inputs are pinned in a lock file (``payload/lock.json``, :mod:`heads.core.payload_lock`) by
what is downloaded: every Debian package by name, version and SHA-256 of its ``.deb``, every
Python distribution by the file name and SHA-256 of its wheel.  They are fetched once
into the cache (or read from a directory written by :func:`export_inputs`, offline) and checked
on every use.  Wheels are shipped as downloaded; nothing is built from source and nothing is
taken from the developer's virtualenv.  ``heads build --update-lock``
re-resolves the pins.

The Debian archive drops superseded versions within days.  When a pinned package is gone, a
plain build resolves its current version (the kernel source through its metapackage, since
the package name carries the kernel series), builds from that resolved lock, writes it beside the
output and says in the manifest and the summary that this is not the published payload;
``locked=True`` refuses instead.  A directory from :func:`export_inputs` rebuilds the published
payload byte for byte at any later time.

What goes into the initramfs (paths as in the archive):

* ``/init``: ``src/heads/runtime/init.sh`` (the boot runtime's shell entry).
* ``/bin/busybox`` (busybox-static) and its applet links; ``/sbin/kexec`` (kexec-tools);
  ``/sbin/cryptsetup`` (cryptsetup-bin); ``/usr/bin/gpgv``; ``/usr/bin/python3.11``
  (+ ``python3``); every shared library they load, found from each ELF file's ``DT_NEEDED``
  list and copied to ``/lib/x86_64-linux-gnu``, with the loader at
  ``/lib64/ld-linux-x86-64.so.2``.  heads speaks to the TPM itself (through
  ``/dev/tpmrm0``), so no TSS library is shipped.
* ``/usr/bin/whiptail`` (the menus on a real console, as Heads' text boards show them) and the
  terminfo entries it may be started with (:data:`TERMINFO_ENTRIES`, under ``/lib/terminfo``
  where Debian's ncurses-base puts them and libslang looks).
* ``/etc/config``: the board's defaults (``payload/boards/PLATFORM.config``, Heads'
  ``export CONFIG_X="v"`` lines), read before the owner's ``config.user``
  (docs/guest-host-contract.md §Payload layout).
* ``/usr/lib/python311.zip``: the stdlib modules the runtime imports, as hash-based
  (``UNCHECKED_HASH``) ``.pyc`` in a stored zip; ``/usr/lib/python3.11/lib-dynload/*.so`` that
  those modules load; third-party packages (segno) and
  ``heads`` itself as sourceless ``.pyc`` under ``/usr/lib/python3/heads-site``.  Run Python
  with ``PYTHONHOME=/usr PYTHONPATH=/usr/lib/python3/heads-site PYTHONDONTWRITEBYTECODE=1``.
* No kernel modules: the kernel is built from Debian's kernel source for the platform with
  everything the payload needs built in (:mod:`heads.flows.kernel_build`, the fragments in
  ``payload/kernel/``), so there is no ``/lib/modules`` and nothing to load.
* ``/dev/console`` (5,1) and ``/dev/null`` (1,3) as device nodes, and the usual empty mount
  points.

The stdlib closure: on the host, the same interpreter (without site-packages, with the pinned
distributions unpacked on its path) imports every ``heads`` module (except ``heads.testing``)
and every module named in an ``import`` statement anywhere in ``heads``, plus ``runpy`` and the
extra modules listed in the lock, and reports ``sys.modules``.  Third-party
packages are shipped whole (docs/guest-host-contract.md §Python in the payload: a package's
``__init__`` may import a module that failed on the host).

Determinism: the cpio writer fixes names, order, modes, owners, inodes and mtime
(``SOURCE_DATE_EPOCH``); ``.pyc`` files are compiled in a child with ``PYTHONHASHSEED=0`` and a
fixed order, with in-image paths as ``co_filename``; the zip has fixed dates and attributes;
zstd runs with fixed settings.  ``manifest.json`` lists the SHA-256 of every member (zip
members as ``python311.zip!name``), of every input and of the outputs; :func:`check_reproducible`
builds twice, the second time as another machine would (other paths, cache, ``HOME``, time
zone, locale, umask and host name), and names what differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

import heads
from heads.adapters import debian, pypi
from heads.adapters._run import run
from heads.adapters.atomic import write_atomic
from heads.adapters.debian import DebFiles
from heads.core.cpio import CpioEntry, Kind, write_newc
from heads.core.payload_budget import DEFAULT_BUDGET, check_budget, components
from heads.core.payload_lock import (
    DEFAULT_EXTRA_MODULES,
    KERNEL_SOURCE_PREFIX,
    LOCK_FORMAT,
    DebPin,
    PayloadLock,
    PythonPin,
    normalize_dist,
    parse_requirement_hashes,
)
from heads.errors import FormatError, HeadsError, UsageError, VerificationError
from heads.flows.kernel_build import KernelConfigError, build_kernel
from heads.flows.payload_inputs import (
    RESOLVED_LOCK,
    ExportSummary,
    MissingPinsError,
    export_inputs,
    inputs_lock,
    load_lock,
    read_debs,
    resolve_debian,
)

__all__ = [
    "BOARD_CONFIG",
    "DEFAULT_LOCK",
    "DEFAULT_PLATFORM",
    "HOST_ONLY_MODULES",
    "KERNEL_CONFIG",
    "LOCK_FORMAT",
    "RESOLVED_LOCK",
    "STDLIB_LEFT_OUT",
    "TERMINFO_ENTRIES",
    "ExportSummary",
    "KernelConfigError",
    "MissingPinsError",
    "Payload",
    "PayloadLock",
    "PayloadTooLargeError",
    "PythonPin",
    "ReproCheck",
    "board_config",
    "build_payload",
    "check_reproducible",
    "compare_published",
    "default_cache_dir",
    "enforce_budget",
    "export_payload_inputs",
    "published_digests",
    "read_manifest",
    "update_lock",
]

MANIFEST_FORMAT: Final = 3
KERNEL_CONFIG: Final = "kernel.config"
DEFAULT_LOCK: Final = Path(__file__).resolve().parents[3] / "payload" / "lock.json"
#: The kernel source is pinned through this metapackage (it depends on ``linux-source-X.Y``).
KERNEL_METAPACKAGE: Final = "linux-source"
#: The platform whose kernel configuration a build uses unless told otherwise.
DEFAULT_PLATFORM: Final = "qemu"
# Packages asked for by name; the libraries they need are added by --update-lock.
ROOT_PACKAGES: Final = (
    "busybox-static",
    "kexec-tools",
    "gpgv",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "flashrom",
    "whiptail",
    "ncurses-base",
    "cryptsetup-bin",
)
#: The terminals whiptail can draw on in the payload: the kernel's console (``linux``, the TERM
#: the kernel gives /init), a serial terminal and the usual terminal emulators.
TERMINFO_ENTRIES: Final = ("linux", "vt100", "vt102", "vt220", "xterm", "xterm-256color", "dumb")
#: The board defaults of each platform (``PLATFORM.config``).
BOARDS_DIR: Final = DEFAULT_LOCK.parent / "boards"
BOARD_CONFIG: Final = "etc/config"
# Python distributions never shipped even if the probe sees them (build tooling only).
_PY_EXCLUDE: Final = frozenset({"pip", "setuptools", "_distutils_hack", "pkg_resources", "heads"})
#: Stdlib modules left out of the payload although the probe loads them, to make room for
#: cryptsetup (docs/disk-key.md).  ``ssl`` comes only through segno's writers
#: (``urllib.request`` -> ``http.client``, which import it inside ``try``): the runtime opens
#: no network connection, and ``_ssl`` drags in libssl (about 0.3 MiB compressed).  ``bz2``
#: is imported by ``shutil`` inside ``try``; ``tarfile`` only by the host's Debian adapter.
#: tests/unit/test_runtime_imports.py runs the runtime's imports with these modules missing.
STDLIB_LEFT_OUT: Final = frozenset({"ssl", "_ssl", "bz2", "_bz2", "tarfile"})
#: heads modules that only build payloads on a host (apt, pip, a compiler): not shipped.
HOST_ONLY_MODULES: Final = frozenset(
    {
        "heads.adapters.debian",
        "heads.adapters.kernel_build",
        "heads.adapters.pypi",
        "heads.cli.build",
        "heads.flows.image_build",
        "heads.flows.kernel_build",
        "heads.flows.payload_inputs",
    }
)
_LIBDIR: Final = "/lib/x86_64-linux-gnu"
_LIB_SEARCH: Final = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
)
_STDLIB: Final = "/usr/lib/python3.11"
_SITE: Final = "usr/lib/python3/heads-site"
_PY_TAG: Final = (3, 11)
_ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)
# Level 22 with the window sized to the archive (--stream-size): 0.7 MiB smaller than -19, and
# the guest kernel unpacks it as fast; compressing takes about a minute, so the base archive's
# result is cached.  One thread: the output then cannot depend on the machine.
_ZSTD_ARGS: Final = ("--ultra", "-22", "--single-thread", "--no-progress", "-q", "-c")

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------- lock


# ----------------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Payload:
    """A built payload: the files QEMU boots and the manifest that describes them."""

    kernel: Path
    initramfs: Path
    manifest: Path
    kernel_size: int
    initramfs_size: int
    initramfs_uncompressed_size: int
    members: int
    kernel_version: str
    published: bool = True
    lock_changes: tuple[str, ...] = ()
    resolved_lock: Path | None = None
    kernel_config: Path | None = None
    kernel_from_cache: bool = False
    platform: str = DEFAULT_PLATFORM
    budget: int = DEFAULT_BUDGET


@dataclass(frozen=True, slots=True)
class ReproCheck:
    """Result of two builds compared: identical, or what differed (first member first)."""

    identical: bool
    first: Payload
    differences: tuple[str, ...] = ()
    varied: tuple[str, ...] = ()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/heads`` or ``~/.cache/heads``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "heads"


# --------------------------------------------------------------------------------------- ELF


@dataclass(frozen=True, slots=True)
class _Elf:
    interp: str | None
    needed: tuple[str, ...]


def _elf_info(data: bytes, source: str) -> _Elf | None:
    """PT_INTERP and DT_NEEDED of an x86-64 ELF file, or None if it is not ELF.

    ELF-64 object file format (System V gABI): program headers locate the dynamic section; its
    DT_STRTAB address is mapped back to a file offset through the PT_LOAD segments.
    """
    if data[:4] != b"\x7fELF":
        return None
    try:
        if data[4] != 2 or data[5] != 1:
            raise FormatError("not a 64-bit little-endian ELF file", source=source)
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", data, 0x20)[0],
            struct.unpack_from("<H", data, 0x36)[0],
            struct.unpack_from("<H", data, 0x38)[0],
        )
        loads: list[tuple[int, int, int]] = []
        interp: str | None = None
        dyn: tuple[int, int] | None = None
        for i in range(phnum):
            off = phoff + i * phentsize
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", data, off
            )
            if p_type == 1:  # PT_LOAD
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2:  # PT_DYNAMIC
                dyn = (p_offset, p_filesz)
            elif p_type == 3:  # PT_INTERP
                interp = data[p_offset : p_offset + p_filesz].split(b"\0")[0].decode()
        if dyn is None:
            return _Elf(interp, ())
        needed_offsets: list[int] = []
        strtab: int | None = None
        for pos in range(dyn[0], dyn[0] + dyn[1], 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == 1:
                needed_offsets.append(val)
            elif tag == 5:
                strtab = val
        if strtab is None:
            return _Elf(interp, ())
        base = next((o + strtab - v for v, o, sz in loads if v <= strtab < v + sz), None)
        if base is None:
            raise FormatError("DT_STRTAB is outside every PT_LOAD segment", source=source)
        needed = tuple(data[base + n :].split(b"\0", 1)[0].decode() for n in needed_offsets)
    except (struct.error, IndexError, UnicodeDecodeError, OverflowError) as exc:
        # OverflowError: an offset past what the platform can index (a forged 64-bit field).
        raise FormatError(f"truncated or malformed ELF file ({exc})", source=source) from None
    return _Elf(interp, needed)


# ------------------------------------------------------------------------------ Debian side


@dataclass
class _Tree:
    """Everything destined for the archive, keyed by archive path (no leading slash)."""

    entries: dict[str, CpioEntry] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def add(self, entry: CpioEntry, origin: str) -> None:
        self.entries[entry.path] = entry
        self.origins[entry.path] = origin


class _MissingLibrariesError(HeadsError):
    """Shared libraries that no pinned package provides (``--update-lock`` adds their owners)."""

    def __init__(self, sonames: Mapping[str, str]) -> None:
        super().__init__(
            f"{len(sonames)} shared libraries needed by the payload are in no pinned package",
            details=tuple(f"{s} (needed by {by})" for s, by in sorted(sonames.items())),
            hint="run `heads build --update-lock` to pin the packages that provide them",
        )
        self.sonames = dict(sonames)


def _find_lib(files: DebFiles, soname: str) -> bytes | None:
    for d in _LIB_SEARCH:
        entry = files.resolve(f"{d}/{soname}")
        if entry is not None and entry.kind == "file":
            return entry.data
    return None


def _add_elf_closure(tree: _Tree, files: DebFiles, roots: Iterable[tuple[str, bytes, str]]) -> None:
    """Add the loader and every DT_NEEDED library (transitively) of the given ELF files.

    Raises:
        _MissingLibrariesError: a needed library is in no pinned package.
    """
    queue = list(roots)
    seen: set[str] = set()
    missing: dict[str, str] = {}
    loaders: set[str] = set()
    while queue:
        name, data, source = queue.pop()
        info = _elf_info(data, source)
        if info is None:
            continue
        if info.interp is not None:
            loaders.add(PurePosixPath(info.interp).name)
            interp_path = info.interp.lstrip("/")
            if interp_path not in tree.entries:
                loader = files.resolve(info.interp)
                if loader is None or loader.kind != "file":
                    missing[PurePosixPath(info.interp).name] = name
                else:
                    tree.add(CpioEntry.file(interp_path, loader.data, executable=True), "libc6")
        for soname in info.needed:
            if soname in seen:
                continue
            seen.add(soname)
            if soname in loaders:
                # libc names the loader as a library too: one copy, at the PT_INTERP path.
                tree.add(
                    CpioEntry.symlink(f"{_LIBDIR.lstrip('/')}/{soname}", f"/lib64/{soname}"),
                    "libc6",
                )
                continue
            lib = _find_lib(files, soname)
            if lib is None:
                missing[soname] = name
                continue
            path = f"{_LIBDIR.lstrip('/')}/{soname}"
            tree.add(CpioEntry.file(path, lib, executable=True), "library")
            queue.append((soname, lib, soname))
    if missing:
        raise _MissingLibrariesError(missing)


def _busybox_links(busybox: bytes) -> list[str]:
    """Applet paths from ``busybox --list-full`` (the pinned static binary, run on the host)."""
    with tempfile.TemporaryDirectory(prefix="heads-busybox-") as tmp:
        exe = Path(tmp) / "busybox"
        exe.write_bytes(busybox)
        exe.chmod(0o700)
        out = run([exe, "--list-full"], desc="list busybox applets", timeout_s=30).stdout
    return sorted(line.strip() for line in out.decode().splitlines() if line.strip())


def _add_debian_parts(tree: _Tree, files: DebFiles) -> list[tuple[str, bytes, str]]:
    """Busybox and links, kexec, gpgv, python3.11, the TCTI module. Returns ELF roots."""
    roots: list[tuple[str, bytes, str]] = []

    def take(src: str, dst: str) -> bytes:
        entry = files.resolve(src)
        if entry is None or entry.kind != "file":
            raise FormatError(f"{src} is in no pinned package")
        tree.add(CpioEntry.file(dst, entry.data, executable=True), files.origin(src) or "?")
        roots.append((dst, entry.data, src))
        return entry.data

    busybox = take("/bin/busybox", "bin/busybox")
    take("/sbin/kexec", "sbin/kexec")
    take("/usr/bin/gpgv", "usr/bin/gpgv")
    # Flashing the firmware image from the running system (docs/qemu-platform.md §Flash).
    take("/usr/sbin/flashrom", "usr/sbin/flashrom")
    # Setting up and resealing the disk unlock key from the menus (docs/disk-key.md).
    take("/sbin/cryptsetup", "sbin/cryptsetup")
    take("/usr/bin/python3.11", "usr/bin/python3.11")
    take("/usr/bin/whiptail", "usr/bin/whiptail")
    for term in TERMINFO_ENTRIES:
        src = f"/lib/terminfo/{term[0]}/{term}"
        entry = files.resolve(src)
        if entry is None or entry.kind != "file":
            raise FormatError(f"terminfo entry {src} is in no pinned package")
        tree.add(CpioEntry.file(src.lstrip("/"), entry.data), files.origin(src) or "?")
    tree.add(CpioEntry.symlink("usr/bin/python3", "python3.11"), "heads")
    for link in _busybox_links(busybox):
        path = link.lstrip("/")
        if path in tree.entries or path == "bin/busybox":
            continue
        tree.add(CpioEntry.symlink(path, "/bin/busybox"), "busybox-static")
    for d in ("dev", "proc", "sys", "tmp", "run", "mnt", "root", "etc", "var/tmp", "boot"):
        tree.add(CpioEntry.directory(d), "heads")
    tree.add(CpioEntry.char_device("dev/console", 5, 1, perm=0o600), "heads")
    tree.add(CpioEntry.char_device("dev/null", 1, 3, perm=0o666), "heads")
    return roots


# ------------------------------------------------------------------------------ Python side

_PROBE: Final = r"""
import ast, importlib, json, os, pkgutil, sys
src, site, extra, result = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
host_only = set(json.loads(sys.argv[5]))
sys.path[:0] = [src, site]
failed = {}
names = set(extra)
pkg_dir = os.path.join(src, "heads")
for root, dirs, files in os.walk(pkg_dir):
    dirs[:] = sorted(d for d in dirs if d not in ("testing", "__pycache__"))
    for f in sorted(files):
        if not f.endswith(".py"):
            continue
        path = os.path.join(root, f)
        rel = os.path.relpath(path, src)[:-3].replace(os.sep, ".")
        # Entry points run when imported: their imports are collected below, not executed.
        if rel in host_only:
            continue
        if not rel.endswith("__main__"):
            names.add(rel[: -len(".__init__")] if rel.endswith(".__init__") else rel)
        tree = ast.parse(open(path, "rb").read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
for name in sorted(names):
    if name.startswith("heads.testing") or name in host_only:
        continue
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
mods = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
import importlib.metadata as md
dists = {}
for top, ds in md.packages_distributions().items():
    dists[top] = ds
versions = {}
for d in md.distributions(path=[site]):
    versions[d.metadata["Name"]] = d.version
with open(result, "w") as fh:
    json.dump({"modules": mods, "failed": failed, "dists": dists, "versions": versions}, fh)
"""

_COMPILE: Final = r"""
import json, py_compile, sys
jobs = json.load(sys.stdin)
for src, cfile, dfile, optimize in jobs:
    py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True, optimize=optimize,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


@dataclass(frozen=True, slots=True)
class _PySelection:
    stdlib: tuple[str, ...]  # absolute paths under /usr/lib/python3.11 (.py or lib-dynload .so)
    packages: dict[str, tuple[Path, ...]]  # distribution -> files (under site-packages)
    versions: dict[str, str]
    site: Path
    failed: dict[str, str] = field(default_factory=dict)


def _heads_sources() -> Path:
    """The directory holding the ``heads`` package (shipped from source, compiled here)."""
    if sys.version_info[:2] != _PY_TAG:
        raise UsageError(
            f"the payload builder needs Python {_PY_TAG[0]}.{_PY_TAG[1]} (the interpreter "
            f"shipped in the payload); this is {sys.version.split()[0]}"
        )
    return Path(heads.__file__).resolve().parent.parent


def _probe_python(extra: Iterable[str], site: Path, *, isolated: bool = True) -> _PySelection:
    """Which stdlib files and which distributions of ``site`` the runtime imports.

    ``isolated`` runs the probe without site-packages (``-S``): only the stdlib, the heads
    sources and ``site`` (the pinned distributions, unpacked) can be found, so nothing of the
    developer's virtualenv can slip into the payload.
    """
    src = _heads_sources()
    # The result goes to a file: a module may print while being imported.
    with tempfile.TemporaryDirectory(prefix="heads-probe-") as tmp:
        result = Path(tmp) / "modules.json"
        run(
            [
                sys.executable,
                "-I",
                *(["-S"] if isolated else []),
                "-c",
                _PROBE,
                str(src),
                str(site),
                json.dumps(sorted(extra)),
                str(result),
                json.dumps(sorted(HOST_ONLY_MODULES)),
            ],
            desc="find the modules the runtime imports",
            timeout_s=300,
            env={"PYTHONHASHSEED": "0"},
        )
        info: dict[str, Any] = json.loads(result.read_bytes())
    stdlib: set[str] = set()
    tops: set[str] = set()
    site_s = str(site) + "/"
    for name, file in info["modules"].items():
        if not file:
            continue
        if name in STDLIB_LEFT_OUT:
            continue
        if file.startswith(_STDLIB + "/") and "-packages/" not in file:
            stdlib.add(file)
        elif file.startswith(site_s):
            top = name.split(".")[0]
            if top not in _PY_EXCLUDE:
                tops.add(top)
    packages: dict[str, list[Path]] = {}
    dists: dict[str, list[str]] = info["dists"]
    for top in sorted(tops):
        dist_names = dists.get(top)
        if not dist_names:
            raise UsageError(f"module {top} in {site} belongs to no installed distribution")
        dist = dist_names[0]
        pkg_dir = site / top
        if pkg_dir.is_dir():
            found = sorted(
                p
                for p in pkg_dir.rglob("*")
                if p.is_file()
                and "__pycache__" not in p.parts
                and (p.suffix == ".py" or p.name.endswith(".so"))
            )
        else:
            found = sorted(p for p in site.iterdir() if p.name.split(".")[0] == top and p.is_file())
        packages.setdefault(dist, []).extend(found)
    return _PySelection(
        stdlib=tuple(sorted(stdlib)),
        packages={k: tuple(sorted(v)) for k, v in packages.items()},
        versions=dict(info["versions"]),
        site=site,
        failed=dict(info["failed"]),
    )


@dataclass(frozen=True, slots=True)
class _PyInput:
    """A pinned distribution as used: its artifact and the wheel whose files were shipped."""

    pin: PythonPin
    wheel: str
    files_sha256: str

    def describe(self) -> dict[str, object]:
        return {
            "version": self.pin.version,
            "artifact": self.pin.file,
            "artifact_sha256": self.pin.sha256,
            "wheel": self.wheel,
            "wheel_files_sha256": self.files_sha256,
        }


def _python_inputs(
    lock: PayloadLock, cache_dir: Path, inputs: Path | None, site: Path
) -> list[_PyInput]:
    """Fetch every pinned wheel and unpack it into ``site``; returns what was used."""
    used: list[_PyInput] = []
    site.mkdir(parents=True, exist_ok=True)
    for pin in sorted(lock.python, key=lambda p: normalize_dist(p.name)):
        wheel = pypi.fetch(pin, cache_dir / "python", inputs=inputs)
        files = pypi.wheel_files(wheel)
        for name, data in files.items():
            dest = site / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        used.append(_PyInput(pin, wheel.name, pypi.wheel_sha256(files)))
    return used


def _compile_all(jobs: list[tuple[bytes, str, int]], workdir: Path) -> list[bytes]:
    """Compile sources (bytes, in-image path, optimize level) to hash-based .pyc, in one child
    with a fixed hash seed and order (marshal output depends on both)."""
    specs: list[list[str | int]] = []
    for i, (source, dfile, optimize) in enumerate(jobs):
        src = workdir / f"{i}.py"
        src.write_bytes(source)
        specs.append([str(src), str(workdir / f"{i}.pyc"), dfile, optimize])
    run(
        [sys.executable, "-I", "-c", _COMPILE],
        desc="compile Python modules",
        timeout_s=600,
        stdin=json.dumps(specs).encode(),
        env={"PYTHONHASHSEED": "0"},
    )
    return [(workdir / f"{i}.pyc").read_bytes() for i in range(len(jobs))]


def _stored_zip(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, members[name])
    return buf.getvalue()


def _add_python(
    tree: _Tree, files: DebFiles, sel: _PySelection, workdir: Path
) -> tuple[list[tuple[str, bytes, str]], dict[str, bytes]]:
    """Stdlib zip, lib-dynload, third-party and heads .pyc. Returns (ELF roots, zip members)."""
    roots: list[tuple[str, bytes, str]] = []
    # Stdlib and third-party code is compiled with docstrings and asserts removed (-OO: about
    # 0.4 MiB less after compression); heads keeps both.
    jobs: list[tuple[bytes, str, int]] = []
    targets: list[tuple[str, str]] = []  # ("zip" | "tree", path)
    for path in sel.stdlib:
        rel = path.removeprefix(_STDLIB + "/")
        entry = files.resolve(path)
        if entry is None or entry.kind != "file":
            raise FormatError(
                f"stdlib file {path} is in no pinned package",
                hint="run `heads build --update-lock`",
            )
        if rel.startswith("lib-dynload/"):
            dst = path.lstrip("/")
            tree.add(CpioEntry.file(dst, entry.data, executable=True), files.origin(path) or "?")
            roots.append((dst, entry.data, path))
        elif path.endswith(".py"):
            jobs.append((entry.data, path, 2))
            targets.append(("zip", rel[:-3] + ".pyc"))
    for dist, paths in sorted(sel.packages.items()):
        for p in paths:
            rel = p.relative_to(sel.site).as_posix()
            data = p.read_bytes()
            if p.suffix == ".py":
                jobs.append((data, f"/{_SITE}/{rel}", 2))
                targets.append(("tree", f"{_SITE}/{rel[:-3]}.pyc"))
            else:
                tree.add(CpioEntry.file(f"{_SITE}/{rel}", data, executable=True), dist)
                roots.append((f"{_SITE}/{rel}", data, str(p)))
    src = _heads_sources()
    for p in sorted((src / "heads").rglob("*.py")):
        rel = p.relative_to(src).as_posix()
        if rel.startswith("heads/testing/") or "__pycache__" in rel:
            continue
        if rel[:-3].replace("/", ".") in HOST_ONLY_MODULES:
            continue
        jobs.append((p.read_bytes(), f"/{_SITE}/{rel}", 0))
        targets.append(("tree", f"{_SITE}/{rel[:-3]}.pyc"))
    pycs = _compile_all(jobs, workdir)
    zip_members: dict[str, bytes] = {}
    for (kind, dst), pyc in zip(targets, pycs, strict=True):
        if kind == "zip":
            zip_members[dst] = pyc
        else:
            tree.add(CpioEntry.file(dst, pyc), "python")
    tree.add(CpioEntry.file("usr/lib/python311.zip", _stored_zip(zip_members)), "python")
    # Read by the runtime's init.sh before it starts Python.
    env = f"PYTHONHOME=/usr\nPYTHONPATH=/{_SITE}\nPYTHONDONTWRITEBYTECODE=1\n"
    tree.add(CpioEntry.file("etc/heads/python.env", env.encode()), "heads")
    return roots, zip_members


# ------------------------------------------------------------------------------------ build


def _in_top(path: str) -> bool:
    # The board defaults come from this checkout, not from a pinned input: top part.
    return (
        path in ("init", BOARD_CONFIG)
        or path.startswith(f"{_SITE}/heads/")
        or path == f"{_SITE}/heads"
    )


def board_config(platform: str, boards: Path = BOARDS_DIR) -> bytes:
    """The platform's board defaults, checked as the runtime will read them.

    Raises:
        UsageError: the platform has no board file.
        FormatError: the file does not parse (named with its line), or sets a key to a value
            Heads would not understand.
    """
    from heads.core.heads_config import parse_config, problems  # noqa: PLC0415

    path = boards / f"{platform}.config"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"platform {platform} has no board defaults ({path}: {exc.strerror})",
            hint=f"add {path.name} to {boards}",
        ) from None
    bad = problems(parse_config(data, source=str(path)))
    if bad:
        raise FormatError(f"board defaults Heads would not understand: {'; '.join(bad)}")
    return data


def _compress(data: bytes, cache: Path | None, say: Progress) -> bytes:
    """zstd with fixed settings; a cached result is used only if it decompresses to ``data``."""
    key = _sha(data + " ".join(_ZSTD_ARGS).encode())
    cached = cache / f"{key}.zst" if cache is not None else None
    if cached is not None and cached.is_file():
        frame = cached.read_bytes()
        back = run(
            ["zstd", "-dc", "-q"], desc="check a cached compressed archive", stdin=frame
        ).stdout
        if back == data:
            say("base archive: compressed form taken from the cache (verified)")
            return frame
    if len(data) > 1 << 20:
        say(
            f"compressing {len(data) / 2**20:.1f} MiB with zstd "
            f"{' '.join(_ZSTD_ARGS[:2])} (slow once)"
        )
    frame = run(
        ["zstd", *_ZSTD_ARGS, f"--stream-size={len(data)}"],
        desc="compress the initramfs",
        timeout_s=900,
        stdin=data,
    ).stdout
    if cached is not None:
        _write(cached, frame)
    return frame


def _tool_versions() -> dict[str, str]:
    """The host tools whose output is in the payload (not pinned by the lock: recorded so that
    a digest change between machines can be traced to them)."""

    def first_line(argv: list[str]) -> str:
        out = run(argv, desc=f"{argv[0]} version", timeout_s=30).stdout.decode("utf-8", "replace")
        return out.strip().splitlines()[0] if out.strip() else "?"

    return {
        "zstd": first_line(["zstd", "-V"]),
        "python": sys.version.split()[0],
    }


def _default_init() -> Path:
    return Path(heads.__file__).resolve().parent / "runtime" / "init.sh"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _member_digest(entry: CpioEntry) -> str:
    if entry.kind is Kind.DIRECTORY:
        return "dir"
    if entry.kind is Kind.SYMLINK:
        return "-> " + entry.data.decode()
    if entry.kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE):
        return f"{'c' if entry.kind is Kind.CHAR_DEVICE else 'b'} {entry.rdev[0]},{entry.rdev[1]}"
    return f"{entry.perm:04o} {_sha(entry.data)}"


def _assemble(
    files: DebFiles,
    sel: _PySelection,
    init_script: Path,
    workdir: Path,
) -> tuple[_Tree, dict[str, bytes]]:
    tree = _Tree()
    roots = _add_debian_parts(tree, files)
    py_roots, zip_members = _add_python(tree, files, sel, workdir)
    _add_elf_closure(tree, files, [*roots, *py_roots])
    tree.add(CpioEntry.file("init", init_script.read_bytes(), executable=True), "heads")
    return tree, zip_members


def _epoch(lock: PayloadLock, explicit: int | None) -> int:
    if explicit is not None:
        return explicit
    env_epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if env_epoch is not None and env_epoch.isdigit():
        return int(env_epoch)
    return lock.source_date_epoch


def build_payload(
    out_dir: Path,
    *,
    cache_dir: Path,
    lock_path: Path | None = None,
    inputs: Path | None = None,
    locked: bool = False,
    init_script: Path | None = None,
    source_date_epoch: int | None = None,
    progress: Progress | None = None,
    compression_cache: bool = True,
    platform: str = DEFAULT_PLATFORM,
    budget: int = DEFAULT_BUDGET,
) -> Payload:
    """Build ``vmlinuz``, ``kernel.config``, ``initramfs.cpio.zst`` and ``manifest.json``
    into ``out_dir``.

    Args:
        out_dir: created if missing; the files are replaced atomically.
        cache_dir: downloads (``debs/``, ``python/``), built wheels and compressed archives.
        lock_path: the pins (default ``payload/lock.json``, or the lock of ``inputs``).
        inputs: a directory from :func:`export_inputs`: every input is read from it, nothing
            is downloaded (an offline, byte-for-byte rebuild).
        locked: refuse to build when a pinned package is gone from the archive, instead of
            building from current versions.
        init_script: the initramfs's ``/init`` (default ``src/heads/runtime/init.sh``).
        source_date_epoch: the one mtime of every member (default: the lock's value, or
            ``$SOURCE_DATE_EPOCH`` when set).
        progress: called with one short line per stage (and each warning).
        compression_cache: reuse a cached zstd output of an identical base archive (checked by
            decompressing it); :func:`check_reproducible` turns this off.
        platform: whose kernel configuration to build (``payload/kernel/PLATFORM.fragment``);
            the kernel is cached by all its inputs (:func:`heads.flows.kernel_build.
            build_kernel`), so only the first build of a configuration compiles it.
        budget: the most the kernel and the compressed initramfs may weigh together.

    Returns:
        The paths and sizes of what was built, and whether it is the published payload.

    Raises:
        UsageError: no lock file, no /init script, or the wrong Python version.
        MissingPinsError: with ``locked``, pinned packages are gone from the archive.
        HashMismatchError: a cached or exported input differs from its pin.
        FormatError: the lock or an input package is malformed or lacks a needed file.
        KernelConfigError: an option of the platform's kernel configuration did not survive.
        PayloadTooLargeError: the payload is over ``budget`` (nothing is written).
        ToolError: apt-get, pip, the compiler, make, dpkg-deb, busybox or zstd failed.
    """
    say: Progress = progress or (lambda _msg: None)
    if lock_path is None:
        published = inputs_lock(inputs) if inputs is not None else load_lock(DEFAULT_LOCK)
    else:
        published = load_lock(lock_path)
        if inputs is not None and inputs_lock(inputs).digest() != published.digest():
            say(f"note: {inputs} was exported from another lock; inputs missing there fail")
    init = init_script or _default_init()
    if not init.is_file():
        raise UsageError(
            f"no /init for the initramfs: {init} does not exist",
            hint="pass the boot runtime's init script (the runtime provides src/heads/runtime/"
            "init.sh)",
        )
    lock = published
    if inputs is None:
        lock = resolve_debian(published, cache_dir, locked=locked, say=say)
    epoch = _epoch(lock, source_date_epoch)
    files = read_debs(lock, cache_dir, inputs, say)
    with tempfile.TemporaryDirectory(prefix="heads-build-") as tmp:
        site = Path(tmp) / "site"
        py_inputs = _python_inputs(lock, cache_dir, inputs, site)
        sel = _probe_python(lock.extra_modules, site)
        say(f"Python: {len(sel.stdlib)} stdlib files, {len(sel.packages)} distributions")
        for name, why in sorted(sel.failed.items()):
            # Not fatal: a module may need something only the host has; a module the runtime
            # really needs fails the boot test instead.
            say(f"note: {name} did not import on the host ({why}); shipped as found")
        unused = sorted(
            p.name
            for p in lock.python
            if normalize_dist(p.name) not in {normalize_dist(d) for d in sel.packages}
        )
        if unused:
            say(f"note: pinned but never imported, not shipped: {', '.join(unused)}")
        tree, zip_members = _assemble(files, sel, init, Path(tmp))
    board = board_config(platform)
    tree.add(CpioEntry.file(BOARD_CONFIG, board), "board")
    # After every other input was checked and the initramfs assembled: a bad input fails the
    # build before the slow part.
    kernel = build_kernel(
        lock.kernel_pin,
        cache_dir=cache_dir,
        inputs=inputs,
        platform=platform,
        epoch=epoch,
        progress=say,
    )
    # Two archives, concatenated: the kernel unpacks each in turn (as it does for early
    # microcode + initramfs).  The base (Debian files, Python, libraries) rarely changes, so its
    # slow zstd -22 output is cached; the top part (heads itself and /init) is small.
    top = [e for p, e in tree.entries.items() if _in_top(p)]
    base = [e for p, e in tree.entries.items() if not _in_top(p)]
    cpios = []
    for part in (base, top):
        buf = io.BytesIO()
        write_newc(part, buf, mtime=epoch)
        cpios.append(buf.getvalue())
    total = sum(len(c) for c in cpios)
    say(f"initramfs: {len(tree.entries)} members, {total / 2**20:.1f} MiB uncompressed")
    zcache = cache_dir / "zstd" if compression_cache else None
    frames = [_compress(cpios[0], zcache, say), _compress(cpios[1], None, say)]
    zstd = b"".join(frames)
    cpio = b"".join(cpios)
    members = {path: _member_digest(e) for path, e in tree.entries.items()}
    for name, data in zip_members.items():
        members[f"usr/lib/python311.zip!{name}"] = _sha(data)
    is_published = lock.digest() == published.digest()
    sizes = {path: len(e.data) for path, e in tree.entries.items() if e.kind is Kind.FILE}
    parts = {"kernel": len(kernel.image), **components(sizes)}
    enforce_budget(out_dir, len(kernel.image) + len(zstd), budget, parts)
    tools = _tool_versions()
    manifest = {
        "format": MANIFEST_FORMAT,
        "source_date_epoch": epoch,
        "lock_sha256": lock.digest(),
        "published": is_published,
        "published_lock_sha256": published.digest(),
        "lock_changes": [str(c) for c in lock.changes],
        "kernel": kernel.describe(),
        # How this build went, not what it produced: left out when two builds are compared.
        "build": {"kernel_from_cache": kernel.from_cache},
        "initramfs": {
            "file": "initramfs.cpio.zst",
            "sha256": _sha(zstd),
            "size": len(zstd),
            "cpio_sha256": _sha(cpio),
            "cpio_size": len(cpio),
            "parts": [
                {"cpio_sha256": _sha(c), "cpio_size": len(c), "zstd_size": len(f)}
                for c, f in zip(cpios, frames, strict=True)
            ],
            "compression": "zstd " + " ".join(_ZSTD_ARGS[:2]),
        },
        "inputs": {
            "debian": {d.name: f"{d.version} {d.sha256}" for d in lock.debs},
            "python": {p.pin.name: p.describe() for p in py_inputs},
        },
        "members": members,
        "board": {"platform": platform, "file": BOARD_CONFIG, "sha256": _sha(board)},
        # Uncompressed bytes per component (the kernel as shipped): what the size budget
        # check compares with the previous build.
        "components": parts,
        "tools": tools,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / "vmlinuz", kernel.image)
    _write(out_dir / KERNEL_CONFIG, kernel.config)
    _write(out_dir / "initramfs.cpio.zst", zstd)
    resolved = out_dir / RESOLVED_LOCK
    if is_published:
        resolved.unlink(missing_ok=True)
    else:
        _write(resolved, lock.to_bytes())
    _write(
        out_dir / "manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    )
    return Payload(
        kernel=out_dir / "vmlinuz",
        initramfs=out_dir / "initramfs.cpio.zst",
        manifest=out_dir / "manifest.json",
        kernel_size=len(kernel.image),
        initramfs_size=len(zstd),
        initramfs_uncompressed_size=len(cpio),
        members=len(tree.entries),
        kernel_version=kernel.release,
        published=is_published,
        lock_changes=tuple(str(c) for c in lock.changes),
        resolved_lock=None if is_published else resolved,
        kernel_config=out_dir / KERNEL_CONFIG,
        kernel_from_cache=kernel.from_cache,
        platform=kernel.platform,
        budget=budget,
    )


class PayloadTooLargeError(HeadsError):
    """The payload does not fit its size budget (the flash chip's share)."""


def enforce_budget(out_dir: Path, total: int, budget: int, parts: Mapping[str, int]) -> None:
    """Refuse a payload over ``budget``, naming what grew since the build in ``out_dir``.

    Raises:
        PayloadTooLargeError: over budget; nothing in ``out_dir`` is replaced.
    """
    before: dict[str, int] | None = None
    with contextlib.suppress(HeadsError, OSError, KeyError, TypeError, ValueError):
        previous = read_manifest(out_dir / "manifest.json").get("components")
        if isinstance(previous, dict):
            before = {str(k): int(v) for k, v in previous.items()}
    check = check_budget(total, budget, parts, before)
    if check.ok:
        return
    what = "grew since the last build" if before else "weigh the most"
    raise PayloadTooLargeError(
        f"the payload is {total / 2**20:.2f} MiB (kernel + compressed initramfs), over its "
        f"{budget / 2**20:.2f} MiB budget; these components {what} (uncompressed):",
        details=check.lines,
        hint="drop or trim what grew, or pass --budget MIB for a larger flash chip",
    )


def read_manifest(path: Path) -> dict[str, Any]:
    """A build's manifest.json.

    Raises:
        FormatError: unreadable or not a manifest of this format.
    """
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise FormatError(f"unreadable manifest: {exc}", source=str(path)) from None
    if not isinstance(obj, dict) or obj.get("format") != MANIFEST_FORMAT:
        raise FormatError(f"not a format-{MANIFEST_FORMAT} manifest", source=str(path))
    return obj


def _diff_manifests(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests: members first (the first line names the first
    member that differs), then inputs, then the outputs."""
    out: list[str] = []
    ma: dict[str, str] = a.get("members", {})
    mb: dict[str, str] = b.get("members", {})
    for name in sorted(set(ma) | set(mb)):
        if ma.get(name) != mb.get(name):
            out.append(f"member {name}: {ma.get(name, 'absent')} vs {mb.get(name, 'absent')}")
    for key in ("inputs", "source_date_epoch", "lock_sha256"):
        if a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)} vs {b.get(key)}")
    for part in ("kernel", "initramfs"):
        if a.get(part) != b.get(part):
            out.append(f"output {part}: {a.get(part)} vs {b.get(part)}")
    return out


def _what_was_built(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != "build"}


def published_digests(manifest: Mapping[str, Any]) -> dict[str, str]:
    """What a published payload is known by: the lock, the kernel, each initramfs part and the
    whole initramfs.  The base part holds the pinned inputs (Debian files, Python, libraries)
    and does not depend on heads' own sources; the top part is heads and ``/init``."""
    parts = manifest["initramfs"]["parts"]
    return {
        "lock_sha256": str(manifest["lock_sha256"]),
        "kernel_sha256": str(manifest["kernel"]["sha256"]),
        "base_cpio_sha256": str(parts[0]["cpio_sha256"]),
        "heads_cpio_sha256": str(parts[1]["cpio_sha256"]),
        "initramfs_sha256": str(manifest["initramfs"]["sha256"]),
    }


_PUBLISHED_WHAT: Final = {
    "lock_sha256": "the lock",
    "kernel_sha256": "the kernel",
    "base_cpio_sha256": "the pinned inputs (initramfs base part)",
    "heads_cpio_sha256": "heads and /init (initramfs top part: this checkout's sources)",
    "initramfs_sha256": "the compressed initramfs",
}


def compare_published(manifest: Mapping[str, Any], published: Mapping[str, Any]) -> list[str]:
    """One line per published digest that this build does not reproduce (empty: identical)."""
    ours = published_digests(manifest)
    return [
        f"{_PUBLISHED_WHAT[key]}: published {published.get(key, 'nothing')}, built {value}"
        for key, value in ours.items()
        if published.get(key) != value
    ]


#: What the second build of :func:`check_reproducible` changes, as another machine would.
_OTHER_MACHINE: Final = {
    "TZ": "Pacific/Chatham",
    "LANG": "C",
    "LC_ALL": "C",
    "LANGUAGE": "",
    "SOURCE_DATE_EPOCH": "",
}
_OTHER_HOST: Final = "heads-rebuild"
_OTHER_UMASK: Final = 0o077


def _second_build_argv(
    out: Path, cache: Path, inputs: Path, lock_path: Path, init: Path, *, platform: str
) -> tuple[list[str], list[str]]:
    """The command of the second build and what it varies beyond the environment."""
    build = [
        sys.executable,
        "-m",
        "heads",
        "build",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--inputs",
        str(inputs),
        "--lock",
        str(lock_path),
        "--init",
        str(init),
        "--platform",
        platform,
        "--json",
    ]
    varied = ["output path", "cache path", "HOME", "TZ", "locale", f"umask {_OTHER_UMASK:03o}"]
    script = f'umask {_OTHER_UMASK:03o} && exec "$@"'
    prefix: list[str] = []
    unshare = shutil.which("unshare")
    if os.geteuid() == 0 and unshare is not None:
        # A private UTS namespace: the host name changes for this build only.
        varied.append("host name")
        script = f"hostname {_OTHER_HOST} && {script}"
        prefix = [unshare, "--uts"]
    return [*prefix, "sh", "-c", script, "sh", *build], varied


def check_reproducible(
    *,
    cache_dir: Path,
    lock_path: Path = DEFAULT_LOCK,
    init_script: Path | None = None,
    work_dir: Path | None = None,
    keep: bool = False,
    progress: Progress | None = None,
    platform: str = DEFAULT_PLATFORM,
) -> ReproCheck:
    """Build twice and compare every member, input and output.

    The first build runs here; the second in a child process as another machine would run it:
    another output path, an empty cache of its own (it reads the first build's downloads as an
    offline inputs directory, and compiles the kernel, builds wheels and compresses anew),
    another ``HOME``, time zone, locale and umask, and, as root, another host name
    (``unshare --uts``).  The first build takes the kernel from the cache when it can; the
    second always compiles it, so the kernel is compared with a fresh build byte for byte.

    Raises:
        As :func:`build_payload`; ToolError when the second build fails.
    """
    say: Progress = progress or (lambda _msg: None)
    init = init_script or _default_init()
    base = Path(tempfile.mkdtemp(prefix="heads-check-", dir=work_dir))
    try:
        say("build 1 of 2")
        first = build_payload(
            base / "first",
            cache_dir=cache_dir,
            lock_path=lock_path,
            locked=True,
            init_script=init,
            progress=say,
            compression_cache=False,
            platform=platform,
        )
        other = base / "elsewhere"
        (other / "home").mkdir(parents=True)
        # The downloads of build 1, laid out as an inputs directory (no copy: links).
        inputs = other / "inputs"
        lock = load_lock(lock_path)
        for sub, names in (
            ("debs", [d.filename for d in lock.debs]),
            ("python", [p.file for p in lock.python]),
        ):
            (inputs / sub).mkdir(parents=True)
            for name in names:
                (inputs / sub / name).symlink_to(cache_dir.resolve() / sub / name)
        _write(inputs / "lock.json", lock.to_bytes())
        argv, varied = _second_build_argv(
            other / "out" / "payload",
            other / "cache",
            inputs,
            lock_path.resolve(),
            init.resolve(),
            platform=platform,
        )
        say(f"build 2 of 2, as another machine: {', '.join(varied)}")
        env = {**_OTHER_MACHINE, "HOME": str(other / "home"), "XDG_CACHE_HOME": ""}
        run(argv, desc="the second build", timeout_s=3600, env=env, cwd=other / "home")
        second_manifest = other / "out" / "payload" / "manifest.json"
        ours, theirs = read_manifest(first.manifest), read_manifest(second_manifest)
        diffs = _diff_manifests(ours, theirs)
        for name in ("vmlinuz", KERNEL_CONFIG, "initramfs.cpio.zst"):
            a = (base / "first" / name).read_bytes()
            if a != (other / "out" / "payload" / name).read_bytes():
                diffs.append(f"file {name} differs")
        # The whole manifest but how each build went (the first may take a cached kernel).
        if _what_was_built(ours) != _what_was_built(theirs):
            diffs.append("file manifest.json differs")
        return ReproCheck(not diffs, first, tuple(diffs), tuple(varied))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def export_payload_inputs(
    dest: Path, *, cache_dir: Path, lock_path: Path = DEFAULT_LOCK, progress: Progress | None = None
) -> ExportSummary:
    """Write every input of the lock to ``dest`` for an offline rebuild (``--inputs``).

    Raises:
        MissingPinsError: a pinned input is neither cached nor downloadable.
        HashMismatchError: a cached input differs from its pin.
    """
    say: Progress = progress or (lambda _msg: None)
    return export_inputs(load_lock(lock_path), cache_dir, dest, say)


def update_lock(
    lock_path: Path = DEFAULT_LOCK,
    *,
    cache_dir: Path,
    requirements: Path | None = None,
    init_script: Path | None = None,
    progress: Progress | None = None,
) -> PayloadLock:
    """Re-resolve every pin and write the lock.

    Debian: the kernel source through its metapackage, the root packages and, repeatedly, the owner
    of every shared library the payload's ELF files need that no pinned package provides yet,
    each at the version apt offers now.  Python: the distributions of the virtualenv the
    runtime imports, at the versions of ``requirements.lock``; each artifact is downloaded and
    must have one of the SHA-256 that file pins.

    Raises:
        ToolError: apt, dpkg, pip or the probe failed.
        FormatError: a needed library has no owning package.
        VerificationError: a downloaded artifact is not one ``requirements.lock`` pins.
    """
    say: Progress = progress or (lambda _msg: None)
    # Kept from the lock being replaced, whatever its format: the epoch and the extra modules.
    old: dict[str, Any] = {}
    if lock_path.exists():
        try:
            parsed: object = json.loads(lock_path.read_bytes())
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            old = parsed
        else:
            say(f"note: {lock_path} is not a JSON object; starting from defaults")
    req_path = requirements or lock_path.resolve().parents[1] / "requirements.lock"
    req = parse_requirement_hashes(req_path.read_text(), source=str(req_path))
    meta = str(old.get("kernel_metapackage", KERNEL_METAPACKAGE))
    kernels = [d for d in debian.depends_of(meta) if d.startswith(KERNEL_SOURCE_PREFIX)]
    if not kernels:
        raise FormatError(f"{meta} depends on no {KERNEL_SOURCE_PREFIX}* package")
    kernel = kernels[0]
    wanted = {kernel, *ROOT_PACKAGES}
    epoch = int(old.get("source_date_epoch", 1_700_000_000))
    extra = tuple(str(m) for m in old.get("extra_modules", DEFAULT_EXTRA_MODULES))
    import sysconfig  # noqa: PLC0415 - only needed here

    venv = _probe_python(extra, Path(sysconfig.get_path("purelib")), isolated=False)
    python: list[PythonPin] = []
    for dist in sorted(venv.packages, key=normalize_dist):
        pinned = req.get(normalize_dist(dist))
        if pinned is None:
            raise FormatError(f"{dist} is imported by the runtime but not in {req_path}")
        version, hashes = pinned
        path = pypi.download(dist, version, cache_dir / "python")
        digest = debian.sha256_file(path)
        if digest not in hashes:
            raise VerificationError(
                f"{path.name}: sha256 {digest} is not one {req_path.name} pins for {dist}",
                hint=f"re-pin {req_path.name} (scripts/pin-python.py) and review the change",
            )
        python.append(PythonPin(dist, version, path.name, digest))
        say(f"pinned {dist} {version} ({path.name})")
    debs_dir = cache_dir / "debs"
    pins: dict[str, DebPin] = {}
    while True:
        for name in sorted(wanted - set(pins)):
            version, arch = debian.candidate_version(name)
            probe_pin = DebPin(name, version, arch, "0" * 64)
            path = debs_dir / probe_pin.filename
            if not path.exists():
                path = debian.download(name, version, debs_dir)
            pins[name] = DebPin(name, version, arch, debian.sha256_file(path))
            say(f"pinned {name} {version}")
        lock = PayloadLock(epoch, kernel, tuple(pins.values()), tuple(python), extra, meta)
        files = read_debs(lock, cache_dir, None, say)
        with tempfile.TemporaryDirectory(prefix="heads-lock-") as tmp:
            init_file = init_script if init_script and init_script.is_file() else None
            if init_file is None:
                init_file = Path(tmp) / "init"
                init_file.write_bytes(b"#!/bin/sh\n")
            site = Path(tmp) / "site"
            _python_inputs(lock, cache_dir, None, site)
            sel = _probe_python(extra, site)
            try:
                _assemble(files, sel, init_file, Path(tmp))
            except _MissingLibrariesError as exc:
                for soname in exc.sonames:
                    owner = debian.owner_of(soname)
                    if owner is None or owner in pins:
                        raise FormatError(
                            f"no package provides {soname}", hint="install it on the host"
                        ) from None
                    wanted.add(owner)
                continue
            break
    _write(lock_path, lock.to_bytes())
    return lock
