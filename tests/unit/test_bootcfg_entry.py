"""Heads' one-line boot-entry format: parse, serialise, round trip, hostile lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heads.core.bootcfg.entry import (
    BootEntry,
    EntryKind,
    MultibootModule,
    parse_entry_line,
    path_problem,
)
from heads.errors import FormatError

DEBIAN = (
    "Debian GNU/Linux|elf|kernel /vmlinuz-6.1.0-18-amd64|initrd /initrd.img-6.1.0-18-amd64"
    "|append root=UUID=... ro quiet"
)
QUBES = (
    "Qubes, with Xen hypervisor|xen|kernel /xen-4.17.gz placeholder dom0_mem=max:4096M"
    "|module /vmlinuz-6.6 placeholder root=/dev/mapper/qubes_dom0-root ro rd.luks.uuid=luks-x"
    "|module /initramfs-6.6.img"
)


def test_heads_reference_examples_parse_and_serialise_unchanged() -> None:
    debian = parse_entry_line(DEBIAN + "\n")
    assert debian.kind is EntryKind.ELF
    assert debian.kernel == "/vmlinuz-6.1.0-18-amd64"
    assert debian.initrds == ("/initrd.img-6.1.0-18-amd64",)
    assert debian.cmdline == "root=UUID=... ro quiet"
    assert debian.to_line() == DEBIAN
    qubes = parse_entry_line(QUBES)
    assert qubes.kind is EntryKind.XEN
    assert qubes.cmdline == "placeholder dom0_mem=max:4096M"
    assert qubes.modules[0] == MultibootModule(
        "/vmlinuz-6.6", "placeholder root=/dev/mapper/qubes_dom0-root ro rd.luks.uuid=luks-x"
    )
    assert qubes.modules[1] == MultibootModule("/initramfs-6.6.img")
    assert qubes.to_line() == QUBES
    assert qubes.files == ("/xen-4.17.gz", "/vmlinuz-6.6", "/initramfs-6.6.img")


def test_entry_without_arguments_has_no_append_field() -> None:
    memtest = parse_entry_line("Run Memtest86+|elf|kernel /boot/memtest86+/memtest")
    assert memtest.cmdline == ""
    assert memtest.to_line() == "Run Memtest86+|elf|kernel /boot/memtest86+/memtest"
    # Heads' GRUB parser writes an empty `|append`; it reads as no arguments.
    assert (
        parse_entry_line("D-I|elf|kernel /d-i/vmlinuz|initrd /d-i/initrd.gz|append").cmdline == ""
    )


def test_several_initrds_in_fields_or_comma_lists() -> None:
    entry = parse_entry_line("x|elf|kernel /k|initrd /ucode.img,/initrd.img|initrd /extra")
    assert entry.initrds == ("/ucode.img", "/initrd.img", "/extra")
    assert entry.to_line() == "x|elf|kernel /k|initrd /ucode.img|initrd /initrd.img|initrd /extra"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("only|elf", "at least"),
        ("t|pe|kernel /k", "unknown entry kind"),
        ("t|elf|initrd /i", "no kernel"),
        ("t|elf|kernel /k|kernel /k2", "two kernel"),
        ("t|elf|kernel /k args", "arguments"),
        ("t|elf|kernel /k|module /m", "module field"),
        ("t|xen|kernel /x|initrd /i", "initrd field"),
        ("t|xen|kernel /x|append a", "append field"),
        ("t|elf|kernel vmlinuz", "absolute"),
        ("t|elf|kernel /../etc/shadow", "'..'"),
        ("t|elf|kernel /k|bogus x", "unknown field"),
        ("t|elf|kernel /k\0", "NUL"),
        ("t|elf|kernel /k\nx|elf|kernel /y", "newline"),
    ],
)
def test_malformed_lines_raise_format_error_naming_file_and_line(line: str, reason: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_entry_line(line, source="/boot/kexec_default.1.txt", line_no=1)
    assert reason in err.value.message
    assert "/boot/kexec_default.1.txt" in err.value.message
    assert "line 1" in err.value.message


def test_model_refuses_what_the_line_cannot_carry() -> None:
    with pytest.raises(ValueError, match="title"):
        BootEntry("a|b", EntryKind.ELF, "/k")
    with pytest.raises(ValueError, match="path"):
        BootEntry("t", EntryKind.ELF, "/k with space")
    with pytest.raises(ValueError, match="command line"):
        BootEntry("t", EntryKind.ELF, "/k", cmdline="a\nb")
    assert path_problem("/ok/path-1.2") is None
    # A comma would split the path in an initrd field (Heads writes comma lists there).
    assert path_problem("/initrd,old.img") is not None


_path = st.lists(
    st.text(
        st.characters(
            blacklist_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], blacklist_characters="|/,"
        ),
        min_size=1,
        max_size=8,
    ).filter(lambda p: p not in (".", "..") and not any(c.isspace() for c in p)),
    min_size=1,
    max_size=4,
).map(lambda parts: "/" + "/".join(parts))
_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="|\n\r\0"), max_size=40
)
_args = _text.map(lambda t: " ".join(t.split()))


@st.composite
def _entries(draw: st.DrawFn) -> BootEntry:
    kind = draw(st.sampled_from(EntryKind))
    title = draw(_text)
    if kind is EntryKind.ELF:
        return BootEntry(
            title,
            kind,
            draw(_path),
            initrds=tuple(draw(st.lists(_path, max_size=3))),
            cmdline=draw(_args),
        )
    modules = draw(st.lists(st.builds(MultibootModule, _path, _args), max_size=3))
    return BootEntry(title, kind, draw(_path), cmdline=draw(_args), modules=tuple(modules))


@given(_entries())
def test_one_line_round_trip(entry: BootEntry) -> None:
    line = entry.to_line()
    assert "\n" not in line
    assert parse_entry_line(line) == entry


@given(st.text(max_size=200))
def test_arbitrary_lines_give_an_entry_or_format_error(line: str) -> None:
    try:
        entry = parse_entry_line(line)
    except FormatError:
        return
    assert parse_entry_line(entry.to_line()) == entry
