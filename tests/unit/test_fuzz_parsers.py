"""Every parser, fuzzed: only our FormatError may come out, whatever the input.

The other test files throw random bytes at each parser.  Random bytes rarely get past the first
check, so here the inputs start from real files (tests/data, and files our own writers make)
and are mutated the way damage and malice shape them: bytes flipped, 32-bit fields set to
0, 0xffffffff or a huge length, ranges deleted, duplicated or spliced in from another file,
syntax tokens inserted into text, truncation.  Structured generators build GRUB scripts
(nested blocks, functions, includes, unknown block commands) and CEL records (JSON of any
shape).  Whatever parses must then survive what heads does next with it: replay, decoding
for display, JSON output, rewriting.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import lzma
import os
import re
import struct
import tempfile
from collections.abc import Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_eventlog_builder import cb_table, h
from test_eventlog_coreboot import CB_TEXT, TCPA_TEXT, TPM2_TEXT, _fill

from conftest import TESTDATA
from heads.cli.main import main
from heads.core.bootcfg.bls import parse_bls, parse_bls_entry
from heads.core.bootcfg.discover import discover_entries
from heads.core.bootcfg.entry import BootEntry, parse_entry_line
from heads.core.bootcfg.grub import HIDDEN_NOTE, parse_grub
from heads.core.bootcfg.grub_legacy import parse_grub_legacy
from heads.core.bootcfg.grub_lexer import TokenKind, tokenize
from heads.core.bootcfg.syslinux import parse_syslinux
from heads.core.bootcfg.tree import MemoryTree
from heads.core.cbfs import COMPRESS_LZMA, HASH_SHA256, CbfsFile, build_cbfs, make_file, parse_cbfs
from heads.core.cel import CelRecord, parse_cel
from heads.core.cpio import CpioEntry, build_newc
from heads.core.digest import HashAlg
from heads.core.disk_key import crypttab_overrides, format_overrides, parse_overrides
from heads.core.eventlog import (
    EventLog,
    decode_event,
    event_summary,
    parse_cb_table,
    parse_cbmem_text,
    parse_log,
    replay_logs,
)
from heads.core.flash_image import FlashImage, FlashLayout, new_flash_image
from heads.core.fmap import FmapArea
from heads.core.heads_config import parse_config
from heads.core.initrd import read_initrd
from heads.core.manifest import (
    EntryKind,
    HashManifest,
    TreeList,
    check_manifest,
    parse_sha256sum_line,
)
from heads.core.rollback import RollbackBinding, check_rollback
from heads.errors import ExitCode, FormatError

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=100)
T = TypeVar("T")


def _ours_or_result(fn: Callable[[], T]) -> T | None:
    """Run a parser: a FormatError (with a message) is fine, anything else fails the test."""
    message = ""
    try:
        return fn()
    except FormatError as exc:
        message = exc.message
    assert message
    return None


# --- mutation ---------------------------------------------------------------------------------

_INT_FIELDS = (b"\0\0\0\0", b"\xff\xff\xff\xff", b"\xfe\xff\xff\x7f", b"\x00\x00\x00\x01",
               b"\x01\x00\x00\x00", b"\x20\x00\x00\x00", b"\x00\x10\x00\x00")  # fmt: skip


_WORD = re.compile(rb"[^\s\[\]{}\"',:;=|]+")


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], tokens: Sequence[bytes] = ()) -> bytes:
    """One of ``seeds``, damaged by a few edits.

    Bytes anywhere: flipped, a 32-bit field set to an edge value, ranges deleted, repeated,
    spliced in from another seed, the end cut off.  For text formats (``tokens`` given) the
    edits also respect the text's shape, or they would rarely get past the first line: a word
    replaced by a token, a token inserted at the start of a line or anywhere.
    """
    data = bytearray(draw(st.sampled_from(seeds)))
    ops = ["flip", "int", "delete", "repeat", "splice", "cut"]
    if tokens:
        ops += ["word", "word", "line", "insert"]
    for _ in range(draw(st.integers(1, 6))):
        n = len(data)
        op = draw(st.sampled_from(ops))
        pos = draw(st.integers(0, n)) if n else 0
        if op == "flip" and pos < n:
            data[pos] = draw(st.integers(0, 255))
        elif op == "int" and pos + 4 <= n:
            data[pos : pos + 4] = draw(st.sampled_from(_INT_FIELDS))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "repeat" and pos < n:
            chunk = data[pos : pos + draw(st.integers(1, 200))]
            data[pos:pos] = chunk * draw(st.integers(1, 40))
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 2000))]
        elif op == "cut":
            del data[pos:]
        elif op == "word":
            words = [m.span() for m in _WORD.finditer(data)]
            if words:
                start, end = draw(st.sampled_from(words))
                data[start:end] = draw(st.sampled_from(tokens))
        elif op == "line":
            starts = [0, *(m.end() for m in re.finditer(b"\n", data))]
            at = draw(st.sampled_from(starts))
            data[at:at] = draw(st.sampled_from(tokens)) + b"\n"
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(tokens))
    return bytes(data)


def _read_all(paths: Sequence[Path]) -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in sorted(paths))


# Numbers as text, with the edge cases parsers meet: huge ones (Python refuses to convert more
# than 4300 digits), signs, and Unicode digits str.isdigit() accepts but int() may not.
_number = st.one_of(
    st.integers(0, 2**64).map(str),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.sampled_from(["-1", "+1", "0x10", "1_0", " 1", "\u00b2", "\u0663", "\uff11", ""]),
)


# --- event logs -------------------------------------------------------------------------------


@cache
def _binary_logs() -> tuple[bytes, ...]:
    real = [*(TESTDATA / "eventlogs").glob("*.bin"), *(TESTDATA / "eventlogs" / "lab").glob("*")]
    table = cb_table(
        [(2, HashAlg.SHA256, h(HashAlg.SHA256, b"x"), "FMAP: FMAP"),
         (3, HashAlg.SHA1, h(HashAlg.SHA1, b"y"), "CBFS: fallback/payload")],
        pad=True,
    )  # fmt: skip
    return (*_read_all([p for p in real if p.suffix == ".bin"]), table)


@cache
def _text_logs() -> tuple[bytes, ...]:
    cel = b"".join(
        CelRecord(i, i % 24, {HashAlg.SHA256: bytes([i]) * 32, HashAlg.SHA1: bytes([i]) * 20},
                  kind="string", string=f"s{i}", description="d").to_json_line().encode()
        for i in range(4)
    )  # fmt: skip
    return (_fill(CB_TEXT), _fill(TCPA_TEXT), _fill(TPM2_TEXT), cel)


_LOG_TOKENS = (b"\n", b"{", b"}", b"[", b"]", b'"', b"\\", b"\\u0000", b"\\ud800", b"9" * 5000,
               b"1e999", b"NaN", b"PCR-4294967295 ", b"TPM2 log entry 1:\n", b"\tPCR: 99\n",
               b"\t\t SHA256: ", b"00" * 32, b"\xff\xfe", b"4294967295", b"-1",
               "\u00b2".encode(), "\u0663".encode())  # fmt: skip


def _check_log(log: EventLog) -> None:
    """What `heads pcr replay|log` does with a parsed log must not fail either."""
    replay = replay_logs([log])
    json.dumps(replay.to_json())
    for line in (*replay.notices, *(str(m) for m in replay.mismatches)):
        line.encode("utf-8")
    for ev in log.events:
        json.dumps(decode_event(ev))
        event_summary(ev).encode("utf-8")


def _parse_every_way(data: bytes) -> None:
    for fmt in ("auto", "tcg", "coreboot", "cel"):
        log = _ours_or_result(partial(parse_log, data, "fuzz.log", fmt))
        if log is not None:
            _check_log(log)


@FUZZ
@given(mutated(_binary_logs()))
def test_damaged_binary_logs(data: bytes) -> None:
    _parse_every_way(data)
    _ours_or_result(lambda: parse_cb_table(data))


@FUZZ
@given(mutated(_text_logs(), _LOG_TOKENS))
def test_damaged_text_logs(data: bytes) -> None:
    _parse_every_way(data)
    _ours_or_result(lambda: parse_cbmem_text(data))
    records = _ours_or_result(lambda: parse_cel(data))
    for record in records or ():
        assert parse_cel(record.to_json_line().encode()) == [record]


_hex = st.one_of(
    st.sampled_from([20, 32, 48, 64]).map(lambda n: "ab" * n), st.text("0123456789abcdefXY ")
)
_cbmem_types = st.sampled_from(["Action", "No action", "Separator", "Unknown (0x80000008 >= 19)",
                                "Unknown (0xffffffff >= 19)", "Bogus"])  # fmt: skip


@st.composite
def _cbmem_text(draw: st.DrawFn) -> bytes:
    """`cbmem -L` output in any of its three formats, fields drawn from edge values."""
    kind = draw(st.sampled_from(["coreboot TPM log:", "TCPA log:", "TPM2 log:"]))
    out = [kind, ""]
    for i in range(draw(st.integers(0, 4))):
        if kind == "coreboot TPM log:":
            alg = draw(st.sampled_from(["SHA256", "SHA1", "SHA512", "MD5", ""]))
            out.append(f" PCR-{draw(_number)} {draw(_hex)} {alg} [{draw(st.text(max_size=9))}]")
            continue
        out += [f"{kind.split()[0]} log entry {i + 1}:", f"\tPCR: {draw(_number)}",
                f"\tEvent type: {draw(_cbmem_types)}"]  # fmt: skip
        if kind == "TCPA log:":
            out.append(f"\tDigest: {draw(_hex)}")
        else:
            out.append("\tDigests:")
            for alg in draw(st.lists(st.sampled_from(["SHA256", "SHA1", "SM3", "X"]), max_size=3)):
                out.append(f"\t\t {alg}: {draw(_hex)}")
        out.append(f"\tEvent data: {draw(st.text(max_size=12))}")
    return "\n".join(out).encode("utf-8", "surrogatepass")


@FUZZ
@given(_cbmem_text())
def test_generated_cbmem_text(data: bytes) -> None:
    _parse_every_way(data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "recnum": st.integers(-2, 2**70) | _json,
        "pcr": st.integers(-1, 30) | _json,
        "digests": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "hashAlg": st.sampled_from(["sha1", "sha256", "SHA-384", "sm3_256", "md5"])
                    | _json,
                    "digest": st.sampled_from(["00" * 20, "11" * 32, "22" * 48, "zz"]) | _json,
                },
            ),
            max_size=3,
        )
        | _json,
        "content_type": st.sampled_from(["heads", "other"]) | _json,
        "content": st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["string", "file", "digest", "x"]) | _json,
                "string": _json,
                "path": _json,
                "description": _json,
            },
        )
        | _json,
    },
)


@FUZZ
@given(st.lists(_fields, min_size=1, max_size=4))
def test_cel_records_of_any_json_shape(records: list[dict[str, object]]) -> None:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    log = _ours_or_result(lambda: parse_log(data, "m.cel", "cel"))
    if log is not None:
        _check_log(log)


@settings(
    FEW, suppress_health_check=[*FEW.suppress_health_check, HealthCheck.function_scoped_fixture]
)  # capsys: read each time
@given(data=st.one_of(mutated(_binary_logs()), mutated(_text_logs(), _LOG_TOKENS)))
def test_pcr_log_and_replay_commands_on_damaged_logs(
    data: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.log"
        path.write_bytes(data)
        for command in (["log", "--json"], ["log"], ["replay"]):
            status = main(["pcr", *command, str(path)])
            captured = capsys.readouterr()
            assert status in (ExitCode.OK, ExitCode.ERROR), captured.err
            assert "Traceback" not in captured.err


# --- boot configurations ------------------------------------------------------------------------


@cache
def _configs() -> dict[str, tuple[bytes, ...]]:
    root = TESTDATA / "bootconfigs"
    every = [p for p in root.rglob("*") if p.is_file()]
    return {
        "grub": _read_all([p for p in every if p.name in ("grub.cfg", "loopback.cfg")]),
        "syslinux": _read_all(
            [
                p
                for p in every
                if p.name.endswith("linux.cfg") or p.name in ("menu.cfg", "stdmenu.cfg")
            ]
        ),
        "bls": _read_all([p for p in every if p.suffix == ".conf"]),
        "lines": tuple(
            line
            for p in sorted(root.glob("heads-reference/*.txt"))
            for line in p.read_bytes().splitlines()
        ),
    }


def _all_configs() -> tuple[bytes, ...]:
    return tuple(c for key in ("grub", "syslinux", "bls") for c in _configs()[key])


_CFG_TOKENS = (b"{", b"}", b" { ", b"}\n", b"\n", b";", b"'", b'"', b"\\", b"\\\n", b"$", b"${",
               b"${x}", b"$@", b"#", b"\0", b"\xff", b"if ", b"then ", b"elif ", b"else ", b"fi ",
               b"for x in a; do ", b"done ", b"function f ", b"f\n", b"menuentry 'x' { ",
               b"hiddenentry 'h' {\n", b"submenu 's' { ", b"frob --x {\n", b"source /g.cfg\n",
               b"configfile /grub/grub.cfg\n", b"blscfg\n", b"load_env\n", b"[ ", b"! ", b"( ",
               b" ]", b"set x=$x$x$x$x\n", b"linux /k ", b"initrd ", b"label ", b"include ",
               b"menu begin ", b"menu end\n", b"append initrd=", b"kernel mboot.c32 ", b" --- ",
               b"options ", b"title ", b"version ", b"9" * 5000, b"$" + b"9" * 5000,
               "\u00b2".encode())  # fmt: skip


def _tree(data: bytes) -> MemoryTree:
    return MemoryTree(
        {
            "/grub/grub.cfg": data,
            "/g.cfg": data[: len(data) // 2],
            "/grub/grubenv": b"# GRUB Environment Block\nkernelopts=" + data[:60] + b"\n",
            "/isolinux/isolinux.cfg": data,
            "/loader/entries/a.conf": data,
            "/loader/entries/b.conf": b"title B\nversion 6.1.0-1.fc40\nlinux /k\n",
            "/k": b"",
        }
    )


def _check_entries(entries: Sequence[BootEntry]) -> None:
    for entry in entries:
        assert parse_entry_line(entry.to_line()) == entry


@FUZZ
@given(mutated(_all_configs(), _CFG_TOKENS))
def test_damaged_configurations_in_every_parser(data: bytes) -> None:
    tree = _tree(data)
    grub = _ours_or_result(lambda: parse_grub(tree, "/grub/grub.cfg"))
    if grub is not None:
        _check_entries(grub.entries)
    sys_result = _ours_or_result(lambda: parse_syslinux(tree, "/isolinux/isolinux.cfg"))
    if sys_result is not None:
        _check_entries(sys_result.entries)
    legacy = _ours_or_result(lambda: parse_grub_legacy(tree, "/grub/grub.cfg"))
    if legacy is not None:
        _check_entries(legacy.entries)
    _ours_or_result(lambda: parse_bls_entry(data, "/loader/entries/a.conf", {"x": "y"}))
    bls = parse_bls(tree)  # a broken entry file is a problem, never an error
    _check_entries(bls.entries)
    found = discover_entries(tree, require_files=False)
    _check_entries(found.entries)


_version = st.lists(st.one_of(_number, st.sampled_from(["fc40", "x86_64", "rc", "~", "."])),
                   min_size=1, max_size=5).map(".".join)  # fmt: skip


@FUZZ
@given(st.lists(st.tuples(_version, st.sampled_from(["", "sort-key a", "machine-id m"])),
                min_size=1, max_size=5))  # fmt: skip
def test_generated_bls_entries_sort_by_any_version(entries: list[tuple[str, str]]) -> None:
    tree = MemoryTree(
        {
            f"/loader/entries/e{i}-{version[:50]}.conf": (
                f"title T{i}\nversion {version}\n{extra}\nlinux /k\ninitrd /k $tuned_initrd\n"
            ).encode()
            for i, (version, extra) in enumerate(entries)
        }
    )
    result = parse_bls(tree)
    assert len(result.entries) == len(entries)
    assert all(e.initrds == ("/k",) for e in result.entries)


@FUZZ
@given(mutated(_configs()["grub"], _CFG_TOKENS))
def test_damaged_grub_text_tokenizes_with_recovery(data: bytes) -> None:
    text = data.decode("utf-8", "replace").replace("\0", "")
    tokens = tokenize(text, "grub.cfg", recover=True)  # never raises below MAX_TOKENS
    assert tokens[-1].kind is TokenKind.SEPARATOR
    strict = _ours_or_result(lambda: tokenize(text, "grub.cfg"))
    if strict is not None:
        assert strict == tokens


@settings(FEW, suppress_health_check=[*FEW.suppress_health_check,
                                       HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=mutated(_all_configs(), _CFG_TOKENS))
def test_boot_list_on_damaged_configurations(
    data: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        boot = Path(tmp)
        for name in ("grub/grub.cfg", "isolinux/isolinux.cfg", "loader/entries/a.conf"):
            (boot / name).parent.mkdir(parents=True, exist_ok=True)
            (boot / name).write_bytes(data)
        (boot / "k").write_bytes(b"")
        for extra in (["--json"], ["--all"]):
            status = main(["boot", "list", str(boot), *extra])
            captured = capsys.readouterr()
            assert status in (ExitCode.OK, ExitCode.ERROR), captured.err
            assert "Traceback" not in captured.err


# GRUB scripts built from the language's constructs, nested to any depth.
_word = st.one_of(
    st.sampled_from(["a", "'t t'", '"$x"', "$1", "${y}", "/k", "--class", "x=1", "!", "(", "-n",
                     "-e", "-eq", "/grub/a.cfg", "=", "]"]),
    _number,
    _number.map(lambda n: "$" + n),
)  # fmt: skip
_simple = st.one_of(
    st.builds(lambda w: "set " + " ".join(w), st.lists(st.sampled_from(["x=$x$x", "y=/k", "z="]))),
    st.builds(lambda w: "linux /k " + " ".join(w), st.lists(_word, max_size=4)),
    st.builds(lambda w: "initrd " + " ".join(w), st.lists(_word, max_size=3)),
    st.sampled_from(
        [
            "source /grub/a.cfg",
            "configfile /grub/grub.cfg",
            "source /grub/b.cfg",
            "load_env",
            "blscfg",
            "f",
            "f a b",
            "g",
            "unknown_cmd",
            "search -f /k",
            "[ -e /k ]",
            "true",
            "false",
            "}",
            "fi",
            "done",
            "{",
            "echo 'open",
            "echo ${a-b}",
        ]
    ),
    st.builds(lambda w: "[ " + " ".join(w) + " ]", st.lists(_word, max_size=8)),
)


def _block(keyword: str) -> Callable[[list[str]], str]:
    return lambda body: f"{keyword} {{\n" + "\n".join(body) + "\n}"


_script = st.recursive(
    _simple,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_block("menuentry 'm' --class c")),
        st.lists(inner, max_size=4).map(_block("hiddenentry 'h'")),
        st.lists(inner, max_size=4).map(_block("submenu 's'")),
        st.lists(inner, max_size=4).map(_block("function f")),
        st.lists(inner, max_size=4).map(_block("function g")),
        st.lists(inner, max_size=4).map(_block("frobnicate --x y")),
        st.tuples(st.lists(inner, max_size=2), st.lists(inner, max_size=3)).map(
            lambda cb: "if " + "; ".join(cb[0] or ["true"]) + "; then\n" + "\n".join(cb[1]) + "\nfi"
        ),
        st.lists(inner, max_size=3).map(lambda b: "for x in a b; do\n" + "\n".join(b) + "\ndone"),
    ),
    max_leaves=25,
)


@FUZZ
@given(st.lists(_script, max_size=8), st.lists(_script, max_size=4))
def test_generated_grub_scripts_keep_an_entry_defined_before_them(
    main_cfg: list[str], other: list[str]
) -> None:
    sentinel = "menuentry sentinel { linux /sentinel }\n"
    tree = MemoryTree(
        {
            "/grub/grub.cfg": (sentinel + "\n".join(main_cfg)).encode(),
            "/grub/a.cfg": "\n".join(other).encode(),
            "/grub/b.cfg": "\n".join(main_cfg[:2]).encode(),
            "/loader/entries/e.conf": b"title E\nlinux /k\ninitrd $x /k\n",
        }
    )
    result = parse_grub(tree, "/grub/grub.cfg")  # valid text: never an error
    assert result.entries[0].title == "sentinel"
    assert all((HIDDEN_NOTE in e.notes) == e.hidden for e in result.entries)
    _check_entries(result.entries)


_LINE_TOKENS = (b"|", b"|elf|", b"|xen|", b"kernel ", b"initrd ", b"module ", b"append ", b",",
                b"\r", b"\0", b" ")  # fmt: skip


@FUZZ
@given(mutated(_configs()["lines"], _LINE_TOKENS))
def test_damaged_boot_entry_lines(data: bytes) -> None:
    line = data.decode("utf-8", "surrogateescape")
    entry = _ours_or_result(lambda: parse_entry_line(line, source="kexec_default.1.txt"))
    if entry is not None:
        assert parse_entry_line(entry.to_line()) == entry


# --- signed /boot files (core/manifest.py, core/rollback.py) -----------------------------------


@cache
def _manifests() -> tuple[bytes, ...]:
    digests = {b"vmlinuz": b"\1" * 32, b"grub/grub.cfg": b"\2" * 32, b"a b/c": b"\3" * 32}
    legacy = b"".join(d.hex().encode() + b"  /boot/" + p + b"\n" for p, d in digests.items())
    return (
        HashManifest.build(digests).to_bytes(),
        legacy,
        TreeList.build(digests).to_bytes(),
        RollbackBinding.for_counter(0x01A2B3C4, 41).to_bytes(),
    )


_MANIFEST_TOKENS = (b"\n", b"\0", b"  ", b" *", b"./", b"/boot/", b"../", b"//", b"\\", b"0" * 64,
                    b"counter-", b"ffffffffff", b"\xff")  # fmt: skip


@FUZZ
@given(mutated(_manifests(), _MANIFEST_TOKENS), st.integers(0, 2**64 - 1))
def test_damaged_signed_boot_files(data: bytes, tpm_value: int) -> None:
    hashes = _ours_or_result(lambda: HashManifest.from_bytes(data))
    if hashes is not None:
        assert hashes.to_bytes() == data
        digests = hashes.digests()
        scan = dict.fromkeys(digests, EntryKind.FILE)
        assert check_manifest(hashes, None, scan, digests).all_ok
    tree = _ours_or_result(lambda: TreeList.from_bytes(data))
    if tree is not None:
        assert tree.to_bytes() == data
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        _ours_or_result(partial(parse_sha256sum_line, line, source="x", lineno=lineno))
    binding = _ours_or_result(lambda: RollbackBinding.from_bytes(data))
    if binding is not None:
        assert binding.to_bytes() == data
        assert 0 <= binding.nv_index <= 0xFFFFFFFF
        check_rollback(binding, tpm_value).describe()


# --- CBFS ---------------------------------------------------------------------------------------


@cache
def _images() -> tuple[bytes, ...]:
    files = [
        CbfsFile("heads/initrd/.gnupg/pubring.kbx", os.urandom(700)),
        CbfsFile("heads/initrd/etc/config.user", b"CONFIG_BOOT_KERNEL_ADD=quiet\n"),
        CbfsFile("x" * 200, b""),
    ]
    return (build_cbfs(files, size=0x4000), build_cbfs(files[1:], size=0x1000))


@FUZZ
@given(mutated(_images(), (b"LARCHIVE", b"ORBC", b"LZCB", b"\0" * 24, b"\xff" * 64)))
def test_damaged_cbfs_images(data: bytes) -> None:
    files = _ours_or_result(lambda: parse_cbfs(data, source="user.rom"))
    for f in files or ():
        assert 0 <= f.offset < len(data)
        assert len(f.data) <= len(data)


@FEW
@given(st.binary(min_size=1, max_size=40), st.integers(0, 0x3FFF))
def test_cbfs_with_a_header_written_anywhere(header: bytes, pos: int) -> None:
    image = bytearray(_images()[0])
    image[pos : pos + len(header)] = b"LARCHIVE" + header
    with contextlib.suppress(FormatError):
        parse_cbfs(bytes(image[:0x4000]))


# --- firmware images and configuration -----------------------------------------------------


@cache
def _flash_images() -> tuple[bytes, ...]:
    layout = FlashLayout(0x8000, (FmapArea("FMAP", 0, 0x200), FmapArea("COREBOOT", 0x200, 0x7E00)))
    files = [
        make_file(
            "heads/initrd/etc/config.user", b"export CONFIG_TPM=y\n", hash_algorithm=HASH_SHA256
        ),
        make_file("payload/initrd", b"initrd " * 400, compression=COMPRESS_LZMA),
        make_file("board", b"qemu\n"),
    ]
    return (new_flash_image(layout).with_files(files).data, build_cbfs(files, size=0x4000))


@FUZZ
@given(mutated(_flash_images(), (b"__FMAP__", b"LARCHIVE", b"BCZL", b"hsaH", b"\xff" * 64)))
def test_damaged_flash_images(data: bytes) -> None:
    image = _ours_or_result(lambda: FlashImage.from_bytes(data, source="evil.rom"))
    for f in image.files() if image is not None else ():
        content = _ours_or_result(partial(f.content, source="evil.rom"))
        assert content is None or len(content) == f.decompressed_size


@FUZZ
@given(
    mutated(
        (b"export CONFIG_A=\"1\"\nCONFIG_B='x y'\n# c\nexport CONFIG_C=a\\ b\n",),
        (b"$", b"`", b"'", b'"', b"\\", b";", b"\n", b"export ", b"#"),
    )
)
def test_damaged_config_files(data: bytes) -> None:
    config = _ours_or_result(lambda: parse_config(data, source="config.user"))
    if config is not None:
        assert config.to_bytes() == data


# --- OS initrds and their crypttab files --------------------------------------------------


@cache
def _initrds() -> tuple[bytes, ...]:
    main_archive = build_newc(
        [
            CpioEntry.file("etc/crypttab", b"a UUID=1 none luks\n# c\n"),
            CpioEntry.file("cryptroot/crypttab", b"b\t/dev/sda2\n"),
        ],
        mtime=0,
    )
    early = build_newc([CpioEntry.file("kernel/x86/microcode/A.bin", b"\1" * 64)], mtime=0)
    return (
        main_archive,
        early + bytes(-len(early) % 512) + gzip.compress(main_archive, mtime=0),
        lzma.compress(main_archive, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
        lzma.compress(main_archive, format=lzma.FORMAT_ALONE),
    )


@FUZZ
@given(mutated(_initrds(), (b"070701", b"TRAILER!!!\0", b"\x1f\x8b", b"\xfd7zXZ\0", b"\0" * 16)))
def test_damaged_initrds_and_their_crypttabs(data: bytes) -> None:
    contents = _ours_or_result(lambda: read_initrd(data, source="initrd.img"))
    if contents is None:
        return
    files = [(m.name, m.data) for m in contents.members if "crypttab" in m.name]
    overrides = _ours_or_result(lambda: crypttab_overrides(files, source="initrd.img"))
    if overrides:
        assert parse_overrides(format_overrides(overrides)) == overrides


def test_mutation_reaches_past_the_first_check() -> None:
    """The mutations are small enough that most damaged inputs still parse in part."""
    seeds = _binary_logs()
    parsed = 0
    for i, seed in enumerate(seeds):
        damaged = bytearray(seed)
        damaged[len(damaged) // 2 + i] ^= 0x55
        with contextlib.suppress(FormatError):
            parse_log(bytes(damaged), "x")
            parsed += 1
    assert parsed >= len(seeds) // 2
    tail = struct.pack("<I", 0xFFFFFFFF)
    assert _ours_or_result(lambda: parse_log(seeds[0] + tail, "x")) is not None
