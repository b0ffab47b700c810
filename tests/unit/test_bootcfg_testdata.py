"""Our parsers against the other parsers' results for every case in testdata/bootconfigs.

Each case is compared with shell Heads' lines (``heads-reference/``) and with u-root's JSON
beside it: the same titles, kernels, initrds and command lines, except where we are
deliberately more correct.  Every such difference is listed below with its reason; anything
else that differs fails the test.  The test trees hold configurations only (most kernels are
absent), so discovery runs with ``require_files=False``; existence filtering has its own tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import TESTDATA
from heads.core.bootcfg.cmdline import build_cmdline
from heads.core.bootcfg.discover import Discovery, discover_entries
from heads.core.bootcfg.entry import BootEntry, parse_entry_line
from heads.core.bootcfg.grub import GrubContext
from heads.core.bootcfg.tree import MemoryTree

CASES = [
    ("bls", "fedora_32"),
    ("bls", "madeup"),
    ("grub", "CentOS_7_x86_64_DVD_1810"),
    ("grub", "debian_9_install"),
    ("grub", "fedora_27_install"),
    ("grub", "ubuntu_16_04_boot"),
    ("iso", "Fedora-Workstation-Live-43-1.6.x86_64"),
    ("iso", "archlinux-2026.03.01-x86_64"),
    ("iso", "ubuntu-25.10-desktop-amd64"),
    ("syslinux", "debian_9_install"),
    ("syslinux", "fedora_27_install"),
]

_CENTOS_HEADS = "inst.stage2=hd:LABEL=CentOSx207x20x86_64"
_CENTOS_OURS = "inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64"

# Deliberate differences from shell Heads, per case: (Heads line, our line, reason).  A line is
# None where one side has no such entry.  Lines are compared in Heads' one-line format.
HEADS_DIFFERENCES: dict[str, list[tuple[str | None, str | None, str]]] = {
    "bls_madeup": [
        (
            "Fedora 19 (Rawhide)|elf|kernel /loader/fakefile|initrd /loader/fakefile"
            "|append earlyprintk=ttyS0",
            "Fedora 19 (Rawhide)|elf|kernel /fakefile|initrd /fakefile"
            "|append root=UUID=6d3376e4-fc93-4509-95ec-a21d68011da2 earlyprintk=ttyS0",
            "BLS paths are relative to the partition root, not loader/ (UAPI BLS 'linux'); "
            "all 'options' lines are joined (the spec), Heads kept only the last",
        ),
    ],
    "grub_CentOS_7_x86_64_DVD_1810": [
        (
            f"{title}|elf|kernel /images/pxeboot/vmlinuz|initrd /images/pxeboot/initrd.img"
            f"|append {_CENTOS_HEADS} {rest}",
            f"{title}|elf|kernel /images/pxeboot/vmlinuz|initrd /images/pxeboot/initrd.img"
            f"|append {_CENTOS_OURS} {rest}",
            "an unquoted backslash before an ordinary character stays (dracut decodes \\x20); "
            "Heads' `eval echo` dropped it and broke the label",
        )
        for title, rest in [
            ("Install CentOS 7", "quiet"),
            ("Test this media & install CentOS 7", "rd.live.check quiet"),
            ("Install CentOS 7 in basic graphics mode", "xdriver=vesa nomodeset quiet"),
            ("Rescue a CentOS system", "rescue quiet"),
        ]
    ],
    "grub_ubuntu_16_04_boot": [
        (
            f"{title}|elf|kernel /vmlinuz-4.10.0-{v}-generic.efi.signed"
            f"|initrd /initrd.img-4.10.0-{v}-generic"
            f"|append root=/dev/mapper/ubuntu--vg-root ro quiet splash{extra}",
            f"{title}|elf|kernel /vmlinuz-4.10.0-{v}-generic.efi.signed"
            f"|initrd /initrd.img-4.10.0-{v}-generic"
            f"|append root=/dev/mapper/ubuntu--vg-root ro quiet splash vt.handoff=7{extra}",
            "$vt_handoff is set by the gfxmode function the entry calls (linux_gfx_mode=keep, "
            "no gfxblacklist.txt); Heads expanded it to nothing",
        )
        for title, v, extra in [
            ("Ubuntu", "42", ""),
            ("Ubuntu, with Linux 4.10.0-42-generic", "42", ""),
            ("Ubuntu, with Linux 4.10.0-42-generic (upstart)", "42", " init=/sbin/upstart"),
            ("Ubuntu, with Linux 4.10.0-40-generic", "40", ""),
            ("Ubuntu, with Linux 4.10.0-40-generic (upstart)", "40", " init=/sbin/upstart"),
        ]
    ],
    "iso_Fedora-Workstation-Live-43-1.6.x86_64": [
        (
            "Start Fedora-Workstation-Live in basic graphics mode|elf"
            "|kernel /boot/x86_64/loader/linux|initrd /boot/x86_64/loader/initrd"
            "|append quiet rhgb root=live:CDLABEL=Fedora-WS-Live-43 rd.live.image",
            "Start Fedora-Workstation-Live in basic graphics mode|elf"
            "|kernel /boot/x86_64/loader/linux|initrd /boot/x86_64/loader/initrd"
            "|append quiet rhgb root=live:CDLABEL=Fedora-WS-Live-43 rd.live.image "
            "nomodeset vga=791",
            "${basicgfx} is set by the if/else on grub_platform (pc: 'nomodeset vga=791'); "
            "Heads expanded it to nothing, so 'basic graphics mode' was the normal mode",
        ),
    ],
    "iso_archlinux-2026.03.01-x86_64": [
        *[
            (
                f"{title} (x86_64, )|elf|kernel /arch/boot/x86_64/vmlinuz-linux"
                f"|initrd /arch/boot/x86_64/initramfs-linux.img"
                f"|append archisobasedir=arch img_dev=UUID= img_loop={extra}",
                f"{title} (x86_64, BIOS)|elf|kernel /arch/boot/x86_64/vmlinuz-linux"
                f"|initrd /arch/boot/x86_64/initramfs-linux.img"
                f"|append archisobasedir=arch img_dev=UUID= img_loop={extra}",
                "${archiso_platform} is set by the if/elif on grub_platform; Heads lost it",
            )
            for title, extra in [
                ("Arch Linux install medium", ""),
                ("Arch Linux install medium with speakup screen reader", " accessibility=on"),
            ]
        ],
        (
            "Run Memtest86+ (RAM test)|elf|kernel /boot/memtest86+/memtest.efi",
            None,
            "defined only under `-f /boot/memtest86+/memtest.efi` (and efi): the file is not "
            "on the medium; Heads ignored the condition (phantom entry, Heads issue #1499)",
        ),
        (
            "Run Memtest86+ (RAM test)|elf|kernel /boot/memtest86+/memtest",
            None,
            "defined only under `-f /boot/memtest86+/memtest`: not on the medium",
        ),
    ],
}


def _tree(root: Path) -> MemoryTree:
    return MemoryTree(
        {"/" + str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    )


def _discover(kind: str, case: str, ctx: GrubContext | None = None) -> Discovery:
    root = TESTDATA / "bootconfigs" / kind / case
    return discover_entries(
        _tree(root), media=kind in ("iso", "syslinux"), ctx=ctx, require_files=False
    )


def _heads_ref(kind: str, case: str) -> Path:
    return TESTDATA / "bootconfigs" / "heads-reference" / f"{kind}_{case}.heads.txt"


def _heads_lines(kind: str, case: str) -> list[str]:
    ref = _heads_ref(kind, case)
    lines = []
    for number, line in enumerate(ref.read_text().splitlines(), start=1):
        if line and not line.startswith("#"):
            lines.append(parse_entry_line(line, source=ref.name, line_no=number).to_line())
    return list(dict.fromkeys(lines))


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_entries_match_heads_except_listed_improvements(kind: str, case: str) -> None:
    ours = [e.to_line() for e in _discover(kind, case).entries]
    heads = _heads_lines(kind, case)
    differences = HEADS_DIFFERENCES.get(f"{kind}_{case}", [])
    expected_heads_only = {h for h, _, _ in differences if h is not None}
    expected_ours_only = {o for _, o, _ in differences if o is not None}
    assert set(heads) - set(ours) == expected_heads_only
    assert set(ours) - set(heads) == expected_ours_only
    if "(lines sorted)" not in _heads_ref(kind, case).read_text():
        # Same menu order as Heads for the entries both have.
        common = [line for line in ours if line in heads]
        assert common == [line for line in heads if line in common]


# --- u-root ---------------------------------------------------------------------------------


def _uroot(kind: str, case: str) -> list[dict[str, object]]:
    path = TESTDATA / "bootconfigs" / kind / f"{case}.uroot-expected.json"
    data = json.loads(path.read_text())
    assert isinstance(data, list)
    return data


def _uroot_path(obj: object, case: str) -> str | None:
    if not isinstance(obj, dict):
        return None
    ref = str(obj.get("url") or obj.get("name"))
    # file:///testdata_new/<case>/images/x, testdata/<case>/x: the part below the case dir.
    return "/" + ref.split(f"{case}/", 1)[1]


Project = tuple[str, str, tuple[str, ...], str]


def _project_uroot(item: dict[str, object], case: str) -> Project:
    initrd = _uroot_path(item.get("initrd"), case)
    kernel = _uroot_path(item["kernel"], case)
    assert kernel is not None
    return (str(item["name"]), kernel, (initrd,) if initrd else (), str(item["cmdline"]))


def _project(entry: BootEntry) -> Project:
    return (entry.title, entry.kernel, entry.initrds, entry.cmdline)


def _strip_iso_prefix(name: str) -> str:
    return name.split("] ", 1)[1] if name.startswith("[") else name


ISO_UUID = "1234-abcd"

# Per case: how u-root's view maps onto ours (each step a listed difference with its reason),
# the context our parser runs with, and whether u-root lists only a subset of our entries.
Normalizer = Callable[[Project], Project]


def _same(u: Project) -> Project:
    return u


UROOT_CASES: dict[str, tuple[GrubContext | None, Normalizer, str, bool]] = {
    "bls_fedora_32": (
        None,
        lambda u: (u[0].removesuffix(" 5.6.6-300.fc32.x86_64"), *u[1:]),
        "u-root appends the BLS version to the title; Heads and we show the title",
        False,
    ),
    "bls_madeup": (
        None,
        lambda u: (
            u[0].removesuffix(" 3.8.0-2.fc19.x86_64"),
            u[1].removeprefix("/loader"),
            tuple(p.removeprefix("/loader") for p in u[2]),
            "root=UUID=6d3376e4-fc93-4509-95ec-a21d68011da2 " + u[3],
        ),
        "title without version; paths relative to the partition root (BLS spec), u-root "
        "used loader/; all options lines joined, u-root kept the last",
        False,
    ),
    "grub_CentOS_7_x86_64_DVD_1810": (None, _same, "identical", False),
    "grub_debian_9_install": (
        None,
        lambda u: (*u[:3], u[3].replace("${loopback}", "").strip()),
        "u-root leaves ${loopback} unexpanded; GRUB expands it to nothing (iso_path unset)",
        False,
    ),
    "grub_fedora_27_install": (None, _same, "identical", False),
    "grub_ubuntu_16_04_boot": (
        None,
        lambda u: (*u[:3], u[3].replace("$vt_handoff", "vt.handoff=7")),
        "u-root leaves $vt_handoff unexpanded; the gfxmode function sets it",
        False,
    ),
    "iso_Fedora-Workstation-Live-43-1.6.x86_64": (
        GrubContext(iso_path="/Fedora-Workstation-Live-43-1.6.x86_64.iso"),
        lambda u: (
            _strip_iso_prefix(u[0]),
            *u[1:3],
            u[3].replace(" iso-scan/filename=/Fedora-Workstation-Live-43-1.6.x86_64.iso", ""),
        ),
        "u-root prefixes the ISO name and adds iso-scan/filename itself; we add ISO "
        "parameters when booting (build_cmdline, checked below)",
        False,
    ),
    "iso_archlinux-2026.03.01-x86_64": (
        GrubContext(iso_path="/archlinux-2026.03.01-x86_64.iso", iso_device_uuid=ISO_UUID),
        lambda u: (_strip_iso_prefix(u[0]), *u[1:]),
        "u-root prefixes the ISO name",
        False,
    ),
    "iso_ubuntu-25.10-desktop-amd64": (
        GrubContext(iso_path="/ubuntu-25.10-desktop-amd64.iso"),
        lambda u: (_strip_iso_prefix(u[0]), *u[1:3], u[3].replace(" ---", "")),
        "u-root prefixes the ISO name and keeps GRUB's '---' separator (Heads drops it); "
        "u-root lists loopback.cfg only, we also list grub.cfg's entries (as Heads)",
        True,
    ),
    "syslinux_debian_9_install": (
        None,
        lambda u: (*u[:3], " ".join(w for w in u[3].split() if not w.startswith("initrd="))),
        "initrd= goes to kexec as the initrd, not on the command line (as Heads)",
        False,
    ),
    "syslinux_fedora_27_install": (
        None,
        lambda u: (
            u[0].replace("^", ""),
            *u[1:3],
            " ".join(w for w in u[3].split() if not w.startswith("initrd=")),
        ),
        "'^' hotkey markers removed from menu labels and initrd= taken off the command line "
        "(as Heads)",
        False,
    ),
}


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_entries_match_uroot_except_listed_differences(kind: str, case: str) -> None:
    ctx, normalize, reason, subset = UROOT_CASES[f"{kind}_{case}"]
    assert reason
    ours = [_project(e) for e in _discover(kind, case, ctx).entries]
    theirs = [_project_uroot(item, case) for item in _uroot(kind, case)]
    mapped = {normalize(u) for u in theirs}
    if subset:
        assert mapped <= set(ours)
    else:
        assert mapped == set(ours)


def test_fedora_iso_boot_adds_iso_scan_parameter_where_uroot_puts_it() -> None:
    iso = "/Fedora-Workstation-Live-43-1.6.x86_64.iso"
    entries = _discover("iso", "Fedora-Workstation-Live-43-1.6.x86_64").entries
    uroot = {
        _strip_iso_prefix(str(i["name"])): str(i["cmdline"])
        for i in _uroot("iso", "Fedora-Workstation-Live-43-1.6.x86_64")
    }
    for entry in entries:
        assert build_cmdline(entry.cmdline, add=f"iso-scan/filename={iso}") == uroot[entry.title]


def test_machine_dependent_values_are_noted_not_guessed() -> None:
    # Without the ISO device's UUID, `probe` cannot know it: the entry says so.
    entries = _discover("iso", "archlinux-2026.03.01-x86_64", GrubContext(iso_path="/a.iso"))
    assert entries.entries
    for entry in entries.entries:
        assert any("archiso_img_dev_uuid" in note for note in entry.notes)
        assert "img_loop=/a.iso" in entry.cmdline


def test_efi_platform_selects_the_efi_branches() -> None:
    found = _discover("iso", "ubuntu-25.10-desktop-amd64", GrubContext(platform="efi"))
    titles = [e.title for e in found.entries]
    assert "Test memory" not in titles  # only in the non-EFI branch
    dropped = {d.title: d.reason for d in found.dropped}
    assert "fwsetup" in dropped["UEFI Firmware Settings"]


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_every_real_entry_round_trips_through_the_line_format(kind: str, case: str) -> None:
    for entry in _discover(kind, case).entries:
        assert parse_entry_line(entry.to_line()) == entry
