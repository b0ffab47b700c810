"""Throwaway GnuPG homes with batch-generated keys, for tests and the QEMU demo's owner key.

Nothing in the product imports this module.  Homes live in short ``/tmp/hg-*`` directories
because gpg-agent's socket path must stay under ~108 bytes (pytest's tmp paths can be longer).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from heads.adapters._run import run

__all__ = ["GpgHome", "export_public_keyring", "kill_agent", "make_owner_key", "revoke_key"]


def make_owner_key(
    home: Path,
    name: str = "Heads Owner",
    email: str = "owner@heads.invalid",
    *,
    algo: str = "ed25519",
    expire: str = "never",
    passphrase: str | None = None,
    faked_time: str | None = None,
) -> str:
    """Generate a signing key in ``home`` and return its fingerprint (40 hex digits).

    Args:
        algo: ``ed25519`` (instant) or ``rsa2048``/``rsa3072``.
        expire: gpg's expiry syntax (``never``, ``1d``, ``seconds=N``).
        passphrase: protect the key (tests of the PIN path); None for no protection.
        faked_time: ``--faked-system-time`` (e.g. ``20200101T000000!``) to make a key that is
            already expired today.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--with-colons"]
    if faked_time:
        argv += ["--faked-system-time", faked_time]
    # The passphrase goes through stdin (--passphrase-fd 0), never argv, even for test keys.
    argv += ["--passphrase-fd", "0", "--pinentry-mode", "loopback"]
    argv += ["--quick-gen-key", f"{name} <{email}>", algo, "sign", expire]
    secret = (passphrase or "").encode() + b"\n"
    run(argv, desc="generate a test OpenPGP key", timeout_s=120, stdin=secret)
    listing = run(
        ["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-secret-keys", email],
        desc="list the new key",
    ).stdout.decode()
    fprs = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")]
    if not fprs:
        raise RuntimeError(f"no fingerprint for {email} in {home}")
    return fprs[0]


def export_public_keyring(home: Path, path: Path, *keys: str) -> Path:
    """Write a binary keyring (what gpgv reads) with ``keys`` (all keys when none given)."""
    out = run(
        ["gpg", "--homedir", str(home), "--batch", "--export", *keys],
        desc="export public keys",
    ).stdout
    if not out:
        raise RuntimeError(f"gpg exported nothing from {home} for {keys or 'all keys'}")
    path.write_bytes(out)
    return path


def revoke_key(home: Path, fingerprint: str) -> None:
    """Import the revocation certificate gpg stored at key generation: the key is revoked."""
    cert = home / "openpgp-revocs.d" / f"{fingerprint}.rev"
    # gpg prefixes the armor header with ':' so an accidental import does not revoke the key.
    text = cert.read_text().replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----"
    )
    run(
        ["gpg", "--homedir", str(home), "--batch", "--import"],
        desc="import a revocation certificate",
        stdin=text.encode(),
    )


def kill_agent(home: Path) -> None:
    """Stop the gpg-agent (and scdaemon) gpg started for ``home``."""
    if shutil.which("gpgconf"):
        run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            desc="stop gpg-agent",
            check=False,
        )


class GpgHome:
    """A fresh GNUPGHOME in a short temporary directory, its agent stopped on exit."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="hg-", dir="/tmp"))
        self.path.chmod(0o700)

    def __enter__(self) -> GpgHome:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        kill_agent(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
