"""The payload's kernel, built from Debian's kernel source for one platform, and cached.

docs/reproducible-builds.md §Kernel describes the procedure and what makes it reproducible:
the source is the pinned ``linux-source-X.Y`` package; the configuration is ``tinyconfig``
plus the platform's fragment (``payload/kernel/PLATFORM.fragment``), checked option by
option; the build runs in a temporary directory with a fixed timestamp, user, host and build
number, and the toolchain is the host's Debian packages, whose versions are recorded.

The bzImage and its ``.config`` are cached under ``CACHE/kernel/KEY`` where KEY hashes every
input: the source package's SHA-256, the fragment, the platform, the toolchain versions, the
timestamp and :data:`BUILDER_VERSION`.  An entry appears only complete (built in a temporary
directory beside it, then renamed), so an interrupted or failed build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from heads.adapters import debian, kernel_build
from heads.adapters.atomic import fsync_dir, write_atomic
from heads.core.kernel_config import KconfigOption, parse_config, parse_fragment, unmet
from heads.core.payload_lock import DebPin
from heads.errors import FormatError, UsageError

__all__ = [
    "BUILDER_VERSION",
    "DEFAULT_FRAGMENTS",
    "KernelBuild",
    "KernelConfigError",
    "build_kernel",
    "check_config",
    "configure_kernel",
    "fragment_options",
    "make_env",
    "platforms",
]

#: Raised whenever the way this module builds changes what it produces (a new cache key).
BUILDER_VERSION: Final = 1
DEFAULT_FRAGMENTS: Final = Path(__file__).resolve().parents[3] / "payload" / "kernel"
BUILD_USER: Final = "heads"
BUILD_HOST: Final = "heads"
_SUFFIX: Final = ".fragment"

Progress = Callable[[str], None]


class KernelConfigError(UsageError):
    """Options a fragment asks for that the kernel's configuration system did not keep."""

    def __init__(self, fragment: Path, missing: list[str]) -> None:
        super().__init__(
            f"{len(missing)} option(s) of {fragment.name} did not survive the kernel configuration",
            details=tuple(missing),
            hint="an option missing its dependencies is dropped silently: add what it "
            "depends on (make menuconfig, then `/` and its name, shows the dependencies)",
        )
        self.missing = tuple(missing)


@dataclass(frozen=True, slots=True)
class KernelBuild:
    """A built (or cached) payload kernel and what it was built from."""

    image: bytes
    config: bytes
    release: str
    platform: str
    source: DebPin
    fragment_sha256: str
    toolchain: dict[str, str]
    timestamp: str
    from_cache: bool

    def describe(self) -> dict[str, object]:
        """The manifest's ``kernel`` entry (without where it came from: see ``from_cache``)."""
        return {
            "file": "vmlinuz",
            "version": self.release,
            "platform": self.platform,
            "source": f"{self.source.name} {self.source.version}",
            "source_sha256": self.source.sha256,
            "fragment_sha256": self.fragment_sha256,
            "config_sha256": hashlib.sha256(self.config).hexdigest(),
            "build_timestamp": self.timestamp,
            "toolchain": dict(sorted(self.toolchain.items())),
            "sha256": hashlib.sha256(self.image).hexdigest(),
            "size": len(self.image),
        }


def platforms(fragments: Path = DEFAULT_FRAGMENTS) -> list[str]:
    """The platforms that have a fragment."""
    return sorted(p.name.removesuffix(_SUFFIX) for p in fragments.glob(f"*{_SUFFIX}"))


def _fragment(platform: str, fragments: Path) -> Path:
    path = fragments / f"{platform}{_SUFFIX}"
    if not path.is_file():
        known = ", ".join(platforms(fragments)) or "none"
        raise UsageError(
            f"no kernel configuration for platform {platform!r} ({path} does not exist)",
            hint=f"known platforms: {known}",
        )
    return path


def fragment_options(
    platform: str, fragments: Path = DEFAULT_FRAGMENTS
) -> tuple[Path, bytes, tuple[KconfigOption, ...]]:
    """The platform's fragment file, its bytes and its options.

    Raises:
        UsageError: the platform has no fragment.
        FormatError: the fragment is malformed.
    """
    path = _fragment(platform, fragments)
    data = path.read_bytes()
    return path, data, parse_fragment(data, source=str(path))


def build_timestamp(epoch: int) -> str:
    """KBUILD_BUILD_TIMESTAMP for a SOURCE_DATE_EPOCH (what ``uname -v`` shows)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def make_env(epoch: int) -> dict[str, str]:
    """The environment of every ``make`` (on top of PATH alone): fixed identity and time."""
    return {
        "ARCH": "x86",
        "TZ": "UTC",
        "LC_ALL": "C",
        "KBUILD_BUILD_TIMESTAMP": build_timestamp(epoch),
        "KBUILD_BUILD_USER": BUILD_USER,
        "KBUILD_BUILD_HOST": BUILD_HOST,
        # The "#1" of uname -v: a counter kept in the tree; a fresh tree would say 1 anyway.
        "KBUILD_BUILD_VERSION": "1",
        "SOURCE_DATE_EPOCH": str(epoch),
    }


def check_config(fragment: Path, options: tuple[KconfigOption, ...], config: bytes) -> None:
    """Raise :class:`KernelConfigError` naming every option of the fragment not in ``config``."""
    missing = unmet(options, parse_config(config, source=f"{fragment.name} .config"))
    if missing:
        raise KernelConfigError(fragment, [str(m) for m in missing])


def configure_kernel(
    tree: Path, platform: str, *, epoch: int, fragments: Path = DEFAULT_FRAGMENTS
) -> bytes:
    """Configure an unpacked source tree for ``platform`` and check the result; no compiling.

    Returns:
        The ``.config``.

    Raises:
        KernelConfigError: an option of the fragment did not survive.
        ToolError: make failed.
    """
    path, _data, options = fragment_options(platform, fragments)
    config = kernel_build.configure(tree, options, make_env(epoch))
    check_config(path, options, config)
    return config


def _cache_key(
    source: DebPin, fragment: bytes, platform: str, toolchain: dict[str, str], epoch: int
) -> str:
    spec = {
        "builder": BUILDER_VERSION,
        "source": [source.name, source.version, source.sha256],
        "fragment_sha256": hashlib.sha256(fragment).hexdigest(),
        "platform": platform,
        "toolchain": toolchain,
        "env": make_env(epoch),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def _from_cache(entry: Path, say: Progress) -> tuple[bytes, bytes, str] | None:
    try:
        info = json.loads((entry / "build.json").read_bytes())
        image = (entry / "bzImage").read_bytes()
        config = (entry / "config").read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("sha256") != hashlib.sha256(image).hexdigest():
        say(f"warning: the cached kernel in {entry} is damaged; building it again")
        shutil.rmtree(entry, ignore_errors=True)
        return None
    return image, config, str(info.get("release", ""))


def _store(entry: Path, image: bytes, config: bytes, release: str) -> None:
    """Write the entry beside its final name, then rename: it appears whole or not at all."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        write_atomic(tmp / "bzImage", image, sync_dir=False)
        write_atomic(tmp / "config", config, sync_dir=False)
        info = {"release": release, "sha256": hashlib.sha256(image).hexdigest()}
        write_atomic(tmp / "build.json", json.dumps(info, sort_keys=True).encode(), sync_dir=False)
        fsync_dir(tmp)
        try:
            tmp.rename(entry)
        except OSError:
            if not entry.is_dir():  # another build stored the same key first: keep that one
                raise
        fsync_dir(entry.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_kernel(
    source: DebPin,
    *,
    cache_dir: Path,
    inputs: Path | None,
    platform: str,
    epoch: int,
    fragments: Path = DEFAULT_FRAGMENTS,
    progress: Progress | None = None,
) -> KernelBuild:
    """The platform's kernel: from the cache when the same inputs were built before, else
    unpacked, configured, checked and compiled in a temporary directory, then cached.

    The source package is fetched and checked against its pin on every call, so the inputs of
    a build are complete (``--check`` and ``--export-inputs`` rely on it being in the cache).

    Raises:
        UsageError: no fragment for ``platform``.
        KernelConfigError: an option of the fragment did not survive.
        HashMismatchError: the source package is not the pinned one.
        ToolError: the toolchain is incomplete, or unpacking or make failed.
        FormatError: the fragment or the package is malformed.
    """
    say: Progress = progress or (lambda _msg: None)
    path, fragment, options = fragment_options(platform, fragments)
    toolchain = kernel_build.toolchain_versions()
    deb = debian.fetch(source, cache_dir / "debs", inputs=inputs)
    entry = cache_dir / "kernel" / _cache_key(source, fragment, platform, toolchain, epoch)
    cached = _from_cache(entry, say)
    fragment_sha = hashlib.sha256(fragment).hexdigest()
    stamp = build_timestamp(epoch)
    if cached is not None:
        image, config, release = cached
        say(f"kernel {release} ({platform}): built earlier from the same inputs ({entry})")
        return KernelBuild(
            image, config, release, platform, source, fragment_sha, toolchain, stamp, True
        )
    env = make_env(epoch)
    with tempfile.TemporaryDirectory(prefix="heads-kernel-") as tmp:
        say(f"kernel: unpacking {source.name} {source.version}")
        tree = kernel_build.unpack_source(deb, Path(tmp))
        config = kernel_build.configure(tree, options, env)
        check_config(path, options, config)
        jobs = os.cpu_count() or 1
        say(f"kernel ({platform}): compiling with make -j{jobs} (about 10 min on 2 cores)")
        image = kernel_build.build_bzimage(tree, env, jobs=jobs)
        release = kernel_build.kernel_release(tree)
    if not image:
        raise FormatError("the kernel build produced an empty bzImage", source=str(path))
    _store(entry, image, config, release)
    say(f"kernel {release}: {len(image) / 2**20:.2f} MiB, cached in {entry}")
    return KernelBuild(
        image, config, release, platform, source, fragment_sha, toolchain, stamp, False
    )
