"""GRUB tokenizer and evaluator: syntax, variables, conditions, includes, hostile input."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.bootcfg.entry import EntryKind, MultibootModule
from heads.core.bootcfg.grub import (
    MAX_EVAL_DEPTH,
    MAX_INCLUDE_DEPTH,
    MAX_STEPS,
    GrubContext,
    GrubResult,
    parse_grub,
    parse_grubenv,
)
from heads.core.bootcfg.grub_lexer import (
    Literal,
    Token,
    TokenKind,
    VarRef,
    decode_config,
    tokenize,
)
from heads.core.bootcfg.tree import MemoryTree
from heads.errors import FormatError


def _format_error(fn: Callable[[], object]) -> FormatError | None:
    try:
        fn()
    except FormatError as exc:
        return exc
    return None


def words(text: str) -> list[list[object]]:
    out: list[list[object]] = []
    for tok in tokenize(text):
        if tok.kind is TokenKind.WORD:
            out.append(list(tok.parts))
    return out


def grub(cfg: str, files: dict[str, bytes] | None = None, **ctx: str) -> GrubResult:
    tree = MemoryTree({"/grub/grub.cfg": cfg.encode(), **(files or {})})
    return parse_grub(tree, "/grub/grub.cfg", GrubContext(**ctx))


# --- tokenizer ------------------------------------------------------------------------------


def test_quotes_escapes_and_variables_become_parts() -> None:
    assert words("""a 'b c' "d $x e" f\\ g ${y}z \\$w""") == [
        [Literal("a", False)],
        [Literal("b c", True)],
        [Literal("d ", True), VarRef("x", True), Literal(" e", True)],
        [Literal("f", False), Literal(" ", True), Literal("g", False)],
        [VarRef("y", False), Literal("z", False)],
        [Literal("$", True), Literal("w", False)],
    ]


def test_backslash_before_ordinary_character_is_kept() -> None:
    assert words("LABEL=CentOS\\x207") == [[Literal("LABEL=CentOS\\x207", False)]]


def test_comments_separators_and_continuations() -> None:
    tokens = tokenize("a # comment\nb;c \\\n d\n'multi\nline' e#f")
    kinds = [(t.kind.value, t.line, t.source_text()) for t in tokens]
    assert kinds == [
        ("word", 1, "a"),
        ("separator", 1, ""),
        ("word", 2, "b"),
        ("separator", 2, ""),
        ("word", 2, "c"),
        ("word", 3, "d"),
        ("separator", 3, ""),
        ("word", 4, "multi\nline"),
        ("word", 5, "e#f"),
        ("separator", 5, ""),
    ]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a\nb 'open", 2, "unterminated single quote"),
        ('a\n\n"open $x', 3, "unterminated double quote"),
        ("echo ${x", 1, "unterminated ${"),
        ("echo ${a-b}", 1, "bad variable name"),
    ],
)
def test_tokenizer_errors_name_the_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(FormatError) as err:
        tokenize(text, "cfg")
    assert err.value.line == line
    assert reason in err.value.message


def test_nul_bytes_and_invalid_utf8_are_format_errors_with_offsets() -> None:
    with pytest.raises(FormatError) as err:
        decode_config(b"set a=1\nset b=\0\n", "/grub/grub.cfg")
    assert (err.value.line, err.value.offset) == (2, 14)
    with pytest.raises(FormatError) as err:
        decode_config(b"ok\n\xff\xfe", "/grub/grub.cfg")
    assert (err.value.line, err.value.offset) == (2, 3)
    assert "UTF-8" in err.value.message


def test_recovering_tokenizer_leaves_an_error_token_and_goes_on() -> None:
    tokens = tokenize("a ${x-y} b\nc\nd 'open\ne", "cfg", recover=True)
    assert [(t.kind.value, t.line, t.source_text() or t.error) for t in tokens] == [
        ("word", 1, "a"),
        ("error", 1, "bad variable name 'x-y'"),
        ("separator", 1, ""),
        ("word", 2, "c"),
        ("separator", 2, ""),
        ("word", 3, "d"),
        ("error", 3, "unterminated single quote"),
        ("separator", 3, ""),
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_tokenizer_never_fails_other_than_format_error(text: str) -> None:
    tokens: list[Token] = []
    err = _format_error(lambda: tokens.extend(tokenize(text)))
    if err is not None:
        assert err.line is not None
    else:
        assert tokens[-1].kind is TokenKind.SEPARATOR


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_a_result_or_format_error(data: bytes) -> None:
    tree = MemoryTree({"/grub/grub.cfg": data})
    err = _format_error(lambda: parse_grub(tree, "/grub/grub.cfg"))
    assert err is None or err.source is not None


_grubby = st.lists(
    st.sampled_from(
        [
            "if", "then", "elif", "else", "fi", "{", "}", "menuentry", "submenu", "function",
            "f", "'t'", "linux", "/k", "initrd", "/i", "set", "a=$a$a", "[", "]", "-n", "$a",
            "source", "/grub/grub.cfg", "\n", ";", "for", "do", "done", "f", "x=1", '"',
        ]
    ),
    max_size=60,
).map(" ".join)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_grubby)
def test_grub_shaped_noise_gives_a_result_or_format_error(text: str) -> None:
    err = _format_error(lambda: grub(text))
    assert err is None or (err.source or "").startswith("/grub")


# --- evaluation -----------------------------------------------------------------------------


def test_menuentry_linux_initrd_and_device_prefixes() -> None:
    result = grub(
        """
        menuentry 'Debian' --class debian $menuentry_id_option 'gnulinux-1' {
            linux (hd0,gpt2)/vmlinuz-6.1 root=/dev/sda2 ro  quiet
            initrd (hd0,gpt2)/intel-ucode.img /initrd.img-6.1
        }
        """
    )
    (entry,) = result.entries
    assert entry.title == "Debian"
    assert entry.kernel == "/vmlinuz-6.1"
    assert entry.initrds == ("/intel-ucode.img", "/initrd.img-6.1")
    assert entry.cmdline == "root=/dev/sda2 ro quiet"
    assert entry.source is not None
    assert (entry.source.file, entry.source.line) == ("/grub/grub.cfg", 2)


def test_variables_if_elif_else_and_functions() -> None:
    result = grub(
        """
        set opts="quiet splash"
        if [ "$grub_platform" = "efi" ]; then
            set gfx=efi
        elif [ x$grub_platform = xpc -a -n "$opts" ]; then
            set gfx=pc
        else
            set gfx=other
        fi
        function add { set opts="$opts $1" }
        add extra=1
        menuentry "Linux ($gfx)" { linux /vmlinuz $opts gfx=${gfx} }
        """
    )
    (entry,) = result.entries
    assert entry.title == "Linux (pc)"
    assert entry.cmdline == "quiet splash extra=1 gfx=pc"
    assert entry.notes == ()


def test_entry_bodies_see_the_variables_as_they_stand_at_the_end() -> None:
    # GRUB runs an entry's body when it is chosen, after the whole file ran.
    result = grub("menuentry a { linux /k $late }\nset late=yes")
    assert result.entries[0].cmdline == "yes"


def test_conditions_on_the_machine_keep_both_branches_and_say_so() -> None:
    result = grub(
        """
        if loadfont unicode; then set mode=gfx; else set mode=text; fi
        if hwmatch /x 3; then
            menuentry 'only with hw' { linux /k }
        fi
        menuentry 'uses mode' { linux /k mode=$mode }
        """
    )
    conditional, uses_mode = result.entries
    assert any("hwmatch" in note and "depends on the machine" in note for note in conditional.notes)
    assert uses_mode.cmdline == "mode=text"
    assert any("$mode" in note for note in uses_mode.notes)


def test_file_tests_use_the_tree() -> None:
    cfg = """
        if [ -f /boot/memtest ]; then menuentry present { linux /boot/memtest }; fi
        if [ -e /nothing ]; then menuentry absent { linux /nothing }; fi
        if [ -d /boot ]; then menuentry dir { linux /k }; fi
        if [ -s /boot/empty ]; then menuentry empty { linux /k }; fi
    """
    result = grub(cfg, {"/boot/memtest": b"x", "/boot/empty": b""})
    assert [e.title for e in result.entries] == ["present", "dir"]


def test_submenus_and_multiboot_xen_entries() -> None:
    result = grub(
        """
        submenu 'Advanced' {
          submenu 'Xen' {
            menuentry 'Qubes' {
              multiboot2 /xen.gz placeholder console=none
              module2 /vmlinuz-6.6 placeholder root=/dev/x ro
              module2 --nounzip /initramfs-6.6.img
            }
          }
        }
        """
    )
    (entry,) = result.entries
    assert entry.submenu == ("Advanced", "Xen")
    assert entry.kind is EntryKind.XEN
    assert entry.kernel == "/xen.gz"
    assert entry.cmdline == "placeholder console=none"
    assert entry.modules == (
        MultibootModule("/vmlinuz-6.6", "placeholder root=/dev/x ro"),
        MultibootModule("/initramfs-6.6.img"),
    )
    assert entry.display_title == "Advanced > Xen > Qubes"


def test_unknown_commands_are_counted_and_unbootable_entries_dropped() -> None:
    result = grub(
        """
        frobnicate 1; frobnicate 2; insmod ext2
        menuentry 'Windows' { chainloader /EFI/Microsoft/bootmgfw.efi }
        menuentry 'Empty' { echo hi }
        menuentry 'Linux' { linux /k }
        """
    )
    assert result.skipped_commands == {"frobnicate": 2}
    assert [e.title for e in result.entries] == ["Linux"]
    reasons = {d.title: d.reason for d in result.dropped}
    assert "chainloader" in reasons["Windows"]
    assert reasons["Empty"] == "no linux or multiboot command"


def test_relative_paths_follow_the_config_directory_and_escapes_are_refused() -> None:
    result = grub(
        """
        menuentry rel { linux vmlinuz }
        menuentry out { linux /../../etc/shadow }
        menuentry pipe { linux "/a|b" }
        """
    )
    assert result.entries[0].kernel == "/grub/vmlinuz"
    reasons = {d.title: d.reason for d in result.dropped}
    assert "climbs out" in reasons["out"]
    assert "'|'" in reasons["pipe"]


def test_load_env_reads_grubenv_beside_the_config() -> None:
    env = b"# GRUB Environment Block\nkernelopts=root=/dev/vda2 ro\nsaved_entry=x\n" + b"#" * 900
    result = grub(
        "if [ -s $prefix/grubenv ]; then load_env; fi\nmenuentry a { linux /k $kernelopts }",
        {"/grub/grubenv": env},
    )
    assert result.entries[0].cmdline == "root=/dev/vda2 ro"
    assert parse_grubenv(env, "grubenv")["saved_entry"] == "x"


def test_blscfg_pulls_in_bls_entries_with_kernelopts() -> None:
    bls = (
        b"title Fedora\nversion 6.5\nlinux /vmlinuz-6.5\ninitrd /initramfs-6.5.img\n"
        b"options $kernelopts rhgb\n"
    )
    result = grub(
        'set kernelopts="root=UUID=abc ro"\nblscfg',
        {"/loader/entries/abc-6.5.conf": bls},
    )
    (entry,) = result.entries
    assert entry.cmdline == "root=UUID=abc ro rhgb"
    assert entry.initrds == ("/initramfs-6.5.img",)


def test_search_keeps_paths_on_the_boot_partition_or_drops_foreign_ones() -> None:
    cfg = """
        search --no-floppy --fs-uuid --set=root 1111
        menuentry here { linux ($root)/vmlinuz }
        search --no-floppy --fs-uuid --set=other 2222
        menuentry there { linux ($other)/vmlinuz }
    """
    unknown = grub(cfg)
    assert [e.kernel for e in unknown.entries] == ["/vmlinuz", "/vmlinuz"]
    known = grub(cfg, boot_uuid="1111")
    assert [e.title for e in known.entries] == ["here"]
    assert "another device" in known.dropped[0].reason


def test_search_fs_uuid_short_form_sets_the_named_variable() -> None:
    cfg = "search.fs_uuid 2222 other\nmenuentry there { linux ($other)/vmlinuz }"
    assert grub(cfg, boot_uuid="1111").dropped[0].reason.startswith("kernel")
    assert grub(cfg, boot_uuid="2222").entries[0].kernel == "/vmlinuz"


def test_source_reads_other_files_and_reports_missing_ones() -> None:
    result = grub(
        "source /grub/more.cfg\nsource /grub/missing.cfg",
        {"/grub/more.cfg": b"menuentry more { linux /k }"},
    )
    assert [e.title for e in result.entries] == ["more"]
    assert "/grub/more.cfg" in result.files_read
    assert any("missing.cfg does not exist" in p for p in result.problems)


# --- hostile input --------------------------------------------------------------------------


def test_an_include_loop_is_reported_and_the_entries_before_it_stay() -> None:
    result = grub(
        "menuentry a { linux /a }\nsource /grub/more.cfg\nmenuentry c { linux /c }",
        {"/grub/more.cfg": b"menuentry b { linux /b }\n\nconfigfile /grub/grub.cfg\n"},
    )
    assert [e.title for e in result.entries] == ["a", "b", "c"]
    (problem,) = result.problems
    assert problem == (
        "/grub/more.cfg:3: /grub/grub.cfg is already being read (include loop /grub/grub.cfg "
        "-> /grub/more.cfg -> /grub/grub.cfg); not read again"
    )


def test_includes_nested_too_deep_are_reported() -> None:
    files = {f"/grub/l{i}.cfg": f"source /grub/l{i + 1}.cfg".encode() for i in range(20)}
    result = grub("menuentry a { linux /a }\nsource /grub/l0.cfg", files)
    assert [e.title for e in result.entries] == ["a"]
    assert result.problems == (
        f"/grub/l6.cfg:1: /grub/l7.cfg would be included more than {MAX_INCLUDE_DEPTH} deep; "
        "not read",
    )


def test_a_broken_sourced_file_costs_only_itself() -> None:
    result = grub(
        "source /grub/bad.cfg\nmenuentry a { linux /a }",
        {"/grub/bad.cfg": b"menuentry b { linux /b\xff }"},
    )
    assert [e.title for e in result.entries] == ["a"]
    assert result.problems == (
        "/grub/bad.cfg, line 1, byte offset 22: invalid UTF-8 (invalid start byte)",
    )


def test_recursive_function_is_reported_and_costs_only_its_call() -> None:
    result = grub("function f { f }\nf\nmenuentry a { linux /a }")
    assert [e.title for e in result.entries] == ["a"]
    (problem,) = result.problems
    assert "function calls nested deeper than" in problem
    assert "recursive f" in problem


def test_exponential_variable_growth_is_reported() -> None:
    result = grub(
        'set a=xxxxxxxxxxxxxxxx\nfunction d { set a="$a$a"; d }\nd\nmenuentry a { linux /a }'
    )
    assert [e.title for e in result.entries] == ["a"]
    assert result.problems
    assert all(re.search(r"grows beyond|expands to more than|nested deeper", p)
               for p in result.problems)  # fmt: skip


def test_many_steps_are_bounded_and_the_entries_so_far_kept() -> None:
    # Wide rather than deep: 1000 calls of a function that calls 1000 others.
    inner = "function g { true }\nfunction f {" + " g;" * 1000 + " }\n"
    result = grub("menuentry a { linux /a }\n" + inner + "f\n" * 300 + "menuentry b { linux /b }")
    assert [e.title for e in result.entries] == ["a"]
    (problem,) = result.problems
    assert f"more than {MAX_STEPS} commands" in problem


def test_deep_nesting_is_reported() -> None:
    result = grub("menuentry a { linux /a }\n" + "if true; then\n" * 100 + "fi\n" * 100)
    assert [e.title for e in result.entries] == ["a"]
    assert "nested deeper than" in result.problems[0]


def test_deep_nesting_across_functions_and_files_stays_within_bounds() -> None:
    # 32 functions, each with 60 nested ifs, calling the next: far deeper than Python's stack
    # would allow if every level cost its frames.
    cfg = "".join(
        f"function f{i} {{\n" + "if true; then\n" * 60 + f"f{i + 1}\n" + "fi\n" * 60 + "}\n"
        for i in range(32)
    )
    files = {
        f"/grub/s{i}.cfg": (
            "if true; then\n" * 60 + f"source /grub/s{i + 1}.cfg\n" + "fi\n" * 60
        ).encode()
        for i in range(8)
    }
    result = grub(cfg + "f0\nsource /grub/s0.cfg\nmenuentry a { linux /a }", files)
    assert [e.title for e in result.entries] == ["a"]
    assert len(result.problems) == 2
    assert all(f"nested deeper than {MAX_EVAL_DEPTH}" in p for p in result.problems)


@pytest.mark.parametrize("test", ["! " * 20_000 + "x", "( " * 20_000 + "x"])
def test_long_test_expressions_are_undecided_not_a_crash(test: str) -> None:
    result = grub(f"if [ {test} ]; then menuentry a {{ linux /a }}; fi")
    assert [e.title for e in result.entries] == ["a"]


@pytest.mark.parametrize(
    ("cfg", "reason", "line"),
    [
        ("\n\nmenuentry a {\n linux /k\n", "unterminated menuentry", 3),
        ("if true; then\n echo", "unterminated if", 1),
        ("function f {", "unterminated function f", 1),
        ("fi", "unexpected 'fi'", 1),
        ("}", "unexpected '}'", 1),
        ("{ linux /k }", "unexpected '{'", 1),
        ("menuentry 'x'\nlinux /k", "without '{'", 1),
        ("for x in a b; do echo", "unterminated for", 1),
        ("echo 'open", "unterminated single quote", 1),
        ("echo ${a-b}", "bad variable name", 1),
    ],
)
def test_broken_syntax_is_reported_with_file_and_line(cfg: str, reason: str, line: int) -> None:
    result = grub("menuentry before { linux /b }\n" + cfg)
    assert [e.title for e in result.entries] == ["before"]
    (problem,) = result.problems
    assert problem.startswith(f"/grub/grub.cfg, line {line + 1}: ")
    assert reason in problem


def test_a_broken_command_costs_only_its_line() -> None:
    result = grub(
        "menuentry a { linux /a }\n}\necho ${a-b}\nfi\nmenuentry b { linux /b }\n"
        "menuentry 'x'\nmenuentry c { linux /c }"
    )
    assert [e.title for e in result.entries] == ["a", "b", "c"]
    assert [p.split(": ", 1)[0] for p in result.problems] == [
        "/grub/grub.cfg, line 2",
        "/grub/grub.cfg, line 3",
        "/grub/grub.cfg, line 4",
        "/grub/grub.cfg, line 6",
    ]


def test_a_positional_parameter_of_any_length_is_empty() -> None:
    # `$` and 5000 digits once crashed the lookup (int() refuses more than 4300 digits).
    result = grub(
        f"function f {{ linux /k $1 ${'9' * 5000} $0001 }}\nmenuentry a {{ f x y }}\n"
        f"menuentry b {{ linux /k ${'9' * 5000} }}"
    )
    assert [e.cmdline for e in result.entries] == ["x x", ""]  # $0001 is $1, as in GRUB


def test_hiddenentry_is_listed_and_marked_hidden() -> None:
    # GRUB 2.12 (grub-core/commands/menuentry.c): like menuentry, kept out of the menu.
    result = grub(
        """
        menuentry 'Debian' { linux /vmlinuz }
        hiddenentry 'Rescue' --hotkey r {
            linux /vmlinuz single
        }
        menuentry 'Old' { linux /vmlinuz.old }
        """
    )
    assert [(e.title, e.hidden) for e in result.entries] == [
        ("Debian", False),
        ("Rescue", True),
        ("Old", False),
    ]
    assert result.entries[1].cmdline == "single"
    assert result.entries[1].notes == ("hidden from GRUB's menu (hiddenentry)",)
    assert result.problems == ()


def test_unknown_block_commands_are_skipped_and_reported() -> None:
    result = grub(
        """
        menuentry 'a' { linux /a }
        frobentry 'x' --class y {
            linux /x
            menuentry 'inner' { linux /inner }
        }
        menuentry 'b' {
            linux /b
            sparkle { echo hi }
        }
        """
    )
    assert [e.title for e in result.entries] == ["a", "b"]
    assert result.skipped_commands == {"frobentry": 1, "sparkle": 1}
    assert result.problems == (
        "/grub/grub.cfg:3: block command 'frobentry' is not known; it and its block were skipped",
        "/grub/grub.cfg:9: block command 'sparkle' is not known; it and its block were skipped",
    )


def test_gigantic_file_is_refused() -> None:
    with pytest.raises(FormatError, match="larger than"):
        grub("#" * (2 * 1024 * 1024))


def test_large_valid_file_parses() -> None:
    # The work is bounded by MAX_STEPS and the size caps, not by a clock.
    cfg = "".join(f"menuentry 'e{i}' {{ linux /k{i} a=$x\n initrd /i{i} }}\n" for i in range(3000))
    assert len(grub(cfg).entries) == 3000


def test_expansion_blowup_within_one_command_is_reported() -> None:
    big = "x" * 60_000
    result = grub(f"set a={big}\n\necho {'$a' * 1000}\nmenuentry a {{ linux /a }}")
    assert [e.title for e in result.entries] == ["a"]
    assert result.problems == (
        "/grub/grub.cfg, line 3: command expands to more than 65536 characters",
    )


def test_source_fan_out_is_bounded() -> None:
    files = {f"/grub/l{i}.cfg": (f"source /grub/l{i + 1}.cfg\n" * 10).encode() for i in range(5)}
    result = grub("source /grub/l0.cfg\nmenuentry a { linux /a }", files)
    assert [e.title for e in result.entries] == ["a"]
    assert any("more than 64 source/configfile commands" in p for p in result.problems)
