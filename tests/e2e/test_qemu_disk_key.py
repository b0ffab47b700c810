"""The disk unlock key end to end in QEMU (TCG, OVMF, swtpm): the OS opens its LUKS volume
with the key the runtime released, or with the recovery passphrase when it was not.

One provisioned machine: a first unattended boot seals its TOTP secret and shows the
firmware's PCRs 5 and 6; the host then adds the LUKS volume and the disk key (flows/qemu_luks)
and each scenario boots a copy of that machine:

* right passphrase: the OS opens the volume with /secret.key, no prompt;
* wrong passphrase three times, then "boot with the recovery key": the OS asks the DRK;
* a LUKS header changed after sealing: no passphrase asked, the recovery key path;
* the firmware's config.user changed (PCR 7): the TPM refuses the key, the recovery key path;
* a firmware update flashed from the menu with the DUK passphrase typed: the next boot, on
  the new firmware, releases the key from the pending copy sealed for it;
* after the recovery shell (PCR 4 holds "recovery"), the right passphrase is refused and the
  OS opens its volume with the recovery passphrase.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters import cryptsetup
from heads.adapters.qemu import OVMF_BIOS
from heads.core.cbfs import CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.qemu_flash import CONFIG_USER
from heads.core.secret import Secret
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_luks import (
    OS_LUKS_BY_KEY_FILE,
    OS_LUKS_BY_PASSPHRASE,
    OS_LUKS_PROMPT,
    add_disk_key,
    firmware_values,
    firmware_values_from_transcripts,
)
from heads.flows.qemu_platform import (
    LUKS_DISK_NAME,
    BootResult,
    Machine,
    boot_machine,
    cached_payload,
    create_machine,
    provision_machine,
)
from heads.flows.qemu_update import UPDATE_ANSWERS, update_image, update_package, usb_drive

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.swtpm,
    pytest.mark.gpg,
    pytest.mark.cryptsetup,
]

REPO = Path(__file__).resolve().parents[2]
DRK = "owner recovery passphrase"
DUK = "correct horse battery staple 42"  # nothing on the console says this
MAIN = ("main-menu", "d")


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _has(result: BootResult, text: str) -> bool:
    return any(text in line.text for line in result.lines)


def _dialogs(result: BootResult) -> list[str]:
    return [
        m.group(1) for ln in result.lines if (m := re.search(r"heads: dialog ([\w-]+): ", ln.text))
    ]


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Machine:
    require_tools(
        "qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4", "cryptsetup"
    )
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    m = create_machine(tmp_path_factory.mktemp("duk") / "machine")
    provision_machine(m, kernel=payload.kernel, initramfs=payload.initramfs)
    first = boot_machine(m)  # unattended: seals the TOTP secret, boots the OS
    assert first.os_up, _where(first)
    assert firmware_values_from_transcripts(m) == firmware_values(first)
    add_disk_key(
        m,
        recovery=Secret(DRK.encode()),
        passphrase=Secret(DUK.encode()),
        firmware=firmware_values(first),
    )
    return m


def _copy(machine: Machine, tmp_path: Path) -> Machine:
    root = tmp_path / "machine"
    shutil.copytree(machine.root, root, ignore=shutil.ignore_patterns("boots"))
    return Machine.load(root)


def test_right_passphrase_opens_by_key_file(machine: Machine, tmp_path: Path) -> None:
    m = _copy(machine, tmp_path)
    result = boot_machine(m, answers=[MAIN, ("disk-key-passphrase", DUK)])
    assert _dialogs(result) == ["main-menu", "disk-key-passphrase"], _where(result)
    assert result.os_up, _where(result)
    assert _has(result, OS_LUKS_BY_KEY_FILE), _where(result)
    assert not _has(result, OS_LUKS_PROMPT), _where(result)
    # The OS initrd's own crypttab came back rewritten (kexec_initrd_crypttab_overrides.txt):
    # its mapping name, not the generic luks-UUID.
    assert _has(result, "heads-demo-os: /dev/mapper/demo-luks: "), _where(result)
    released = [ln for ln in result.lines if "disk key: released in" in ln.text]
    assert released, _where(result)
    start = next(ln for ln in result.lines if "heads: default entry:" in ln.text)
    measured = next(ln for ln in result.lines if "measured into PCR 6" in ln.text)
    print(
        f"\nguest (TCG): headers measured {measured.t_s - start.t_s:.2f} s after /boot "
        f"verified; key released {released[0].t_s - start.t_s:.2f} s after it "
        f"({released[0].text.removeprefix('heads: ')})"
    )
    assert not any(DUK in ln.text for ln in result.lines)
    # PCR 6 was measured by the runtime before the unseal.
    assert any(pcr == 6 for pcr, _, _ in result.log), _where(result)


def test_wrong_passphrase_falls_back_to_the_recovery_key(machine: Machine, tmp_path: Path) -> None:
    m = _copy(machine, tmp_path)
    result = boot_machine(
        m,
        answers=[
            MAIN,
            *[("disk-key-passphrase", "not the passphrase")] * 3,
            ("disk-key-recovery", "y"),
        ],
        replies=[(re.escape(OS_LUKS_PROMPT), DRK)],
    )
    assert "disk-key-recovery" in _dialogs(result), _where(result)
    assert result.os_up, _where(result)
    assert _has(result, OS_LUKS_BY_PASSPHRASE), _where(result)
    assert not _has(result, OS_LUKS_BY_KEY_FILE), _where(result)
    assert not any(DRK in ln.text for ln in result.lines)


def test_changed_header_refuses_the_key(machine: Machine, tmp_path: Path) -> None:
    m = _copy(machine, tmp_path)
    # Someone with the recovery passphrase adds a key slot: the header no longer matches.
    cryptsetup.add_key(m.root / LUKS_DISK_NAME, Secret(DRK.encode()), Secret(b"extra"), slot=2)
    result = boot_machine(
        m,
        answers=[MAIN, ("disk-key-recovery", "y")],
        replies=[(re.escape(OS_LUKS_PROMPT), DRK)],
    )
    assert _dialogs(result) == ["main-menu", "disk-key-recovery"], _where(result)
    assert _has(result, "Encrypted disk keys have changed"), _where(result)
    assert _has(result, OS_LUKS_BY_PASSPHRASE), _where(result)


def test_changed_config_refuses_the_key(machine: Machine, tmp_path: Path) -> None:
    m = _copy(machine, tmp_path)
    # The owner's config.user changes in the flash chip (an external programmer): PCR 7 moves.
    image = FlashImage.from_bytes(m.flash.read_bytes(), expected_size=m.flash_size)
    config = image.file(CONFIG_USER)
    assert config is not None
    changed = CbfsFile(CONFIG_USER, config.content() + b'export CONFIG_CHANGED="y"\n')
    m.flash.write_bytes(image.with_file(changed, replace=True).to_bytes())
    result = boot_machine(
        m,
        answers=[
            ("totp-failed", "i"),
            MAIN,
            ("disk-key-passphrase", DUK),
            ("disk-key-recovery", "y"),
        ],
        replies=[(re.escape(OS_LUKS_PROMPT), DRK)],
    )
    assert _dialogs(result) == [
        "totp-failed",
        "main-menu",
        "disk-key-passphrase",
        "disk-key-recovery",
    ], _where(result)
    assert _has(result, "disk key: the TPM refused to unseal 0x81000003: PCR 7 changed"), _where(
        result
    )
    assert _has(result, OS_LUKS_BY_PASSPHRASE), _where(result)
    assert not _has(result, OS_LUKS_BY_KEY_FILE), _where(result)


def test_a_firmware_update_keeps_the_key(machine: Machine, tmp_path: Path) -> None:
    """Boot 1 flashes an update from the menu (its payload moves PCRs 4, 7 and 9) and, asked
    the DUK passphrase, seals a pending copy of the key to the predicted PCRs; boot 2, on the
    new firmware, releases the key from that copy, promotes it, and the OS opens its volume
    with the key file."""
    m = _copy(machine, tmp_path)
    image = update_image(m)
    package = tmp_path / "update.zip"
    update_package(m, image, package)
    drive = usb_drive(tmp_path / "usb.img", {"update.zip": package.read_bytes()})

    flashed = boot_machine(
        m, answers=[*UPDATE_ANSWERS, ("disk-key-update-passphrase", DUK)], usb_disks=[drive]
    )
    assert "disk-key-update-passphrase" in _dialogs(flashed), _where(flashed)
    sealed = next(
        (
            ln
            for ln in flashed.lines
            if "disk key reseal: pending copy sealed at 0x81000004" in ln.text
        ),
        None,
    )
    assert sealed is not None, _where(flashed)
    assert "(headers measured now;" in sealed.text, _where(flashed)
    assert _has(flashed, "heads: flash: done"), _where(flashed)
    assert not flashed.os_up, _where(flashed)
    print(f"\nguest (TCG): {sealed.text.removeprefix('heads: ')}")

    after = boot_machine(m, answers=[MAIN, ("disk-key-passphrase", DUK)])
    assert _dialogs(after) == ["main-menu", "disk-key-passphrase"], _where(after)
    assert _has(after, "disk key: released by the pending copy"), _where(after)
    assert _has(after, "disk key: pending copy promoted to 0x81000003"), _where(after)
    assert after.os_up, _where(after)
    assert _has(after, OS_LUKS_BY_KEY_FILE), _where(after)
    assert not _has(after, OS_LUKS_PROMPT), _where(after)
    assert not any(DUK in ln.text for r in (flashed, after) for ln in r.lines)


# The recovery shell cannot return to the menus (/init keeps the shell until a power-off), so
# the owner's path back to the OS is the runtime's boot run again from the shell: its own
# code, scripted, with /boot already mounted and the firmware's user files already measured
# (a second measurement would move PCR 7 too and hide what PCR 4 does).
_BOOT_AGAIN = (
    'python3 -c "import sys; from pathlib import Path; '
    "from heads.runtime.boot import RuntimeEnv, run_boot; "
    "a = (('totp-failed', 'i'), ('main-menu', 'd'), ('disk-key-passphrase', '{duk}'), "
    "('disk-key-recovery', 'y')); "
    "sys.exit(run_boot(RuntimeEnv(rom=Path('/no-rom'), boot_device='', answers=a), "
    'sys.stdout))"'
)


def test_after_the_recovery_shell_the_key_is_refused(machine: Machine, tmp_path: Path) -> None:
    """PCR 4 holds "recovery" until the next boot: the right passphrase does not release the
    key, the recovery question comes, and the OS opens its volume with the DRK."""
    m = _copy(machine, tmp_path)
    result = boot_machine(
        m,
        answers=[("main-menu", "o"), ("options", "x"), ("recovery-confirm", "y")],
        typed=[(r"^heads: recovery shell \(type", _BOOT_AGAIN.format(duk=DUK))],
        replies=[(re.escape(OS_LUKS_PROMPT), DRK)],
    )
    dialogs = _dialogs(result)
    assert dialogs[:3] == ["main-menu", "options", "recovery-confirm"], _where(result)
    assert dialogs.count("disk-key-passphrase") == 1, _where(result)
    assert dialogs[-2:] == ["disk-key-passphrase", "disk-key-recovery"], _where(result)
    assert (4, "string", "recovery") in result.log, _where(result)
    assert _has(result, "PCR 7 not extended"), _where(result)
    refused = next((ln.text for ln in result.lines if "disk key: the TPM refused" in ln.text), "")
    assert re.search(r"0x81000003: PCR 4 changed", refused), _where(result)
    assert not _has(result, "disk key: released"), _where(result)
    assert result.os_up, _where(result)
    assert _has(result, OS_LUKS_BY_PASSPHRASE), _where(result)
    assert not _has(result, OS_LUKS_BY_KEY_FILE), _where(result)
