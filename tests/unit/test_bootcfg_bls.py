"""BLS Type #1 entries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.bootcfg.bls import compare_versions, parse_bls, parse_bls_entry
from heads.core.bootcfg.entry import BootEntry, DroppedEntry
from heads.core.bootcfg.tree import MemoryTree
from heads.errors import FormatError


def _conf(version: str, **extra: str) -> bytes:
    lines = [f"title Fedora ({version})", f"version {version}", "machine-id abc"]
    lines += [f"{k.replace('_', '-')} {v}" for k, v in extra.items()]
    lines += [f"linux /vmlinuz-{version}", f"initrd /initramfs-{version}.img"]
    return ("\n".join(lines) + "\n").encode()


def test_all_options_lines_are_joined_and_variables_expanded() -> None:
    data = (
        b"title T\nlinux /k\ninitrd /ucode.img\ninitrd /i.img /j.img\n"
        b"options $kernelopts\noptions quiet ${extra}\n"
    )
    entry, keys = parse_bls_entry(data, "/loader/entries/t.conf", {"kernelopts": "root=/dev/x ro"})
    assert isinstance(entry, BootEntry)
    assert entry.cmdline == "root=/dev/x ro quiet"
    assert entry.initrds == ("/ucode.img", "/i.img", "/j.img")
    assert keys["title"] == "T"


def test_initrd_variables_expand_and_an_unset_one_adds_nothing() -> None:
    data = b"title T\nlinux /k\ninitrd /i.img $tuned_initrd ${early}\n"
    entry, _ = parse_bls_entry(data, "/loader/entries/t.conf", {"early": "/ucode.img"})
    assert isinstance(entry, BootEntry)
    assert entry.initrds == ("/i.img", "/ucode.img")


def test_a_broken_entry_file_costs_only_itself() -> None:
    tree = MemoryTree(
        {
            "/loader/entries/a.conf": _conf("6.1"),
            "/loader/entries/b.conf": b"title B\nlinux /k\x00\n",
            "/loader/entries/c.conf": b"title C\n" + b"#" * 70_000,
            "/loader/entries/d.conf": _conf("6.2"),
        }
    )
    result = parse_bls(tree)
    assert [e.title for e in result.entries] == ["Fedora (6.2)", "Fedora (6.1)"]
    assert result.problems == (
        "/loader/entries/b.conf, line 2, byte offset 16: NUL byte in a text configuration; "
        "entry not read",
        "/loader/entries/c.conf: file is larger than 65536 bytes (70008); entry not read",
    )
    assert result.files_read == ("/loader/entries/a.conf", "/loader/entries/d.conf")


def test_efi_only_entries_are_dropped_with_reason() -> None:
    entry, _ = parse_bls_entry(b"title W\nefi /EFI/w.efi\n", "/loader/entries/w.conf")
    assert isinstance(entry, DroppedEntry)
    assert "EFI program" in entry.reason


def test_order_is_newest_version_first_and_sort_key_first() -> None:
    tree = MemoryTree(
        {
            "/loader/entries/abc-6.9.conf": _conf("6.9.1-200.fc40"),
            "/loader/entries/abc-6.10.conf": _conf("6.10.2-100.fc40"),
            "/loader/entries/abc-6.2.conf": _conf("6.2.0-1.fc40"),
            "/loader/entries/keyed.conf": _conf("5.0", sort_key="aaa"),
            "/loader/entries/README": b"not an entry",
        }
    )
    result = parse_bls(tree)
    assert [e.title for e in result.entries] == [
        "Fedora (5.0)",
        "Fedora (6.10.2-100.fc40)",
        "Fedora (6.9.1-200.fc40)",
        "Fedora (6.2.0-1.fc40)",
    ]


def test_version_comparison() -> None:
    assert compare_versions("6.10", "6.9") == 1
    assert compare_versions("1.0", "1.0") == 0
    assert compare_versions("1.0a", "1.0") == 1
    assert compare_versions("1.0", "1.0.1") == -1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_result_or_format_error(data: bytes) -> None:
    try:
        entry, _ = parse_bls_entry(data, "/loader/entries/x.conf")
    except FormatError as exc:
        assert exc.source == "/loader/entries/x.conf"  # noqa: PT017 - checking the message
        return
    assert isinstance(entry, BootEntry | DroppedEntry)
