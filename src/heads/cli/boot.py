"""`heads boot ...`: /boot trust (sign, verify) and boot entries (list, default, kexec)."""

from __future__ import annotations

import argparse
import importlib

__all__ = ["register"]

_PARTS = ("boot_trust", "boot_entries")


def register(parser: argparse.ArgumentParser) -> None:
    boot_sub = parser.add_subparsers(dest="boot_command", metavar="SUBCOMMAND", required=True)
    for name in _PARTS:
        try:
            module = importlib.import_module(f"heads.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"heads.cli.{name}":
                raise
            continue
        module.register_boot(boot_sub)
