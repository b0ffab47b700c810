"""What the built payload carries for the menus: the board defaults as /etc/config, and a
whiptail that runs from the payload's own files (its loader, libraries and terminfo) and
answers a dialog pressed on a pseudo-terminal (docs/guest-host-contract.md §Payload layout).

The payload is the shared ``out/payload`` (rebuilt when the sources change).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from heads.core.cpio import Kind, read_newc
from heads.flows.image_build import (
    BOARD_CONFIG,
    BOARDS_DIR,
    TERMINFO_ENTRIES,
    default_cache_dir,
    read_manifest,
)
from heads.flows.qemu_platform import cached_payload
from pty_terminal import run_on_terminal

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """The payload's initramfs unpacked (files and symlinks) and its manifest."""
    require_tools("zstd", "apt-get", "dpkg-deb")
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    manifest = read_manifest(payload.initramfs.parent / "manifest.json")
    cpio = subprocess.run(
        ["zstd", "-dc", "-q", str(payload.initramfs)], capture_output=True, check=True
    ).stdout
    root = tmp_path_factory.mktemp("initramfs")
    offset = 0
    for part in manifest["initramfs"]["parts"]:
        chunk = cpio[offset : offset + part["cpio_size"]]
        offset += part["cpio_size"]
        for member in read_newc(chunk, source="initramfs"):
            dest = root / member.name
            if member.kind is Kind.DIRECTORY:
                dest.mkdir(parents=True, exist_ok=True)
            elif member.kind is Kind.FILE:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(member.data)
                dest.chmod(member.mode & 0o755)
            elif member.kind is Kind.SYMLINK:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.unlink(missing_ok=True)
                dest.symlink_to(member.data.decode())
    return root, manifest


def test_the_board_defaults_are_etc_config(unpacked: tuple[Path, dict[str, object]]) -> None:
    root, manifest = unpacked
    assert (root / BOARD_CONFIG).read_bytes() == (BOARDS_DIR / "qemu.config").read_bytes()
    board = manifest["board"]
    assert isinstance(board, dict)
    assert board["platform"] == "qemu"
    members = manifest["members"]
    assert isinstance(members, dict)
    assert members[BOARD_CONFIG].endswith(board["sha256"])


def test_whiptail_and_its_terminfo_are_shipped(unpacked: tuple[Path, dict[str, object]]) -> None:
    root, _manifest = unpacked
    assert (root / "usr/bin/whiptail").is_file()
    for lib in ("libnewt.so.0.52", "libslang.so.2", "libpopt.so.0"):
        assert (root / "lib/x86_64-linux-gnu" / lib).is_file(), lib
    for term in TERMINFO_ENTRIES:
        assert (root / "lib/terminfo" / term[0] / term).is_file(), term
    # The kernel starts /init with TERM=linux: that entry must be there.
    assert "linux" in TERMINFO_ENTRIES


_CHILD = """
import sys
from heads.core.dialogs import DialogId, menu
from heads.ui.whiptail import WhiptailRenderer

d = menu(DialogId.MAIN_MENU, "qemu | Heads Boot Menu", "TOTP: 123456",
         (("d", "Default boot"), ("r", "Refresh TOTP/HOTP"), ("p", "Power Off")))
answer = WhiptailRenderer(whiptail=sys.argv[2]).show(d)
with open(sys.argv[1], "w") as f:
    f.write(str(answer))
"""


def test_the_payload_whiptail_answers_a_menu_on_a_terminal(
    unpacked: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    root, _manifest = unpacked
    # The payload's loader and libraries, not the host's: nothing of the host's whiptail,
    # newt, slang or terminfo can stand in for a missing file.
    wrapper = tmp_path / "whiptail"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec "{root}/lib64/ld-linux-x86-64.so.2" --inhibit-cache '
        f'--library-path "{root}/lib/x86_64-linux-gnu" "{root}/usr/bin/whiptail" "$@"\n'
    )
    wrapper.chmod(0o755)
    answer_file = tmp_path / "answer"
    env = dict(
        os.environ,
        TERM="linux",
        TERMINFO=str(root / "lib/terminfo"),
        TERMINFO_DIRS=str(root / "lib/terminfo"),
        COLUMNS="80",
        LINES="25",
    )
    status, screen = run_on_terminal(
        [sys.executable, "-c", _CHILD, str(answer_file), str(wrapper)],
        env,
        ready=b"<Ok>",
        keys=[b"\x1b[B", b"\r"],  # Down: "Refresh TOTP/HOTP", Enter
    )
    assert status == 0
    assert answer_file.read_text() == "r"
    assert b"Boot Menu" in screen
    assert b"TOTP: 123456" in screen
