"""An HOTP security token in memory, with the state a real one keeps.

Behaves like a Nitrokey Pro / Librem Key HOTP slot as ``hotp_verification`` exposes it: a
secret, a counter, a look-ahead window (a code up to ``look_ahead`` steps ahead is accepted and
resynchronises the counter; RFC 4226 §7.2), an Admin PIN with a retry counter that blocks at 0
and resets on a correct entry, and a presence flag (unplugged tokens do not answer).  An
accepted code moves the counter past it, so a replayed code is refused.
"""

from __future__ import annotations

from typing import Final

from heads.adapters.token import HotpCheck, TokenInfo
from heads.core.otp import HOTP_LOOK_AHEAD, OTP_DIGITS, find_hotp_counter
from heads.core.secret import Secret
from heads.errors import AuthError, ToolError

__all__ = ["FACTORY_ADMIN_PIN", "SimulatedToken"]

# The OpenPGP card factory Admin PIN that Heads tries for fresh "OEM Key" setups.
FACTORY_ADMIN_PIN: Final = Secret(b"12345678")
_MAX_SECRET_BYTES: Final = 20  # the HOTP slot of the Nitrokey Pro holds 20 bytes


class SimulatedToken:
    """An in-memory token implementing :class:`heads.adapters.token.HotpToken`."""

    def __init__(
        self,
        *,
        admin_pin: Secret = FACTORY_ADMIN_PIN,
        max_pin_retries: int = 3,
        look_ahead: int = HOTP_LOOK_AHEAD,
        serial: str = "0x5EC7E700",
    ) -> None:
        self._admin_pin = admin_pin
        self._max_retries = max_pin_retries
        self._retries = max_pin_retries
        self._look_ahead = look_ahead
        self._serial = serial
        self._secret: Secret | None = None
        self._counter = 0
        self.present = True

    # Inspection for tests: what a debugger on the real token would show.
    @property
    def counter(self) -> int:
        """The counter of the next code the token expects."""
        return self._counter

    @property
    def pin_retries(self) -> int:
        return self._retries

    @property
    def programmed(self) -> bool:
        return self._secret is not None

    def _require_present(self, what: str) -> None:
        if not self.present:
            raise ToolError(
                f"{what}: no security token answered",
                hint="insert the token (Nitrokey / Librem Key) and try again",
            )

    def info(self) -> TokenInfo:
        """The simulated token's identity and Admin PIN retry counter.

        Raises:
            ToolError: the token is unplugged.
        """
        self._require_present("read security token status")
        return TokenInfo(
            brand="Simulated token",
            serial=self._serial,
            firmware="sim-1.0",
            pin_retries=self._retries,
        )

    def program(self, secret: Secret, *, admin_pin: Secret, counter: int) -> None:
        """Check the Admin PIN, then store ``secret`` and ``counter``.

        Raises:
            AuthError: wrong PIN (tries left) or blocked PIN (0 tries left).
            ToolError: the token is unplugged.
            ValueError: a secret longer than the slot or a negative counter.
        """
        self._require_present("program security token")
        if self._retries == 0:
            raise AuthError(
                "the token's Admin PIN is blocked",
                tries_left=0,
                hint="unblock it with the Reset Code, or factory-reset the token",
            )
        if admin_pin != self._admin_pin:
            self._retries -= 1
            raise AuthError(
                f"the token refused the Admin PIN ({self._retries} tries left)",
                tries_left=self._retries,
            )
        self._retries = self._max_retries
        if not 0 < len(secret) <= _MAX_SECRET_BYTES:
            raise ValueError(f"the HOTP slot holds 1 to {_MAX_SECRET_BYTES} bytes")
        if counter < 0:
            raise ValueError("the HOTP counter is not negative")
        self._secret = secret
        self._counter = counter

    def check(self, code: str) -> HotpCheck:
        """Accept ``code`` if it is the HOTP of a counter in the look-ahead window.

        Raises:
            ToolError: the token is unplugged.
        """
        self._require_present("verify HOTP code on security token")
        if self._secret is None:
            return HotpCheck.NOT_PROGRAMMED
        if len(code) != OTP_DIGITS or not code.isdigit():
            return HotpCheck.INVALID
        match = find_hotp_counter(
            self._secret, code, counter=self._counter, look_ahead=self._look_ahead
        )
        if match is None:
            return HotpCheck.INVALID
        self._counter = match + 1
        return HotpCheck.VERIFIED
