"""SYSLINUX/ISOLINUX/EXTLINUX parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.bootcfg.entry import EntryKind, MultibootModule
from heads.core.bootcfg.syslinux import MAX_INCLUDE_DEPTH, SyslinuxResult, parse_syslinux
from heads.core.bootcfg.tree import MemoryTree
from heads.errors import FormatError


def parse(cfg: str, extra: dict[str, bytes] | None = None) -> SyslinuxResult:
    tree = MemoryTree({"/isolinux/isolinux.cfg": cfg.encode(), **(extra or {})})
    return parse_syslinux(tree, "/isolinux/isolinux.cfg")


def test_labels_menu_labels_initrd_from_append_and_relative_paths() -> None:
    result = parse(
        """
DEFAULT linux
LABEL linux
  MENU LABEL ^Install
  KERNEL vmlinuz
  APPEND initrd=initrd.img,extra.img quiet
label explicit
  linux /boot/vmlinuz
  initrd /boot/initrd.img
  append initrd=ignored.img ro
"""
    )
    first, second = result.entries
    assert result.default_label == "linux"
    assert (first.title, first.kernel) == ("Install", "/isolinux/vmlinuz")
    assert first.initrds == ("/isolinux/initrd.img", "/isolinux/extra.img")
    assert first.cmdline == "quiet"
    # An explicit initrd line wins; initrd= never reaches the command line.
    assert second.initrds == ("/boot/initrd.img",)
    assert second.cmdline == "ro"


def test_mboot_c32_is_xen_and_other_modules_are_skipped() -> None:
    result = parse(
        """
label xen
  kernel mboot.c32
  append /xen.gz dom0_mem=1G --- /vmlinuz root=/dev/sda1 ro --- /initrd.img
label menu
  kernel vesamenu.c32
label hd
  localboot 0x80
"""
    )
    (xen,) = result.entries
    assert xen.kind is EntryKind.XEN
    assert (xen.kernel, xen.cmdline) == ("/xen.gz", "dom0_mem=1G")
    assert xen.modules == (
        MultibootModule("/vmlinuz", "root=/dev/sda1 ro"),
        MultibootModule("/initrd.img"),
    )
    reasons = {d.title: d.reason for d in result.dropped}
    assert "vesamenu.c32" in reasons["menu"]
    assert "localboot" in reasons["hd"]


def test_include_menu_begin_and_help_text() -> None:
    result = parse(
        "include menu.cfg\n",
        {
            "/isolinux/menu.cfg": b"""menu begin adv
menu title Advanced options
label a
  text help
    label ignored
    kernel /not-a-kernel
  endtext
  kernel /a
menu end
label b
  kernel /b
"""
        },
    )
    assert [(e.title, e.submenu, e.kernel) for e in result.entries] == [
        ("a", ("Advanced options",), "/a"),
        ("b", (), "/b"),
    ]
    assert result.files_read == ("/isolinux/isolinux.cfg", "/isolinux/menu.cfg")


def test_an_include_loop_is_reported_and_the_labels_before_it_stay() -> None:
    result = parse(
        "label a\n kernel /a\ninclude more.cfg\nlabel c\n kernel /c\n",
        {"/isolinux/more.cfg": b"label b\n kernel /b\ninclude isolinux.cfg\n"},
    )
    assert [e.title for e in result.entries] == ["a", "b", "c"]
    (problem,) = result.problems
    assert problem.startswith("/isolinux/more.cfg:3: /isolinux/isolinux.cfg is already being read")
    assert "/isolinux/isolinux.cfg -> /isolinux/more.cfg -> /isolinux/isolinux.cfg" in problem


def test_includes_nested_too_deep_are_reported() -> None:
    files = {f"/isolinux/l{i}.cfg": f"include l{i + 1}.cfg\n".encode() for i in range(20)}
    result = parse("label a\n kernel /a\ninclude l0.cfg\n", files)
    assert [e.title for e in result.entries] == ["a"]
    assert result.problems == (
        f"/isolinux/l7.cfg:1: /isolinux/l8.cfg would be included more than {MAX_INCLUDE_DEPTH} "
        "deep",
    )


def test_a_broken_include_is_reported_and_the_rest_kept() -> None:
    result = parse(
        "label a\n kernel /a\ninclude bad.cfg\nlabel b\n kernel /b\n",
        {"/isolinux/bad.cfg": b"label x\n kernel /x\xff\n"},
    )
    assert [e.title for e in result.entries] == ["a", "b"]
    assert result.problems == (
        "/isolinux/bad.cfg, line 2, byte offset 18: invalid UTF-8 (invalid start byte); not read",
    )


def test_missing_include_is_reported_not_fatal() -> None:
    result = parse("include nowhere.cfg\nlabel a\n kernel /a\n")
    assert [e.title for e in result.entries] == ["a"]
    assert any("nowhere.cfg does not exist" in p for p in result.problems)


def test_binary_garbage_is_a_format_error() -> None:
    tree = MemoryTree({"/syslinux.cfg": b"label a\n\xc3\x28"})
    with pytest.raises(FormatError, match="UTF-8") as err:
        parse_syslinux(tree, "/syslinux.cfg")
    assert err.value.line == 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_result_or_format_error(data: bytes) -> None:
    tree = MemoryTree({"/syslinux.cfg": data})
    try:
        result = parse_syslinux(tree, "/syslinux.cfg")
    except FormatError:
        return
    for entry in result.entries:
        assert entry.kernel.startswith("/")


def test_include_fan_out_is_bounded() -> None:
    # Each level includes the next ten times: 10**5 reads without a bound.
    files = {f"/isolinux/l{i}.cfg": (f"include l{i + 1}.cfg\n".encode() * 10) for i in range(5)}
    result = parse("label a\n kernel /a\ninclude l0.cfg\n", files)
    assert [e.title for e in result.entries] == ["a"]
    assert len(result.files_read) == 6
    assert any("more than 64 files read" in p for p in result.problems)
