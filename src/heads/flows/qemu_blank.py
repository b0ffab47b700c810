"""A QEMU machine as it leaves the factory: nobody owns it yet (docs/qemu-platform.md §Blank
machine).

:func:`create_blank_machine` makes a machine directory whose flash image holds the payload
and no user files (no keyring, no ``config.user``) and whose OS disk holds an installed OS
with an unsigned /boot (kernel, initramfs, grub.cfg; no ``kexec*`` file).  Its first boot
finds a clean /boot and an empty keyring and offers the OEM factory reset, which the owner
runs in the guest (:mod:`heads.runtime.factory_reset`): the owner's key is generated there,
and its backup leaves on a USB drive, :func:`blank_usb_disk` on the host side.

The host side helpers to check the result without mounting anything: :func:`os_boot_files`
copies the OS disk's /boot out of the ext4 image (``debugfs``), :func:`usb_file` one file out
of the FAT backup drive (``mcopy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from heads.adapters._run import require_tool, run
from heads.core.qemu_flash import DEFAULT_FLASH_SIZE
from heads.errors import UsageError
from heads.flows.qemu_platform import (
    OS_APPEND,
    OS_INITRD_NAME,
    OS_KERNEL_NAME,
    Machine,
    Say,
    _grub_cfg,
    _make_disk,
    _os_initramfs,
    _write_flash,
    create_machine,
)

__all__ = [
    "BACKUP_DISK_MIB",
    "DEMO_BACKUP_PASSPHRASE",
    "DEMO_OWNER_PASSPHRASE",
    "blank_usb_disk",
    "create_blank_machine",
    "factory_reset_answers",
    "os_boot_files",
    "usb_file",
]

#: The key-backup drive's size (a sparse file): the smallest drive the factory reset takes
#: (:data:`heads.runtime.factory_reset.MIN_BACKUP_BYTES`).
BACKUP_DISK_MIB: Final = 64
#: The demo's passphrases: published here, so they protect nothing (a demo machine only).
DEMO_OWNER_PASSPHRASE: Final = "demo-tpm-owner"  # noqa: S105 - published on purpose
DEMO_BACKUP_PASSPHRASE: Final = "demo-key-backup"  # noqa: S105 - published on purpose


def factory_reset_answers(
    owner: str, backup: str, *, user_id: str, default_entry: int = 1
) -> list[tuple[str, str]]:
    """The scripted answers of a factory reset from "Clean Boot Detected" to the restart
    (docs/runtime-menus.md §Factory reset).  They hold passphrases: hand them only to
    :func:`heads.flows.qemu_platform.boot_machine`, which keeps them in a 0600 file for the
    boot."""
    return [
        ("clean-boot", "y"),
        ("factory-reset-confirm", "y"),
        ("factory-reset-owner-passphrase", owner),
        ("factory-reset-owner-passphrase-again", owner),
        ("factory-reset-backup-drive", "y"),
        ("factory-reset-backup-passphrase", backup),
        ("factory-reset-backup-passphrase-again", backup),
        ("factory-reset-key-uid", user_id),
        ("factory-reset-default", str(default_entry)),
        ("factory-reset-secrets", "y"),
        ("factory-reset-done", "ok"),
    ]


def create_blank_machine(
    root: Path,
    *,
    kernel: Path,
    initramfs: Path,
    os_kernel: Path | None = None,
    flash_size: int = DEFAULT_FLASH_SIZE,
    force: bool = False,
    say: Say | None = None,
) -> Machine:
    """A new machine with the payload in flash, no owner, and an OS with an unsigned /boot.

    Raises:
        UsageError: the directory is taken, a payload file is missing, or it does not fit.
        HeadsError: from swtpm or mkfs.
    """
    tell = say or (lambda _m: None)
    for path in (kernel, initramfs, *([os_kernel] if os_kernel else [])):
        if not path.is_file():
            raise UsageError(f"no payload file at {path}", hint="build the payload first")
    machine = create_machine(root, force=force, say=say, flash_size=flash_size)
    _write_flash(machine, kernel.read_bytes(), initramfs.read_bytes(), [])
    boot = machine.os_boot
    if boot.exists():
        shutil.rmtree(boot)
    (boot / "grub").mkdir(parents=True)
    shutil.copyfile(os_kernel or kernel, boot / OS_KERNEL_NAME)
    (boot / OS_INITRD_NAME).write_bytes(_os_initramfs())
    (boot / "grub" / "grub.cfg").write_text(_grub_cfg(OS_APPEND))
    _make_disk(machine)
    tell(
        f"blank machine: payload in {machine.flash.name} without user files; "
        f"{machine.os_disk.name} holds an OS with an unsigned /boot"
    )
    return machine


def blank_usb_disk(path: Path, *, size_mib: int = BACKUP_DISK_MIB) -> Path:
    """An empty (all zero) disk image to plug in as the key-backup USB drive."""
    with path.open("wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    return path


def os_boot_files(machine: Machine, out: Path) -> Path:
    """Copy the OS disk's /boot (the ext4 image's root) into ``out``; returns ``out``.

    Raises:
        ToolError: debugfs is missing or failed.
    """
    require_tool("debugfs", package="e2fsprogs")
    out.mkdir(parents=True, exist_ok=True)
    # rdump keeps names, modes and the tree; -R runs one request and exits.
    run(
        ["debugfs", "-R", f"rdump / {out}", str(machine.os_disk)],
        desc="copy /boot out of the OS disk",
        timeout_s=120,
    )
    return out


def usb_file(image: Path, name: str, out: Path) -> Path:
    """Copy file ``name`` out of the FAT filesystem on the whole-disk ``image``.

    Raises:
        ToolError: mtools is missing, or the image holds no such file.
    """
    require_tool("mcopy", package="mtools")
    run(
        ["mcopy", "-n", "-i", str(image), f"::{name}", str(out)],
        desc=f"copy {name} out of {image.name}",
        env={"MTOOLS_SKIP_CHECK": "1"},
    )
    return out
