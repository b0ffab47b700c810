"""`heads boot list` on boot directories whose configurations hold constructs that once cost
every entry: an unknown GRUB block command, GRUB 2.12's hiddenentry, include loops, an unset
variable in a BLS initrd line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heads.cli.main import main

GRUB_CFG = """\
menuentry 'Debian' {
    linux /vmlinuz root=/dev/sda2 ro
    initrd /initrd.img
}
hiddenentry 'Debian (rescue)' --hotkey r {
    linux /vmlinuz root=/dev/sda2 ro single
    initrd /initrd.img
}
frobnicate --fancy {
    menuentry 'inside an unknown block' { linux /vmlinuz }
}
source /grub/loop.cfg
menuentry 'Debian (old)' {
    linux /vmlinuz.old root=/dev/sda2 ro
}
"""


def _boot(tmp_path: Path, files: dict[str, str]) -> Path:
    boot = tmp_path / "boot"
    for name, text in {**files, "vmlinuz": "k", "vmlinuz.old": "o", "initrd.img": "i"}.items():
        (boot / name).parent.mkdir(parents=True, exist_ok=True)
        (boot / name).write_text(text)
    return boot


@pytest.fixture
def grub_boot(tmp_path: Path) -> Path:
    return _boot(
        tmp_path,
        {
            "grub/grub.cfg": GRUB_CFG,
            "grub/loop.cfg": (
                "menuentry 'from loop.cfg' { linux /vmlinuz }\nsource /grub/grub.cfg\n"
            ),
        },
    )


def test_list_keeps_every_entry_around_unknown_blocks_and_include_loops(
    grub_boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "list", str(grub_boot), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(e["title"], e["hidden"]) for e in doc["entries"]] == [
        ("Debian", False),
        ("Debian (rescue)", True),
        ("from loop.cfg", False),
        ("Debian (old)", False),
    ]
    assert doc["entries"][1]["cmdline"] == "root=/dev/sda2 ro single"
    assert doc["problems"] == [
        "/grub/grub.cfg:9: block command 'frobnicate' is not known; it and its block were skipped",
        "/grub/loop.cfg:2: /grub/grub.cfg is already being read (include loop /grub/grub.cfg "
        "-> /grub/loop.cfg -> /grub/grub.cfg); not read again",
    ]
    assert doc["skipped_commands"] == {"frobnicate": 1}


def test_list_text_marks_the_hidden_entry(
    grub_boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "list", str(grub_boot)]) == 0
    out = capsys.readouterr().out
    assert "  2  Debian (rescue)  [/vmlinuz | /initrd.img]" in out
    assert "       note: hidden from GRUB's menu (hiddenentry)" in out
    assert out.count("hiddenentry") == 1
    assert "problem: /grub/grub.cfg:9: block command 'frobnicate' is not known" in out


def test_a_stray_brace_costs_only_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = "menuentry a { linux /vmlinuz }\n}\nmenuentry b { linux /vmlinuz.old }\n"
    boot = _boot(tmp_path, {"grub/grub.cfg": cfg})
    assert main(["boot", "list", str(boot), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["title"] for e in doc["entries"]] == ["a", "b"]
    assert doc["problems"] == ["/grub/grub.cfg, line 2: unexpected '}'"]


BLS_ENTRY = """\
title Fedora Linux (6.8.5-301.fc40.x86_64) 40
version 6.8.5-301.fc40.x86_64
linux /vmlinuz
initrd /initrd.img $tuned_initrd
options root=UUID=1234 ro $tuned_params
"""


@pytest.mark.parametrize(
    ("grubenv", "initrds"),
    [
        ("", ["/initrd.img"]),
        ("tuned_initrd=/vmlinuz.old\n", ["/initrd.img", "/vmlinuz.old"]),
    ],
    ids=["unset", "set"],
)
def test_bls_initrd_with_an_unset_variable_adds_no_initrd(
    tmp_path: Path, grubenv: str, initrds: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Fedora's tuned writes `$tuned_initrd` into every BLS entry; it is usually unset.
    boot = _boot(
        tmp_path,
        {
            "loader/entries/abc-6.8.5-301.fc40.x86_64.conf": BLS_ENTRY,
            "grub2/grub.cfg": "load_env\nblscfg\n",
            "grub2/grubenv": "# GRUB Environment Block\n" + grubenv,
        },
    )
    assert main(["boot", "list", str(boot), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (entry,) = doc["entries"]
    assert entry["initrds"] == initrds
    assert entry["cmdline"] == "root=UUID=1234 ro"
    assert doc["dropped"] == []


def test_bls_versions_of_any_length_sort(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 5000-digit version part once crashed the sort (int() refuses more than 4300 digits).
    huge = "9" * 5000
    boot = _boot(
        tmp_path,
        {
            "loader/entries/a.conf": f"title A\nversion 6.{huge}\nlinux /vmlinuz\n",
            "loader/entries/b.conf": "title B\nversion 6.1\nlinux /vmlinuz\n",
            "loader/entries/c.conf": "title C\nversion 6.0010\nlinux /vmlinuz\n",
        },
    )
    assert main(["boot", "list", str(boot), "--json"]) == 0
    assert [e["title"] for e in json.loads(capsys.readouterr().out)["entries"]] == ["A", "C", "B"]
