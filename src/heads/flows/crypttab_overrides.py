"""Write ``kexec_initrd_crypttab_overrides.txt`` when the disk unlock key is sealed: the
crypttab files of the default entry's OS initrd with their key file set to ``/secret.key``
(Heads' ``kexec-save-default.sh``; docs/disk-key.md §Crypttab overrides).

At boot, the key archive then carries these files instead of Heads' generic crypttab, so the
OS keeps its own volume names and options.  Best effort, as in Heads: an initrd that cannot be
read leaves no overrides file (the generic crypttab is used) and says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from heads.adapters.atomic import write_atomic
from heads.core.disk_key import (
    CRYPTTAB_OVERRIDES_FILE,
    CrypttabOverride,
    crypttab_overrides,
    format_overrides,
)
from heads.core.initrd import ZstdMissingError, read_initrd
from heads.errors import FormatError, HeadsError, UsageError

__all__ = ["ZSTD_NOTE", "initrd_overrides", "write_crypttab_overrides"]

#: What the owner is told when the OS initrd cannot be unpacked for lack of zstd.
ZSTD_NOTE: Final = (
    "initrd compressed with zstd: no crypttab overrides, Heads' generic crypttab is used"
)
_MAX_INITRD_BYTES: Final = 512 * 1024 * 1024


def _read_initrd_file(boot_dir: Path, rel: str) -> bytes:
    if ".." in rel.split("/"):
        raise UsageError(f"{rel}: an initrd path that leaves /boot")
    path = boot_dir / rel.lstrip("/")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(_MAX_INITRD_BYTES + 1)
    if len(data) > _MAX_INITRD_BYTES:
        raise FormatError(f"larger than {_MAX_INITRD_BYTES} bytes", source=str(path))
    return data


def initrd_overrides(
    boot_dir: Path, initrds: list[str], *, zstd: Callable[[bytes], bytes] | None
) -> tuple[CrypttabOverride, ...]:
    """The overrides for the initrds ``initrds`` (paths in /boot, loaded in that order).

    Raises:
        ZstdMissingError: a part is zstd-compressed and ``zstd`` is None.
        FormatError: an initrd or a crypttab does not parse.
        UsageError: an initrd cannot be read.
    """
    out: list[CrypttabOverride] = []
    for rel in initrds:
        source = str(boot_dir / rel.lstrip("/"))
        contents = read_initrd(_read_initrd_file(boot_dir, rel), source=source, zstd=zstd)
        files = [
            (m.name, m.data)
            for m in contents.members
            if "crypttab" in m.name.rsplit("/", 1)[-1] and m.mode & 0o170000 == 0o100000
        ]
        out.extend(crypttab_overrides(files, source=source))
    return tuple(out)


def write_crypttab_overrides(
    boot_dir: Path, *, say: Callable[[str], None] = lambda _m: None
) -> tuple[CrypttabOverride, ...]:
    """Write the overrides for the default entry's initrd in ``boot_dir`` (none: the file is
    removed, so a stale one never applies); /boot must be signed afterwards.  Returns them."""
    from heads.adapters.zstd import zstd_available, zstd_decompress  # noqa: PLC0415
    from heads.flows.boot_entries import read_default  # noqa: PLC0415

    target = boot_dir / CRYPTTAB_OVERRIDES_FILE
    overrides: tuple[CrypttabOverride, ...] = ()
    try:
        initrds = list(read_default(boot_dir).entry.initrds)
        overrides = initrd_overrides(
            boot_dir, initrds, zstd=zstd_decompress if zstd_available() else None
        )
    except ZstdMissingError:
        say(ZSTD_NOTE)
    except HeadsError as err:
        say(f"no crypttab overrides ({err.message}): Heads' generic crypttab is used")
    if not overrides:
        target.unlink(missing_ok=True)
        return ()
    write_atomic(target, format_overrides(overrides))
    paths = sorted({o.path for o in overrides})
    say(f"{CRYPTTAB_OVERRIDES_FILE}: {len(overrides)} line(s) for {', '.join(paths)}")
    return overrides
