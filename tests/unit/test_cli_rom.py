"""`heads rom ...` run in-process against real files, cbfstool, flashrom and gpg."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TESTDATA, Owner, require_tools
from heads.adapters._run import run
from heads.cli.main import main
from heads.core.flash_image import FlashImage


def _heads(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code, out, err = _heads(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def rom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "board.rom"
    assert _heads(capsys, "rom", "create", str(path), "--size", "16M")[0] == 0
    board = tmp_path / "board"
    board.write_text("qemu-test\n")
    assert _heads(capsys, "rom", "add", str(path), str(board), "-n", "board")[0] == 0
    return path


def test_files_add_ls_extract_rm(
    rom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("cbfstool")
    text = tmp_path / "text"
    text.write_bytes(b"compressible " * 3000)
    name = "heads/initrd/x\x1b[31m"
    code, _, _ = _heads(
        capsys, "rom", "add", str(rom), str(text), "-n", name, "-c", "lzma", "--hash", "sha256"
    )
    assert code == 0
    listing = _json(capsys, "rom", "ls", str(rom))
    assert isinstance(listing, dict)
    assert listing["layout"] == "fmap"
    assert listing["board"] == "qemu-test"
    files = {f["name"]: f for f in listing["files"]}
    assert files[name]["compression"] == "LZMA"
    assert files[name]["size"] == 39000
    assert files[name]["hash"]["algorithm"] == "sha256"
    printed = run(["cbfstool", rom, "print", "-k", "-r", "COREBOOT"], desc="cbfstool").stdout
    assert b"heads/initrd/x\x1b[31m" in printed
    code, out, _ = _heads(capsys, "rom", "ls", str(rom))
    assert "\x1b" not in out
    assert "heads/initrd/x\\x1b[31m" in out
    out_file = tmp_path / "out"
    assert _heads(capsys, "rom", "extract", str(rom), name, "-o", str(out_file))[0] == 0
    assert out_file.read_bytes() == text.read_bytes()
    copy = tmp_path / "copy.rom"
    assert _heads(capsys, "rom", "rm", str(rom), name, "-o", str(copy))[0] == 0
    assert FlashImage.from_bytes(copy.read_bytes()).file(name) is None
    assert FlashImage.from_bytes(rom.read_bytes()).file(name) is not None
    code, _, err = _heads(capsys, "rom", "rm", str(rom), "absent")
    assert code == 2
    assert "no file named absent" in err


def test_config_commands(rom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _heads(capsys, "rom", "config", "set", str(rom), "CONFIG_BOOT_DEV", "/dev/vda1")[0] == 0
    value = 'it\'s "$(reboot)"\nsecond line'
    assert _heads(capsys, "rom", "config", "set", str(rom), "CONFIG_TOTP_LABEL", value)[0] == 0
    assert _json(capsys, "rom", "config", "get", str(rom), "CONFIG_TOTP_LABEL") == {
        "key": "CONFIG_TOTP_LABEL",
        "value": value,
    }
    code, out, _ = _heads(capsys, "rom", "config", "get", str(rom), "CONFIG_TOTP_LABEL")
    assert out == 'it\'s "$(reboot)"\\nsecond line\n'
    defaults = tmp_path / "config"
    defaults.write_text('export CONFIG_BOOT_DEV="/dev/sda1"\nexport CONFIG_TPM=y\n')
    listing = _json(capsys, "rom", "config", "list", str(rom), "--defaults", str(defaults))
    assert listing == {
        "values": {"CONFIG_BOOT_DEV": "/dev/vda1", "CONFIG_TPM": "y", "CONFIG_TOTP_LABEL": value},
        "origin": {
            "CONFIG_BOOT_DEV": "config.user",
            "CONFIG_TPM": "defaults",
            "CONFIG_TOTP_LABEL": "config.user",
        },
        "problems": [],
    }
    code, _, err = _heads(capsys, "rom", "config", "set", str(rom), "CONFIG_BASIC", "yes")
    assert code == 2
    assert "takes y or n" in err
    assert _heads(capsys, "rom", "config", "unset", str(rom), "CONFIG_TOTP_LABEL")[0] == 0
    code, out, _ = _heads(capsys, "rom", "config", "get", str(rom), "CONFIG_TOTP_LABEL")
    assert (code, out) == (1, "")


def test_keys_package_verify(
    rom: Path, tmp_path: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _json(capsys, "rom", "keys", "list", str(rom)) == {"keys": []}
    assert _heads(capsys, "rom", "keys", "add", str(rom), str(owner.keyring))[0] == 0
    keys = _json(capsys, "rom", "keys", "list", str(rom))
    assert isinstance(keys, dict)
    assert [k["fingerprint"] for k in keys["keys"]] == [owner.fpr]
    package = tmp_path / "update.zip"
    code, _, err = _heads(
        capsys, "rom", "package", str(rom), "-o", str(package), "--gnupghome", str(owner.home)
    )
    assert code == 0, err
    checked = _json(capsys, "rom", "verify", str(package), "--keyring-from", str(rom))
    assert isinstance(checked, dict)
    assert checked["signer"] == owner.fpr
    assert checked["board"] == "qemu-test"
    code, _, err = _heads(capsys, "rom", "verify", str(package))
    assert code == 2
    assert "keyring" in err
    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(evil, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data + b"x" if name.endswith(".rom") else data)
    code, _, err = _heads(capsys, "rom", "verify", str(evil), "--keyring", str(owner.keyring))
    assert code == 3
    assert "sha256sum.txt says" in err
    code, _, err = _heads(capsys, "rom", "flash", str(evil), "--keyring", str(owner.keyring))
    assert code == 3
    image = _json(capsys, "rom", "verify", str(rom))
    assert isinstance(image, dict)
    assert image["kind"] == "image"


def test_flash_read_and_refusals(
    rom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("flashrom")
    chip = tmp_path / "chip.bin"
    chip.write_bytes(rom.read_bytes())
    programmer = f"dummy:emulate=W25Q128FV,image={chip}"
    assert (
        _heads(
            capsys,
            "rom",
            "config",
            "set",
            str(rom),
            "CONFIG_TPM",
            "y",
            "-o",
            str(tmp_path / "new.rom"),
        )[0]
        == 0
    )
    report = _json(capsys, "rom", "flash", str(tmp_path / "new.rom"), "-p", programmer)
    assert isinstance(report, dict)
    assert report["unchanged"] is False
    assert chip.read_bytes() == (tmp_path / "new.rom").read_bytes()
    read = _json(capsys, "rom", "read", str(tmp_path / "back.rom"), "-p", programmer)
    assert isinstance(read, dict)
    assert (tmp_path / "back.rom").read_bytes() == chip.read_bytes()
    small = tmp_path / "small.rom"
    assert _heads(capsys, "rom", "create", str(small), "--size", "8M")[0] == 0
    code, _, err = _heads(capsys, "rom", "flash", str(small), "-p", programmer)
    assert code == 2
    assert "chip holds 16777216" in err
    code, _, err = _heads(
        capsys, "rom", "flash", str(rom), "--clean", "-p", programmer + ",spi_ignorelist=02"
    )
    assert code == 3
    assert "read back differs" in err


def test_predict_cli(rom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = TESTDATA / "eventlogs" / "lab" / "ovmf-swtpm.bin"
    code, out, _ = _heads(
        capsys, "rom", "predict", str(rom), "--current", str(rom), "--log", str(log), "--json"
    )
    assert code == 0
    prediction = json.loads(out)
    assert prediction["complete"] is False
    assert set(prediction["unpredictable"]) == {"4", "9"}
    assert set(prediction["pcrs"]) == {"0", "1", "2", "3", "7"}
    code, out, _ = _heads(
        capsys, "rom", "predict", str(rom), "--current", str(rom), "--log", str(log)
    )
    assert code == 1
    assert (
        "PCR  4: cannot be predicted: the current or the new image carries no payload/kernel" in out
    )
