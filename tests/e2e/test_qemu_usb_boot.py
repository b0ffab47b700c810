"""USB boot from the runtime's menus in the guest (QEMU TCG, OVMF, swtpm).

One provisioned machine, two boots, two USB drives built on the host with ``mkfs.ext4 -d``:
an unsigned one and one signed with the owner's key (``kexec.sig`` over its files, no rollback
counter).  Both hold the demo OS (the payload kernel, the demo initramfs) and a grub.cfg; the
unsigned one also holds the demo OS as an ISO image made with xorriso.

* Boot 1: boot options -> USB boot -> the unsigned drive's entry -> "boot unsigned USB
  media?" yes -> the demo OS comes up; PCR 4 holds ``usb`` then ``generic``.
* Boot 2, Restricted mode (``CONFIG_RESTRICTED_BOOT=y`` in the flash image's config.user):
  the unsigned entry is refused; a live ISO on the unsigned drive, signed beside it by the
  owner (``demo.iso.sig``), boots without a question from its copy in memory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters.atomic import write_atomic
from heads.adapters.qemu import OVMF_BIOS
from heads.core.flash_image import FlashImage
from heads.flows.boot_signing import sign_boot
from heads.flows.firmware import image_config, with_config
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_platform import (
    OS_APPEND,
    OS_INITRD_NAME,
    OS_KERNEL_NAME,
    BootResult,
    Machine,
    boot_machine,
    cached_payload,
    create_machine,
    provision_machine,
)

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.swtpm, pytest.mark.gpg]

REPO = Path(__file__).resolve().parents[2]
TO_USB = (("main-menu", "o"), ("options", "b"), ("boot-options", "u"))


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _dialogs(result: BootResult) -> list[str]:
    return [
        m.group(1) for ln in result.lines if (m := re.search(r"heads: dialog ([\w-]+): ", ln.text))
    ]


def _usb_tree(machine: Machine, where: Path, title: str) -> Path:
    """The demo OS as a bootable USB drive's files (the machine's /boot files, a grub.cfg)."""
    (where / "boot" / "grub").mkdir(parents=True)
    (where / "lost+found").mkdir()  # mkfs.ext4 makes it: sign the tree as the drive holds it
    for name in (OS_KERNEL_NAME, OS_INITRD_NAME):
        shutil.copyfile(machine.os_boot / name, where / "boot" / name)
    (where / "boot" / "grub" / "grub.cfg").write_text(
        f"menuentry '{title}' {{\n"
        f"\tlinux /boot/{OS_KERNEL_NAME} {OS_APPEND}\n"
        f"\tinitrd /boot/{OS_INITRD_NAME}\n"
        "}\n"
    )
    return where


def _signed_iso(machine: Machine, owner: str, where: Path) -> Path:
    """The demo OS as a live ISO with a loopback.cfg, in ``where/isos/demo.iso``, signed beside
    it by the owner (``demo.iso.sig``)."""
    tree = where.parent / "iso-tree"
    (tree / "boot" / "grub").mkdir(parents=True)
    for name in (OS_KERNEL_NAME, OS_INITRD_NAME):
        shutil.copyfile(machine.os_boot / name, tree / "boot" / name)
    (tree / "boot" / "grub" / "loopback.cfg").write_text(
        "menuentry 'Demo live ISO' {\n"
        f"\tlinux /boot/{OS_KERNEL_NAME} {OS_APPEND} findiso=${{iso_path}}\n"
        f"\tinitrd /boot/{OS_INITRD_NAME}\n"
        "}\n"
    )
    (where / "isos").mkdir()
    iso = where / "isos" / "demo.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-R", "-V", "DEMO", "-o", str(iso), str(tree)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *("gpg", "--homedir", str(machine.gnupghome), "--batch", "--local-user", owner),
            *("--detach-sign", "--output", f"{iso}.sig", str(iso)),
        ],
        check=True,
        capture_output=True,
    )
    return iso


def _usb_image(tree: Path, image: Path) -> Path:
    with image.open("wb") as f:
        f.truncate(48 * 2**20)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "usb", "-E", "root_owner=0:0", "-d", str(tree), str(image)],
        check=True,
        capture_output=True,
    )
    return image


def test_usb_boot_from_the_menus(tmp_path: Path) -> None:
    require_tools(
        "qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4", "xorriso"
    )
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    machine = create_machine(tmp_path / "machine")
    owner = provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs)

    unsigned_tree = _usb_tree(machine, tmp_path / "unsigned", "USB demo OS")
    signed_tree = _usb_tree(machine, tmp_path / "signed", "USB demo OS, signed")
    try:
        _signed_iso(machine, owner.fingerprint, unsigned_tree)
        sign_boot(
            signed_tree,
            gnupghome=machine.gnupghome,
            key=owner.fingerprint,
            tpm=None,
            rollback=False,
        )
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(machine.gnupghome), "--kill", "gpg-agent"], check=False
        )
    unsigned = _usb_image(unsigned_tree, tmp_path / "u.img")
    signed = _usb_image(signed_tree, tmp_path / "s.img")

    # Boot 1: no TOTP secret yet (ignored); the unsigned drive boots once the owner agrees.
    first = boot_machine(
        machine,
        usb_disks=[unsigned],
        answers=[("totp-failed", "i"), *TO_USB, ("usb-select", "1"), ("usb-unsigned", "y")],
    )
    assert _dialogs(first)[-2:] == ["usb-select", "usb-unsigned"], _where(first)
    assert any("WITHOUT verification (unsigned media)" in ln.text for ln in first.lines)
    assert first.os_up, _where(first)
    assert [e for e in first.log if e[0] == 4][-2:] == [
        (4, "string", "usb"),
        (4, "string", "generic"),
    ], _where(first)

    # Boot 2: Restricted mode refuses the unsigned entry and boots the signed ISO (entry 2,
    # after the drive's own entry); the drive signed with kexec.sig is listed as signed.  The
    # menu follows the USB ports (the unsigned drive is on the first), whichever of the two
    # the kernel happened to name sda.
    image = FlashImage.from_bytes(machine.flash.read_bytes(), expected_size=machine.flash_size)
    config = image_config(image).set("CONFIG_RESTRICTED_BOOT", "y")
    write_atomic(machine.flash, with_config(image, config).to_bytes())
    second = boot_machine(
        machine,
        usb_disks=[unsigned, signed],
        answers=[
            ("totp-failed", "i"),
            *TO_USB,
            ("usb-select", "1"),
            ("restricted-refused", "ok"),
            ("boot-options", "u"),
            ("usb-select", "2"),
        ],
    )
    assert "usb-unsigned" not in _dialogs(second), _where(second)
    assert "restricted-refused" in _dialogs(second), _where(second)
    assert any(
        re.search(r"USB /dev/sd[a-z]: 1 boot entries \(signed\)", ln.text) for ln in second.lines
    ), _where(second)
    menu = [ln.text for ln in second.lines if re.search(r"heads:   [0-9]\) ", ln.text)]
    assert any("1) USB demo OS (unsigned) [1]" in t for t in menu), _where(second)
    assert any("2) isos/demo.iso: Demo live ISO [2]" in t for t in menu), _where(second)
    assert any(
        "ISO isos/demo.iso: signature verified with the firmware keyring" in ln.text
        for ln in second.lines
    ), _where(second)
    assert not any("WITHOUT verification" in ln.text for ln in second.lines), _where(second)
    assert second.os_up, _where(second)
    assert any(
        "iso-scan/filename=/isos/demo.iso" in ln.text and "heads-demo-os" in ln.text
        for ln in second.lines
    ), _where(second)
