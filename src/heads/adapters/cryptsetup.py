"""cryptsetup: LUKS key slots for the disk unlock key (docs/disk-key.md §Key slots).

Key material reaches cryptsetup only through pipes: each secret is written into a pipe whose
read end the child inherits, and cryptsetup is told ``/dev/fd/N``.  Neither the argv (readable
by every user in ``/proc/*/cmdline``) nor a file ever holds a key or passphrase.  A key file
given this way is used byte for byte (no newline handling), so a typed passphrase is passed
without its newline.

Works on image files as well as block devices (format, add/kill slot, test, dump need no
device-mapper).  The header measurement itself does not use cryptsetup (heads.core.luks).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from heads.adapters._run import RunResult, run
from heads.core.secret import Secret
from heads.errors import AuthError, CryptsetupError

__all__ = [
    "DUK_SLOT_LUKS1",
    "DUK_SLOT_LUKS2",
    "FAST_PBKDF",
    "active_slots",
    "add_key",
    "change_key",
    "format_luks",
    "kill_slot",
    "luks_uuid",
    "luks_version",
    "opens_with",
    "reencrypt",
    "slot_of",
]

#: Heads' dedicated key slots for the disk unlock key.
DUK_SLOT_LUKS2: Final = 31
DUK_SLOT_LUKS1: Final = 7
#: For a random 128-byte key a slow PBKDF adds nothing (there is nothing to guess); it would
#: only slow every boot, and argon2's memory can exceed a small machine's RAM.
FAST_PBKDF: Final = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
_NO_KEY_RC: Final = 2  # cryptsetup: "No key available with this passphrase."
_TIMEOUT_S: Final = 120.0
#: Re-encryption rewrites the whole device.
_REENCRYPT_TIMEOUT_S: Final = 6 * 3600.0
_UNLOCKED_RE: Final = re.compile(r"^Key slot (\d+) unlocked\.$", re.MULTILINE)
_LUKS1_SLOT_RE: Final = re.compile(r"^Key Slot (\d+): ENABLED$", re.MULTILINE)


@contextlib.contextmanager
def _fed(*secrets: Secret) -> Iterator[list[int]]:
    """Read ends of pipes already holding each secret (closed afterwards)."""
    fds: list[int] = []
    try:
        for secret in secrets:
            r, w = os.pipe()
            fds.append(r)
            try:
                data = memoryview(secret.reveal())
                while data:
                    data = data[os.write(w, data) :]
            finally:
                os.close(w)
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def _run(args: Sequence[str | Path], *, desc: str, fds: Sequence[int] = ()) -> RunResult:
    return run(["cryptsetup", *args], desc=desc, timeout_s=_TIMEOUT_S, check=False, pass_fds=fds)


def _fail(desc: str, result: RunResult) -> CryptsetupError:
    tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-4:]
    return CryptsetupError(
        f"{desc}: cryptsetup exited with status {result.returncode}", details=tuple(tail)
    )


def format_luks(
    device: Path, passphrase: Secret, *, version: int = 2, extra: Sequence[str] = FAST_PBKDF
) -> None:
    """``cryptsetup luksFormat`` (tests and the QEMU demo disk; never on an owner's disk).

    Raises:
        CryptsetupError: cryptsetup failed.
    """
    desc = f"format {device} as LUKS{version}"
    with _fed(passphrase) as (fd,):
        result = _run(
            [
                "luksFormat",
                "--batch-mode",
                "--type",
                f"luks{version}",
                *extra,
                f"--key-file=/dev/fd/{fd}",
                str(device),
            ],
            desc=desc,
            fds=(fd,),
        )
    if result.returncode != 0:
        raise _fail(desc, result)


def luks_uuid(device: Path) -> str:
    """``cryptsetup luksUUID``.

    Raises:
        CryptsetupError: not a LUKS device.
    """
    desc = f"read the LUKS UUID of {device}"
    result = _run(["luksUUID", str(device)], desc=desc)
    if result.returncode != 0:
        raise _fail(desc, result)
    return result.stdout.decode("ascii", "replace").strip()


def luks_version(device: Path) -> int:
    """1 or 2, from ``cryptsetup luksDump``.

    Raises:
        CryptsetupError: not a LUKS device.
    """
    desc = f"read the LUKS header of {device}"
    result = _run(["luksDump", str(device)], desc=desc)
    if result.returncode != 0:
        raise _fail(desc, result)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("Version:"):
            return int(line.split()[-1])
    raise CryptsetupError(f"{desc}: no Version line in luksDump")


def opens_with(device: Path, key: Secret, *, slot: int | None = None) -> bool:
    """Whether ``key`` opens a key slot (``open --test-passphrase``; no device-mapper needed)."""
    with _fed(key) as (fd,):
        args = ["open", "--test-passphrase", f"--key-file=/dev/fd/{fd}"]
        if slot is not None:
            args.append(f"--key-slot={slot}")
        result = _run([*args, str(device)], desc=f"test a key on {device}", fds=(fd,))
    if result.returncode == 0:
        return True
    if result.returncode == _NO_KEY_RC:
        return False
    raise _fail(f"test a key on {device}", result)


def kill_slot(device: Path, slot: int, existing: Secret) -> bool:
    """Wipe key slot ``slot``, authorised by a key of another slot; False if it was empty.

    Raises:
        AuthError: ``existing`` opens no slot.
        CryptsetupError: cryptsetup failed.
    """
    desc = f"wipe key slot {slot} of {device}"
    with _fed(existing) as (fd,):
        result = _run(
            ["luksKillSlot", "--batch-mode", f"--key-file=/dev/fd/{fd}", str(device), str(slot)],
            desc=desc,
            fds=(fd,),
        )
    if result.returncode == 0:
        return True
    err = result.stderr.decode("utf-8", "replace")
    if "is not used" in err or "not active" in err:
        return False
    if result.returncode == _NO_KEY_RC:
        raise AuthError(f"{desc}: the recovery passphrase opens no key slot")
    raise _fail(desc, result)


def _replace_key(
    verb: str,
    device: Path,
    existing: Secret,
    new: Secret,
    *,
    desc: str,
    options: Sequence[str] = (),
) -> None:
    """``luksAddKey``/``luksChangeKey``: ``new`` in a slot, authorised by ``existing``, both
    through pipes.

    Raises:
        AuthError: ``existing`` opens no key slot.
        CryptsetupError: cryptsetup failed otherwise.
    """
    with _fed(existing, new) as (old_fd, new_fd):
        result = _run(
            [
                verb,
                "--batch-mode",
                *options,
                f"--key-file=/dev/fd/{old_fd}",
                str(device),
                f"/dev/fd/{new_fd}",
            ],
            desc=desc,
            fds=(old_fd, new_fd),
        )
    if result.returncode == 0:
        return
    if result.returncode == _NO_KEY_RC:
        raise AuthError(f"{desc}: the recovery passphrase opens no key slot")
    raise _fail(desc, result)


def add_key(
    device: Path, existing: Secret, new_key: Secret, *, slot: int, extra: Sequence[str] = FAST_PBKDF
) -> None:
    """``luksAddKey`` ``new_key`` into ``slot``, authorised by ``existing`` (the recovery
    passphrase).  The slot must be free (:func:`kill_slot` first).

    Raises:
        AuthError: ``existing`` opens no key slot.
        CryptsetupError: cryptsetup failed (slot in use, not LUKS...).
    """
    _replace_key(
        "luksAddKey",
        device,
        existing,
        new_key,
        desc=f"add the disk unlock key to key slot {slot} of {device}",
        options=(*extra, f"--key-slot={slot}"),
    )


def slot_of(device: Path, key: Secret) -> int | None:
    """The key slot ``key`` opens (``open --test-passphrase -v``), None if none.

    Raises:
        CryptsetupError: cryptsetup failed otherwise (not LUKS...).
    """
    desc = f"find the key slot of a key on {device}"
    with _fed(key) as (fd,):
        result = _run(
            ["open", "--test-passphrase", "-v", f"--key-file=/dev/fd/{fd}", str(device)],
            desc=desc,
            fds=(fd,),
        )
    if result.returncode == _NO_KEY_RC:
        return None
    if result.returncode != 0:
        raise _fail(desc, result)
    m = _UNLOCKED_RE.search(result.stdout.decode("utf-8", "replace"))
    if m is None:
        raise CryptsetupError(f"{desc}: cryptsetup named no key slot")
    return int(m.group(1))


def active_slots(device: Path) -> tuple[int, ...]:
    """The key slots in use, from ``luksDump`` (LUKS2: its JSON metadata).

    Raises:
        CryptsetupError: not a LUKS device, or a dump that does not parse.
    """
    desc = f"list the key slots of {device}"
    if luks_version(device) == 1:
        result = _run(["luksDump", str(device)], desc=desc)
        if result.returncode != 0:
            raise _fail(desc, result)
        text = result.stdout.decode("utf-8", "replace")
        return tuple(int(m.group(1)) for m in _LUKS1_SLOT_RE.finditer(text))
    result = _run(["luksDump", "--dump-json-metadata", str(device)], desc=desc)
    if result.returncode != 0:
        raise _fail(desc, result)
    try:
        slots = json.loads(result.stdout)["keyslots"]
        return tuple(sorted(int(k) for k in slots))
    except (ValueError, KeyError, TypeError):
        raise CryptsetupError(f"{desc}: luksDump printed no keyslots object") from None


def change_key(device: Path, existing: Secret, new: Secret) -> None:
    """``luksChangeKey``: the slot ``existing`` opens gets ``new`` instead (Heads'
    luks-change-key; the slot keeps the device's default PBKDF: this is a typed passphrase).

    Raises:
        AuthError: ``existing`` opens no key slot.
        CryptsetupError: cryptsetup failed.
    """
    _replace_key(
        "luksChangeKey", device, existing, new, desc=f"change the recovery passphrase of {device}"
    )


def reencrypt(device: Path, existing: Secret, *, slot: int, extra: Sequence[str] = ()) -> None:
    """``cryptsetup reencrypt`` offline (the device is not opened): a new volume key; only key
    slot ``slot`` (the one ``existing`` opens) is kept, re-wrapped.

    An image file cannot be checked for an active mapping, so for files cryptsetup is told
    it is offline (``--force-offline-reencrypt``); a block device is checked.

    Raises:
        AuthError: ``existing`` does not open ``slot``.
        CryptsetupError: cryptsetup failed.
    """
    desc = f"re-encrypt {device}"
    offline = [] if _is_block(device) else ["--force-offline-reencrypt"]
    with _fed(existing) as (fd,):
        result = run(
            [
                "cryptsetup",
                "reencrypt",
                "--batch-mode",
                *offline,
                *extra,
                f"--key-slot={slot}",
                f"--key-file=/dev/fd/{fd}",
                str(device),
            ],
            desc=desc,
            timeout_s=_REENCRYPT_TIMEOUT_S,
            check=False,
            pass_fds=(fd,),
        )
    if result.returncode == 0:
        return
    if result.returncode == _NO_KEY_RC:
        raise AuthError(f"{desc}: the recovery passphrase does not open key slot {slot}")
    raise _fail(desc, result)


def _is_block(device: Path) -> bool:
    try:
        return stat.S_ISBLK(device.stat().st_mode)
    except OSError:
        return False
