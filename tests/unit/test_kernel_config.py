"""Kernel configuration fragments and .config files: parsing, merging, the survival check."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.kernel_config import (
    KconfigOption,
    Unmet,
    merge,
    parse_config,
    parse_fragment,
    unmet,
)
from heads.errors import FormatError
from heads.flows.kernel_build import DEFAULT_FRAGMENTS, fragment_options, platforms

FRAGMENT = b"""# why this group is here
CONFIG_TCG_CRB=y

# CONFIG_MODULES is not set
CONFIG_LOCALVERSION="-heads"
CONFIG_FAT_DEFAULT_CODEPAGE=437
CONFIG_PHYSICAL_START=0x1000000
"""


def test_fragment_options_in_file_order_with_their_lines() -> None:
    options = parse_fragment(FRAGMENT, source="f")
    assert options == (
        KconfigOption("CONFIG_TCG_CRB", "y", 2),
        KconfigOption("CONFIG_MODULES", None, 4),
        KconfigOption("CONFIG_LOCALVERSION", '"-heads"', 5),
        KconfigOption("CONFIG_FAT_DEFAULT_CODEPAGE", "437", 6),
        KconfigOption("CONFIG_PHYSICAL_START", "0x1000000", 7),
    )
    assert [o.render() for o in options] == [
        "CONFIG_TCG_CRB=y",
        "# CONFIG_MODULES is not set",
        'CONFIG_LOCALVERSION="-heads"',
        "CONFIG_FAT_DEFAULT_CODEPAGE=437",
        "CONFIG_PHYSICAL_START=0x1000000",
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("CONFIG_USB=m", "no modules; use y"),
        ("CONFIG_USB=n", "write `# CONFIG_USB is not set`"),
        ("CONFIG_USB", "not `CONFIG_NAME=value`"),
        ("USB=y", "not `CONFIG_NAME=value`"),
        ("CONFIG_X=maybe", "value must be y, a number or a double-quoted string"),
        ('CONFIG_X="open', "value must be y"),
        ('CONFIG_X="a\x1b[2J"', "value must be y"),
        ("#CONFIG_USB is not set", "must read `# CONFIG_NAME is not set`"),
        ("# CONFIG_USB=y", "must read `# CONFIG_NAME is not set`"),
    ],
)
def test_malformed_fragment_lines_name_file_line_and_reason(line: str, reason: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_fragment(f"# ok\n{line}\n".encode(), source="board.fragment")
    assert info.value.message.startswith("board.fragment, line 2: ")
    assert reason in info.value.message


def test_an_option_given_twice_is_refused_naming_both_lines() -> None:
    with pytest.raises(FormatError, match=r"f, line 3: CONFIG_USB is already set on line 1"):
        parse_fragment(b"CONFIG_USB=y\n\n# CONFIG_USB is not set\n", source="f")


def test_not_utf8_and_oversized_input_are_format_errors() -> None:
    with pytest.raises(FormatError, match=r"f: not UTF-8 \(byte 9\)"):
        parse_fragment(b"CONFIG_X=\xff\n", source="f")
    with pytest.raises(FormatError, match="larger than 4 MiB"):
        parse_config(b"#" * (4 << 20 | 1), source="c")


def test_parse_config_reads_what_the_kernel_writes() -> None:
    config = b"""#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.192 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"
CONFIG_64BIT=y
# CONFIG_MODULES is not set
CONFIG_NR_CPUS=64
CONFIG_64BIT=y
"""
    assert parse_config(config, source="c") == {
        "CONFIG_CC_VERSION_TEXT": '"gcc-12 (Debian 12.2.0-14) 12.2.0"',
        "CONFIG_64BIT": "y",
        "CONFIG_MODULES": None,
        "CONFIG_NR_CPUS": "64",
    }
    with pytest.raises(FormatError, match=r"c, line 2: not a \.config line"):
        parse_config(b"CONFIG_A=y\ngarbage\n", source="c")


def test_merge_replaces_each_option_and_appends_so_a_choice_member_wins() -> None:
    config = (
        b"CONFIG_KERNEL_GZIP=y\n# CONFIG_KERNEL_XZ is not set\nCONFIG_MODULES=y\nCONFIG_A=y\n\n"
    )
    options = parse_fragment(b"CONFIG_KERNEL_XZ=y\n# CONFIG_MODULES is not set\n", source="f")
    merged = merge(config, options)
    assert merged == (
        b"CONFIG_KERNEL_GZIP=y\nCONFIG_A=y\nCONFIG_KERNEL_XZ=y\n# CONFIG_MODULES is not set\n"
    )
    assert merge(merged, options) == merged
    assert merge(b"", options) == b"CONFIG_KERNEL_XZ=y\n# CONFIG_MODULES is not set\n"


def test_unmet_names_each_option_the_configuration_dropped() -> None:
    options = parse_fragment(FRAGMENT, source="f")
    config = {
        "CONFIG_TCG_CRB": None,
        "CONFIG_MODULES": "y",
        "CONFIG_LOCALVERSION": '"-heads"',
        "CONFIG_PHYSICAL_START": "0x1000000",
    }
    found = unmet(options, config)
    assert [str(u) for u in found] == [
        "CONFIG_TCG_CRB: wanted y, got not set",
        "CONFIG_MODULES: wanted not set, got y",
        "CONFIG_FAT_DEFAULT_CODEPAGE: wanted 437, got not set",
    ]
    assert found[0] == Unmet(options[0], None)
    # An option absent from .config (invisible in that configuration) is not set.
    assert unmet([KconfigOption("CONFIG_GONE", None)], {}) == []


def test_the_committed_fragments_parse() -> None:
    assert {"qemu", "coreboot-laptop"} <= set(platforms())
    for platform in platforms():
        path, _data, options = fragment_options(platform)
        assert path.parent == DEFAULT_FRAGMENTS
        values = {o.name: o.value for o in options}
        assert values["CONFIG_MODULES"] is None, platform  # every driver built in
        assert values["CONFIG_KEXEC_FILE"] == "y", platform
        assert values["CONFIG_TCG_TPM"] == "y", platform
    coreboot = {o.name for o in fragment_options("coreboot-laptop")[2]}
    for name in (
        "CONFIG_GOOGLE_FIRMWARE",
        "CONFIG_GOOGLE_COREBOOT_TABLE",
        "CONFIG_GOOGLE_MEMCONSOLE_COREBOOT",
        "CONFIG_GOOGLE_FRAMEBUFFER_COREBOOT",
    ):
        assert name in coreboot


_LINE = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda n, v: f"CONFIG_{n}={v}",
        st.from_regex(r"[A-Z0-9_]{1,12}", fullmatch=True),
        st.text(max_size=20),
    ),
    st.builds(lambda n: f"# CONFIG_{n} is not set", st.from_regex(r"[A-Z_]{1,8}", fullmatch=True)),
)


def _parse_or_error(
    parse: Callable[..., object], data: bytes
) -> tuple[object | None, FormatError | None]:
    try:
        return parse(data, source="fuzz"), None
    except FormatError as exc:
        return None, exc


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=12))
def test_parsers_on_hostile_text_raise_only_format_errors(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    _config, config_error = _parse_or_error(parse_config, data)
    assert config_error is None or config_error.message.startswith("fuzz")
    options, error = _parse_or_error(parse_fragment, data)
    if error is not None:
        assert error.message.startswith("fuzz")
        return
    assert isinstance(options, tuple)
    # What parses merges into a .config that reads back with those values.
    merged = parse_config(merge(b"", options), source="merged")
    assert unmet(options, merged) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_on_hostile_bytes(data: bytes) -> None:
    for parse in (parse_fragment, parse_config):
        _result, error = _parse_or_error(parse, data)
        assert error is None or error.message.startswith("fuzz")
