"""The machine's swtpm served both ways, the QEMU command line, machine directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require
from heads.adapters.qemu import QemuSpec, choose_accel, qemu_argv
from heads.adapters.swtpm import is_manufactured, manufacture, serve_qemu, serve_tcp
from heads.adapters.tpm import open_tpm
from heads.core.digest import HashAlg
from heads.errors import FormatError, UsageError
from heads.flows.qemu_platform import Machine, boot_machine, create_machine, redact_console
from heads.testing.swtpm import swtpm_missing_reason


def test_argv_is_the_measured_machine() -> None:
    spec = QemuSpec(
        kernel=Path("/p/vmlinuz"),
        initrd=Path("/p/initrd"),
        append="console=ttyS0",
        tpm_socket=Path("/s/ctrl"),
        fw_cfg=(("opt/heads/rom", Path("/m/user.rom")),),
        fw_cfg_strings=(("opt/heads/mode", "batch"),),
        disks=(Path("/m/disk.img"),),
        flash=Path("/m/flash.rom"),
    )
    argv = qemu_argv(spec)
    joined = " ".join(argv)
    for part in (
        "-machine q35",
        "-accel tcg",
        "-m 1024",
        "-nodefaults",
        "-bios /usr/share/ovmf/OVMF.fd",
        "-kernel /p/vmlinuz",
        "-initrd /p/initrd",
        "-device tpm-crb,tpmdev=tpm0",
        "socket,id=chrtpm,path=/s/ctrl",
        "name=opt/heads/rom,file=/m/user.rom",
        "name=opt/heads/mode,string=batch",
        "file=/m/disk.img,format=raw,if=none,id=disk0,readonly=on",
        "nvme,serial=heads-disk0,drive=disk0",
        # The flash image: writable, after the OS disk (which stays /dev/nvme0n1).
        "file=/m/flash.rom,format=raw,if=none,id=flash -device nvme,serial=heads-flash,drive=flash",
    ):
        assert part in joined
    assert joined.index("heads-disk0") < joined.index("heads-flash")

    assert "id=flash,readonly" not in joined
    assert argv[argv.index("-append") + 1] == "console=ttyS0"
    assert "-cpu" not in argv  # only with KVM


def test_tcg_unless_hardware_virtualisation_is_loaded() -> None:
    if not any(Path(p).exists() for p in ("/sys/module/kvm_intel", "/sys/module/kvm_amd")):
        assert choose_accel() == "tcg"  # a paravirtual /dev/kvm alone is never used
    else:
        assert choose_accel() in {"tcg", "kvm"}


def test_redaction_keeps_codes_and_drops_secrets() -> None:
    assert redact_console("heads: TOTP URI otpauth://totp/x?secret=ABCDEF234567") == (
        "heads: TOTP URI otpauth://totp/x?secret=****"
    )
    assert redact_console("████ ▄▄▄▄▄ █▀ █▀█▀▀") == "[QR code line not kept]"
    assert redact_console("heads: TOTP 123456 at 2026-01-01T00:00:00Z") == (
        "heads: TOTP 123456 at 2026-01-01T00:00:00Z"
    )


@pytest.mark.swtpm
def test_tpm_state_survives_host_and_qemu_modes(tmp_path: Path) -> None:
    require(swtpm_missing_reason())
    state = tmp_path / "tpm"
    assert not is_manufactured(state)
    manufacture(state)
    assert is_manufactured(state)
    with serve_tcp(state) as server, open_tpm(server.tcti) as tpm:
        assert set(tpm.banks()) == {HashAlg.SHA1, HashAlg.SHA256}
        index = tpm.nv_counter_create()
        value = tpm.nv_counter_read(index)
    # QEMU mode: the control socket appears; without QEMU connecting we stop it ourselves.
    with serve_qemu(state) as server:
        assert server.ctrl_socket is not None
        assert server.ctrl_socket.exists()
        assert server.running
    with serve_tcp(state) as server, open_tpm(server.tcti) as tpm:
        assert tpm.nv_counter_read(index) == value


@pytest.mark.swtpm
def test_machine_directory_round_trip(tmp_path: Path) -> None:
    require(swtpm_missing_reason())
    root = tmp_path / "m"
    machine = create_machine(root)
    assert Machine.load(root) == machine
    assert is_manufactured(machine.tpm_state)
    with pytest.raises(UsageError, match="already exists"):
        create_machine(root)
    (root / "machine.json").write_text('{"format": 99}')
    with pytest.raises(FormatError, match=r"machine\.json"):
        Machine.load(root)
    with pytest.raises(UsageError, match="not a machine directory"):
        Machine.load(tmp_path / "nothing")


@pytest.mark.swtpm
def test_flash_chip_size_is_a_machine_setting(tmp_path: Path) -> None:
    require(swtpm_missing_reason())
    machine = create_machine(tmp_path / "m", flash_size=32 * 2**20)
    assert Machine.load(machine.root).flash_size == 32 * 2**20
    # A machine made before the flash image existed has the default chip.
    (machine.root / "machine.json").write_text(
        '{"format": 1, "memory_mib": 1024, "append": "console=ttyS0", "label": "x"}'
    )
    assert Machine.load(machine.root).flash_size == 16 * 2**20
    with pytest.raises(UsageError, match="not a power of two"):
        create_machine(tmp_path / "n", flash_size=24 * 2**20)
    # Booting before provisioning names what is missing (no QEMU is started).
    with pytest.raises(UsageError, match=r"os-disk\.img is missing"):
        boot_machine(machine)


def test_argv_usb_drives_and_writable_disks() -> None:
    spec = QemuSpec(
        kernel=Path("/p/vmlinuz"),
        initrd=Path("/p/initrd"),
        append="console=ttyS0",
        disks=(Path("/m/disk.img"),),
        disks_writable=True,
        usb_disks=(Path("/m/backup.img"), Path("/m/update.img")),
    )
    joined = " ".join(qemu_argv(spec))
    assert "file=/m/disk.img,format=raw,if=none,id=disk0 " in joined
    assert "readonly" not in joined
    assert "-device qemu-xhci,id=xhci" in joined
    for i, name in enumerate(("backup", "update")):
        assert f"file=/m/{name}.img,format=raw,if=none,id=usb{i}" in joined
        assert f"usb-storage,bus=xhci.0,drive=usb{i},removable=on" in joined
    assert joined.index("usb0") < joined.index("usb1")
    assert "xhci" not in " ".join(qemu_argv(QemuSpec(Path("k"), Path("i"), "")))
