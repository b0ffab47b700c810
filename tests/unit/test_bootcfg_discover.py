"""Discovery over a tree: which configurations, de-duplication, missing files, BLS fallback;
and the on-disk boot directory, which never follows symlinks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.adapters.bootdir import BootDir
from heads.core.bootcfg.discover import discover_entries, find_configs
from heads.core.bootcfg.tree import MemoryTree
from heads.errors import FormatError

GRUB = b"""
menuentry 'Debian' { linux /vmlinuz root=/dev/sda2
 initrd /initrd.img }
menuentry 'Gone' { linux /vmlinuz-old
 initrd /initrd.img }
"""


def test_efi_copies_are_deduplicated_and_missing_files_dropped() -> None:
    tree = MemoryTree(
        {
            "/grub/grub.cfg": GRUB,
            "/EFI/debian/grub.cfg": GRUB,
            "/vmlinuz": b"k",
            "/initrd.img": b"i",
        }
    )
    found = discover_entries(tree)
    assert [e.title for e in found.entries] == ["Debian"]
    assert found.configs == ("/grub/grub.cfg", "/EFI/debian/grub.cfg")
    (gone,) = found.dropped
    assert gone.title == "Gone"
    assert gone.reason == "kernel /vmlinuz-old does not exist (or is not a regular file)"
    assert len(discover_entries(tree, require_files=False).entries) == 2


def test_loopback_cfg_only_on_media() -> None:
    tree = MemoryTree({"/boot/grub/loopback.cfg": b"menuentry a { linux /k }", "/k": b""})
    assert discover_entries(tree).entries == ()
    assert [e.title for e in discover_entries(tree, media=True).entries] == ["a"]


def test_bls_is_used_when_grub_finds_nothing_with_grubenv_kernelopts() -> None:
    tree = MemoryTree(
        {
            "/grub2/grub.cfg": b"set timeout=5\n",
            "/grub2/grubenv": b"# GRUB Environment Block\nkernelopts=root=/dev/vda3 ro\n",
            "/loader/entries/m-6.5.conf": b"title F\nlinux /v\ninitrd /i\noptions $kernelopts\n",
            "/v": b"",
            "/i": b"",
        }
    )
    (entry,) = discover_entries(tree).entries
    assert entry.cmdline == "root=/dev/vda3 ro"


def test_a_broken_configuration_is_reported_and_others_still_used() -> None:
    tree = MemoryTree(
        {
            "/grub/grub.cfg": b"menuentry 'x' {\n",
            "/isolinux/isolinux.cfg": b"label a\n kernel /k\n",
            "/k": b"",
        }
    )
    found = discover_entries(tree)
    assert [e.title for e in found.entries] == ["a"]
    assert found.problems == ("/grub/grub.cfg, line 1: unterminated menuentry (no })",)


def test_too_many_configurations_is_a_format_error() -> None:
    tree = MemoryTree({f"/d{i}/grub.cfg": b"" for i in range(65)})
    with pytest.raises(FormatError, match="more than 64"):
        discover_entries(tree)


def test_find_configs_classifies_by_name() -> None:
    tree = MemoryTree(
        {
            "/EFI/BOOT/grub.cfg": b"",
            "/boot/grub/grub.cfg": b"",
            "/syslinux/syslinux.cfg": b"",
            "/extlinux.conf": b"",
            "/boot/grub/loopback.cfg": b"",
            "/isolinux/menu.cfg": b"",
        }
    )
    assert find_configs(tree) == (
        ["/boot/grub/grub.cfg", "/EFI/BOOT/grub.cfg"],
        ["/extlinux.conf", "/syslinux/syslinux.cfg"],
    )


# --- the on-disk tree -----------------------------------------------------------------------


def test_bootdir_never_follows_symlinks(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    (boot / "grub").mkdir(parents=True)
    secret = tmp_path / "outside"
    secret.write_bytes(b"secret")
    (boot / "vmlinuz-6.1").write_bytes(b"kernel")
    (boot / "vmlinuz").symlink_to("vmlinuz-6.1")
    (boot / "initrd.img").symlink_to(secret)
    (boot / "escape").symlink_to(tmp_path)
    (boot / "grub" / "grub.cfg").write_text(
        "menuentry real { linux /vmlinuz-6.1 }\n"
        "menuentry link { linux /vmlinuz }\n"
        "menuentry out { linux /vmlinuz-6.1\n initrd /initrd.img }\n"
        "menuentry dir { linux /escape/outside }\n"
    )
    tree = BootDir(boot)
    assert tree.read("/initrd.img") is None
    assert tree.read("/escape/outside") is None
    assert tree.is_file("/vmlinuz-6.1")
    assert not tree.is_file("/vmlinuz")
    found = discover_entries(tree)
    assert [e.title for e in found.entries] == ["real"]
    assert {d.title for d in found.dropped} == {"link", "out", "dir"}


def test_bootdir_reads_hashes_and_caps(tmp_path: Path) -> None:
    (tmp_path / "big.cfg").write_bytes(b"#" * 2048)
    tree = BootDir(tmp_path)
    assert tree.size("/big.cfg") == 2048
    assert tree.sha256("/big.cfg") == hashlib.sha256(b"#" * 2048).digest()
    assert tree.sha256("/nothing") is None
    with pytest.raises(FormatError, match="larger than 1024"):
        tree.read("/big.cfg", limit=1024)
    assert list(tree.walk()) == ["/big.cfg"]


def test_grub_legacy_conf_with_xen_and_chainloader() -> None:
    conf = b"""default 0
timeout 5
# RHEL 5 style
title CentOS (2.6.18)
\troot (hd0,0)
\tkernel /vmlinuz-2.6.18 ro root=/dev/VolGroup00/LogVol00 rhgb quiet
\tinitrd /initrd-2.6.18.img
title Xen
\tkernel (hd0,0)/xen.gz dom0_mem=1G
\tmodule /vmlinuz-xen ro root=/dev/sda2
\tmodule /initrd-xen.img
title Other
\trootnoverify (hd0,1)
\tchainloader +1
"""
    names = ["/vmlinuz-2.6.18", "/initrd-2.6.18.img", "/xen.gz", "/vmlinuz-xen", "/initrd-xen.img"]
    tree = MemoryTree({"/grub/grub.conf": conf, **dict.fromkeys(names, b"")})
    found = discover_entries(tree)
    centos, xen = found.entries
    assert centos.to_line() == (
        "CentOS (2.6.18)|elf|kernel /vmlinuz-2.6.18|initrd /initrd-2.6.18.img"
        "|append ro root=/dev/VolGroup00/LogVol00 rhgb quiet"
    )
    assert xen.to_line() == (
        "Xen|xen|kernel /xen.gz dom0_mem=1G|module /vmlinuz-xen ro root=/dev/sda2"
        "|module /initrd-xen.img"
    )
    (other,) = found.dropped
    assert "chainloader" in other.reason


_cfg_text = st.lists(
    st.sampled_from(
        [
            "menuentry 'a' {", "}", "linux /k", "initrd /i", "label x", "kernel /k",
            "append initrd=/i q", "include a.cfg", "source /grub/grub.cfg", "if [ -f /k ]; then",
            "fi", "blscfg", "title T", "options $kernelopts", "\\", "'", "\0", "\xff",
        ]
    ),
    max_size=25,
).map("\n".join)  # fmt: skip
_names = st.sampled_from(
    [
        "/grub/grub.cfg", "/isolinux/isolinux.cfg", "/isolinux/a.cfg", "/grub/grub.conf",
        "/loader/entries/x.conf", "/boot/grub/loopback.cfg", "/k", "/i", "/grub/grubenv",
    ]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_names, _cfg_text.map(lambda t: t.encode("utf-8", "surrogateescape"))))
def test_any_tree_gives_a_discovery(files: dict[str, bytes]) -> None:
    found = discover_entries(MemoryTree(files), media=True)
    for entry in found.entries:
        assert all(MemoryTree(files).is_file(p) for p in entry.files)
