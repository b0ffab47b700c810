"""Finding USB disks through sysfs (a tree shaped like the kernel's)."""

from __future__ import annotations

from pathlib import Path

from heads.runtime.usb import usb_disks


def _disk(root: Path, devices: Path, name: str, via: str, *, sectors: int, parts: int) -> None:
    node = devices / via / "block" / name
    node.mkdir(parents=True)
    (node / "size").write_text(f"{sectors}\n")
    for i in range(1, parts + 1):
        (node / f"{name}{i}").mkdir()
    (root / name).symlink_to(node)


def test_only_usb_disks_with_their_partitions(tmp_path: Path) -> None:
    sys_block = tmp_path / "block"
    sys_block.mkdir()
    devices = tmp_path / "devices"
    _disk(sys_block, devices, "sda", "pci0000:00/0000:00:1f.2/ata1/host0", sectors=2048, parts=1)
    _disk(
        sys_block,
        devices,
        "sdb",
        "pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0/host1",
        sectors=4096,
        parts=2,
    )
    _disk(
        sys_block,
        devices,
        "sdc",
        "pci0000:00/0000:00:04.0/usb2/2-2/2-2:1.0/host2",
        sectors=8,
        parts=0,
    )
    (sys_block / "nvme0n1").mkdir()
    found = usb_disks(sys_block)
    assert [d.device for d in found] == [Path("/dev/sdb"), Path("/dev/sdc")]
    assert found[0].partitions == (Path("/dev/sdb1"), Path("/dev/sdb2"))
    assert found[0].size == 4096 * 512
    assert found[0].filesystem_device == Path("/dev/sdb1")
    assert found[1].filesystem_device == Path("/dev/sdc")


def test_no_sysfs_no_disks(tmp_path: Path) -> None:
    assert usb_disks(tmp_path / "missing") == []


def test_disks_in_port_order_whatever_their_names(tmp_path: Path) -> None:
    """Two drives probed in either order keep their menu numbers: the port decides, not sdX."""
    sys_block = tmp_path / "block"
    sys_block.mkdir()
    devices = tmp_path / "devices"
    usb = "pci0000:00/0000:00:04.0/usb2"
    _disk(sys_block, devices, "sda", f"{usb}/2-10/2-10:1.0/host0", sectors=8, parts=0)
    _disk(sys_block, devices, "sdb", f"{usb}/2-2/2-2:1.0/host1", sectors=8, parts=0)
    _disk(sys_block, devices, "sdc", f"{usb}/2-1/2-1:1.0/host2", sectors=8, parts=11)
    found = usb_disks(sys_block)
    assert [d.device.name for d in found] == ["sdc", "sdb", "sda"]
    assert [p.name for p in found[0].partitions][-3:] == ["sdc9", "sdc10", "sdc11"]
