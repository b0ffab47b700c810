"""The /boot manifests Heads signs: ``kexec_hashes.txt``, ``kexec_tree.txt`` and the signed text.

Formats (docs/heads-compat.md §Signed /boot; port of ``kexec-sign-config.sh`` and
``verify_checksums``):

* ``kexec_hashes.txt``: the output of ``find ./ -type f ! -path './kexec*' -print0 | xargs -0
  sha256sum`` run inside /boot: ``<64 hex><two spaces>./relative/path\\n`` per regular file.
  Older Heads wrote absolute ``/boot/...`` names; both forms are read, names are kept as written
  so a read-then-write is lossless.
* ``kexec_tree.txt``: ``find ./ ! -path './kexec*' -print0 | sort -z``: every path (``./``
  itself, directories, symlinks, files), each followed by a NUL byte, byte-sorted.
* the signed text: ``sha256sum kexec*.txt`` run inside /boot, glob order (C collation), bare
  names; the legacy form used absolute ``/boot/kexec*.txt`` names (docs/heads-compat.md
  §kexec.sig).

Paths inside this module are ``bytes`` relative to the /boot root without the ``./`` prefix
(``b"vmlinuz"``, ``b"grub/grub.cfg"``); the root itself is ``b""``.  File names are bytes on
Linux and an attacker chooses them, so nothing here decodes them except for display.

Everything is pure: scans and digests come in as values from the adapters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Final

from heads.core.frozen_record import FrozenRecord
from heads.core.text import shown_bytes
from heads.errors import FormatError, HeadsError

__all__ = [
    "HASHES_NAME",
    "MAX_MANIFEST_BYTES",
    "SIGNATURE_NAME",
    "TREE_NAME",
    "EntryKind",
    "FileCheck",
    "FileStatus",
    "HashEntry",
    "HashManifest",
    "ManifestCheck",
    "SignedForm",
    "TreeList",
    "UnsignableNameError",
    "check_manifest",
    "check_signable",
    "display_path",
    "is_excluded",
    "is_signed_name",
    "parse_sha256sum_line",
    "shown_path",
    "signed_payload",
]

HASHES_NAME: Final = "kexec_hashes.txt"
TREE_NAME: Final = "kexec_tree.txt"
SIGNATURE_NAME: Final = "kexec.sig"
# /boot of a desktop distribution lists a few thousand entries; 16 MiB leaves room for far more
# while keeping a hostile file from exhausting memory.
MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024
MAX_NAME_BYTES: Final = 4096
_LEGACY_PREFIX: Final = b"/boot/"
_HEX: Final = re.compile(rb"[0-9a-fA-F]{64}")


class UnsignableNameError(HeadsError):
    """A file name in /boot that Heads refuses to sign (``assert_signable``)."""


class EntryKind(Enum):
    """What a path in /boot is (as ``lstat`` sees it: symlinks are never followed)."""

    FILE = "file"
    DIR = "directory"
    SYMLINK = "symbolic link"
    OTHER = "special file"


class SignedForm(Enum):
    """How the names in the signed ``sha256sum kexec*.txt`` text are written."""

    RELATIVE = "relative"  # kexec_hashes.txt (current Heads)
    ABSOLUTE = "absolute"  # /boot/kexec_hashes.txt (legacy Heads)


def display_path(path: bytes) -> str:
    """``./path`` for JSON: the name as it is, undecodable bytes as ``\\xNN``.

    Control characters stay in (``json.dumps`` escapes them); text for a terminal or a log
    uses :func:`shown_path`.
    """
    return "./" + path.decode("utf-8", "backslashreplace")


def shown_path(path: bytes) -> str:
    """``./path`` for a terminal, a log or a message: one line, every control character,
    bidi override and backslash escaped (:func:`heads.core.text.shown_bytes`)."""
    return "./" + shown_bytes(path)


def is_excluded(path: bytes) -> bool:
    """True for paths ``find ./ ! -path './kexec*'`` leaves out: anything under ``./kexec*``."""
    return path.startswith(b"kexec")


def is_signed_name(name: bytes) -> bool:
    """True for a top-level name the shell glob ``kexec*.txt`` matches."""
    return name.startswith(b"kexec") and name.endswith(b".txt") and b"/" not in name


def check_signable(path: bytes) -> None:
    """Refuse names Heads' ``assert_signable`` refuses: bytes 0x01-0x1f, ``\\``, 0x7f-0xff.

    Such names would be escaped by ``sha256sum`` (or garble a terminal) and break the shell
    verifier, so a /boot holding one cannot be signed in a Heads-compatible way.

    Raises:
        UnsignableNameError: naming the path and the offending byte.
    """
    for pos, byte in enumerate(path):
        if byte < 0x20 or byte == 0x5C or byte >= 0x7F:
            raise UnsignableNameError(
                f"cannot sign /boot: the name {shown_path(path)} contains byte "
                f"0x{byte:02x} at position {pos} (control bytes, backslash and bytes >= 0x7f "
                "are refused, as in Heads)",
                hint="rename or remove that file, then sign again",
            )


def _relative_name(raw: bytes, *, source: str, line: int | None) -> bytes:
    """``./a/b`` or legacy ``/boot/a/b`` → ``a/b``; anything reaching outside /boot is refused."""
    if raw.startswith(b"./"):
        rel = raw[2:]
    elif raw.startswith(_LEGACY_PREFIX):
        rel = raw[len(_LEGACY_PREFIX) :]
    else:
        raise FormatError(
            f"name {raw[:80]!r} is neither ./relative nor /boot/absolute: it points outside /boot",
            source=source,
            line=line,
        )
    if not rel:
        raise FormatError("empty file name", source=source, line=line)
    for part in rel.split(b"/"):
        if part in {b"", b".", b".."}:
            raise FormatError(
                f"name {raw[:80]!r} has a {part.decode() or 'empty'!r} component: "
                "only plain paths inside /boot are allowed",
                source=source,
                line=line,
            )
    return rel


class HashEntry(FrozenRecord):
    """One ``sha256sum`` line: the digest and the name exactly as written."""

    digest: bytes
    name: bytes
    binary_marker: bool = False

    @property
    def path(self) -> bytes:
        """The path relative to /boot (``./`` or ``/boot/`` removed)."""
        return _relative_name(self.name, source="manifest entry", line=None)

    def to_line(self) -> bytes:
        sep = b" *" if self.binary_marker else b"  "
        return self.digest.hex().encode() + sep + self.name + b"\n"


def parse_sha256sum_line(line: bytes, *, source: str, lineno: int) -> HashEntry:
    """Parse one ``sha256sum`` output line (without its newline).

    Raises:
        FormatError: naming the source, the line and what is wrong.
    """
    if line.startswith(b"\\"):
        raise FormatError(
            "escaped sha256sum names (a backslash or newline in a file name) are not used by Heads",
            source=source,
            line=lineno,
        )
    if len(line) < 67 or not _HEX.fullmatch(line[:64]):
        raise FormatError(
            "expected 64 hexadecimal digits, two spaces and a file name", source=source, line=lineno
        )
    sep = line[64:66]
    if sep not in {b"  ", b" *"}:
        raise FormatError(
            "expected two spaces (or space and '*') after the digest", source=source, line=lineno
        )
    name = line[66:]
    if len(name) > MAX_NAME_BYTES:
        raise FormatError(
            f"file name longer than {MAX_NAME_BYTES} bytes", source=source, line=lineno
        )
    bad = next((b for b in name if b < 0x20), None)
    if bad is not None:
        raise FormatError(
            f"file name contains control byte 0x{bad:02x}", source=source, line=lineno
        )
    return HashEntry(bytes.fromhex(line[:64].decode("ascii")), name, sep == b" *")


def _split_lines(data: bytes, source: str) -> list[bytes]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(f"larger than {MAX_MANIFEST_BYTES} bytes", source=source)
    if not data:
        return []
    if not data.endswith(b"\n"):
        lineno = data.count(b"\n") + 1
        raise FormatError("truncated: the last line has no newline", source=source, line=lineno)
    return data[:-1].split(b"\n")


class HashManifest(FrozenRecord):
    """A parsed ``kexec_hashes.txt``; ``raw`` keeps the exact bytes that were read or written."""

    entries: tuple[HashEntry, ...]
    raw: bytes

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = HASHES_NAME) -> HashManifest:
        """Parse ``kexec_hashes.txt``.

        Raises:
            FormatError: too large, truncated, a malformed line, a name outside /boot, or a
                path listed twice.
        """
        entries: list[HashEntry] = []
        seen: dict[bytes, int] = {}
        for lineno, line in enumerate(_split_lines(data, source), start=1):
            entry = parse_sha256sum_line(line, source=source, lineno=lineno)
            rel = _relative_name(entry.name, source=source, line=lineno)
            if rel in seen:
                raise FormatError(
                    f"{shown_path(rel)} is listed twice (first on line {seen[rel]})",
                    source=source,
                    line=lineno,
                )
            seen[rel] = lineno
            entries.append(entry)
        return cls(tuple(entries), data)

    @classmethod
    def build(cls, digests: Mapping[bytes, bytes]) -> HashManifest:
        """A new manifest in the current Heads form (``./`` names), byte-sorted for stability."""
        entries = tuple(HashEntry(digests[path], b"./" + path) for path in sorted(digests))
        return cls(entries, b"".join(e.to_line() for e in entries))

    def to_bytes(self) -> bytes:
        return self.raw

    def digests(self) -> dict[bytes, bytes]:
        """Relative path → expected SHA-256."""
        return {
            _relative_name(e.name, source=HASHES_NAME, line=None): e.digest for e in self.entries
        }


class TreeList(FrozenRecord):
    """A parsed ``kexec_tree.txt``: the set of paths (``b""`` is the root ``./``)."""

    paths: frozenset[bytes]
    raw: bytes

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = TREE_NAME) -> TreeList:
        """Parse ``kexec_tree.txt`` (NUL-terminated names).

        Raises:
            FormatError: too large, truncated (no final NUL), an empty name, a name outside
                /boot, or a path listed twice.
        """
        if len(data) > MAX_MANIFEST_BYTES:
            raise FormatError(f"larger than {MAX_MANIFEST_BYTES} bytes", source=source)
        if data and not data.endswith(b"\0"):
            raise FormatError(
                "truncated: the last name has no NUL terminator",
                source=source,
                offset=data.rfind(b"\0") + 1,
            )
        paths: set[bytes] = set()
        offset = 0
        for name in data[:-1].split(b"\0") if data else []:
            if name in {b"./", b"/boot/", b"/boot"}:
                rel = b""
            else:
                try:
                    rel = _relative_name(name, source=source, line=None)
                except FormatError as exc:
                    raise FormatError(exc.reason, source=source, offset=offset) from None
            if rel in paths:
                raise FormatError(
                    f"{shown_path(rel)} is listed twice", source=source, offset=offset
                )
            paths.add(rel)
            offset += len(name) + 1
        return cls(frozenset(paths), data)

    @classmethod
    def build(cls, paths: Iterable[bytes]) -> TreeList:
        """``find ./ ! -path './kexec*' -print0 | sort -z`` for these paths (root included)."""
        names = sorted({b"./" + p for p in paths} | {b"./"})
        return cls(frozenset(n[2:] for n in names), b"".join(n + b"\0" for n in names))

    def to_bytes(self) -> bytes:
        return self.raw


def signed_payload(files: Sequence[tuple[bytes, bytes]], form: SignedForm) -> bytes:
    """The text ``sha256sum kexec*.txt`` prints inside /boot: what ``kexec.sig`` signs.

    Args:
        files: (top-level name, SHA-256 of its bytes) for every ``kexec*.txt``; sorted here in
            C collation, the order of the shell glob.
        form: bare names (current Heads) or ``/boot/`` names (legacy).
    """
    prefix = b"/boot/" if form is SignedForm.ABSOLUTE else b""
    return b"".join(
        digest.hex().encode() + b"  " + prefix + name + b"\n" for name, digest in sorted(files)
    )


class FileStatus(Enum):
    """Per-path verdict of a /boot check."""

    OK = "ok"
    CHANGED = "changed"
    MISSING = "missing"
    NEW = "new"


class FileCheck(FrozenRecord):
    path: bytes
    status: FileStatus
    reason: str = ""


class ManifestCheck(FrozenRecord):
    """Result of comparing a scan of /boot with the signed manifests (no ``__bool__``)."""

    files: tuple[FileCheck, ...]

    @property
    def all_ok(self) -> bool:
        return all(f.status is FileStatus.OK for f in self.files)

    def with_status(self, status: FileStatus) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if f.status is status)


def check_manifest(
    hashes: HashManifest,
    tree: TreeList | None,
    scan: Mapping[bytes, EntryKind],
    digests: Mapping[bytes, bytes],
    read_errors: Mapping[bytes, str] | None = None,
) -> ManifestCheck:
    """Compare /boot now with what was signed (port of ``verify_checksums``, made stricter).

    Args:
        hashes: the signed ``kexec_hashes.txt``.
        tree: the signed ``kexec_tree.txt``, or None when /boot has none (old Heads): then every
            regular file the hashes do not list is new.
        scan: every path now in /boot outside ``./kexec*`` (root excluded) and its kind.
        digests: SHA-256 of the regular files the manifest lists, as read now.
        read_errors: files that could not be read, with the reason.

    Beyond ``sha256sum -c`` and the tree byte-compare, a path whose kind changed is reported:
    a hashed file that is now a symlink (``sha256sum`` would follow it), and a path the tree
    lists but the hashes do not (so it was not a regular file) that is now a regular file.
    """
    errors = read_errors or {}
    expected = hashes.digests()
    results: dict[bytes, FileCheck] = {}
    for path, want in expected.items():
        kind = scan.get(path)
        if kind is None:
            results[path] = FileCheck(path, FileStatus.MISSING, "listed in kexec_hashes.txt")
        elif kind is not EntryKind.FILE:
            results[path] = FileCheck(
                path, FileStatus.CHANGED, f"was a regular file, is now a {kind.value}"
            )
        elif path in errors:
            results[path] = FileCheck(path, FileStatus.CHANGED, f"cannot be read: {errors[path]}")
        elif path not in digests:
            results[path] = FileCheck(path, FileStatus.CHANGED, "was not hashed")
        elif digests[path] != want:
            results[path] = FileCheck(
                path, FileStatus.CHANGED, "content differs from the signed hash"
            )
        else:
            results[path] = FileCheck(path, FileStatus.OK)
    for path, kind in scan.items():
        if path in results or not path:
            continue
        if tree is not None and path in tree.paths:
            if kind is EntryKind.FILE:
                results[path] = FileCheck(
                    path,
                    FileStatus.CHANGED,
                    "is now a regular file; when signed it was not (it had no hash)",
                )
        elif kind is EntryKind.FILE or tree is not None:
            results[path] = FileCheck(path, FileStatus.NEW, f"{kind.value} not in the signed list")
    if tree is not None:
        for path in tree.paths:
            if path and path not in results and path not in scan:
                results[path] = FileCheck(path, FileStatus.MISSING, "listed in kexec_tree.txt")
    return ManifestCheck(tuple(results[p] for p in sorted(results)))
