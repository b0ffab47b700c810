"""`heads boot list | default | kexec` in process, on a real /boot tree (and real gpg/gpgv
for the signed paths).  `kexec` runs with --dry-run only: never load or execute on the host."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import Owner, require_tools
from heads.adapters._run import run
from heads.adapters.tpm import open_tpm
from heads.cli.main import main
from heads.core.bootcfg.entry import parse_entry_line
from heads.core.digest import HashAlg
from heads.core.kexec_plan import KexecPlan
from heads.errors import HeadsError
from heads.flows.boot_entries import (
    boot_plan,
    dry_run_argv,
    list_entries,
    plan_entry,
    read_default,
    save_default,
)
from heads.testing.swtpm import Swtpm

GRUB_CFG = """
set timeout=5
menuentry 'Debian GNU/Linux' {
    linux /vmlinuz-6.1 root=/dev/mapper/root ro quiet
    initrd /initrd.img-6.1
}
submenu 'Advanced options' {
    menuentry 'Debian, recovery' {
        linux /vmlinuz-6.1 root=/dev/mapper/root ro single
        initrd /intel-ucode.img /initrd.img-6.1
    }
    menuentry 'Debian, old kernel' {
        linux /vmlinuz-5.10 root=/dev/mapper/root ro
    }
}
"""


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    d = tmp_path / "boot"
    (d / "grub").mkdir(parents=True)
    (d / "grub" / "grub.cfg").write_text(GRUB_CFG)
    (d / "vmlinuz-6.1").write_bytes(os.urandom(5000))
    (d / "initrd.img-6.1").write_bytes(os.urandom(9000))
    (d / "intel-ucode.img").write_bytes(os.urandom(300))
    return d


def test_list_text_shows_entries_submenus_and_what_was_left_out(
    boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "list", str(boot), "--all"]) == 0
    out = capsys.readouterr().out
    assert "  1  Debian GNU/Linux  [/vmlinuz-6.1 | /initrd.img-6.1]" in out
    assert "  2  Advanced options > Debian, recovery" in out
    assert "root=/dev/mapper/root ro single" in out
    assert "Debian, old kernel (/grub/grub.cfg:12): kernel /vmlinuz-5.10 does not exist" in out


def test_list_json_is_stable_and_lines_are_heads_format(
    boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "list", str(boot), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "heads.boot-entries/1"
    assert [e["index"] for e in doc["entries"]] == [1, 2]
    second = doc["entries"][1]
    assert second["submenu"] == ["Advanced options"]
    assert second["initrds"] == ["/intel-ucode.img", "/initrd.img-6.1"]
    assert second["source"] == {"file": "/grub/grub.cfg", "line": 8}
    assert parse_entry_line(second["line"]).title == "Debian, recovery"
    assert doc["dropped"][0]["title"] == "Debian, old kernel"
    assert doc["configs"] == ["/grub/grub.cfg"]


def test_list_exits_1_when_nothing_is_bootable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "list", str(tmp_path)]) == 1
    assert "no bootable entries" in capsys.readouterr().out
    assert main(["boot", "list", str(tmp_path / "missing")]) == 2


def test_default_writes_heads_files_and_says_to_sign(
    boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (boot / "kexec_default.1.txt").write_text("old|elf|kernel /old\n")
    assert main(["boot", "default", str(boot), "--entry", "2"]) == 0
    out = capsys.readouterr().out
    assert "default entry 2: Advanced options > Debian, recovery" in out
    assert "removed kexec_default.1.txt" in out
    assert "/boot must be re-signed: heads boot sign" in out
    assert not (boot / "kexec_default.1.txt").exists()
    assert (boot / "kexec_default.2.txt").read_text() == (
        "Debian, recovery|elf|kernel /vmlinuz-6.1|initrd /intel-ucode.img"
        "|initrd /initrd.img-6.1|append root=/dev/mapper/root ro single\n"
    )
    # kexec_default_hashes.txt: sha256sum lines, ./names, entry order; `sha256sum -c` accepts it.
    lines = (boot / "kexec_default_hashes.txt").read_text().splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    assert names == ["./vmlinuz-6.1", "./intel-ucode.img", "./initrd.img-6.1"]
    kernel = hashlib.sha256((boot / "vmlinuz-6.1").read_bytes()).hexdigest()
    assert lines[0] == f"{kernel}  ./vmlinuz-6.1"
    require_tools("sha256sum")
    check = run(["sha256sum", "-c", "kexec_default_hashes.txt"], desc="check", cwd=boot)
    assert check.stdout.count(b": OK") == 3
    saved = read_default(boot)
    assert (saved.index, saved.entry.title) == (2, "Debian, recovery")
    assert saved.digests["/vmlinuz-6.1"].hex() == kernel


def test_default_with_a_bad_index_is_a_usage_error(boot: Path) -> None:
    assert main(["boot", "default", str(boot), "--entry", "3"]) == 2
    assert not list(boot.glob("kexec_*"))


def test_failed_signing_restores_the_previous_default(boot: Path) -> None:
    save_default(boot, 1)
    before = {p.name: p.read_bytes() for p in boot.glob("kexec_*")}

    def refuse() -> None:
        raise HeadsError("card removed")

    with pytest.raises(HeadsError, match="card removed"):
        save_default(boot, 2, sign=refuse)
    assert {p.name: p.read_bytes() for p in boot.glob("kexec_*")} == before


def test_kexec_dry_run_unsafe_prints_the_exact_command(
    boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["boot", "kexec", str(boot), "--entry", "2", "--dry-run", "--unsafe-skip-verification"]
    assert main([*args, "--remove", "single", "--board-add", "intel_iommu=on"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "verified by: NOTHING (unsafe boot)"
    red = ",".join(["0xff"] * 16)
    assert out[2] == (
        f"kexec -s -l {boot}/vmlinuz-6.1 "
        f"'--initrd=<concatenation of {boot}/intel-ucode.img {boot}/initrd.img-6.1>' "
        f"'--append=vt.default_red={red} root=/dev/mapper/root ro intel_iommu=on'"
    )


def test_kexec_needs_a_keyring_unless_told_to_skip_verification(boot: Path) -> None:
    assert main(["boot", "kexec", str(boot), "--entry", "1", "--dry-run"]) == 2


# --- signed /boot (real gpg) ----------------------------------------------------------------


def _sign_args(owner: Owner) -> list[str]:
    return ["--gnupghome", str(owner.home), "--key", owner.fpr, "--no-rollback"]


@pytest.mark.gpg
def test_default_sign_then_verified_dry_run_of_the_default(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "default", str(boot), "--entry", "1", "--sign", *_sign_args(owner)]) == 0
    assert "/boot signed" in capsys.readouterr().out
    verify = ["--keyring", str(owner.keyring), "--no-rollback", "--dry-run"]
    assert main(["boot", "kexec", str(boot), "--default", *verify, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["verified_by"] == "kexec_hashes.txt under a verified kexec.sig"
    assert plan["argv"] == [
        "kexec",
        "-s",
        "-l",
        f"{boot}/vmlinuz-6.1",
        f"--initrd={boot}/initrd.img-6.1",
        "--append=root=/dev/mapper/root ro quiet",
    ]
    kernel = hashlib.sha256((boot / "vmlinuz-6.1").read_bytes()).hexdigest()
    assert plan["files"][0] == {"path": "/vmlinuz-6.1", "sha256": kernel}


@pytest.mark.gpg
def test_tampered_kernel_refuses_to_plan_with_exit_3(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "default", str(boot), "--entry", "1", "--sign", *_sign_args(owner)]) == 0
    with (boot / "vmlinuz-6.1").open("r+b") as f:
        f.write(b"\x00")
    verify = ["--keyring", str(owner.keyring), "--no-rollback", "--dry-run"]
    assert main(["boot", "kexec", str(boot), "--default", *verify]) == 3
    assert main(["boot", "kexec", str(boot), "--entry", "1", *verify]) == 3
    capsys.readouterr()


@pytest.mark.gpg
def test_default_whose_saved_hashes_are_stale_is_refused(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    # The default was saved for one kernel; the kernel was updated and /boot re-signed
    # without choosing the default again: its saved digests no longer match.
    assert main(["boot", "default", str(boot), "--entry", "1"]) == 0
    (boot / "vmlinuz-6.1").write_bytes(os.urandom(5000))
    assert main(["boot", "sign", str(boot), *_sign_args(owner)]) == 0
    verify = ["--keyring", str(owner.keyring), "--no-rollback", "--dry-run"]
    assert main(["boot", "kexec", str(boot), "--default", *verify]) == 3
    err = capsys.readouterr().err
    assert "kexec_default_hashes.txt" in err
    assert "no longer entry" not in err


@pytest.mark.gpg
def test_changed_menu_is_noted_but_the_saved_default_boots(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "default", str(boot), "--entry", "1"]) == 0
    cfg = boot / "grub" / "grub.cfg"
    cfg.write_text(cfg.read_text().replace("ro quiet", "ro quiet splash"))
    assert main(["boot", "sign", str(boot), *_sign_args(owner)]) == 0
    verify = ["--keyring", str(owner.keyring), "--no-rollback", "--dry-run"]
    assert main(["boot", "kexec", str(boot), "--default", *verify]) == 0
    out, err = capsys.readouterr()
    assert "no longer entry 1 of the menu" in err
    assert "--append=root=/dev/mapper/root ro quiet'" in out


# --- with the TPM (swtpm): rollback counter, and PCR 4 before kexec -e ----------------------


@pytest.mark.gpg
@pytest.mark.swtpm
def test_default_signed_with_rollback_then_verified_against_the_tpm(
    boot: Path, owner: Owner, swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    sign = ["--gnupghome", str(owner.home), "--key", owner.fpr, "--tcti", swtpm.tcti]
    assert main(["boot", "default", str(boot), "--entry", "2", "--sign", *sign]) == 0
    assert (boot / "kexec_rollback.txt").is_file()
    kexec = ["boot", "kexec", str(boot), "--default", "--dry-run", "--tcti", swtpm.tcti]
    assert main([*kexec, "--keyring", str(owner.keyring)]) == 0
    assert "verified by: kexec_hashes.txt under a verified kexec.sig" in capsys.readouterr().out
    # A newer signing moves the counter on; the old signed /boot is then a rollback.
    old = {p.name: p.read_bytes() for p in boot.glob("kexec*")}
    assert main(["boot", "sign", str(boot), *sign]) == 0
    for name, data in old.items():
        (boot / name).write_bytes(data)
    assert main([*kexec, "--keyring", str(owner.keyring)]) == 3


class RecordingKexec:
    """Stands in for kexec-tools outside QEMU: checks the plan's digests and records state."""

    def __init__(self) -> None:
        self.loaded: dict[str, bytes] = {}
        self.executed = False

    def load(self, plan: KexecPlan, bootdir: Path) -> list[str]:
        for f in plan.files:
            data = (bootdir / f.path.lstrip("/")).read_bytes()
            assert f.sha256 is None or hashlib.sha256(data).digest() == f.sha256
            self.loaded[f.path] = data
        return dry_run_argv(plan, bootdir)

    def execute(self) -> None:
        assert self.loaded, "execute before load"
        self.executed = True


@pytest.mark.swtpm
def test_boot_extends_pcr4_with_generic_after_loading_and_before_executing(
    boot: Path, swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_path = tmp_path / "measurements.cel.jsonl"
    monkeypatch.setenv("HEADS_EVENT_LOG", str(log_path))
    entry = list_entries(boot).entries[0]
    plan = plan_entry(entry, None, unsafe_reason="test")
    with open_tpm(swtpm.tcti) as tpm:
        before = tpm.read_pcrs(HashAlg.SHA256, [4])[4]
    kexec = RecordingKexec()
    boot_plan(plan, boot, kexec, tcti=swtpm.tcti)
    assert kexec.executed
    assert set(kexec.loaded) == {"/vmlinuz-6.1", "/initrd.img-6.1"}
    with open_tpm(swtpm.tcti) as tpm:
        after = tpm.read_pcrs(HashAlg.SHA256, [4])[4]
    assert after == hashlib.sha256(before + hashlib.sha256(b"generic").digest()).digest()
    record = json.loads(log_path.read_text().splitlines()[-1])
    assert (record["pcr"], record["content"]["string"]) == (4, "generic")


@pytest.mark.gpg
def test_interrupted_signing_must_be_settled_before_booting(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["boot", "sign", str(boot), *_sign_args(owner)]) == 0
    (boot / "kexec.staging").mkdir()
    verify = ["--keyring", str(owner.keyring), "--no-rollback", "--dry-run"]
    assert main(["boot", "kexec", str(boot), "--entry", "1", *verify]) == 3
    assert "signing of /boot was interrupted" in capsys.readouterr().err
