"""`heads qemu` argument handling and errors, in-process (no QEMU is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from heads.cli.main import main


def test_boot_of_a_missing_machine_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qemu", "boot", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "is not a machine directory" in err
    assert "hint: create it first: heads qemu create" in err


def test_provision_without_a_machine_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qemu", "provision", str(tmp_path), "--payload", str(tmp_path / "p")]) == 2
    assert "not a machine directory" in capsys.readouterr().err


def test_qemu_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["qemu"])
    assert exc.value.code == 2
    assert "SUBCOMMAND" in capsys.readouterr().err
