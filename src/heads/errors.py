"""The one error hierarchy and its exit codes.

This module imports nothing from heads: everything may import it.  The library raises these;
only ``heads.cli.main`` renders them and turns them into exit codes.  Messages and hints never
contain a secret.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

__all__ = [
    "AuthError",
    "CryptsetupError",
    "ExitCode",
    "FlashError",
    "FormatError",
    "GpgError",
    "HashMismatchError",
    "HeadsError",
    "KexecError",
    "LockoutError",
    "MeasurementError",
    "RollbackError",
    "SignatureError",
    "ToolError",
    "TpmError",
    "TpmFailureModeError",
    "TpmNotFoundError",
    "TpmUnreachableError",
    "UnsealError",
    "UsageError",
    "VerificationError",
    "WrongPassphraseError",
]


class ExitCode(IntEnum):
    """Process exit codes (documented in the README)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    VERIFICATION_FAILED = 3
    TOOL_FAILURE = 4
    TPM_NOT_FOUND = 5
    TPM_UNREACHABLE = 6
    TPM_FAILURE_MODE = 7
    TPM_LOCKOUT = 8
    BUG = 70
    INTERRUPTED = 130


class HeadsError(Exception):
    """Base of every error heads reports to a user.

    Attributes:
        message: one line: what failed, where, and why.
        hint: what to do next, or ``None``.
        details: further lines (e.g. per-PCR differences), shown after the message.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.ERROR

    def __init__(
        self, message: str, *, hint: str | None = None, details: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message


class UsageError(HeadsError):
    """Bad arguments or configuration."""

    exit_code = ExitCode.USAGE


class FormatError(HeadsError):
    """A parser rejected its input.  The message names the source, the place and the reason."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        offset: int | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if source is not None:
            where.append(source)
        if line is not None:
            where.append(f"line {line}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        full = f"{': '.join([', '.join(where), message])}" if where else message
        super().__init__(full, hint=hint)
        self.reason = message
        self.source = source
        self.offset = offset
        self.line = line


class AuthError(HeadsError):
    """A passphrase or PIN was refused (the message says how many tries remain)."""

    def __init__(
        self, message: str, *, tries_left: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.tries_left = tries_left


class WrongPassphraseError(AuthError):
    """A passphrase did not decrypt a protected secret (an OpenPGP key backup, ...).

    The message names the file, never the passphrase or anything derived from it.
    """


class VerificationError(HeadsError):
    """Integrity or authenticity failed: possible tampering."""

    exit_code = ExitCode.VERIFICATION_FAILED


class SignatureError(VerificationError):
    """An OpenPGP signature is missing, broken, bad or from an unknown key."""


class HashMismatchError(VerificationError):
    """A file's digest differs from the signed manifest."""


class RollbackError(VerificationError):
    """A signed state is older than the TPM's rollback counter."""


class MeasurementError(VerificationError):
    """PCR values differ from what the event logs replay to."""


class UnsealError(VerificationError):
    """The TPM refused to release a sealed secret because the measured state changed.

    Attributes:
        changed_pcrs: the PCR indices whose current values differ from the sealed ones
            (empty when that could not be determined).
    """

    def __init__(
        self,
        message: str,
        *,
        changed_pcrs: tuple[int, ...] = (),
        hint: str | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint, details=details)
        self.changed_pcrs = changed_pcrs


class ToolError(HeadsError):
    """An external tool or device failed or is missing."""

    exit_code = ExitCode.TOOL_FAILURE


class TpmError(ToolError):
    """The TPM returned an error.  ``rc`` is its response code when there was one."""

    def __init__(
        self,
        message: str,
        *,
        rc: int | None = None,
        hint: str | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint, details=details)
        self.rc = rc


class TpmNotFoundError(TpmError):
    """No TPM device node exists."""

    exit_code = ExitCode.TPM_NOT_FOUND


class TpmUnreachableError(TpmError):
    """The TCTI could not reach the TPM (swtpm not listening, device busy, bad TCTI)."""

    exit_code = ExitCode.TPM_UNREACHABLE


class TpmFailureModeError(TpmError):
    """The TPM is in failure mode and executes no commands."""

    exit_code = ExitCode.TPM_FAILURE_MODE


class LockoutError(TpmError):
    """The TPM's dictionary-attack protection is locking out authorisation attempts."""

    exit_code = ExitCode.TPM_LOCKOUT

    def __init__(
        self,
        message: str,
        *,
        recovery_s: int | None = None,
        rc: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, rc=rc, hint=hint)
        self.recovery_s = recovery_s


class GpgError(ToolError):
    """gpg or gpgv failed (not a verdict on a signature: that is SignatureError)."""


class CryptsetupError(ToolError):
    """cryptsetup failed."""


class FlashError(ToolError):
    """flashrom failed or read-back differed."""


class KexecError(ToolError):
    """kexec-tools failed to load or execute a kernel."""
