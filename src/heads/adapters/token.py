"""USB security tokens that verify HOTP codes (Nitrokey Pro/Storage/3, Librem Key).

The machine computes the next HOTP code from the TPM-sealed secret and the token says whether
it matches (docs/heads-compat.md §TOTP and HOTP): a green light means the firmware is the one
the secret was sealed to.  Every token is reached through :class:`HotpToken`;
:class:`HotpVerificationToken` runs Nitrokey's ``hotp_verification`` tool, and
``heads.testing.token_sim`` holds a simulator with the same contract.

``hotp_verification set`` takes the secret and the Admin PIN as command-line arguments, where
every process can read them and where :func:`heads.adapters._run.run` logs them at debug
level.  heads never puts a secret in argv, so this backend verifies codes but does not program
a token; :meth:`HotpVerificationToken.program` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final, Protocol

from heads.adapters._run import require_tool, run
from heads.core.otp import OTP_DIGITS
from heads.core.secret import Secret
from heads.errors import ToolError

__all__ = [
    "HotpCheck",
    "HotpToken",
    "HotpVerificationToken",
    "TokenInfo",
    "parse_hotp_verification_info",
]

_TOOL: Final = "hotp_verification"
_TIMEOUT_S: Final = 30.0
# Exit statuses of hotp_verification (its src/return_codes.h, EXIT_*).
_EXIT_OK: Final = 0
_EXIT_CONNECTION_ERROR: Final = 1
_EXIT_INVALID_HOTP_CODE: Final = 4
_EXIT_SLOT_NOT_PROGRAMMED: Final = 6
_EXIT_BAD_FORMAT: Final = 7
_EXIT_CONNECTION_LOST: Final = 8


class HotpCheck(Enum):
    """A token's verdict on a code."""

    VERIFIED = "verified"
    INVALID = "invalid"
    NOT_PROGRAMMED = "not-programmed"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token says about itself.

    Attributes:
        brand: a product name for messages ("Nitrokey 3", "Nitrokey Pro / Librem Key").
        serial: the card serial as printed by the token, if it has one.
        firmware: the firmware version, if reported.
        pin_retries: attempts left for the PIN that guards programming (Admin PIN, or the
            Secrets app PIN on a Nitrokey 3); None when unknown or not set.
    """

    brand: str
    serial: str | None
    firmware: str | None
    pin_retries: int | None


class HotpToken(Protocol):
    """A token holding an HOTP secret and counter that verifies codes (RFC 4226 §7.2)."""

    def info(self) -> TokenInfo:
        """The token's identity and PIN retry counter.

        Raises:
            ToolError: no token answered.
        """
        ...

    def program(self, secret: Secret, *, admin_pin: Secret, counter: int) -> None:
        """Store ``secret`` in the HOTP slot; the next accepted code is the one for ``counter``.

        Raises:
            AuthError: the PIN was refused (``tries_left`` says how many remain; 0 = blocked).
            ToolError: no token answered, or this backend cannot program tokens.
        """
        ...

    def check(self, code: str) -> HotpCheck:
        """Ask the token to verify ``code``; an accepted code moves its counter past it.

        Raises:
            ToolError: no token answered or the exchange failed.
        """
        ...


_SERIAL_RE: Final = re.compile(r"^\s*Card serial:\s*(\S+)", re.MULTILINE)
_FW_NK3_RE: Final = re.compile(r"^\s*Firmware Nitrokey 3:\s*v?(\S+)", re.MULTILINE)
_FW_RE: Final = re.compile(r"^\s*Firmware:\s*v?(\S+)", re.MULTILINE)
_ADMIN_RE: Final = re.compile(r"^\s*Card counters:\s*Admin\s+(\d+)", re.MULTILINE)
_NK3_PIN_RE: Final = re.compile(r"^\s*Secrets app PIN counter:\s*(\d+)", re.MULTILINE)
_MAX_INFO_CHARS: Final = 16384


def parse_hotp_verification_info(text: str) -> TokenInfo:
    """Read ``hotp_verification info`` output (format of its src/main.c ``info`` branch).

    Unknown lines are ignored; fields not printed come back as None.
    """
    text = text[:_MAX_INFO_CHARS]
    serial_m = _SERIAL_RE.search(text)
    serial = serial_m.group(1) if serial_m and serial_m.group(1) != "N/A" else None
    nk3 = _FW_NK3_RE.search(text)
    if nk3:
        pin_m = _NK3_PIN_RE.search(text)
        return TokenInfo(
            brand="Nitrokey 3",
            serial=serial,
            firmware=nk3.group(1),
            pin_retries=int(pin_m.group(1)) if pin_m else None,
        )
    fw_m = _FW_RE.search(text)
    admin_m = _ADMIN_RE.search(text)
    return TokenInfo(
        # The tool cannot tell a Nitrokey Pro/Storage from a Librem Key: same firmware family.
        brand="Nitrokey Pro / Librem Key",
        serial=serial,
        firmware=fw_m.group(1) if fw_m else None,
        pin_retries=int(admin_m.group(1)) if admin_m else None,
    )


def _tool_error(what: str, returncode: int, output: bytes) -> ToolError:
    last = output.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no output)"]
    if returncode in (_EXIT_CONNECTION_ERROR, _EXIT_CONNECTION_LOST):
        return ToolError(
            f"{what}: no security token answered ({_TOOL} exit status {returncode})",
            hint="insert the token (Nitrokey / Librem Key) and try again",
            details=tuple(last),
        )
    return ToolError(
        f"{what}: {_TOOL} exited with status {returncode}",
        details=tuple(last),
    )


class HotpVerificationToken:
    """A Nitrokey or Librem Key reached through Nitrokey's ``hotp_verification`` tool."""

    def __init__(self, *, tool: str = _TOOL, timeout_s: float = _TIMEOUT_S) -> None:
        self._tool = tool
        self._timeout_s = timeout_s

    def _require(self) -> None:
        try:
            require_tool(self._tool)
        except ToolError:
            raise ToolError(
                f"{self._tool} is not installed (not found on PATH)",
                hint="build it from github.com/Nitrokey/nitrokey-hotp-verification (it is not "
                "packaged in Debian 12); Heads firmware images ship it",
            ) from None

    def info(self) -> TokenInfo:
        """Runs ``hotp_verification info``.

        Raises:
            ToolError: the tool is missing or no token answered.
        """
        self._require()
        res = run(
            [self._tool, "info"],
            desc="read security token status",
            timeout_s=self._timeout_s,
            check=False,
        )
        if res.returncode != _EXIT_OK:
            raise _tool_error("read security token status", res.returncode, res.stdout)
        return parse_hotp_verification_info(res.stdout.decode("utf-8", "replace"))

    def program(self, secret: Secret, *, admin_pin: Secret, counter: int) -> None:
        """Refused: ``hotp_verification set`` would need the secret and PIN in argv.

        Raises:
            ToolError: always.
        """
        del secret, admin_pin, counter
        raise ToolError(
            f"{_TOOL} takes the HOTP secret and Admin PIN only as command-line arguments, "
            "which other processes and logs can read; heads does not program tokens that way",
            hint="program the slot with a tool that reads the secret from standard input; "
            "this backend then verifies codes (heads hotp check)",
        )

    def check(self, code: str) -> HotpCheck:
        """Runs ``hotp_verification check CODE``.

        The code is one-time and useless once the token accepted it, which is why it may
        travel in argv where the secret may not.

        Raises:
            ToolError: the tool is missing, no token answered, or an unexpected status.
        """
        self._require()
        if len(code) != OTP_DIGITS or not code.isdigit():
            return HotpCheck.INVALID
        res = run(
            [self._tool, "check", code],
            desc="verify HOTP code on security token",
            timeout_s=self._timeout_s,
            check=False,
        )
        if res.returncode == _EXIT_OK:
            return HotpCheck.VERIFIED
        if res.returncode in (_EXIT_INVALID_HOTP_CODE, _EXIT_BAD_FORMAT):
            return HotpCheck.INVALID
        if res.returncode == _EXIT_SLOT_NOT_PROGRAMMED:
            return HotpCheck.NOT_PROGRAMMED
        raise _tool_error("verify HOTP code on security token", res.returncode, res.stdout)
