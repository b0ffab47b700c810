"""The board's defaults (``payload/boards/PLATFORM.config``, built into the payload as
/etc/config) and the owner's ``config.user``: the runtime reads both, later wins
(docs/guest-host-contract.md §Board defaults and config.user)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from heads.core.heads_config import parse_config
from heads.core.mode_config import ModeConfig
from heads.errors import FormatError, UsageError
from heads.flows.image_build import BOARDS_DIR, board_config
from heads.flows.kernel_build import platforms
from heads.runtime.boot import RuntimeEnv, _Console, _read_config


def _effective(root: Path) -> tuple[ModeConfig, str]:
    out = io.StringIO()
    mode = _read_config(RuntimeEnv(root=root), _Console(out))
    return mode, out.getvalue()


def _root(tmp_path: Path, defaults: bytes | None, user: bytes | None) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    if defaults is not None:
        (root / "etc" / "config").write_bytes(defaults)
    if user is not None:
        (root / "etc" / "config.user").write_bytes(user)
    return root


@pytest.mark.parametrize("platform", platforms())
def test_every_platform_has_board_defaults_heads_understands(platform: str) -> None:
    data = board_config(platform)
    values = dict(parse_config(data, source=platform).items())
    assert values["CONFIG_BOARD_NAME"] == platform
    assert values["CONFIG_TPM2_TOOLS"] == "y"
    assert values["CONFIG_BOOT_DEV"].startswith("/dev/")


def test_config_user_overrides_the_board_defaults(tmp_path: Path) -> None:
    defaults = (BOARDS_DIR / "qemu.config").read_bytes()
    alone, said = _effective(_root(tmp_path / "a", defaults, None))
    assert alone == ModeConfig(board="qemu", brand="Heads")
    assert "normal mode" in said
    user = b'export CONFIG_BOARD_NAME="owner-box"\nexport CONFIG_RESTRICTED_BOOT="y"\n'
    both, said = _effective(_root(tmp_path / "b", defaults, user))
    assert both.board == "owner-box"  # config.user wins
    assert both.brand == "Heads"  # kept from the board
    assert both.restricted
    assert "Restricted mode" in said
    # The board's own value wins over the built-in default when config.user is silent.
    board_restricted = defaults.replace(
        b'CONFIG_RESTRICTED_BOOT="n"', b'CONFIG_RESTRICTED_BOOT="y"'
    )
    assert _effective(_root(tmp_path / "c", board_restricted, None))[0].restricted
    # ... and config.user can turn it off again.
    off = b'export CONFIG_RESTRICTED_BOOT="n"\n'
    assert not _effective(_root(tmp_path / "d", board_restricted, off))[0].restricted


def test_a_malformed_board_file_is_named_and_config_user_still_applies(tmp_path: Path) -> None:
    root = _root(tmp_path, b"export CONFIG_BASIC=$(reboot)\n", b'export CONFIG_BASIC="y"\n')
    mode, said = _effective(root)
    assert mode.basic
    assert f"configuration ignored: {root / 'etc' / 'config'}" in said


def test_board_config_refuses_a_missing_or_bad_board(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no board defaults"):
        board_config("nonesuch", tmp_path)
    (tmp_path / "odd.config").write_bytes(b'export CONFIG_BASIC="maybe"\n')
    with pytest.raises(FormatError, match=r"odd\.config, line 1"):
        board_config("odd", tmp_path)
    (tmp_path / "broken.config").write_bytes(b"CONFIG_BASIC=`id`\n")
    with pytest.raises(FormatError, match=r"broken\.config"):
        board_config("broken", tmp_path)
