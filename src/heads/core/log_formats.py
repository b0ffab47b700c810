"""The event-log format names `heads pcr --format` and ``parse_log`` accept (docs/eventlog.md).

A module of its own, with no imports, so that the CLI can offer the choices without loading
the parsers (docs/architecture.md §Performance targets).
"""

from __future__ import annotations

__all__ = ["FORMAT_CHOICES"]

# "tcg" covers both TCG layouts, "coreboot" both coreboot forms (CBMEM table, `cbmem -L` text).
FORMAT_CHOICES = ("auto", "tcg", "coreboot", "cel")
