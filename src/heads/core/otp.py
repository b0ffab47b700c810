"""One-time passwords the owner checks: HOTP (RFC 4226) and TOTP (RFC 6238).

Heads proves the firmware is untouched by showing a 6-digit code that only a machine whose
TPM released the sealed 20-byte secret can compute (docs/heads-compat.md §TOTP and HOTP).
This module holds the arithmetic and the text formats around it; it is pure: the secret, the
counter and the time are passed in.

* :func:`hotp_code`: RFC 4226 §5.3, HMAC-SHA1, dynamic truncation, 6 digits.
* :func:`totp_code`: RFC 6238 §4, T0 = 0, X = 30 s, on top of HOTP.
* :func:`find_hotp_counter`: the verifier's look-ahead window (RFC 4226 §7.2).
* :func:`base32_encode` / :func:`parse_base32`: RFC 4648 §6 without padding, as the Key URI
  format writes secrets; the parser accepts lowercase, spaces and padding a person may type.
* :func:`totp_uri` / :func:`parse_otpauth_uri`: ``otpauth://totp/LABEL?secret=BASE32``, the
  Key URI format authenticator apps scan from the QR code.
* :func:`check_clock`: a clock before the build date cannot give a code that matches the phone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

from heads.core.secret import Secret
from heads.errors import FormatError

__all__ = [
    "DEFAULT_LABEL",
    "HOTP_LOOK_AHEAD",
    "OTP_DIGITS",
    "SECRET_BYTES",
    "TOTP_STEP_S",
    "ClockCheck",
    "OtpauthUri",
    "TotpCode",
    "base32_encode",
    "check_clock",
    "find_hotp_counter",
    "group_base32",
    "hotp_code",
    "parse_base32",
    "parse_otpauth_uri",
    "totp_code",
    "totp_uri",
]

OTP_DIGITS: Final = 6
TOTP_STEP_S: Final = 30
# 160 bits: RFC 4226 §4 R6 recommends it, and Heads seals exactly 20 bytes (seal-totp.sh).
SECRET_BYTES: Final = 20
# Heads' label when the board name is unknown (seal-totp.sh).
DEFAULT_LABEL: Final = "TPMTOTP"
# How far ahead a token looks for a code (Nitrokey/Librem Key firmware uses a window of 10).
HOTP_LOOK_AHEAD: Final = 10
# The counter is an 8-byte big-endian value (RFC 4226 §5.1 "C").
_MAX_COUNTER: Final = 2**64 - 1
# Caps on text parsed from outside (a pasted URI or secret): far above any real one.
_MAX_URI_CHARS: Final = 2048
_MAX_BASE32_CHARS: Final = 1024
_MAX_LABEL_CHARS: Final = 256
_B32_ALPHABET: Final = frozenset(string.ascii_uppercase + "234567")


def hotp_code(secret: Secret, counter: int, *, digits: int = OTP_DIGITS) -> str:
    """The HOTP value for ``counter`` (RFC 4226 §5.3), zero-padded to ``digits``.

    Raises:
        ValueError: a counter outside 0..2^64-1 or digits outside 6..8 (a programming error).
    """
    if not 0 <= counter <= _MAX_COUNTER:
        raise ValueError("HOTP counter must fit in 8 bytes")
    if not 6 <= digits <= 8:
        raise ValueError("HOTP codes have 6 to 8 digits (RFC 4226 §5.3)")
    mac = hmac.new(secret.reveal(), counter.to_bytes(8, "big"), hashlib.sha1).digest()
    # Dynamic truncation: the low nibble of the last byte picks 4 bytes; drop the top bit.
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


@dataclass(frozen=True, slots=True)
class TotpCode:
    """A TOTP code and the 30-second window it belongs to.

    Attributes:
        code: the 6 digits.
        at: the UTC time the code was computed for.
        step: the RFC 6238 time-step number T = floor(unix time / 30).
        seconds_left: whole seconds until the next code (1..30).
    """

    code: str
    at: datetime
    step: int
    seconds_left: int

    @property
    def valid_until(self) -> datetime:
        """Start of the next time step (UTC)."""
        return datetime.fromtimestamp((self.step + 1) * TOTP_STEP_S, tz=UTC)


def _unix_seconds(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("pass an aware datetime (UTC): a naive one has no defined epoch")
    return int(now.timestamp() // 1)


def totp_code(secret: Secret, now: datetime) -> TotpCode:
    """The TOTP code at ``now`` (RFC 6238 §4.2: T0 = 0, X = 30 s, HMAC-SHA1, 6 digits).

    Raises:
        ValueError: ``now`` is naive or before 1970 (a programming error).
    """
    seconds = _unix_seconds(now)
    if seconds < 0:
        raise ValueError("TOTP is undefined before the Unix epoch")
    step = seconds // TOTP_STEP_S
    return TotpCode(
        code=hotp_code(secret, step),
        at=now.astimezone(UTC),
        step=step,
        seconds_left=TOTP_STEP_S - seconds % TOTP_STEP_S,
    )


def find_hotp_counter(
    secret: Secret, code: str, *, counter: int, look_ahead: int = HOTP_LOOK_AHEAD
) -> int | None:
    """The counter in ``counter .. counter+look_ahead`` whose HOTP equals ``code``, else None.

    This is the verifier side of RFC 4226 §7.2 (resynchronisation by look-ahead).  Every
    candidate is compared in constant time so the position of a match does not leak through
    timing of the comparison itself.
    """
    if look_ahead < 0:
        raise ValueError("look_ahead must be >= 0")
    found: int | None = None
    given = code.encode("ascii", "replace")
    for candidate in range(counter, min(counter + look_ahead, _MAX_COUNTER) + 1):
        if hmac.compare_digest(hotp_code(secret, candidate).encode(), given) and found is None:
            found = candidate
    return found


def base32_encode(data: bytes) -> str:
    """RFC 4648 base32 without '=' padding (the Key URI format omits it)."""
    return base64.b32encode(data).decode("ascii").rstrip("=")


def group_base32(text: str, size: int = 4) -> str:
    """``"JBSW Y3DP EHPK 3PXP"``: the text fallback people type into an authenticator app."""
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


def parse_base32(text: str, *, source: str = "base32 secret") -> bytes:
    """Decode a base32 secret as a person may type it: any case, spaces, optional padding.

    Raises:
        FormatError: too long, a character outside A-Z2-7, or a length no encoder produces.
    """
    if len(text) > _MAX_BASE32_CHARS:
        raise FormatError(f"longer than {_MAX_BASE32_CHARS} characters", source=source)
    compact = text.replace(" ", "").replace("-", "").upper().rstrip("=")
    for pos, char in enumerate(compact):
        if char not in _B32_ALPHABET:
            raise FormatError(
                f"character {char!r} at position {pos} is not base32 (A-Z, 2-7)", source=source
            )
    if not compact:
        raise FormatError("empty", source=source)
    # RFC 4648 §6: the final quantum has 2, 4, 5 or 7 characters (never 1, 3 or 6).
    if len(compact) % 8 in (1, 3, 6):
        raise FormatError(
            f"{len(compact)} characters is not a length base32 produces", source=source
        )
    padded = compact + "=" * (-len(compact) % 8)
    try:
        return base64.b32decode(padded)
    except binascii.Error as exc:  # pragma: no cover - excluded by the checks above
        raise FormatError(f"not base32: {exc}", source=source) from None


@dataclass(frozen=True, slots=True)
class OtpauthUri:
    """A parsed ``otpauth://totp/...`` URI.

    Attributes:
        label: the account label (percent-decoded), e.g. ``"TPMTOTP"`` or ``"Heads:laptop"``.
        secret: the decoded secret.
        issuer: the ``issuer`` parameter, if present.
    """

    label: str
    secret: Secret
    issuer: str | None = None


def _check_label(label: str) -> None:
    if not label or len(label) > _MAX_LABEL_CHARS:
        raise ValueError(f"the label must have 1 to {_MAX_LABEL_CHARS} characters")
    if any(not ch.isprintable() for ch in label):
        raise ValueError("the label must be printable text")


def totp_uri(secret: Secret, label: str, *, issuer: str | None = None) -> str:
    """``otpauth://totp/LABEL?secret=BASE32[&issuer=...]`` for the QR code (seal-totp.sh).

    Defaults (SHA1, 6 digits, 30 s) are left implicit: every authenticator app assumes them,
    and some mis-handle them when spelled out.

    Raises:
        ValueError: an empty, overlong or unprintable label or issuer (a programming error:
            the CLI validates user input first).
    """
    _check_label(label)
    uri = f"otpauth://totp/{quote(label, safe=':@')}?secret={base32_encode(secret.reveal())}"
    if issuer is not None:
        _check_label(issuer)
        uri += f"&issuer={quote(issuer, safe='')}"
    return uri


def parse_otpauth_uri(uri: str) -> OtpauthUri:
    """Parse an ``otpauth://totp/`` URI as written by :func:`totp_uri` or an app export.

    Only the parameters heads produces are accepted with values heads can honour: a URI asking
    for another algorithm, digit count or period is refused rather than silently ignored.

    Raises:
        FormatError: not an otpauth TOTP URI, a bad or missing secret, or unsupported options.
    """
    source = "otpauth URI"
    if len(uri) > _MAX_URI_CHARS:
        raise FormatError(f"longer than {_MAX_URI_CHARS} characters", source=source)
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise FormatError(f"not a URI: {exc}", source=source) from None
    if parts.scheme.lower() != "otpauth" or parts.netloc.lower() != "totp":
        raise FormatError("does not start with otpauth://totp/", source=source)
    try:
        label = unquote(parts.path.removeprefix("/"), errors="strict")
        _check_label(label)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"label: {exc}", source=source) from None
    try:
        params = parse_qs(parts.query, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"bad query string: {exc}", source=source) from None
    for key, values in params.items():
        if len(values) != 1:
            raise FormatError(f"parameter {key!r} appears {len(values)} times", source=source)
    fixed = {"algorithm": "SHA1", "digits": str(OTP_DIGITS), "period": str(TOTP_STEP_S)}
    for key, value in params.items():
        if key in fixed and value[0].upper() != fixed[key]:
            raise FormatError(
                f"{key}={value[0]} is not supported (only {fixed[key]})", source=source
            )
        if key not in fixed and key not in ("secret", "issuer"):
            raise FormatError(f"unknown parameter {key!r}", source=source)
    if "secret" not in params:
        raise FormatError("no secret= parameter", source=source)
    secret = parse_base32(params["secret"][0], source=f"{source} secret")
    issuer = params["issuer"][0] if "issuer" in params else None
    if issuer is not None:
        try:
            _check_label(issuer)
        except ValueError as exc:
            raise FormatError(f"issuer: {exc}", source=source) from None
    return OtpauthUri(label=label, secret=Secret(secret), issuer=issuer)


@dataclass(frozen=True, slots=True)
class ClockCheck:
    """Whether the clock can be trusted for TOTP.

    Attributes:
        plausible: False when the clock reads earlier than ``not_before``.
        reason: one line for the user when not plausible, else empty.
    """

    plausible: bool
    reason: str


def check_clock(now: datetime, *, not_before: datetime) -> ClockCheck:
    """A clock earlier than ``not_before`` (the build date) is wrong: the code cannot match.

    A dead RTC battery resets the clock to a date years back; the owner would then see a code
    that never matches the phone and suspect tampering.  Saying so is the helpful refusal.
    """
    if now < not_before:
        return ClockCheck(
            plausible=False,
            reason=(
                f"the clock reads {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, before this "
                f"build ({not_before.astimezone(UTC):%Y-%m-%d})"
            ),
        )
    return ClockCheck(plausible=True, reason="")
