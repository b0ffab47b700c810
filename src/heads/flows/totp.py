"""Owner attestation: the TOTP/HOTP secret sealed to the measured boot state.

Port of Heads' ``seal-totp.sh``, ``unseal-totp.sh``, ``seal-hotpkey.sh`` and
``unseal-hotp.sh`` (docs/heads-compat.md §TOTP and HOTP), with these differences:

* the secret mixes the TPM's RNG with the OS's (XOR: as strong as the better source);
* PCR 4 is sealed at its firmware-only value taken from the firmware event log (Heads'
  ``calcfuturepcr 4``), so the runtime's ``generic``/``recovery``/``usb`` extends change it;
* a refused unseal says which PCRs moved, whether the TPM is in lockout, or that nothing was
  provisioned, and a clock set before the build is refused before anything is unsealed;
* the HOTP counter is a TPM NV counter (it only moves forward, survives power cycles and an
  attacker cannot roll it back by editing /boot); Heads' ``/boot/kexec_hotp_counter`` file is
  read once, to migrate;
* :class:`UnsealedSecretCache` keeps the unsealed secret in memory so TOTP and HOTP cost one
  unseal per boot.

Public API used by the boot runtime (stable):

``seal_totp(tpm, *, pcr4_firmware, profile, label, rng) -> TotpProvisioning``
    Seal a new secret at 0x81004d47.  ``pcr4_firmware``: PCR 4's sha256 value before the
    runtime extended it, or None to take it from the firmware event log
    (``event_log=`` path, default the kernel's ``binary_bios_measurements``).  ``profile``:
    ``"coreboot"`` (PCRs 0,1,2,3,4,7) or ``"uefi"`` (also 9).  ``rng(n)`` gives n random bytes
    (``os.urandom``).  The result has ``.secret``, ``.uri`` and ``.base32``; show them once.
``show_totp(tpm, *, now, cache=None, not_before=..., selection=None) -> TotpCode``
    Unseal (or reuse the cached secret) and compute the code at ``now`` (aware datetime).
    ``selection``: the PCRs to unseal with, when the seal record is missing or wrong (a secret
    sealed by shell Heads has none; the adapter then uses Heads' selection).
``wipe_totp(tpm, *, owner_auth=None) -> bool``
    Remove the sealed secret (and a pending copy); False when there was none.
``seal_pending(tpm, secret, values, *, profile, owner_auth=None) -> SealRecord``
    Seal a copy of the secret to the PCR values a new firmware image will produce, at
    0x81004d48, beside the current object (docs/firmware-update.md §Pending seal).  The next
    unseal that the current object refuses tries it, and a success promotes it.
``seal_hotp(tpm, token, *, admin_pin, boot_dir, cache=None, owner_auth=None)``
    Program the token with the same secret and the next value of the NV counter
    (returns a ``HotpProvisioning``).  ``owner_auth``: the TPM owner passphrase, needed to
    create objects once ownership was taken with one.
``check_hotp(tpm, token, *, boot_dir, cache=None, owner_auth=None) -> HotpResult``
    Consume the next counter value and ask the token to verify its code.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from heads.adapters.atomic import write_atomic
from heads.adapters.token import HotpCheck, HotpToken
from heads.adapters.tpm import TOTP_HANDLE, Tpm
from heads.core.digest import HashAlg, extend, zero_digest
from heads.core.otp import (
    SECRET_BYTES,
    TotpCode,
    base32_encode,
    check_clock,
    hotp_code,
    totp_code,
    totp_uri,
)
from heads.core.pcr import PcrIndex, PcrSelection
from heads.core.platform import FIRMWARE_EVENT_LOG, PCR_BOOT_MODE, PROFILES
from heads.core.sealing import SealRecord, pcr_values_for, prediction_lines
from heads.core.secret import Secret
from heads.errors import (
    FormatError,
    HeadsError,
    LockoutError,
    MeasurementError,
    TpmError,
    UnsealError,
    UsageError,
)

__all__ = [
    "FIRMWARE_EVENT_LOG",
    "HOTP_INDEX_FILE",
    "LEGACY_HOTP_COUNTER_FILE",
    "NOT_BEFORE",
    "PENDING_HANDLE",
    "PROFILES",
    "ClockError",
    "HotpProvisioning",
    "HotpResult",
    "NotProvisionedError",
    "TotpProvisioning",
    "UnsealedSecretCache",
    "check_hotp",
    "firmware_pcr4",
    "parse_hotp_index",
    "parse_legacy_counter",
    "pending_exists",
    "seal_hotp",
    "seal_pending",
    "seal_totp",
    "show_totp",
    "totp_exists",
    "totp_selection",
    "unseal_totp",
    "wipe_totp",
]

_log = logging.getLogger(__name__)

#: The pending copy of the TOTP secret, sealed to a new firmware image's predicted PCRs
#: (docs/firmware-update.md §Pending seal); next to the current object at 0x81004d47.
PENDING_HANDLE: Final = TOTP_HANDLE + 1

# No build of this code is older: a clock reading earlier is wrong (dead RTC battery), and the
# TOTP code it gives would never match the phone.  The image builder may pass its own date.
NOT_BEFORE: Final = datetime(2026, 11, 1, tzinfo=UTC)
# In /boot beside the files kexec-sign-config signs (kexec*.txt), so the signature covers it.
HOTP_INDEX_FILE: Final = "kexec_hotp_counter_index.txt"
# Shell Heads' unauthenticated counter (seal-hotpkey.sh, unseal-hotp.sh); read only to migrate.
LEGACY_HOTP_COUNTER_FILE: Final = "kexec_hotp_counter"
# Catching up to a legacy counter costs one NV write per step; beyond this, re-seal instead
# (programming the token with the NV counter's value) rather than wear the TPM's NV.
_MAX_MIGRATION_STEPS: Final = 10_000
_MAX_SMALL_FILE: Final = 256
_INDEX_RE: Final = re.compile(r"0x(01[0-9a-f]{6})", re.IGNORECASE)


class NotProvisionedError(HeadsError):
    """No TOTP secret (or HOTP counter) exists yet."""


class ClockError(HeadsError):
    """The clock is implausible, so a TOTP code would be meaningless."""


# -- PCR 4 before the runtime touched it -------------------------------------------------


def firmware_pcr4(log_bytes: bytes, *, source: str) -> bytes:
    """PCR 4's sha256 value replayed from a TCG firmware event log (``calcfuturepcr 4``).

    Only the firmware's events are in that log (our runtime's extends go to our own CEL log),
    so the replay is the value before ``generic``/``recovery``/``usb``.  EV_NO_ACTION events
    are not extended (TCG PFP §10.4.1); PCR 4 has no locality start value.

    Raises:
        FormatError: the log does not parse.
        MeasurementError: the log is truncated or has no sha256 digests, so the value
            cannot be trusted.
    """
    # Imported here: the event-log parser is large and only needed at provisioning time.
    from heads.core.eventlog.model import EV_NO_ACTION  # noqa: PLC0415
    from heads.core.eventlog.tcg import parse_tcg  # noqa: PLC0415

    log = parse_tcg(log_bytes, source=source)
    if log.truncated:
        raise MeasurementError(
            f"{source}: the firmware event log is truncated; PCR 4 cannot be replayed",
            hint="give PCR 4's firmware-only value explicitly (--pcr4)",
        )
    alg = HashAlg.SHA256
    if log.events and alg not in log.banks:
        raise MeasurementError(
            f"{source}: the firmware event log has no sha256 digests",
            hint="give PCR 4's firmware-only value explicitly (--pcr4)",
        )
    value = zero_digest(alg)
    for event in log.events:
        if event.pcr != PCR_BOOT_MODE or event.event_type == EV_NO_ACTION:
            continue
        digest = event.digests.get(alg)
        if digest is None:
            raise MeasurementError(f"{source}: {event.where} has no sha256 digest")
        value = extend(alg, value, digest)
    return value


def _pcr4_for_sealing(
    pcr4_firmware: bytes | None, profile: str, event_log: Path | None
) -> tuple[bytes, str]:
    from_log: bytes | None = None
    if event_log is not None:
        data: bytes | None
        try:
            with event_log.open("rb") as fh:
                # Capped like the parser's input (16 MiB); parse_tcg refuses anything longer.
                data = fh.read(16 * 1024 * 1024 + 1)
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise UsageError(
                f"cannot read the firmware event log {event_log}: {exc.strerror}"
            ) from None
        if data is not None:
            from_log = firmware_pcr4(data, source=str(event_log))
    if pcr4_firmware is not None and len(pcr4_firmware) != HashAlg.SHA256.digest_size:
        raise UsageError(f"PCR 4 value must be 32 bytes (sha256), not {len(pcr4_firmware)}")
    if from_log is not None and pcr4_firmware is not None and from_log != pcr4_firmware:
        raise UsageError(
            f"the PCR 4 value given ({pcr4_firmware.hex()}) differs from the firmware event "
            f"log's ({from_log.hex()})",
            hint="omit the value to use the event log",
        )
    if from_log is not None:
        return from_log, f"replayed from {event_log}"
    if pcr4_firmware is not None:
        return pcr4_firmware, "given"
    if profile == "coreboot":
        # coreboot measures nothing into PCR 4 (docs/pcr-layout.md §Firmware-only PCR 4).
        return zero_digest(HashAlg.SHA256), "coreboot: the firmware does not extend PCR 4"
    where = f"at {event_log}" if event_log is not None else "was given"
    raise UsageError(
        f"PCR 4's firmware-only value is unknown: no firmware event log {where}",
        hint="give it explicitly (--pcr4 HEX), or run where the kernel exposes the log",
    )


def totp_selection(profile: str) -> PcrSelection:
    """The sha256 PCR selection the TOTP secret is sealed to on ``profile``.

    Raises:
        UsageError: an unknown profile.
    """
    try:
        indices = PROFILES[profile]
    except KeyError:
        raise UsageError(
            f"unknown platform profile {profile!r}", hint=f"use one of {', '.join(PROFILES)}"
        ) from None
    return PcrSelection(HashAlg.SHA256, tuple(PcrIndex(i) for i in indices))


# -- sealing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TotpProvisioning:
    """A freshly sealed secret.  Show :attr:`uri` (as a QR code) and :attr:`base32` once.

    Attributes:
        secret: the 20-byte secret (redacted in repr).
        label: the account label in the authenticator app.
        selection: the PCRs it is sealed to.
        pcr_values: the values it is sealed to.
        pcr4_source: where PCR 4's value came from, for the record.
        pcr4_now_differs: the TPM's PCR 4 already differs from the sealed value (the runtime
            extended it in this boot): unsealing works again only after a reboot.
    """

    secret: Secret
    label: str
    selection: PcrSelection
    pcr_values: Mapping[int, bytes]
    pcr4_source: str
    pcr4_now_differs: bool

    @property
    def uri(self) -> str:
        """``otpauth://totp/LABEL?secret=BASE32`` (contains the secret: show, never log)."""
        return totp_uri(self.secret, self.label)

    @property
    def base32(self) -> str:
        """The secret in base32 (contains the secret: show, never log)."""
        return base32_encode(self.secret.reveal())


def _new_secret(tpm: Tpm, rng: Callable[[int], bytes]) -> Secret:
    tpm_part = tpm.get_random(SECRET_BYTES)
    os_part = rng(SECRET_BYTES)
    if len(tpm_part) != SECRET_BYTES or len(os_part) != SECRET_BYTES:
        raise TpmError(
            f"random source returned {len(tpm_part)} and {len(os_part)} bytes, not {SECRET_BYTES}"
        )
    # XOR of independent sources is at least as unpredictable as the better one, so neither a
    # weak TPM RNG nor an early-boot OS pool with little entropy alone decides the secret.
    return Secret(bytes(a ^ b for a, b in zip(tpm_part, os_part, strict=True)))


def totp_exists(tpm: Tpm) -> bool:
    """Whether a TOTP secret is sealed at 0x81004d47."""
    return tpm.object_exists(TOTP_HANDLE)


def seal_totp(
    tpm: Tpm,
    *,
    pcr4_firmware: bytes | None,
    profile: str,
    label: str,
    rng: Callable[[int], bytes],
    event_log: Path | None = FIRMWARE_EVENT_LOG,
    replace: bool = True,
    owner_auth: Secret | None = None,
) -> TotpProvisioning:
    """Generate a secret and seal it at 0x81004d47 (port of seal-totp.sh).

    PCRs 0-3, 7 (and 9 on ``uefi``) are sealed at their current values and PCR 4 at its
    firmware-only value (see :func:`firmware_pcr4`).

    Raises:
        UsageError: unknown profile, unknown PCR 4 value, bad label, or a secret exists and
            ``replace`` is False.
        FormatError: the firmware event log does not parse.
        MeasurementError: the firmware event log cannot give PCR 4.
        TpmError: the TPM failed (AuthError when the owner passphrase is needed).
    """
    selection = totp_selection(profile)
    if not label or len(label) > 64 or any(not ch.isprintable() for ch in label):
        raise UsageError(f"bad label {label!r}", hint="1 to 64 printable characters")
    if not replace and totp_exists(tpm):
        raise UsageError(
            f"a TOTP secret is already sealed at 0x{TOTP_HANDLE:08x}",
            hint="replacing it invalidates the code in your authenticator app; pass --force",
        )
    pcr4, pcr4_source = _pcr4_for_sealing(pcr4_firmware, profile, event_log)
    current = tpm.read_pcrs(HashAlg.SHA256, selection.indices)
    values = dict(current)
    values[PCR_BOOT_MODE] = pcr4
    secret = _new_secret(tpm, rng)
    tpm.seal(TOTP_HANDLE, secret, selection, pcr_values=values, owner_auth=owner_auth)
    _log.info("sealed the TOTP secret at 0x%08x to %s", TOTP_HANDLE, selection)
    return TotpProvisioning(
        secret=secret,
        label=label,
        selection=selection,
        pcr_values=values,
        pcr4_source=pcr4_source,
        pcr4_now_differs=current[PCR_BOOT_MODE] != pcr4,
    )


def wipe_totp(tpm: Tpm, *, owner_auth: Secret | None = None) -> bool:
    """Remove the sealed secret and its seal record; False when none existed.

    Raises:
        TpmError: the TPM failed (AuthError when the owner passphrase is needed).
    """
    existed = totp_exists(tpm)
    tpm.evict(TOTP_HANDLE, owner_auth)
    if pending_exists(tpm):
        tpm.evict(PENDING_HANDLE, owner_auth)
    return existed


# -- the pending copy for a firmware update ------------------------------------------------


def pending_exists(tpm: Tpm) -> bool:
    """Whether a pending copy of the secret waits for the next boot (0x81004d48)."""
    return tpm.object_exists(PENDING_HANDLE)


def seal_pending(
    tpm: Tpm,
    secret: Secret,
    values: Mapping[int, bytes],
    *,
    profile: str,
    owner_auth: Secret | None = None,
) -> SealRecord:
    """Seal ``secret`` to ``values`` (the predicted PCRs of the image about to be flashed) at
    :data:`PENDING_HANDLE`; the current object at 0x81004d47 is left as it is.

    A pending copy from an earlier reseal is replaced (the adapter's journal keeps that safe).

    Raises:
        UsageError: a PCR of the profile has no predicted value.
        TpmError: the TPM failed (AuthError when the owner passphrase is needed).
    """
    selection = totp_selection(profile)
    expected = pcr_values_for(
        selection, values, missing="no predicted value for PCR {pcrs}: not sealing a copy"
    )
    record = tpm.seal(
        PENDING_HANDLE,
        secret,
        selection,
        pcr_values=expected,
        owner_auth=owner_auth,
    )
    _log.info("sealed a pending TOTP copy at 0x%08x to %s", PENDING_HANDLE, selection)
    return record


def _pending_lines(tpm: Tpm, record: SealRecord | None) -> list[str]:
    if record is None:
        return ["pending seal: no seal record, cannot compare with the PCRs"]
    current = tpm.read_pcrs(record.selection.alg, record.selection.indices)
    return prediction_lines(record, current)


def _owner_missing(tpm: Tpm, owner_auth: Secret | None) -> bool:
    """The TPM has an owner passphrase and we do not: trying would only cost a DA try."""
    if owner_auth is not None:
        return False
    try:
        return tpm.lockout_state().owner_auth_set
    except TpmError:
        return False


def _drop_pending(tpm: Tpm, owner_auth: Secret | None, say: Callable[[str], None]) -> None:
    if _owner_missing(tpm, owner_auth):
        say("pending seal: kept (removing it needs the TPM owner passphrase)")
        return
    try:
        tpm.evict(PENDING_HANDLE, owner_auth)
    except HeadsError as err:
        say(f"pending seal: not removed ({err.message}); it is tried again at the next boot")


def _promote(
    tpm: Tpm,
    secret: Secret,
    record: SealRecord,
    owner_auth: Secret | None,
    say: Callable[[str], None],
) -> None:
    """Make the pending copy the current object, never leaving no unsealable copy.

    The secret is sealed again at 0x81004d47 to the pending record's values (the adapter
    replaces the old object through its journal, so either the old or the new one is there at
    every step) and only then is the pending copy evicted.  Cut short before the eviction, the
    next boot finds both releasing the same secret and drops the pending one.
    """
    if _owner_missing(tpm, owner_auth):
        say(
            "pending seal: not promoted (the TPM has an owner passphrase); it is used again at "
            "the next boot"
        )
        return
    try:
        tpm.seal(
            TOTP_HANDLE, secret, record.selection, pcr_values=record.values, owner_auth=owner_auth
        )
    except HeadsError as err:
        say(f"pending seal: not promoted ({err.message}); it is used again at the next boot")
        return
    _drop_pending(tpm, owner_auth, say)
    say(f"pending seal: promoted to 0x{TOTP_HANDLE:08x}; the old object is gone")


def _settle_pending(tpm: Tpm, owner_auth: Secret | None, say: Callable[[str], None]) -> None:
    """The current object released the secret: a pending copy is left over from a promotion
    cut short or from a flash that did not happen; either way it has no use."""
    if not pending_exists(tpm):
        return
    pending, current = tpm.seal_record(PENDING_HANDLE), tpm.seal_record(TOTP_HANDLE)
    if pending is not None and current is not None and pending.values == current.values:
        say("pending seal: finishing an interrupted promotion")
    else:
        say("pending seal: the current object still unseals, the new firmware did not boot")
    _drop_pending(tpm, owner_auth, say)


def _unseal_pending(
    tpm: Tpm, refused: UnsealError, owner_auth: Secret | None, say: Callable[[str], None]
) -> Secret:
    say(f"pending seal: the current object was refused: {refused.message.split(': ', 1)[-1]}")
    record = tpm.seal_record(PENDING_HANDLE)
    lines = _pending_lines(tpm, record)
    try:
        secret = tpm.unseal(PENDING_HANDLE)
    except (UnsealError, LockoutError) as exc:
        for line in lines:
            say(line)
        say("pending seal: refused as well: the firmware is not the one predicted")
        raise UnsealError(
            refused.message,
            changed_pcrs=refused.changed_pcrs,
            details=(
                *refused.details,
                "the pending copy for the new firmware was refused too",
                *lines,
                exc.message,
            ),
            hint=refused.hint,
        ) from None
    for line in lines:
        say(line)
    say("pending seal: released; the firmware is the one predicted at the last update")
    if record is not None:
        _promote(tpm, secret, record, owner_auth, say)
    return secret


# -- unsealing ---------------------------------------------------------------------------


class UnsealedSecretCache:
    """The unsealed secret, in memory only, for the rest of this boot.

    TOTP and HOTP use the same sealed object; unsealing it twice costs a second policy session
    for nothing.  Nothing here touches disk; :meth:`clear` drops the reference (before the
    recovery shell, as Heads shreds ``RT/secret``).
    """

    def __init__(self, selection: PcrSelection | None = None) -> None:
        self._secret: Secret | None = None
        self._selection = selection
        self.unseals = 0

    def get(self, tpm: Tpm) -> Secret:
        """The secret, unsealed on first use.

        Raises:
            NotProvisionedError, UnsealError, LockoutError, TpmError: see :func:`unseal_totp`.
        """
        if self._secret is None:
            self._secret = unseal_totp(tpm, selection=self._selection)
            self.unseals += 1
        return self._secret

    def clear(self) -> None:
        self._secret = None


def _lockout_detail(tpm: Tpm) -> tuple[str, ...]:
    try:
        state = tpm.lockout_state()
    except TpmError:
        return ()
    if state.in_lockout:
        return (
            f"the TPM is in dictionary-attack lockout ({state.failed_tries} failures); "
            f"next try in up to {state.wait_s} s",
        )
    return ()


def unseal_totp(
    tpm: Tpm,
    *,
    selection: PcrSelection | None = None,
    owner_auth: Secret | None = None,
    say: Callable[[str], None] | None = None,
) -> Secret:
    """Unseal the TOTP secret (port of unseal-totp.sh), explaining any refusal.

    The PCR selection is the seal record's, else shell Heads' for 0x81004d47, unless
    ``selection`` is given.  When the current object's policy fails and a pending copy exists
    (:func:`seal_pending`), the copy is tried; released, it is promoted.  ``say`` gets the
    lines comparing the predicted PCRs with the real ones (none when nothing is pending).

    Raises:
        UsageError: the object there also needs a passphrase (not a TOTP secret).
        NotProvisionedError: no secret is sealed.
        UnsealError: the TPM refused: the message names the PCRs that changed.
        LockoutError: the TPM is in dictionary-attack lockout.
        TpmError: the TPM failed.
    """
    if not totp_exists(tpm):
        raise NotProvisionedError(
            f"no TOTP secret is sealed in this TPM (handle 0x{TOTP_HANDLE:08x})",
            hint="provision one: heads totp seal",
        )
    tell = say if say is not None else _log.info
    try:
        secret = tpm.unseal(TOTP_HANDLE, selection=selection)
    except UnsealError as exc:
        refused = _explained(tpm, exc)
        if pending_exists(tpm):
            return _unseal_pending(tpm, refused, owner_auth, tell)
        raise refused from None
    except LockoutError as exc:
        raise LockoutError(
            f"TOTP secret not released: {exc.message}",
            recovery_s=exc.recovery_s,
            rc=exc.rc,
            hint=exc.hint,
        ) from None
    _settle_pending(tpm, owner_auth, tell)
    return secret


def _explained(tpm: Tpm, exc: UnsealError) -> UnsealError:
    """The adapter's refusal, saying which PCRs moved (or that it could not tell)."""
    pcrs = ", ".join(str(i) for i in exc.changed_pcrs)
    what = "the measured state differs from the sealed policy"
    if exc.changed_pcrs:
        plural = "s" if len(exc.changed_pcrs) > 1 else ""
        what = f"PCR{plural} {pcrs} changed since it was sealed"
    # Without named PCRs the adapter's own message says what it could tell.
    why = exc.details if exc.changed_pcrs else (exc.message, *exc.details)
    return UnsealError(
        f"TOTP secret not released: {what}",
        changed_pcrs=exc.changed_pcrs,
        details=why + _lockout_detail(tpm),
        hint=exc.hint,
    )


def show_totp(
    tpm: Tpm,
    *,
    now: datetime,
    cache: UnsealedSecretCache | None = None,
    not_before: datetime = NOT_BEFORE,
    selection: PcrSelection | None = None,
    say: Callable[[str], None] | None = None,
) -> TotpCode:
    """The TOTP code at ``now`` (an aware datetime) from the sealed secret.

    ``selection`` is used when there is no ``cache`` (a cache carries its own); ``say``
    gets the pending-seal lines (:func:`unseal_totp`).

    Raises:
        ClockError: ``now`` is before ``not_before`` (checked before anything is unsealed).
        NotProvisionedError, UnsealError, LockoutError, TpmError: see :func:`unseal_totp`.
    """
    clock = check_clock(now, not_before=not_before)
    if not clock.plausible:
        raise ClockError(
            f"not computing a TOTP code: {clock.reason}",
            hint="set the time (UTC) first; a flat RTC battery resets the clock",
        )
    secret = cache.get(tpm) if cache is not None else unseal_totp(tpm, selection=selection, say=say)
    return totp_code(secret, now)


# -- HOTP --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HotpProvisioning:
    """Attributes: ``counter_index`` (the NV counter), ``next_counter`` (the token's next)."""

    counter_index: int
    next_counter: int


@dataclass(frozen=True, slots=True)
class HotpResult:
    """The token's verdict on the code for ``counter`` (which is now used up)."""

    check: HotpCheck
    counter: int
    counter_index: int


def _read_small(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_SMALL_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > _MAX_SMALL_FILE:
        raise FormatError(f"longer than {_MAX_SMALL_FILE} bytes", source=str(path))
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FormatError("not ASCII text", source=str(path), offset=exc.start) from None


def parse_hotp_index(text: str, *, source: str) -> int:
    """The NV index in a ``kexec_hotp_counter_index.txt`` (``0x01xxxxxx`` and a newline).

    Raises:
        FormatError: anything else.
    """
    line = text.strip()
    m = _INDEX_RE.fullmatch(line)
    if m is None or text.count("\n") > 1:
        raise FormatError("expected one line with an NV index 0x01xxxxxx", source=source, line=1)
    return int(m.group(1), 16)


def parse_legacy_counter(text: str, *, source: str) -> int:
    """The decimal counter in shell Heads' ``kexec_hotp_counter``.

    Raises:
        FormatError: not a decimal number below 2^63.
    """
    line = text.strip()
    if not line.isascii() or not line.isdigit() or len(line) > 18:
        raise FormatError("expected one decimal counter value", source=source, line=1)
    return int(line)


def _write_index(boot_dir: Path, index: int) -> None:
    path = boot_dir / HOTP_INDEX_FILE
    try:
        write_atomic(path, f"0x{index:08x}\n".encode())
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror}",
            hint="mount /boot read-write for this step (it is remounted read-only after)",
        ) from None


def _load_counter(tpm: Tpm, boot_dir: Path, owner_auth: Secret | None) -> int:
    """The HOTP NV counter index, migrating Heads' counter file once if needed."""
    path = boot_dir / HOTP_INDEX_FILE
    text = _read_small(path)
    if text is not None:
        index = parse_hotp_index(text, source=str(path))
        if not tpm.nv_exists(index):
            raise NotProvisionedError(
                f"the HOTP counter 0x{index:08x} named in {path} is not in this TPM",
                hint="the TPM was reset or /boot comes from another machine: heads hotp seal",
            )
        return index
    legacy_path = boot_dir / LEGACY_HOTP_COUNTER_FILE
    legacy_text = _read_small(legacy_path)
    if legacy_text is None:
        raise NotProvisionedError(
            f"no HOTP counter: neither {path} nor {legacy_path} exists",
            hint="program the security token: heads hotp seal",
        )
    wanted = parse_legacy_counter(legacy_text, source=str(legacy_path))
    # Check before creating the counter: on a read-only /boot each boot would otherwise
    # create (and leak) another NV counter it cannot record.
    if not os.access(boot_dir, os.W_OK):
        raise UsageError(
            f"{legacy_path} must be migrated to a TPM counter, but {boot_dir} is not writable",
            hint="mount /boot read-write once and run heads hotp check again",
        )
    index = tpm.nv_counter_create(owner_auth)
    value = tpm.nv_counter_read(index)
    # unseal-hotp.sh uses the file's value for the next code; ours increments first, so the
    # NV counter must stand at wanted - 1 or later.
    steps = wanted - 1 - value
    if steps > _MAX_MIGRATION_STEPS:
        raise UsageError(
            f"{legacy_path} holds {wanted}, {steps} steps ahead of the new TPM counter",
            hint="re-program the token instead: heads hotp seal",
        )
    for _ in range(max(0, steps)):
        value = tpm.nv_counter_increment(index)
    _write_index(boot_dir, index)
    _log.info("migrated %s (%d) to NV counter 0x%08x", legacy_path, wanted, index)
    return index


def seal_hotp(
    tpm: Tpm,
    token: HotpToken,
    *,
    admin_pin: Secret,
    boot_dir: Path,
    cache: UnsealedSecretCache | None = None,
    owner_auth: Secret | None = None,
) -> HotpProvisioning:
    """Program ``token`` with the TOTP secret and the NV counter's next value (seal-hotpkey.sh).

    Reuses the HOTP counter named in ``boot_dir`` when it still exists in the TPM; creates one
    otherwise and records its index in ``boot_dir/kexec_hotp_counter_index.txt``.

    Raises:
        NotProvisionedError, UnsealError, LockoutError: the secret could not be unsealed.
        AuthError: the token refused the Admin PIN (tries left in the error).
        ToolError: no token answered or it cannot be programmed.
        TpmError: the TPM failed.
    """
    secret = cache.get(tpm) if cache is not None else unseal_totp(tpm)
    path = boot_dir / HOTP_INDEX_FILE
    text = _read_small(path)
    index = parse_hotp_index(text, source=str(path)) if text is not None else None
    created = False
    if index is None or not tpm.nv_exists(index):
        index = tpm.nv_counter_create(owner_auth)
        created = True
    next_counter = tpm.nv_counter_read(index) + 1
    token.program(secret, admin_pin=admin_pin, counter=next_counter)
    if created:
        _write_index(boot_dir, index)
    return HotpProvisioning(counter_index=index, next_counter=next_counter)


def check_hotp(
    tpm: Tpm,
    token: HotpToken,
    *,
    boot_dir: Path,
    cache: UnsealedSecretCache | None = None,
    owner_auth: Secret | None = None,
) -> HotpResult:
    """Compute the next HOTP code and have the token verify it (unseal-hotp.sh + gui-init).

    The counter is incremented *before* the code is computed, so a value is never used twice,
    whatever happens afterwards (no token, power cut).

    Raises:
        NotProvisionedError: no secret or no HOTP counter.
        UnsealError, LockoutError: the secret was not released.
        ToolError: no token answered.
        FormatError: the counter index file is damaged.
        TpmError: the TPM failed.
    """
    secret = cache.get(tpm) if cache is not None else unseal_totp(tpm)
    index = _load_counter(tpm, boot_dir, owner_auth)
    # Make sure a token answers before using up a counter value: each value burnt without a
    # check moves the machine ahead of the token, which accepts only a window of values.
    token.info()
    counter = tpm.nv_counter_increment(index)
    verdict = token.check(hotp_code(secret, counter))
    return HotpResult(check=verdict, counter=counter, counter_index=index)
