"""Heads' configuration files: ``export CONFIG_X="value"`` lines (docs/configuration.md).

The board's defaults (``/etc/config``) come first and the owner's ``config.user`` (a CBFS file
in the firmware image) after them; Heads sources both, so a later assignment wins.  This module
parses and writes such files without running a shell:

* a line is blank, a comment, or ``[export] NAME=VALUE``; ``VALUE`` is a bare word, a
  single-quoted string (no escapes, may span lines), a backslash-escaped character, or a
  double-quoted string whose only
  escapes are ``\\"``, ``\\\\``, ``\\$``, ``\\``` and a backslash-newline;
* anything a shell would expand or run (an unescaped ``$`` or backtick in double quotes, a bare
  word with ``$``, ``;``, ``|``, spaces, ...) is refused: the value must mean the same text to
  this parser and to the shell that sources the file;
* unknown keys, comments and their order are kept: an edited file differs from the original
  only in the lines that were set or unset;
* a value is written as ``export KEY="value"`` (Heads' own form) when it holds none of
  ``"\\$``` and no newline, otherwise single-quoted with ``'\\''`` for a quote, so that no
  value can become shell code.

Known keys (:data:`KNOWN_KEYS`) carry Heads' meaning and the values they accept;
:func:`check_value` enforces them when a value is set, :func:`problems` reports a file's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from heads.errors import FormatError

__all__ = [
    "KNOWN_KEYS",
    "MAX_CONFIG_BYTES",
    "ConfigLine",
    "HeadsConfig",
    "KeySpec",
    "check_value",
    "merged",
    "parse_config",
    "problems",
    "quote_value",
]

MAX_CONFIG_BYTES: Final = 256 * 1024
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN: Final = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")
#: Characters a bare (unquoted) word may hold without the shell changing it.
_BARE: Final = re.compile(r"[A-Za-z0-9_./:,+=@%^#-]*")
_DQ_ESCAPABLE: Final = '"\\$`'
_PLAIN: Final = re.compile(r"[^\"\\$`\n\0]*")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a known key means in Heads and which values it takes.

    ``kind``: ``bool`` (``y``/``n``, empty = unset), ``int`` (a non-negative number, empty =
    off), ``choice`` (one of ``choices``), ``path`` (absolute), ``text`` (anything).
    """

    kind: str
    meaning: str
    choices: tuple[str, ...] = ()


def _b(meaning: str) -> KeySpec:
    return KeySpec("bool", meaning)


#: The keys heads knows, with Heads' meaning (docs/configuration.md lists them too).
KNOWN_KEYS: Final[Mapping[str, KeySpec]] = {
    "CONFIG_BOARD": KeySpec("text", "board name the image was built for"),
    "CONFIG_BOARD_NAME": KeySpec("text", "board name shown to the owner"),
    "CONFIG_BRAND_NAME": KeySpec("text", "product name shown in menus"),
    "CONFIG_BOOTSCRIPT": KeySpec("path", "script the init runs on the console"),
    "CONFIG_BOOT_DEV": KeySpec("path", "the /boot device"),
    "CONFIG_AUTO_BOOT_TIMEOUT": KeySpec("int", "seconds before the default boot (empty: off)"),
    "CONFIG_BOOT_KERNEL_ADD": KeySpec("text", "parameters added to every kernel command line"),
    "CONFIG_BOOT_KERNEL_REMOVE": KeySpec("text", "parameters removed from every command line"),
    "CONFIG_BOOT_RECOVERY_SERIAL": KeySpec("path", "serial port offering a recovery shell"),
    "CONFIG_BOOT_EXTRA_TTYS": KeySpec("text", "further consoles with a login"),
    "CONFIG_BOOT_REQ_HASH": _b("missing boot hashes are fatal"),
    "CONFIG_BOOT_REQ_ROLLBACK": _b("a missing rollback counter state is fatal"),
    "CONFIG_KEYBOARD_KEYMAP": KeySpec("path", "console keymap"),
    "CONFIG_USER_USB_KEYBOARD": _b("load USB keyboard drivers"),
    "CONFIG_USB_KEYBOARD_REQUIRED": _b("a USB keyboard is the only keyboard"),
    "CONFIG_QUIET_MODE": _b("show less output on the console"),
    "CONFIG_DEBUG_OUTPUT": _b("show debug output on the console"),
    "CONFIG_ENABLE_FUNCTION_TRACING_OUTPUT": _b("trace every function"),
    "CONFIG_TPM": _b("a TPM is present and used"),
    "CONFIG_TPM2_TOOLS": _b("the TPM is a TPM 2.0"),
    "CONFIG_PRIMARY_KEY_TYPE": KeySpec("choice", "TPM 2.0 primary key", ("rsa", "ecc")),
    "CONFIG_TPM2_CAPTURE_PCAP": _b("record TPM traffic"),
    "CONFIG_IGNORE_ROLLBACK": _b("do not use the TPM rollback counter"),
    "CONFIG_TPM_NO_LUKS_DISK_UNLOCK": _b("never offer a TPM disk unlock key"),
    "CONFIG_TPM_DISK_UNLOCK_KEY": _b("allow a TPM disk unlock key"),
    "CONFIG_TOTP_SKIP_QRCODE": _b("do not show the TOTP QR code"),
    "CONFIG_TOTP_LABEL": KeySpec("text", "label of the TOTP entry in the phone app"),
    "CONFIG_HOTPKEY": _b("a HOTP USB security dongle is used"),
    "CONFIG_HAVE_GPG_KEY_BACKUP": _b("a GPG key backup drive exists"),
    "CONFIG_GPG_KEY_BACKUP_IN_USE": _b("the backup key is used instead of the card"),
    "CONFIG_GPG_ALGO": KeySpec("text", "algorithm of generated OpenPGP keys"),
    "CONFIG_RESTRICTED_BOOT": _b("Restricted mode: no recovery shell, flashing or Basic mode"),
    "CONFIG_BASIC": _b("Basic mode: no attestation or signature checks"),
    "CONFIG_BASIC_NO_AUTOMATIC_DEFAULT": _b("Basic mode does not pick a default entry"),
    "CONFIG_BASIC_USB_AUTOBOOT": _b("Basic mode boots the first USB entry"),
    "CONFIG_ROOT_DEV": KeySpec("path", "root device whose files are hashed"),
    "CONFIG_ROOT_DIRLIST": KeySpec("text", "directories of the root hash check"),
    "CONFIG_ROOT_CHECK_AT_BOOT": _b("check the root hashes at every boot"),
    "CONFIG_PCR": KeySpec("int", "PCR the user files are measured into (7)"),
    "CONFIG_FLASH_OPTIONS": KeySpec("text", "flash tool and programmer used to update"),
    "CONFIG_CBFS_VIA_FLASHPROG": _b("read the CBFS from the chip instead of memory"),
    "CONFIG_FINALIZE_PLATFORM_LOCKING": _b("lock the flash before kexec"),
    "CONFIG_COREBOOT": _b("the firmware is coreboot"),
    "CONFIG_LINUXBOOT": _b("the firmware is LinuxBoot"),
}


def check_value(key: str, value: str) -> None:
    """Refuse a value a known key does not take; any value of an unknown key is accepted.

    Raises:
        ValueError: the key is not a shell name, the value holds a NUL, or it does not fit
            the key's kind (the message says what it takes).
    """
    if not _NAME.fullmatch(key):
        raise ValueError(f"{key!r} is not a configuration key (letters, digits, _)")
    if "\0" in value:
        raise ValueError(f"{key}: a value cannot hold a NUL character")
    spec = KNOWN_KEYS.get(key)
    if spec is None or value == "":
        return
    if spec.kind == "bool" and value not in ("y", "n"):
        raise ValueError(f"{key} takes y or n, not {value!r}")
    if spec.kind == "int" and not (value.isascii() and value.isdigit() and len(value) < 10):
        raise ValueError(f"{key} takes a number of {spec.meaning.split()[0]}, not {value!r}")
    if spec.kind == "choice" and value not in spec.choices:
        raise ValueError(f"{key} takes one of {', '.join(spec.choices)}, not {value!r}")
    if spec.kind == "path" and not value.startswith("/"):
        raise ValueError(f"{key} takes an absolute path, not {value!r}")


def quote_value(value: str) -> str:
    """``value`` as a shell word that means exactly ``value`` and runs nothing."""
    if "\0" in value:
        raise ValueError("a value cannot hold a NUL character")
    if _PLAIN.fullmatch(value):
        return f'"{value}"'
    return "'" + value.replace("'", "'\\''") + "'"


@dataclass(frozen=True, slots=True)
class ConfigLine:
    """One logical line: its text as in the file (newline included) and, for an assignment,
    its key, value and whether it said ``export``."""

    text: str
    key: str | None = None
    value: str | None = None
    lineno: int = 0


def _fail(source: str, lineno: int, reason: str) -> FormatError:
    return FormatError(reason, source=source, line=lineno)


def _value(text: str, pos: int, source: str, lineno: int) -> tuple[str, int, int]:
    """Parse a value from ``pos``: (value, position after it, lines it spanned)."""
    out: list[str] = []
    lines = 0
    # "#" starts a comment only at the start of a word, never inside NAME=VALUE.
    while pos < len(text) and text[pos] not in " \t\n;":
        ch = text[pos]
        if ch == "'":
            end = text.find("'", pos + 1)
            if end < 0:
                raise _fail(source, lineno, "single quote is never closed")
            out.append(text[pos + 1 : end])
            lines += text.count("\n", pos, end)
            pos = end + 1
        elif ch == '"':
            pos += 1
            while True:
                if pos >= len(text):
                    raise _fail(source, lineno, "double quote is never closed")
                ch = text[pos]
                if ch == '"':
                    pos += 1
                    break
                if ch in "$`":
                    raise _fail(
                        source,
                        lineno + lines,
                        f"unescaped {ch!r} in double quotes: the shell would expand it",
                    )
                if ch == "\\" and pos + 1 < len(text):
                    nxt = text[pos + 1]
                    if nxt == "\n":
                        lines += 1
                    elif nxt in _DQ_ESCAPABLE:
                        out.append(nxt)
                    else:
                        out.append("\\" + nxt)
                    pos += 2
                    continue
                lines += ch == "\n"
                out.append(ch)
                pos += 1
        elif ch == "\\":  # outside quotes a backslash makes the next character literal
            if pos + 1 >= len(text):
                raise _fail(source, lineno + lines, "backslash at the end of the file")
            if text[pos + 1] == "\n":
                lines += 1
            else:
                out.append(text[pos + 1])
            pos += 2
        else:
            m = _BARE.match(text, pos)
            end = m.end() if m else pos
            if end == pos:
                raise _fail(
                    source,
                    lineno + lines,
                    f"{ch!r} outside quotes: the shell would treat it specially",
                )
            out.append(text[pos:end])
            pos = end
    return "".join(out), pos, lines


def _logical_lines(text: str, source: str) -> list[ConfigLine]:
    lines: list[ConfigLine] = []
    pos = 0
    lineno = 1
    while pos < len(text):
        m = _ASSIGN.match(text, pos)
        stripped_end = text.find("\n", pos)
        line_end = len(text) if stripped_end < 0 else stripped_end + 1
        raw = text[pos:line_end]
        if m is None:
            body = raw.strip()
            if body and not body.startswith("#"):
                raise _fail(source, lineno, "not an assignment (export NAME=VALUE) or comment")
            lines.append(ConfigLine(raw, lineno=lineno))
            pos, lineno = line_end, lineno + 1
            continue
        value, after, spanned = _value(text, m.end(), source, lineno)
        rest_end = text.find("\n", after)
        rest_end = len(text) if rest_end < 0 else rest_end + 1
        rest = text[after:rest_end].strip()
        if rest and not rest.startswith("#"):
            raise _fail(source, lineno + spanned, f"unexpected {rest[:20]!r} after the value")
        lines.append(ConfigLine(text[pos:rest_end], m.group(1), value, lineno))
        pos, lineno = rest_end, lineno + spanned + 1
    return lines


def parse_config(data: bytes, *, source: str = "config") -> HeadsConfig:
    """Parse a configuration file.

    Raises:
        FormatError: too large, not UTF-8, a NUL byte, or a line that is neither an
            assignment nor a comment or whose value the shell would not read literally; the
            message names ``source`` and the line.
    """
    if len(data) > MAX_CONFIG_BYTES:
        raise FormatError(f"{len(data)} bytes, more than {MAX_CONFIG_BYTES}", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise _fail(source, lineno, "not UTF-8") from None
    if "\0" in text:
        raise _fail(source, text[: text.index("\0")].count("\n") + 1, "NUL byte")
    return HeadsConfig(tuple(_logical_lines(text, source)), source)


@dataclass(frozen=True, slots=True)
class HeadsConfig:
    """A configuration file's lines; edits return a new one."""

    lines: tuple[ConfigLine, ...] = ()
    source: str = "config"

    def get(self, key: str) -> str | None:
        """The value the shell would end with (the last assignment), or None."""
        values = [ln.value for ln in self.lines if ln.key == key]
        return values[-1] if values else None

    def items(self) -> dict[str, str]:
        """Every key with its final value, in order of first appearance."""
        out: dict[str, str] = {}
        for ln in self.lines:
            if ln.key is not None and ln.value is not None:
                out[ln.key] = ln.value
        return out

    def set(self, key: str, value: str) -> HeadsConfig:
        """Assign ``key``: the last assignment is rewritten in place (earlier ones removed),
        or a line is appended.

        Raises:
            ValueError: see :func:`check_value`.
        """
        check_value(key, value)
        new = ConfigLine(f"export {key}={quote_value(value)}\n", key, value)
        where = [i for i, ln in enumerate(self.lines) if ln.key == key]
        lines = list(self.lines)
        if not where:
            if lines and not lines[-1].text.endswith("\n"):
                last = lines[-1]
                lines[-1] = ConfigLine(last.text + "\n", last.key, last.value, last.lineno)
            return HeadsConfig((*lines, new), self.source)
        lines[where[-1]] = new
        kept = (ln for i, ln in enumerate(lines) if i == where[-1] or i not in where)
        return HeadsConfig(tuple(kept), self.source)

    def unset(self, key: str) -> HeadsConfig:
        """Remove every assignment of ``key``."""
        return HeadsConfig(tuple(ln for ln in self.lines if ln.key != key), self.source)

    def to_bytes(self) -> bytes:
        return "".join(ln.text for ln in self.lines).encode("utf-8")


def merged(configs: Sequence[HeadsConfig]) -> dict[str, str]:
    """Board defaults then overrides: every key's final value (later files win)."""
    out: dict[str, str] = {}
    for config in configs:
        out.update(config.items())
    return out


def problems(config: HeadsConfig) -> list[str]:
    """Known keys whose values Heads would not understand, as ``source, line N: reason``."""
    out = []
    for ln in config.lines:
        if ln.key is None or ln.value is None:
            continue
        try:
            check_value(ln.key, ln.value)
        except ValueError as exc:
            out.append(f"{config.source}, line {ln.lineno}: {exc}")
    return out
