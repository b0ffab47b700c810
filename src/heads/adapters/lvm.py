"""Activate the LVM volume group that holds the disk key's LUKS devices, before their
headers are read (Heads' ``lvm vgchange -a y`` from ``kexec_key_lvm.txt``; docs/disk-key.md
§At boot).  The payload carries no LVM tools (the 12 MiB budget): there, the boot is told and
offers the recovery key."""

from __future__ import annotations

import shutil

from heads.adapters._run import run
from heads.errors import ToolError

__all__ = ["activate_volume_group"]


def activate_volume_group(group: str) -> None:
    """``lvm vgchange -a y GROUP`` (``group`` is a checked volume-group name).

    Raises:
        ToolError: no ``lvm`` tool here, or it failed.
    """
    if shutil.which("lvm") is None:
        raise ToolError(f"no lvm tool to activate volume group {group}")
    run(["lvm", "vgchange", "-a", "y", group], desc=f"activate LVM volume group {group}")
