"""Find every boot entry of a boot directory, an ISO or a USB tree, like Heads does.

Port of ``scan_boot_options`` (Heads ``initrd/etc/functions.sh``) + ``kexec-parse-boot.sh`` +
``kexec-parse-bls.sh`` (docs/heads-compat.md §Boot configuration parsers), over a
:class:`~.tree.BootFiles`:

* GRUB: every ``grub.cfg``, and ``grub.conf``/``menu.lst`` (GRUB 2 or Legacy syntax); on
  media (ISO/USB) also ``loopback.cfg``, which is written for that case (``iso_path`` set);
* SYSLINUX: ``isolinux.cfg``, ``syslinux.cfg``, ``extlinux.conf`` (their includes follow);
* BLS: ``loader/entries/*.conf`` when no GRUB configuration pulled them in with ``blscfg`` and
  GRUB found nothing (as Heads), with ``kernelopts`` from a ``grubenv`` beside a grub.cfg.

Entries are de-duplicated (the same title, kind, files and command line: EFI and BIOS copies
of one configuration), and only those whose kernel, initrds and modules exist as regular files
are kept; the others are reported with the reason.  A configuration that fails to parse is
reported and the others are still used.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from heads.core.bootcfg.bls import parse_bls
from heads.core.bootcfg.entry import BootEntry, DroppedEntry, EntrySource
from heads.core.bootcfg.grub import GrubContext, GrubResult, parse_grub, parse_grubenv
from heads.core.bootcfg.grub_legacy import is_legacy_config, parse_grub_legacy
from heads.core.bootcfg.grub_lexer import decode_config
from heads.core.bootcfg.syslinux import parse_syslinux
from heads.core.bootcfg.tree import BootFiles
from heads.errors import FormatError

__all__ = ["MAX_CONFIGS", "Discovery", "discover_entries", "find_configs"]

MAX_CONFIGS: Final = 64
_GRUB_NAMES: Final = frozenset({"grub.cfg", "grub.conf", "menu.lst"})
_SYSLINUX_NAMES: Final = frozenset({"isolinux.cfg", "syslinux.cfg", "extlinux.conf"})


@dataclass(frozen=True, slots=True)
class Discovery:
    """What a scan found.

    Attributes:
        entries: bootable entries in menu order (``kexec_default.N.txt`` numbers them from 1).
        dropped: entries left out, with the reason (missing file, not kexec-able...).
        configs: the configuration files parsed, in order.
        problems: configurations that could not be used, and files that could not be read.
        skipped_commands: GRUB commands that were not understood, with their counts.
    """

    entries: tuple[BootEntry, ...]
    dropped: tuple[DroppedEntry, ...]
    configs: tuple[str, ...]
    problems: tuple[str, ...]
    skipped_commands: Mapping[str, int]


def _is_efi_path(path: str) -> bool:
    return "efi" in path.lower()


def find_configs(files: BootFiles, *, media: bool = False) -> tuple[list[str], list[str]]:
    """GRUB and SYSLINUX configuration files of the tree, most likely first.

    Paths under ``EFI`` come after the others: they usually chain to the same menu (and
    Heads skips them), so the BIOS copy's order wins after de-duplication.
    """
    grub: list[str] = []
    syslinux: list[str] = []
    for path in files.walk():
        name = posixpath.basename(path)
        if name in _GRUB_NAMES or (media and name == "loopback.cfg"):
            grub.append(path)
        elif name in _SYSLINUX_NAMES:
            syslinux.append(path)
    grub.sort(key=lambda p: (_is_efi_path(p), p.count("/"), p))
    syslinux.sort(key=lambda p: (p.count("/"), p))
    return grub, syslinux


def _grubenv_vars(files: BootFiles, grub_configs: list[str]) -> dict[str, str]:
    for cfg in grub_configs:
        env_path = posixpath.join(posixpath.dirname(cfg), "grubenv")
        data = files.read(env_path, limit=64 * 1024)
        if data is not None:
            try:
                return parse_grubenv(data, env_path)
            except FormatError:
                return {}
    return {}


def _dedupe_key(entry: BootEntry) -> tuple[object, ...]:
    return (entry.title, entry.kind, entry.kernel, entry.initrds, entry.cmdline, entry.modules)


def _missing(files: BootFiles, entry: BootEntry) -> str | None:
    labels = ["kernel"] + ["initrd"] * len(entry.initrds) + ["module"] * len(entry.modules)
    if entry.kind.value != "elf":
        labels[0] = "hypervisor"
    for label, path in zip(labels, entry.files, strict=True):
        if not files.is_file(path):
            return f"{label} {path} does not exist (or is not a regular file)"
    return None


def _parse_any_grub(files: BootFiles, cfg: str, ctx: GrubContext | None) -> GrubResult:
    """GRUB 2 script, or GRUB Legacy for a ``grub.conf``/``menu.lst`` written in its syntax."""
    if posixpath.basename(cfg) in ("grub.conf", "menu.lst"):
        data = files.read(cfg)
        if data is not None and is_legacy_config(decode_config(data, cfg)):
            legacy = parse_grub_legacy(files, cfg)
            return GrubResult(legacy.entries, legacy.dropped, {}, (cfg,))
    return parse_grub(files, cfg, ctx)


def discover_entries(
    files: BootFiles,
    *,
    media: bool = False,
    ctx: GrubContext | None = None,
    require_files: bool = True,
) -> Discovery:
    """Scan ``files`` for boot entries.

    Args:
        files: the boot directory (or mounted ISO / USB tree).
        media: scan as removable media (also ``loopback.cfg``).
        ctx: facts for GRUB's conditions (platform, ISO path, partition UUID/label).
        require_files: drop entries whose files do not exist (normal use); False keeps them
            (comparing parsers on configuration-only test trees).

    Raises:
        FormatError: more than 64 configuration files.
    """
    grub_configs, syslinux_configs = find_configs(files, media=media)
    if len(grub_configs) + len(syslinux_configs) > MAX_CONFIGS:
        raise FormatError(f"more than {MAX_CONFIGS} boot-loader configuration files", source="/")
    found: list[BootEntry] = []
    dropped: list[DroppedEntry] = []
    problems: list[str] = []
    skipped: Counter[str] = Counter()
    parsed: list[str] = []
    pulled_bls = False
    for cfg in grub_configs:
        try:
            result = _parse_any_grub(files, cfg, ctx)
        except FormatError as exc:
            problems.append(exc.message)
            continue
        parsed.append(cfg)
        found.extend(result.entries)
        dropped.extend(result.dropped)
        problems.extend(result.problems)
        skipped.update(result.skipped_commands)
        pulled_bls = pulled_bls or any("/loader/entries/" in f for f in result.files_read)
    for cfg in syslinux_configs:
        try:
            sys_result = parse_syslinux(files, cfg)
        except FormatError as exc:
            problems.append(exc.message)
            continue
        parsed.append(cfg)
        found.extend(sys_result.entries)
        dropped.extend(sys_result.dropped)
        problems.extend(sys_result.problems)
    if not found and not pulled_bls:
        try:
            bls_result = parse_bls(files, variables=_grubenv_vars(files, grub_configs))
        except FormatError as exc:
            problems.append(exc.message)
        else:
            parsed.extend(bls_result.files_read)
            found.extend(bls_result.entries)
            dropped.extend(bls_result.dropped)
            problems.extend(bls_result.problems)
    entries: list[BootEntry] = []
    seen: set[tuple[object, ...]] = set()
    for entry in found:
        key = _dedupe_key(entry)
        if key in seen:
            continue
        seen.add(key)
        reason = _missing(files, entry) if require_files else None
        if reason is not None:
            source = entry.source or EntrySource("?", 0)
            dropped.append(DroppedEntry(entry.title, source, reason))
            continue
        entries.append(entry)
    return Discovery(
        entries=tuple(entries),
        dropped=tuple(dropped),
        configs=tuple(parsed),
        problems=tuple(problems),
        skipped_commands=dict(sorted(skipped.items())),
    )
