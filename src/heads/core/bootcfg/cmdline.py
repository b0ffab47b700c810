"""Kernel command-line assembly with Heads' rules.

Port of ``_build_final_cmdline`` in Heads' ``kexec-boot.sh`` (docs/heads-compat.md §Kernel
command line).  All inputs are data: the shell version ``eval``-ed
``kexec_iso_add.txt``/``kexec_iso_remove.txt`` contents, which we never do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "BLOB_JAIL_PARAM",
    "FORCE_BOOT_ADD",
    "FORCE_BOOT_REMOVE",
    "ISO_KEYS",
    "build_cmdline",
    "strip_separator",
]

# Parameters that tell a live system where its ISO is; the ISO boot's values replace the
# entry's (kexec-boot.sh; docs/heads-compat.md §Kernel command line).
ISO_KEYS: Final = ("iso-scan/filename", "findiso", "img_dev", "img_loop", "iso", "live-media")
BLOB_JAIL_PARAM: Final = "firmware_class.path=/firmware/"
# Heads' "Ignore tampering and force a boot": a red console, no splash hiding it
# (kexec-select-boot.sh -f).  vt.default_red takes the 16 palette entries (kernel-parameters).
FORCE_BOOT_ADD: Final = "vt.default_red=" + ",".join(["0xff"] * 16)
FORCE_BOOT_REMOVE: Final = ("splash", "quiet")


def strip_separator(cmdline: str) -> str:
    """Drop GRUB's ``---`` word (Debian/Ubuntu installers' "installer-only args follow")."""
    return " ".join(w for w in cmdline.split() if w != "---")


def _key(word: str) -> str:
    return word.partition("=")[0]


def build_cmdline(
    params: str,
    *,
    add: str = "",
    remove: Iterable[str] = (),
    board_add: str = "",
    blob_jail: bool = False,
) -> str:
    """The command line the kernel gets.

    Args:
        params: the entry's own parameters (P).
        add: parameters added by the caller (A): ISO parameters, the force-boot colours.
        remove: whole words removed from ``add``, ``params`` and ``board_add``
            (``CONFIG_BOOT_KERNEL_REMOVE`` plus the caller's).
        board_add: ``CONFIG_BOOT_KERNEL_ADD`` (B): appended when not already present.
        blob_jail: append ``firmware_class.path=/firmware/``.

    Returns:
        The words joined by single spaces.
    """
    removed = set(remove)
    add_words = [w for w in strip_separator(add).split() if w not in removed]
    param_words = [w for w in strip_separator(params).split() if w not in removed]
    board_words = [w for w in board_add.split() if w not in removed]
    combined = add_words + param_words
    for key in ISO_KEYS:
        given = [w for w in add_words if _key(w) == key and "=" in w]
        if not given:
            continue
        # Every occurrence goes; exactly one (the caller's value) is kept, at the end.
        combined = [w for w in combined if _key(w) != key]
        combined.append(given[-1])
    present = set(combined)
    for word in board_words:
        if word not in present:
            combined.append(word)
            present.add(word)
    if blob_jail and BLOB_JAIL_PARAM not in present:
        combined.append(BLOB_JAIL_PARAM)
    return " ".join(combined)
