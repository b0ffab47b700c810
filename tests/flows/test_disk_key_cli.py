"""`heads disk seal` / `heads disk unseal --check` in-process, on swtpm, real gpg and LUKS2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Owner, require_tools
from heads.adapters import cryptsetup
from heads.cli.main import main
from heads.core.secret import Secret
from heads.testing.swtpm import Swtpm

pytestmark = [pytest.mark.swtpm, pytest.mark.cryptsetup, pytest.mark.gpg]


def _fd(data: bytes) -> int:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def test_seal_then_check(
    swtpm: Swtpm, owner: Owner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("cryptsetup")
    image = tmp_path / "luks.img"
    with image.open("wb") as f:
        f.truncate(20 << 20)
    cryptsetup.format_luks(image, Secret(b"recovery"))
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz").write_bytes(b"kernel")
    tcti = ["--tcti", swtpm.tcti]
    rc = main(
        [
            "disk",
            "seal",
            *tcti,
            "--device",
            f"/dev/vdb={image}",
            "--boot",
            str(boot),
            "--recovery-fd",
            str(_fd(b"recovery\n")),
            "--passphrase-fd",
            str(_fd(b"twelve chars ok\n")),
            "--event-log",
            str(tmp_path / "none"),
            "--profile",
            "coreboot",
            "--gnupghome",
            str(owner.home),
            "--key",
            owner.fpr,
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "/boot signed again" in out
    assert (boot / "kexec_key_devices.txt").read_text().startswith("/dev/vdb ")
    assert (boot / "kexec.sig").is_file()

    # Too short a passphrase is refused before anything changes.
    rc = main(
        [
            "disk",
            "seal",
            *tcti,
            "--device",
            f"/dev/vdb={image}",
            "--boot",
            str(boot),
            "--recovery-fd",
            str(_fd(b"recovery")),
            "--passphrase-fd",
            str(_fd(b"short")),
            "--no-sign",
        ]
    )
    assert rc == 2
    assert "12 characters" in capsys.readouterr().err

    rc = main(
        [
            "disk",
            "unseal",
            "--check",
            "--measure",
            *tcti,
            "--boot",
            str(boot),
            "--device",
            f"/dev/vdb={image}",
            "--passphrase-fd",
            str(_fd(b"twelve chars ok")),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "/dev/vdb: opens with the released key" in out
