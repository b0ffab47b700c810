"""The kernel's own build system, run on Debian's kernel source: unpack, configure, build.

The source is the tarball Debian's ``linux-source-X.Y`` package ships under ``/usr/src``; it is
unpacked into a private temporary directory (never onto the host's /usr/src).  ``make`` runs
with the environment reduced to ``PATH`` plus what this module sets, so a caller's ``CC``,
``CFLAGS`` or ``KBUILD_*`` cannot change the result (docs/reproducible-builds.md §Kernel).
What the fragment asks for and whether it survived is decided in
:mod:`heads.core.kernel_config`; this module only runs the tools.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from heads.adapters._run import run
from heads.core.kernel_config import KconfigOption, merge
from heads.errors import FormatError, ToolError

__all__ = [
    "TOOLCHAIN_PACKAGES",
    "build_bzimage",
    "configure",
    "kernel_release",
    "toolchain_versions",
    "unpack_source",
]

#: The Debian packages whose versions shape the kernel binary (also in deps/debian-packages.txt).
TOOLCHAIN_PACKAGES: Final = (
    "gcc-12",
    "binutils",
    "make",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "xz-utils",
)
_BZIMAGE: Final = "arch/x86/boot/bzImage"
# A cold build takes about 10 minutes on two cores; a busy machine can triple that.
_BUILD_TIMEOUT_S: Final = 3 * 3600.0
_CONFIG_TIMEOUT_S: Final = 600.0


def toolchain_versions() -> dict[str, str]:
    """The installed version of each toolchain package, by ``dpkg-query``.

    Raises:
        ToolError: a package is not installed (the hint names the apt-get command).
    """
    result = run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Package} ${db:Status-Abbrev} ${Version}\\n",
            *TOOLCHAIN_PACKAGES,
        ],
        desc="look up the kernel toolchain",
        timeout_s=60,
        check=False,
    )
    versions: dict[str, str] = {}
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith("i"):
            versions[parts[0]] = parts[2]
    missing = [p for p in TOOLCHAIN_PACKAGES if p not in versions]
    if missing:
        raise ToolError(
            f"the kernel toolchain is incomplete: {', '.join(missing)} not installed",
            hint=f"apt-get install {' '.join(missing)} (or run ./scripts/setup.sh)",
        )
    return versions


def unpack_source(deb: Path, dest: Path) -> Path:
    """Unpack the kernel source tarball of a ``linux-source-*`` package into ``dest``.

    Returns:
        The source tree (the tarball's one top directory).

    Raises:
        ToolError: dpkg-deb or tar failed.
        FormatError: the package holds no single ``/usr/src/linux-source-*.tar.xz``, or the
            tarball no single top directory.
    """
    debdir = dest / "deb"
    run(["dpkg-deb", "--extract", deb, debdir], desc=f"unpack {deb.name}", timeout_s=600)
    tarballs = sorted((debdir / "usr" / "src").glob("linux-source-*.tar.xz"))
    if len(tarballs) != 1:
        raise FormatError(
            f"expected one /usr/src/linux-source-*.tar.xz, found {len(tarballs)}", source=str(deb)
        )
    tree = dest / "tree"
    tree.mkdir()
    run(
        ["tar", "-x", "--no-same-owner", "-f", tarballs[0], "-C", tree],
        desc=f"unpack {tarballs[0].name}",
        timeout_s=1800,
    )
    tarballs[0].unlink()
    tops = sorted(tree.iterdir())
    if len(tops) != 1 or not (tops[0] / "Makefile").is_file():
        raise FormatError("the kernel tarball has no single top directory", source=str(deb))
    return tops[0]


def _make(tree: Path, env: Mapping[str, str], *args: str, desc: str, timeout_s: float) -> bytes:
    return run(
        ["make", "-C", tree, "-s", *args],
        desc=desc,
        timeout_s=timeout_s,
        env=dict(env),
        inherit_env=False,
        cwd=tree,
    ).stdout


def configure(tree: Path, options: Iterable[KconfigOption], env: Mapping[str, str]) -> bytes:
    """``tinyconfig``, the options merged in, ``olddefconfig``, merged again, ``olddefconfig``.

    The second merge sets options that were invisible until the first pass enabled what they
    depend on.  Returns the final ``.config``; checking it is the caller's.

    Raises:
        ToolError: make failed.
    """
    wanted = tuple(options)
    config = tree / ".config"
    _make(tree, env, "tinyconfig", desc="make tinyconfig", timeout_s=_CONFIG_TIMEOUT_S)
    for _ in range(2):
        config.write_bytes(merge(config.read_bytes(), wanted))
        _make(tree, env, "olddefconfig", desc="make olddefconfig", timeout_s=_CONFIG_TIMEOUT_S)
    return config.read_bytes()


def kernel_release(tree: Path) -> str:
    """The version ``uname -r`` will print (with LOCALVERSION), as a build wrote it.

    Raises:
        FormatError: the tree was not built (no ``include/config/kernel.release``).
    """
    path = tree / "include" / "config" / "kernel.release"
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        raise FormatError("the kernel tree holds no build", source=str(path)) from None


def build_bzimage(tree: Path, env: Mapping[str, str], *, jobs: int | None = None) -> bytes:
    """``make -jN bzImage`` in a configured tree; returns the image.

    Raises:
        ToolError: the build failed or timed out (the error carries the end of its output).
    """
    n = jobs or os.cpu_count() or 1
    _make(tree, env, f"-j{n}", "bzImage", desc="build the kernel", timeout_s=_BUILD_TIMEOUT_S)
    return (tree / _BZIMAGE).read_bytes()
