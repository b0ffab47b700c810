"""The settings the boot runtime and its menus read from Heads' configuration.

Kept apart from the menus' state machine (:mod:`heads.core.gui`) so that the runtime can read
them early in the boot without loading the menus.  Pure: values in, settings out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ModeConfig", "mode_from_config"]


@dataclass(frozen=True, slots=True)
class ModeConfig:
    """The configuration values the menus read and change (docs/runtime-menus.md §Where the
    settings come from).

    Attributes:
        board: ``CONFIG_BOARD_NAME`` (shown in the main menu's title).
        brand: ``CONFIG_BRAND_NAME``.
        basic: ``CONFIG_BASIC=y``.
        restricted: ``CONFIG_RESTRICTED_BOOT=y``.
        auto_boot_timeout: ``CONFIG_AUTO_BOOT_TIMEOUT`` in seconds (None: no countdown).
        output_level: 0 quiet, 1 info, 2 debug (``CONFIG_QUIET_MODE``/``CONFIG_DEBUG_OUTPUT``).
        hotp: an HOTP token is configured (``CONFIG_HOTPKEY=y``).
    """

    board: str = "qemu"
    brand: str = "Heads"
    basic: bool = False
    restricted: bool = False
    auto_boot_timeout: int | None = None
    output_level: int = 1
    hotp: bool = False


def mode_from_config(values: Mapping[str, str], base: ModeConfig | None = None) -> ModeConfig:
    """The menus' settings from ``CONFIG_*`` values (board defaults then ``config.user``,
    already merged: later wins), the inverse of :func:`config_changes`.  A value Heads would
    not understand leaves the setting as ``base`` has it (the configuration check reports it).
    """
    mode = base or ModeConfig()

    def flag(key: str, default: bool) -> bool:
        value = values.get(key)
        return default if value not in ("y", "n") else value == "y"

    timeout = mode.auto_boot_timeout
    raw = values.get("CONFIG_AUTO_BOOT_TIMEOUT")
    if raw is not None:
        timeout = int(raw) if raw.isdigit() and 0 < int(raw) <= 3600 else None
    level = mode.output_level
    if flag("CONFIG_DEBUG_OUTPUT", level >= 2):
        level = 2
    elif flag("CONFIG_QUIET_MODE", level == 0):
        level = 0
    elif "CONFIG_DEBUG_OUTPUT" in values or "CONFIG_QUIET_MODE" in values:
        level = 1
    return ModeConfig(
        board=values.get("CONFIG_BOARD_NAME", mode.board) or mode.board,
        brand=values.get("CONFIG_BRAND_NAME", mode.brand) or mode.brand,
        basic=flag("CONFIG_BASIC", mode.basic),
        restricted=flag("CONFIG_RESTRICTED_BOOT", mode.restricted),
        auto_boot_timeout=timeout,
        output_level=level,
        hotp=flag("CONFIG_HOTPKEY", mode.hotp),
    )
