"""Boot-loader configuration parsers (GRUB, BLS, SYSLINUX) yielding :class:`BootEntry`."""

from heads.core.bootcfg.entry import (
    BootEntry,
    DroppedEntry,
    EntryKind,
    EntrySource,
    MultibootModule,
    parse_entry_line,
)

__all__ = [
    "BootEntry",
    "DroppedEntry",
    "EntryKind",
    "EntrySource",
    "MultibootModule",
    "parse_entry_line",
]
