"""The owner's keyring as the firmware image stores it: list, add, replace (docs/firmware-image.md).

Heads keeps ``heads/initrd/.gnupg/pubring.kbx`` and ``trustdb.gpg`` in the image, and gives
every key it imports ultimate owner trust (``FPR:6:``) so that gpg inside the runtime treats
the owner's signatures as valid.  These functions run ``gpg`` in a private temporary
GNUPGHOME holding copies of the two files and return the files' new bytes; nothing else of
the user's gpg setup is touched.  Key listings come from ``--with-colons`` output (GnuPG
``doc/DETAILS``), never from the human text.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from heads.adapters._run import RunResult, run
from heads.errors import GpgError, ToolError, UsageError

__all__ = ["KeyInfo", "KeyringFiles", "import_keys", "list_keys"]

_TIMEOUT_S: Final = 60.0
_MAX_KEY_FILE: Final = 1024 * 1024
_OWNERTRUST_ULTIMATE: Final = 6


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A primary key: fingerprint, algorithm number, creation time, validity, user ids."""

    fingerprint: str
    algorithm: int
    created: int
    validity: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyringFiles:
    """The keyring files of an image (``None``: the image has none)."""

    pubring: bytes | None
    trustdb: bytes | None
    pubring_name: str = "pubring.kbx"


@contextmanager
def _home(files: KeyringFiles) -> Iterator[Path]:
    # A short path: gpg-agent's socket path must stay under ~108 characters.
    with tempfile.TemporaryDirectory(prefix="hk-", dir="/tmp") as tmp:
        home = Path(tmp)
        home.chmod(0o700)
        if files.pubring is not None:
            (home / files.pubring_name).write_bytes(files.pubring)
        if files.trustdb is not None:
            (home / "trustdb.gpg").write_bytes(files.trustdb)
        try:
            yield home
        finally:
            run(
                ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                desc="stop the temporary gpg-agent",
                check=False,
            )


def _gpg(home: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> RunResult:
    try:
        result = run(
            ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
            desc="gpg",
            timeout_s=_TIMEOUT_S,
            stdin=stdin,
            check=False,
            env={"GNUPGHOME": str(home)},
        )
    except ToolError as exc:
        raise GpgError(exc.message, hint="install gnupg", details=exc.details) from exc
    if check and result.returncode != 0:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
        raise GpgError(
            f"gpg {args[0]} failed (exit status {result.returncode})", details=tuple(tail)
        )
    return result


def _unescape(field: str) -> str:
    """``--with-colons`` escapes ``:`` and control bytes as ``\\xNN``."""
    raw = bytearray()
    i = 0
    data = field.encode("utf-8", "surrogateescape")
    while i < len(data):
        if data[i : i + 2] == b"\\x" and i + 4 <= len(data):
            try:
                raw.append(int(data[i + 2 : i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        raw.append(data[i])
        i += 1
    return raw.decode("utf-8", "replace")


def _parse_colons(out: bytes) -> list[KeyInfo]:
    keys: list[KeyInfo] = []
    current: dict[str, object] | None = None

    def flush() -> None:
        if current is not None and current.get("fpr"):
            keys.append(
                KeyInfo(
                    str(current["fpr"]),
                    int(str(current["algo"]) or 0),
                    int(str(current["created"]) or 0),
                    str(current["validity"]),
                    tuple(str(u) for u in current["uids"] or ()),  # type: ignore[attr-defined]
                )
            )

    for line in out.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split(":")
        kind = fields[0]
        if kind == "pub":
            flush()
            current = {
                "algo": fields[3] if len(fields) > 3 else "0",
                "created": fields[5] if len(fields) > 5 else "0",
                "validity": fields[1] if len(fields) > 1 else "",
                "uids": [],
                "fpr": None,
            }
        elif kind == "fpr" and current is not None and current["fpr"] is None:
            current["fpr"] = fields[9] if len(fields) > 9 else ""
        elif kind == "uid" and current is not None and len(fields) > 9:
            uids = current["uids"]
            if isinstance(uids, list):
                uids.append(_unescape(fields[9]))
    flush()
    return keys


def list_keys(files: KeyringFiles) -> list[KeyInfo]:
    """The primary keys of the image's keyring (an empty list when it has none).

    Raises:
        GpgError: gpg is missing or could not read the keyring.
    """
    if files.pubring is None:
        return []
    with _home(files) as home:
        result = _gpg(home, "--with-colons", "--fixed-list-mode", "--list-keys")
        return _parse_colons(result.stdout)


def import_keys(
    files: KeyringFiles, key_data: bytes, *, replace: bool
) -> tuple[KeyringFiles, list[str]]:
    """The keyring files with the keys of ``key_data`` (armored or binary) added, each with
    ultimate owner trust as Heads gives it; with ``replace`` the old keys are dropped first.

    Returns:
        (the new files, the fingerprints imported).

    Raises:
        UsageError: ``key_data`` holds no public key.
        GpgError: gpg failed.
    """
    if len(key_data) > _MAX_KEY_FILE:
        raise UsageError(f"the key file is larger than {_MAX_KEY_FILE} bytes")
    start = KeyringFiles(None, None) if replace else files
    with _home(start) as home:
        result = _gpg(home, "--status-fd", "1", "--import", stdin=key_data, check=False)
        fprs: list[str] = []
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[:2] == ["[GNUPG:]", "IMPORT_OK"] and parts[3] not in fprs:
                fprs.append(parts[3])
        if not fprs:
            raise UsageError(
                "the key file holds no OpenPGP public key gpg could import",
                hint="export it with gpg --export --armor FINGERPRINT > key.asc",
            )
        trust = "".join(f"{fpr}:{_OWNERTRUST_ULTIMATE}:\n" for fpr in fprs).encode()
        _gpg(home, "--import-ownertrust", stdin=trust)
        _gpg(home, "--check-trustdb", check=False)
        pubring = home / "pubring.kbx"
        legacy = home / "pubring.gpg"
        ring = pubring if pubring.exists() else legacy
        new = KeyringFiles(
            ring.read_bytes(),
            (home / "trustdb.gpg").read_bytes() if (home / "trustdb.gpg").exists() else None,
            ring.name,
        )
        return new, fprs
