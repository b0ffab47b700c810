"""Heads' export CONFIG_X="v" files: parse, edit, write; the shell must agree with us."""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.heads_config import (
    HeadsConfig,
    check_value,
    merged,
    parse_config,
    problems,
    quote_value,
)
from heads.errors import FormatError

BOARD = b"""# board defaults
export CONFIG_TPM=y
export CONFIG_TPM2_TOOLS="y"
export CONFIG_BOOT_KERNEL_ADD="console=ttyS0 quiet"
export CONFIG_AUTO_BOOT_TIMEOUT=5
export GIT_HASH='abc123'
"""
USER = b"""export CONFIG_BOOT_DEV="/dev/vda1"
export CONFIG_AUTO_BOOT_TIMEOUT=""
CONFIG_X_UNKNOWN=a#b   # a comment after the value
export CONFIG_MULTI='line one
line two'
"""


def _shell_value(tmp_path: Path, data: bytes, key: str, shell: str = "sh") -> str | None:
    """What a shell sourcing ``data`` ends up with in ``key`` (None: unset)."""
    f = tmp_path / "config"
    f.write_bytes(data)
    script = f'. "$1"; if [ "${{{key}+set}}" = set ]; then printf "%s" "${key}"; else exit 9; fi'
    proc = subprocess.run(
        [shell, "-c", script, "sh", str(f)], capture_output=True, check=False, timeout=10
    )
    if proc.returncode == 9:
        return None
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode("utf-8", "surrogateescape")


def test_parse_agrees_with_the_shell(tmp_path: Path) -> None:
    config = parse_config(USER, source="config.user")
    assert config.items() == {
        "CONFIG_BOOT_DEV": "/dev/vda1",
        "CONFIG_AUTO_BOOT_TIMEOUT": "",
        "CONFIG_X_UNKNOWN": "a#b",
        "CONFIG_MULTI": "line one\nline two",
    }
    for key, value in config.items().items():
        assert _shell_value(tmp_path, USER, key) == value
    assert config.to_bytes() == USER


def test_board_defaults_then_user_later_wins() -> None:
    board = parse_config(BOARD, source="/etc/config")
    user = parse_config(USER, source="config.user")
    final = merged([board, user])
    assert final["CONFIG_AUTO_BOOT_TIMEOUT"] == ""
    assert final["CONFIG_TPM"] == "y"
    assert final["GIT_HASH"] == "abc123"
    assert list(final)[:2] == ["CONFIG_TPM", "CONFIG_TPM2_TOOLS"]


def test_set_and_unset_touch_only_their_lines() -> None:
    config = parse_config(BOARD + b"export CONFIG_TPM=n\n")
    edited = config.set("CONFIG_TPM", "y").set("CONFIG_NEW", "v")
    text = edited.to_bytes().decode()
    assert text.count("CONFIG_TPM=") == 1
    assert text.endswith('export CONFIG_NEW="v"\n')
    assert text.replace('export CONFIG_TPM="y"\n', "").replace('export CONFIG_NEW="v"\n', "") == (
        BOARD.decode().replace("export CONFIG_TPM=y\n", "")
    )
    assert edited.unset("CONFIG_NEW").unset("CONFIG_TPM").get("CONFIG_TPM") is None
    no_newline = parse_config(b"export A=1").set("B", "2")
    assert no_newline.to_bytes() == b'export A=1\nexport B="2"\n'


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"export CONFIG_X=$(reboot)\n", "outside quotes"),
        (b'export CONFIG_X="$(reboot)"\n', "unescaped '$'"),
        (b'export CONFIG_X="`id`"\n', "unescaped '`'"),
        (b"export CONFIG_X=a; reboot\n", "after the value"),
        (b"export CONFIG_X=a b\n", "after the value"),
        (b"export CONFIG_X='open\n", "never closed"),
        (b'export CONFIG_X="open\n', "never closed"),
        (b"reboot\n", "not an assignment"),
        (b"export CONFIG_X=~/x\n", "outside quotes"),
        (b"export CONFIG_X=\xff\n", "not UTF-8"),
        (b"export CONFIG_X=a\0\n", "NUL"),
    ],
)
def test_hostile_lines_name_file_and_line(line: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=f"config.user, line 3: .*{re.escape(reason)}"):
        parse_config(b"# x\nexport A=1\n" + line, source="config.user")


def test_known_keys_are_checked() -> None:
    check_value("CONFIG_AUTO_BOOT_TIMEOUT", "")
    check_value("CONFIG_UNKNOWN_THING", "any $ thing")
    for key, value, reason in [
        ("CONFIG_BASIC", "yes", "takes y or n"),
        ("CONFIG_AUTO_BOOT_TIMEOUT", "-1", "takes a number"),
        ("CONFIG_PRIMARY_KEY_TYPE", "dsa", "one of rsa, ecc"),
        ("CONFIG_BOOT_DEV", "vda1", "absolute path"),
        ("not-a-key", "x", "not a configuration key"),
        ("CONFIG_X", "a\0b", "NUL"),
    ]:
        with pytest.raises(ValueError, match=reason):
            check_value(key, value)
    config = parse_config(b"export CONFIG_RESTRICTED_BOOT=maybe\n", source="config.user")
    assert problems(config) == [
        "config.user, line 1: CONFIG_RESTRICTED_BOOT takes y or n, not 'maybe'"
    ]


values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=40)


@given(values)
@settings(max_examples=80, deadline=None)
def test_any_value_round_trips_through_us_and_the_shell(value: str) -> None:
    import tempfile

    data = HeadsConfig().set("CONFIG_V", value).set("CONFIG_AFTER", "ok").to_bytes()
    assert parse_config(data).get("CONFIG_V") == value
    with tempfile.TemporaryDirectory() as tmp:
        assert _shell_value(Path(tmp), data, "CONFIG_V") == value
        assert _shell_value(Path(tmp), data, "CONFIG_AFTER") == "ok"


def test_quoting_never_lets_code_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for value in [f"$(touch {marker})", f"`touch {marker}`", f"'; touch {marker}; '", "\\"]:
        data = f"export CONFIG_V={quote_value(value)}\n".encode()
        assert _shell_value(tmp_path, data, "CONFIG_V") == value
        assert _shell_value(tmp_path, data, "CONFIG_V", "bash") == value
    assert not marker.exists()


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_parse_or_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        config = parse_config(data)
        assert config.to_bytes() == data


shellish = st.lists(
    st.sampled_from([*"ab =$`'\"\\\n#;~x1_", "export ", "CONFIG_A="]), max_size=30
).map("".join)


@given(shellish)
@settings(max_examples=120, deadline=None)
def test_whatever_we_accept_the_shell_reads_the_same(body: str) -> None:
    """Shell-like noise after CONFIG_A=: if we accept it, dash and bash agree on the values."""
    import tempfile

    data = ("CONFIG_A=" + body + "\n").encode()
    try:
        config = parse_config(data)
    except FormatError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for key, value in config.items().items():
            assert _shell_value(Path(tmp), data, key) == value
            assert _shell_value(Path(tmp), data, key, "bash") == value
