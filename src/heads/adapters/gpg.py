"""OpenPGP detached signatures: ``gpg`` signs, ``gpgv`` verifies, ``--status-fd`` is read.

Signing runs ``gpg --homedir H --batch --armor --detach-sign`` through the owner's
``gpg-agent``, so the key may live on a smartcard and the PIN is asked by the agent's pinentry;
with ``pin_fd`` the PIN comes through ``--pinentry-mode loopback --passphrase-fd N`` from a
pipe, never argv.  Verification runs ``gpgv --status-fd 1 --keyring FILE SIG -`` with the data on
stdin: no GNUPGHOME, no trust database, only the given keyring (the one in the firmware image).

Verdicts come from the status lines only (GnuPG ``doc/DETAILS``, "Format of the status
codes"), never from the human text, which depends on the version and locale.  This adapter
reports what gpgv said; the flows decide what it means for /boot.
"""

from __future__ import annotations

import os
import stat
import tempfile
from enum import Enum
from pathlib import Path
from typing import Final, Protocol

from heads.adapters._run import RunResult, run
from heads.core.frozen_record import FrozenRecord
from heads.core.keyring import MAX_KEYRING_BYTES, KeyringSummary, parse_keyring
from heads.core.secret import Secret
from heads.errors import AuthError, FormatError, GpgError, ToolError, UsageError

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "GpgSigner",
    "GpgVerdict",
    "GpgVerifyResult",
    "KeyringSummary",
    "SignatureCheck",
    "Signer",
    "check_keyring",
    "parse_verify_status",
    "sign_detached",
    "verify_detached",
    "verify_detached_file",
]

MAX_SIGNATURE_BYTES: Final = 64 * 1024
_STATUS: Final = b"[GNUPG:] "
_SIGN_TIMEOUT_S: Final = 300.0  # a smartcard may wait for the PIN and a touch
_VERIFY_TIMEOUT_S: Final = 60.0
# libgpg-error codes (gpg-error.h) seen in FAILURE/ERROR status lines.
_GPG_ERR_BAD_PASSPHRASE: Final = 11
_GPG_ERR_NO_SECKEY: Final = 17
_GPG_ERR_BAD_PIN: Final = 87


class GpgVerdict(Enum):
    """What gpgv concluded about a detached signature."""

    GOOD = "good"
    BAD = "bad"  # BADSIG: the data differs from what was signed
    NO_PUBKEY = "no public key"  # ERRSIG rc 9 / NO_PUBKEY: signer not in the keyring
    NO_DATA = "no valid OpenPGP data"  # NODATA: not a signature at all, or truncated
    EXPIRED_KEY = "expired key"  # EXPKEYSIG
    REVOKED_KEY = "revoked key"  # REVKEYSIG
    EXPIRED_SIGNATURE = "expired signature"  # EXPSIG
    ERROR = "error"  # ERRSIG for another reason (unsupported algorithm, ...)


class SignatureCheck(FrozenRecord):
    """gpgv's verdict on one signature of the file (one ``NEWSIG`` block), in file order."""

    verdict: GpgVerdict
    key_id: str | None
    fingerprint: str | None


class GpgVerifyResult(FrozenRecord):
    """gpgv's verdict, the signer as far as known, and the raw status lines (for --debug).

    ``fingerprint`` and ``key_id`` are those of the signature the verdict is about: the good
    one when every signature is good, else the first signature (in file order) with the
    verdict's problem.  ``checks`` has every signature's own verdict.
    """

    verdict: GpgVerdict
    fingerprint: str | None
    key_id: str | None
    signatures: int
    status: tuple[str, ...]
    checks: tuple[SignatureCheck, ...] = ()


def _fields(line: bytes) -> list[str]:
    return line[len(_STATUS) :].decode("utf-8", "replace").split(" ")


# The problem a verdict names when a file holds several: the most serious first.
_SEVERITY: Final[tuple[GpgVerdict, ...]] = (
    GpgVerdict.BAD,
    GpgVerdict.REVOKED_KEY,
    GpgVerdict.EXPIRED_KEY,
    GpgVerdict.EXPIRED_SIGNATURE,
    GpgVerdict.NO_PUBKEY,
    GpgVerdict.ERROR,
    GpgVerdict.NO_DATA,
)


class _Sig:
    """What the status lines of one NEWSIG block said so far."""

    __slots__ = ("fingerprint", "good", "key_id", "problems", "valid")

    def __init__(self) -> None:
        self.problems: list[GpgVerdict] = []
        self.good = 0  # GOODSIG lines: exactly one per good signature
        self.valid = 0  # VALIDSIG lines: likewise
        self.key_id: str | None = None
        self.fingerprint: str | None = None

    def check(self) -> SignatureCheck:
        problem = next((v for v in _SEVERITY if v in self.problems), None)
        if problem is None:
            problem = None if self.good == self.valid == 1 else GpgVerdict.ERROR
        return SignatureCheck(problem or GpgVerdict.GOOD, self.key_id, self.fingerprint)


def parse_verify_status(stdout: bytes, returncode: int) -> GpgVerifyResult:
    """Turn ``gpgv --status-fd`` output into one verdict.

    Every signature in the file must be good, as gpgv's own exit status (and so Heads, which
    only looks at it) demands: one signature by a key outside the keyring fails the file even
    when another, by the owner, is good.  GOOD needs GOODSIG and VALIDSIG for every NEWSIG and
    exit status 0; otherwise the most serious problem is the verdict.
    """
    lines = [ln for ln in stdout.splitlines() if ln.startswith(_STATUS)]
    status = tuple(ln.decode("utf-8", "replace") for ln in lines)
    sigs: list[_Sig] = []
    orphan = _Sig()  # status lines before any NEWSIG (NODATA for a file without signatures)

    def current() -> _Sig:
        return sigs[-1] if sigs else orphan

    for line in lines:
        fields = _fields(line)
        keyword = fields[0]
        arg = fields[1] if len(fields) > 1 else None
        sig = current()
        if keyword == "NEWSIG":
            sigs.append(_Sig())
        elif keyword == "GOODSIG":
            sig.good += 1
            sig.key_id = arg or sig.key_id
        elif keyword == "VALIDSIG":
            sig.valid += 1
            # VALIDSIG <fpr> <date> <ts> <expire> <ver> <rsv> <pk> <hash> <class> <primary-fpr>
            sig.fingerprint = fields[10] if len(fields) > 10 else arg
        elif keyword == "BADSIG":
            sig.problems.append(GpgVerdict.BAD)
            sig.key_id = arg or sig.key_id
        elif keyword == "ERRSIG":
            # ERRSIG <keyid> <pkalgo> <hashalgo> <class> <time> <rc> [<fpr>]; rc 9 = no pubkey
            sig.key_id = arg or sig.key_id
            if len(fields) > 7 and fields[7] != "-":
                sig.fingerprint = fields[7]
            sig.problems.append(
                GpgVerdict.NO_PUBKEY if len(fields) > 6 and fields[6] == "9" else GpgVerdict.ERROR
            )
        elif keyword == "NO_PUBKEY":
            sig.problems.append(GpgVerdict.NO_PUBKEY)
            sig.key_id = sig.key_id or arg
        elif keyword == "EXPKEYSIG":
            sig.problems.append(GpgVerdict.EXPIRED_KEY)
            sig.key_id = arg or sig.key_id
        elif keyword == "REVKEYSIG":
            sig.problems.append(GpgVerdict.REVOKED_KEY)
            sig.key_id = arg or sig.key_id
        elif keyword == "EXPSIG":
            sig.problems.append(GpgVerdict.EXPIRED_SIGNATURE)
            sig.key_id = arg or sig.key_id
        elif keyword == "NODATA":
            sig.problems.append(GpgVerdict.NO_DATA)
    checks = tuple(s.check() for s in sigs)
    problems: list[GpgVerdict] = [c.verdict for c in checks if c.verdict is not GpgVerdict.GOOD]
    problems += orphan.problems
    if orphan.good or orphan.valid:
        problems.append(GpgVerdict.ERROR)  # a verdict outside any signature: not gpgv's order
    verdict: GpgVerdict | None = next((v for v in _SEVERITY if v in problems), None)
    if verdict is None:
        if not checks:
            verdict = GpgVerdict.NO_DATA
        elif returncode != 0:
            verdict = GpgVerdict.ERROR  # every block looked good, yet gpgv failed
        else:
            verdict = GpgVerdict.GOOD
    about = next((c for c in checks if c.verdict is verdict), None)
    if about is None and checks:
        about = checks[0]
    return GpgVerifyResult(
        verdict,
        about.fingerprint if about else None,
        about.key_id if about else None,
        len(checks),
        status,
        checks,
    )


def check_keyring(keyring: Path) -> KeyringSummary:
    """Read the keyring file (bounded) and check its framing (:func:`heads.core.keyring`).

    Raises:
        UsageError: the keyring cannot be read, is empty, armored, corrupt or holds no key:
            a configuration error, not a verdict on any signature.
    """
    hint = "pass the owner's public key as a binary keyring (gpg --export KEY > FILE)"
    try:
        # Non-blocking, then fstat: a FIFO given as the keyring is refused, not waited on.
        fd = os.open(keyring, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read the keyring {keyring}: {exc.strerror}", hint=hint) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"the keyring {keyring} is not a regular file", hint=hint)
        data = b""
        while len(data) <= MAX_KEYRING_BYTES and (chunk := os.read(fd, 1 << 20)):
            data += chunk
    except OSError as exc:
        raise UsageError(f"cannot read the keyring {keyring}: {exc.strerror}", hint=hint) from None
    finally:
        os.close(fd)
    if data.lstrip().startswith(b"-----BEGIN PGP"):
        raise UsageError(
            f"the keyring {keyring} is ASCII-armored; gpgv needs a binary keyring",
            hint=f"convert it: gpg --dearmor < {keyring} > pubring.gpg",
        )
    try:
        return parse_keyring(data, source=str(keyring))
    except FormatError as exc:
        raise UsageError(
            f"unusable keyring: {exc.message}",
            hint=f"{hint}; a keyring that holds no key cannot vouch for any signature",
        ) from None


def verify_detached(signature: bytes, data: bytes, keyring: Path) -> GpgVerifyResult:
    """Check a detached signature over ``data`` with ``gpgv`` and one keyring file.

    Runs ``gpgv --status-fd 1 --keyring /abs/keyring SIG -``.  The signature bytes are written
    to a private temporary file first, so gpgv checks exactly the bytes the caller read.

    Raises:
        UsageError: the keyring file does not exist, is armored, empty or corrupt
            (:func:`check_keyring`).
        GpgError: gpgv is missing or did not finish.
    """
    keyring = keyring.resolve()  # a bare name would be looked up inside GNUPGHOME
    check_keyring(keyring)
    if len(signature) > MAX_SIGNATURE_BYTES:
        return GpgVerifyResult(GpgVerdict.NO_DATA, None, None, 0, ())
    with tempfile.TemporaryDirectory(prefix="heads-gpgv-") as tmp:
        sig_path = Path(tmp) / "detached.sig"
        sig_path.write_bytes(signature)
        result = _run_gpg(
            [
                "gpgv",
                "--status-fd",
                "1",
                "--keyring",
                str(keyring),
                str(sig_path),
                "-",
            ],
            desc="verify a detached OpenPGP signature",
            stdin=data,
            timeout_s=_VERIFY_TIMEOUT_S,
        )
    return parse_verify_status(result.stdout, result.returncode)


def verify_detached_file(signature: bytes, data: Path, keyring: Path) -> GpgVerifyResult:
    """:func:`verify_detached` over the file ``data``, which gpgv reads itself: for data too
    large to pass through memory twice (an ISO image read into RAM once).

    Raises:
        UsageError: the keyring is unusable (:func:`check_keyring`).
        GpgError: gpgv is missing or did not finish.
    """
    keyring = keyring.resolve()
    check_keyring(keyring)
    if len(signature) > MAX_SIGNATURE_BYTES:
        return GpgVerifyResult(GpgVerdict.NO_DATA, None, None, 0, ())
    with tempfile.TemporaryDirectory(prefix="heads-gpgv-") as tmp:
        sig_path = Path(tmp) / "detached.sig"
        sig_path.write_bytes(signature)
        result = _run_gpg(
            ["gpgv", "--status-fd", "1", "--keyring", str(keyring), str(sig_path), str(data)],
            desc="verify a detached OpenPGP signature",
            stdin=b"",
            timeout_s=_VERIFY_TIMEOUT_S * 10,  # a whole ISO image is hashed
        )
    return parse_verify_status(result.stdout, result.returncode)


def _run_gpg(
    argv: list[str],
    *,
    desc: str,
    stdin: bytes,
    timeout_s: float,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> RunResult:
    try:
        return run(
            argv,
            desc=desc,
            timeout_s=timeout_s,
            stdin=stdin,
            check=False,
            env=env,
            pass_fds=pass_fds,
        )
    except ToolError as exc:
        raise GpgError(exc.message, hint="install gnupg and gpgv", details=exc.details) from exc


class Signer(Protocol):
    """Makes an ASCII-armored detached OpenPGP signature over bytes."""

    def sign(self, data: bytes) -> tuple[bytes, str]:
        """Return (armored signature, signer fingerprint)."""
        ...


def sign_detached(
    data: bytes,
    *,
    gnupghome: Path | None,
    key: str | None = None,
    pin: Secret | None = None,
) -> tuple[bytes, str]:
    """Sign ``data`` (detached, armored, SHA-256) with a key from ``gnupghome``.

    Runs ``gpg --homedir H --batch --no-tty --status-fd 1 --armor --detach-sign
    --digest-algo SHA256 [--local-user KEY] --output FILE`` with the data on stdin.  Without
    ``pin`` the agent asks through its pinentry (smartcards, protected keys); with ``pin`` the
    agent is told to take it from gpg (``--pinentry-mode loopback``) which reads it from a pipe
    given as ``--passphrase-fd``.

    Returns:
        (the armored signature, the signing key's fingerprint from SIG_CREATED/KEY_CONSIDERED).

    Raises:
        AuthError: the PIN or passphrase was refused.
        GpgError: no usable secret key, or gpg failed otherwise (its status lines in details).
    """
    with tempfile.TemporaryDirectory(prefix="heads-gpg-") as tmp:
        out = Path(tmp) / "detached.asc"
        home = ["--homedir", str(gnupghome)] if gnupghome is not None else []
        argv = [
            "gpg",
            *home,
            "--batch",
            "--no-tty",
            "--status-fd",
            "1",
            "--armor",
            "--detach-sign",
            "--digest-algo",
            "SHA256",
        ]
        if key:
            argv += ["--local-user", key]
        pass_fds: tuple[int, ...] = ()
        read_fd = -1
        if pin is not None:
            read_fd, write_fd = os.pipe()
            try:
                # A PIN is far below the pipe buffer size, so this write cannot block.
                os.write(write_fd, pin.reveal() + b"\n")
            finally:
                os.close(write_fd)
            pass_fds = (read_fd,)
            argv += ["--pinentry-mode", "loopback", "--passphrase-fd", str(read_fd)]
        argv += ["--output", str(out), "-"]
        try:
            result = _run_gpg(
                argv,
                desc="sign the /boot manifests",
                stdin=data,
                timeout_s=_SIGN_TIMEOUT_S,
                env={"GNUPGHOME": str(gnupghome)} if gnupghome is not None else None,
                pass_fds=pass_fds,
            )
        finally:
            if read_fd >= 0:
                os.close(read_fd)
        status = [ln for ln in result.stdout.splitlines() if ln.startswith(_STATUS)]
        created = [_fields(ln) for ln in status if ln.startswith(_STATUS + b"SIG_CREATED ")]
        if result.returncode == 0 and created and out.is_file():
            fields = created[0]
            fpr = fields[6] if len(fields) > 6 else ""
            return out.read_bytes(), fpr
    text = tuple(ln.decode("utf-8", "replace") for ln in status)
    keywords = {_fields(ln)[0] for ln in status}
    codes = {
        _error_code(ln)
        for ln in status
        if ln.startswith((_STATUS + b"FAILURE", _STATUS + b"ERROR"))
    }
    who = key or "the default key"
    if "BAD_PASSPHRASE" in keywords or codes & {_GPG_ERR_BAD_PASSPHRASE, _GPG_ERR_BAD_PIN}:
        raise AuthError(
            f"the PIN or passphrase for {who} was refused",
            hint="check the PIN; a smartcard blocks after 3 wrong User PINs",
        )
    if "INV_SGNR" in keywords or "NO_SGNR" in keywords or _GPG_ERR_NO_SECKEY in codes:
        raise GpgError(
            f"no usable secret key for {who} in {gnupghome or 'the default GNUPGHOME'}",
            hint="insert the smartcard (gpg --card-status) or pass --key with a fingerprint "
            "listed by gpg --list-secret-keys",
            details=text,
        )
    tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-4:]
    raise GpgError(
        f"gpg could not sign with {who} (exit status {result.returncode})",
        details=(*text, *tail),
    )


def _error_code(line: bytes) -> int:
    """The gpg-error code (low 16 bits) of a FAILURE/ERROR status line, or -1."""
    last = _fields(line)[-1]
    return int(last) & 0xFFFF if last.isdigit() else -1


class GpgSigner(FrozenRecord):
    """:class:`Signer` backed by ``gpg`` and a GNUPGHOME (see :func:`sign_detached`)."""

    gnupghome: Path | None
    key: str | None = None
    pin: Secret | None = None

    def sign(self, data: bytes) -> tuple[bytes, str]:
        return sign_detached(data, gnupghome=self.gnupghome, key=self.key, pin=self.pin)
