"""Kernel command-line assembly (Heads' _build_final_cmdline)."""

from __future__ import annotations

from heads.core.bootcfg.cmdline import BLOB_JAIL_PARAM, build_cmdline, strip_separator


def test_separator_is_dropped() -> None:
    assert strip_separator("iso-scan/filename=/u.iso --- quiet splash") == (
        "iso-scan/filename=/u.iso quiet splash"
    )
    assert strip_separator("  ---  ") == ""


def test_remove_words_from_every_source() -> None:
    out = build_cmdline(
        "root=/dev/x ro quiet splash",
        add="splash --- vt.default_red=0xff",
        remove=("quiet", "splash"),
        board_add="quiet intel_iommu=on",
    )
    assert out == "vt.default_red=0xff root=/dev/x ro intel_iommu=on"


def test_iso_parameters_replace_the_entrys_and_move_to_the_end() -> None:
    out = build_cmdline(
        "archisobasedir=arch img_dev=UUID= img_loop= img_dev=again accessibility=on",
        add="img_dev=/dev/disk/by-uuid/1234 img_loop=/arch.iso",
    )
    assert (
        out
        == "archisobasedir=arch accessibility=on img_dev=/dev/disk/by-uuid/1234 img_loop=/arch.iso"
    )


def test_board_words_only_once_and_blob_jail() -> None:
    out = build_cmdline("a b", board_add="b c c", blob_jail=True)
    assert out == f"a b c {BLOB_JAIL_PARAM}"
    assert build_cmdline("") == ""
