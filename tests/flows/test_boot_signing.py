"""Sign and verify /boot with real gpg, gpgv and swtpm: every tamper, interop, interruptions."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from conftest import Owner
from heads.adapters._run import run
from heads.adapters.tpm import open_tpm
from heads.cli.main import main
from heads.core.boot_trust import (
    BootVerification,
    ManifestState,
    RollbackReportState,
    SignatureState,
)
from heads.core.manifest import FileStatus, SignedForm, UnsignableNameError
from heads.errors import (
    HashMismatchError,
    HeadsError,
    RollbackError,
    SignatureError,
    UsageError,
)
from heads.flows.boot_signing import (
    STAGING_NAME,
    preflight_rollback,
    recover_boot,
    sign_boot,
    verify_boot,
)
from heads.testing.gpghome import GpgHome, export_public_keyring, make_owner_key
from heads.testing.swtpm import Swtpm

pytestmark = [pytest.mark.gpg]


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    """A small /boot: kernels, initrds, a grub tree, a symlink, an empty directory."""
    d = tmp_path / "boot"
    (d / "grub" / "x86_64-efi").mkdir(parents=True)
    (d / "efi").mkdir()
    (d / "vmlinuz-6.1.0-13-amd64").write_bytes(os.urandom(70_000))
    (d / "initrd.img-6.1.0-13-amd64").write_bytes(os.urandom(150_000))
    (d / "grub" / "grub.cfg").write_text("menuentry 'Debian' { linux /vmlinuz }\n")
    for i in range(5):
        (d / "grub" / "x86_64-efi" / f"mod{i}.mod").write_bytes(os.urandom(300))
    (d / "vmlinuz").symlink_to("vmlinuz-6.1.0-13-amd64")
    return d


def sign(boot: Path, owner: Owner, tpm: object | None = None, **kw: object) -> None:
    sign_boot(
        boot,
        gnupghome=owner.home,
        key=owner.fpr,
        tpm=tpm,  # type: ignore[arg-type]  # the swtpm-backed Tpm or None
        rollback=tpm is not None,
        **kw,  # type: ignore[arg-type]  # test-only passthrough
    )


def verify(boot: Path, owner: Owner, tpm: object | None = None) -> BootVerification:
    return verify_boot(boot, keyring=owner.keyring, tpm=tpm)  # type: ignore[arg-type]


def statuses(v: BootVerification) -> dict[str, FileStatus]:
    assert v.files is not None, v.render_text()
    return {f.path.decode(): f.status for f in v.files.files if f.status is not FileStatus.OK}


def kexec_files(boot: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in boot.iterdir() if p.name.startswith("kexec") and p.is_file()
    }


# -- sign, verify, tamper (no TPM) -----------------------------------------------------------


def test_sign_then_verify_passes(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    v = verify(boot, owner)
    assert v.ok, v.render_text()
    assert v.signature.fingerprint == owner.fpr
    assert v.signature.form is SignedForm.RELATIVE
    assert v.counts()["ok"] == 8
    assert v.rollback.state is RollbackReportState.NOT_CHECKED
    assert v.verified_hashes is not None
    assert v.verified_hashes.to_bytes() == (boot / "kexec_hashes.txt").read_bytes()
    v.raise_if_failed()
    assert not (boot / STAGING_NAME).exists()


def test_one_flipped_kernel_byte_is_changed(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    kernel = boot / "vmlinuz-6.1.0-13-amd64"
    data = bytearray(kernel.read_bytes())
    data[12345] ^= 0x01
    kernel.write_bytes(data)
    v = verify(boot, owner)
    assert v.signature.state is SignatureState.VERIFIED
    assert statuses(v) == {"vmlinuz-6.1.0-13-amd64": FileStatus.CHANGED}
    assert not v.ok
    with pytest.raises(HashMismatchError, match=r"vmlinuz-6\.1\.0-13-amd64"):
        v.raise_if_failed()


def test_added_removed_and_renamed_files_are_reported(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    (boot / "grub" / "evil.mod").write_bytes(b"x")
    (boot / "grub" / "x86_64-efi" / "mod0.mod").unlink()
    (boot / "initrd.img-6.1.0-13-amd64").rename(boot / "initrd.img")
    assert statuses(verify(boot, owner)) == {
        "grub/evil.mod": FileStatus.NEW,
        "grub/x86_64-efi/mod0.mod": FileStatus.MISSING,
        "initrd.img-6.1.0-13-amd64": FileStatus.MISSING,
        "initrd.img": FileStatus.NEW,
    }


def test_new_directory_is_reported_new(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    (boot / "newdir").mkdir()
    assert statuses(verify(boot, owner)) == {"newdir": FileStatus.NEW}


def test_new_kexec_txt_breaks_the_signature(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    (boot / "kexec_default.1.txt").write_text("evil|elf|kernel /vmlinuz\n")
    v = verify(boot, owner)
    assert v.signature.state is SignatureState.BAD
    assert v.files is None
    with pytest.raises(SignatureError):
        v.raise_if_failed()


def test_edited_kexec_hashes_breaks_the_signature(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    hashes = boot / "kexec_hashes.txt"
    hashes.write_bytes(hashes.read_bytes().replace(b"./vmlinuz-6.1", b"./vmlinuz-6.2"))
    assert verify(boot, owner).signature.state is SignatureState.BAD


def test_signature_moved_from_another_boot_is_bad(boot: Path, owner: Owner, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "vmlinuz").write_bytes(b"another kernel")
    sign(other, owner)
    sign(boot, owner)
    shutil.copy(other / "kexec.sig", boot / "kexec.sig")
    assert verify(boot, owner).signature.state is SignatureState.BAD


def test_signature_by_a_key_not_in_the_keyring_is_unknown_key(boot: Path, owner: Owner) -> None:
    with GpgHome() as stranger:
        fpr = make_owner_key(stranger.path, "Mallory", "mallory@heads.invalid")
        sign_boot(boot, gnupghome=stranger.path, key=fpr, tpm=None, rollback=False)
    v = verify(boot, owner)
    assert v.signature.state is SignatureState.UNKNOWN_KEY
    assert v.signature.fingerprint == fpr
    assert "UNTRUSTED" in v.render_text()


def test_missing_and_broken_signatures(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    sig = boot / "kexec.sig"
    sig.write_bytes(sig.read_bytes()[:60])
    assert verify(boot, owner).signature.state is SignatureState.BROKEN
    sig.unlink()
    assert verify(boot, owner).signature.state is SignatureState.MISSING


def test_hashed_file_swapped_for_a_symlink_is_changed(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    (boot / "grub" / "grub.cfg").unlink()
    outside = boot.parent / "evil.cfg"
    outside.write_text("menuentry 'Debian' { linux /vmlinuz }\n")  # same bytes as before
    (boot / "grub" / "grub.cfg").symlink_to(outside)
    assert statuses(verify(boot, owner)) == {"grub/grub.cfg": FileStatus.CHANGED}


def test_symlink_swapped_for_a_file_is_changed(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    (boot / "vmlinuz").unlink()
    (boot / "vmlinuz").write_bytes(b"a kernel the owner never signed")
    assert statuses(verify(boot, owner)) == {"vmlinuz": FileStatus.CHANGED}


def test_unsignable_name_is_refused_and_boot_is_untouched(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    before = kexec_files(boot)
    (boot / "bad\\name").write_bytes(b"x")
    with pytest.raises(UnsignableNameError, match="0x5c"):
        sign(boot, owner)
    assert kexec_files(boot) == before


def test_signing_without_tpm_needs_no_rollback(boot: Path, owner: Owner) -> None:
    with pytest.raises(UsageError, match="TPM"):
        sign_boot(boot, gnupghome=owner.home, key=owner.fpr, tpm=None)
    assert kexec_files(boot) == {}


# -- manifests signed the shell way (malformed, hostile) -------------------------------------


def shell_sign(boot: Path, owner: Owner, *, absolute: bool = False) -> None:
    """`sha256sum kexec*.txt | gpg --detach-sign -a` inside /boot, as kexec-sign-config.sh."""
    rewrite = " | sed 's,  ,  /boot/,'" if absolute else ""
    run(
        [
            "sh",
            "-c",
            f"sha256sum kexec*.txt{rewrite} | gpg --homedir {owner.home} --batch --yes "
            f"--digest-algo SHA256 --detach-sign -a -u {owner.fpr} -o kexec.sig",
        ],
        desc="sign /boot the shell way",
        cwd=boot,
    )


def shell_manifests(boot: Path) -> None:
    """kexec_hashes.txt and kexec_tree.txt exactly as Heads' find/xargs/sort make them."""
    run(
        [
            "sh",
            "-c",
            "find ./ -type f ! -path './kexec*' -print0 | xargs -0 sha256sum > kexec_hashes.txt"
            " && find ./ ! -path './kexec*' -print0 | sort -z > kexec_tree.txt",
        ],
        desc="write the Heads manifests",
        cwd=boot,
        env={"LC_ALL": "C"},
    )


@pytest.mark.parametrize(
    "hashes",
    [
        b"0123456789abcdef  ./vmlinuz\n",
        b"%s  ./vmlinuz" % (b"00" * 32),
        b"%s  ./../../etc/passwd\n" % (b"00" * 32),
        b"%s  /etc/shadow\n" % (b"00" * 32),
    ],
    ids=["short-digest", "truncated", "dotdot", "absolute-outside"],
)
def test_signed_but_malformed_manifest_is_invalid(boot: Path, owner: Owner, hashes: bytes) -> None:
    (boot / "kexec_hashes.txt").write_bytes(hashes)
    shell_sign(boot, owner)
    v = verify(boot, owner)
    assert v.signature.state is SignatureState.VERIFIED
    assert v.manifest.state is ManifestState.INVALID
    assert "kexec_hashes.txt" in v.manifest.detail
    assert v.files is None
    assert not v.ok


def test_boot_signed_the_shell_heads_way_verifies_with_ours(boot: Path, owner: Owner) -> None:
    shell_manifests(boot)
    shell_sign(boot, owner)
    v = verify(boot, owner)
    assert v.ok, v.render_text()
    assert v.counts()["ok"] == 8


def test_legacy_absolute_name_signature_verifies(boot: Path, owner: Owner) -> None:
    shell_manifests(boot)
    shell_sign(boot, owner, absolute=True)
    v = verify(boot, owner)
    assert v.ok, v.render_text()
    assert v.signature.form is SignedForm.ABSOLUTE


def test_ours_verifies_the_shell_way(boot: Path, owner: Owner, tmp_path: Path) -> None:
    sign(boot, owner)
    sh = f"sha256sum kexec*.txt | gpgv --keyring {owner.keyring} kexec.sig - && "
    sh += "sha256sum -c --strict kexec_hashes.txt"
    assert run(["sh", "-c", sh], desc="shell verify", cwd=boot, check=False).returncode == 0
    find = run(
        ["sh", "-c", "find ./ ! -path './kexec*' -print0 | sort -z"],
        desc="tree",
        cwd=boot,
        env={"LC_ALL": "C"},
    )
    assert find.stdout == (boot / "kexec_tree.txt").read_bytes()


# -- with the TPM rollback counter -----------------------------------------------------------


@pytest.mark.swtpm
def test_rollback_counter_is_created_bound_and_checked(
    boot: Path, owner: Owner, swtpm: Swtpm
) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        sign(boot, owner, tpm)
        first = verify(boot, owner, tpm)
        assert first.ok, first.render_text()
        assert first.rollback.state is RollbackReportState.OK
        old = kexec_files(boot)
        sign(boot, owner, tpm)
        second = verify(boot, owner, tpm)
        assert second.ok
        assert second.rollback.counter_id == first.rollback.counter_id
        assert second.rollback.tpm_value == (first.rollback.tpm_value or 0) + 1
        # Restore the older, validly signed /boot: the counter has moved on.
        for name, data in old.items():
            (boot / name).write_bytes(data)
        v = verify(boot, owner, tpm)
    assert v.signature.state is SignatureState.VERIFIED
    assert v.files is not None
    assert v.files.all_ok
    assert v.rollback.state is RollbackReportState.ROLLED_BACK
    assert v.rollback.signed_value == first.rollback.tpm_value
    assert not v.ok
    with pytest.raises(RollbackError):
        v.raise_if_failed()


@pytest.mark.swtpm
def test_shell_rollback_binding_interoperates(boot: Path, owner: Owner, swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        sign(boot, owner, tpm)
        v = verify(boot, owner, tpm)
    assert v.rollback.counter_id is not None
    counter = Path(f"/tmp/counter-{v.rollback.counter_id}")
    try:
        # What Heads does at boot: write the TPM value to the runtime file, sha256sum -c.
        counter.write_text(f"{v.rollback.counter_id}: {v.rollback.tpm_value:016x}\n")
        check = run(["sha256sum", "-c", "kexec_rollback.txt"], desc="check", cwd=boot, check=False)
    finally:
        counter.unlink(missing_ok=True)
    assert check.returncode == 0, check.stdout


@pytest.mark.swtpm
def test_tpm_without_the_counter_is_unreadable(boot: Path, owner: Owner, swtpm: Swtpm) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        sign(boot, owner, tpm)
    binding = (boot / "kexec_rollback.txt").read_bytes()
    (boot / "kexec_rollback.txt").write_bytes(binding.replace(b"counter-1", b"counter-2"))
    shell_sign(boot, owner)
    with open_tpm(swtpm.tcti) as tpm:
        v = verify(boot, owner, tpm)
    assert v.rollback.state is RollbackReportState.UNREADABLE
    assert not v.ok


# -- interruptions: SIGKILL the signer after each step ---------------------------------------

_CHILD = """
import os, signal, sys
from pathlib import Path
from heads.adapters.tpm import open_tpm
from heads.flows.boot_signing import sign_boot

boot, home, key, tcti, stop_at = sys.argv[1:6]

def fault(step):
    if step == stop_at:
        os.kill(os.getpid(), signal.SIGKILL)

if tcti == "none":
    sign_boot(Path(boot), gnupghome=Path(home), key=key, tpm=None, rollback=False, fault=fault)
else:
    with open_tpm(tcti) as tpm:
        sign_boot(Path(boot), gnupghome=Path(home), key=key, tpm=tpm, fault=fault)
"""

_STEPS = [
    ("recovered", "old"),
    ("hashed", "old"),
    ("counter-read", "old"),
    ("staged", "old"),
    ("signed", "old"),
    ("prepared", "old"),
    ("incremented", "new"),
    ("moved:kexec_hashes.txt", "new"),
    ("moved:kexec_rollback.txt", "new"),
    ("moved:kexec_tree.txt", "new"),
    ("moved:kexec.sig", "new"),
    ("moved-all", "new"),
]


@pytest.mark.swtpm
@pytest.mark.slow
@pytest.mark.parametrize(("stop_at", "expected"), _STEPS, ids=[s for s, _ in _STEPS])
def test_killed_signer_leaves_the_old_or_the_new_state(
    boot: Path, owner: Owner, swtpm: Swtpm, stop_at: str, expected: str
) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        sign(boot, owner, tpm)
    old = kexec_files(boot)
    (boot / "vmlinuz-6.2").write_bytes(b"the update")  # what the new signing covers

    result = run(
        [sys.executable, "-c", _CHILD, boot, owner.home, owner.fpr, swtpm.tcti, stop_at],
        desc="signer killed at a step",
        check=False,
        timeout_s=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    swtpm.restart()  # drop whatever the killed client left loaded in the TPM

    def state() -> str:
        with open_tpm(swtpm.tcti) as tpm:
            v = verify(boot, owner, tpm)
        assert v.signature.state is SignatureState.VERIFIED, v.render_text()
        assert v.rollback.state is RollbackReportState.OK, v.render_text()
        if v.ok:
            return "new"
        assert statuses(v) == {"vmlinuz-6.2": FileStatus.NEW}
        return "old"

    assert state() == expected
    if expected == "old":
        assert kexec_files(boot) == old
    with open_tpm(swtpm.tcti) as tpm:
        recover_boot(boot, tpm)
    assert not (boot / STAGING_NAME).exists()
    assert state() == expected
    if expected == "old":
        assert kexec_files(boot) == old
    # And the shell verifier agrees once the transaction is settled on disk.
    sh = f"sha256sum kexec*.txt | gpgv --keyring {owner.keyring} kexec.sig -"
    assert run(["sh", "-c", sh], desc="shell verify", cwd=boot, check=False).returncode == 0
    # A new signing from here works and supersedes both.
    with open_tpm(swtpm.tcti) as tpm:
        sign(boot, owner, tpm)
        assert verify(boot, owner, tpm).ok


def test_hash_digest_in_manifest_is_sha256_of_the_file(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    kernel = (boot / "vmlinuz-6.1.0-13-amd64").read_bytes()
    line = f"{hashlib.sha256(kernel).hexdigest()}  ./vmlinuz-6.1.0-13-amd64\n"
    assert line in (boot / "kexec_hashes.txt").read_text()


# -- concurrency and the CLI -----------------------------------------------------------------


def test_a_second_signer_is_refused_while_one_holds_the_lock(boot: Path, owner: Owner) -> None:
    fd = os.open(boot, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(HeadsError, match="another heads boot sign"):
            sign(boot, owner)
    finally:
        os.close(fd)
    assert kexec_files(boot) == {}


def test_cli_sign_and_verify_text_json_and_exit_codes(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["boot", "sign", str(boot), "--gnupghome", str(owner.home), "--key", owner.fpr]
    assert main([*base, "--no-rollback"]) == 0
    assert "signed" in capsys.readouterr().out
    verify_args = ["boot", "verify", str(boot), "--keyring", str(owner.keyring), "--no-rollback"]
    assert main(verify_args) == 0
    text = capsys.readouterr().out
    assert "signature: VERIFIED" in text
    assert "verdict:   OK" in text

    (boot / "grub" / "grub.cfg").write_text("tampered\n")
    assert main([*verify_args, "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "schema",
        "bootdir",
        "ok",
        "signature",
        "manifest",
        "files",
        "summary",
        "rollback",
    }
    assert report["schema"] == "heads.boot-verification/1"
    assert report["ok"] is False
    assert report["signature"]["state"] == "verified"
    assert report["signature"]["fingerprint"] == owner.fpr
    assert report["summary"] == {"ok": 7, "changed": 1, "missing": 0, "new": 0}
    changed = [f for f in report["files"] if f["status"] != "ok"]
    assert changed == [
        {
            "path": "./grub/grub.cfg",
            "status": "changed",
            "reason": "content differs from the signed hash",
        }
    ]
    assert report["rollback"]["state"] == "not checked"


@pytest.mark.swtpm
def test_cli_with_the_tpm_counter(
    boot: Path, owner: Owner, swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    tcti = ["--tcti", swtpm.tcti]
    sign_args = ["boot", "sign", str(boot), "--gnupghome", str(owner.home), "--key", owner.fpr]
    assert main([*sign_args, *tcti, "--json"]) == 0
    signed = json.loads(capsys.readouterr().out)
    assert signed["counter_value"] >= 1
    assert signed["counter_index"].startswith("0x01")
    verify_args = ["boot", "verify", str(boot), "--keyring", str(owner.keyring), *tcti]
    assert main([*verify_args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rollback"]["state"] == "ok"
    assert report["rollback"]["tpm_value"] == signed["counter_value"]
    assert report["rollback"]["nv_index"] == signed["counter_index"]


def test_cli_verify_of_an_unsigned_boot_fails_with_3(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["boot", "verify", str(boot), "--keyring", str(owner.keyring), "--no-rollback"]
    assert main(args) == 3
    assert "MISSING SIGNATURE FILE" in capsys.readouterr().out


def test_verify_with_tpm_but_no_binding_reports_missing(
    boot: Path, owner: Owner, swtpm: Swtpm
) -> None:
    sign(boot, owner)
    with open_tpm(swtpm.tcti) as tpm:
        v = verify(boot, owner, tpm)
    assert v.rollback.state is RollbackReportState.MISSING
    assert not v.ok


def test_kexec_txt_that_is_a_symlink_is_refused(boot: Path, owner: Owner, tmp_path: Path) -> None:
    sign(boot, owner)
    (tmp_path / "elsewhere.txt").write_bytes((boot / "kexec_tree.txt").read_bytes())
    (boot / "kexec_tree.txt").unlink()
    (boot / "kexec_tree.txt").symlink_to(tmp_path / "elsewhere.txt")
    v = verify(boot, owner)
    assert v.signature.state is SignatureState.ERROR
    assert "kexec_tree.txt" in v.signature.detail


_STEPS_NO_TPM = [("staged", "old"), ("signed", "old"), ("prepared", "new"), ("moved-all", "new")]


@pytest.mark.slow
@pytest.mark.parametrize(("stop_at", "expected"), _STEPS_NO_TPM, ids=[s for s, _ in _STEPS_NO_TPM])
def test_killed_signer_without_tpm_commits_at_the_commit_record(
    boot: Path, owner: Owner, stop_at: str, expected: str
) -> None:
    sign(boot, owner)
    old = kexec_files(boot)
    (boot / "vmlinuz-6.2").write_bytes(b"the update")
    result = run(
        [sys.executable, "-c", _CHILD, boot, owner.home, owner.fpr, "none", stop_at],
        desc="signer killed at a step",
        check=False,
        timeout_s=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    v = verify(boot, owner)
    assert v.signature.state is SignatureState.VERIFIED, v.render_text()
    assert ("new" if v.ok else "old") == expected
    assert recover_boot(boot, None) == ("completed" if expected == "new" else "discarded")
    assert (kexec_files(boot) == old) == (expected == "old")
    assert ("new" if verify(boot, owner).ok else "old") == expected


@pytest.mark.swtpm
def test_preflight_checks_the_counter_value_without_hashing(
    boot: Path, owner: Owner, swtpm: Swtpm
) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        assert preflight_rollback(boot, tpm).state is RollbackReportState.NOT_CHECKED
        sign(boot, owner, tpm)
        assert preflight_rollback(boot, tpm).state is RollbackReportState.OK
        old = kexec_files(boot)
        sign(boot, owner, tpm)
        for name, data in old.items():
            (boot / name).write_bytes(data)
        assert preflight_rollback(boot, tpm).state is RollbackReportState.ROLLED_BACK
        (boot / "kexec_rollback.txt").unlink()
        missing = preflight_rollback(boot, tpm)
    assert missing.state is RollbackReportState.MISSING
    assert "restored or swapped" in missing.detail


@pytest.mark.swtpm
def test_shell_heads_rollback_binding_verifies_and_ours_continues_its_counter(
    boot: Path, owner: Owner, swtpm: Swtpm
) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        index = tpm.nv_counter_create()
        value = tpm.nv_counter_increment(index)
    counter_id = f"{index:x}"
    counter = Path(f"/tmp/counter-{counter_id}")
    try:
        # kexec-sign-config.sh -r: tpmr counter_increment writes the runtime counter file,
        # then `sha256sum /tmp/counter-<id> > kexec_rollback.txt`.
        counter.write_text(f"{counter_id}: {value:016x}\n")
        run(
            ["sh", "-c", f"sha256sum {counter} > kexec_rollback.txt"],
            desc="bind",
            cwd=boot,
        )
    finally:
        counter.unlink(missing_ok=True)
    (boot / "kexec_default.1.txt").write_text("Debian|elf|kernel /vmlinuz\n")
    shell_manifests(boot)
    shell_sign(boot, owner)
    with open_tpm(swtpm.tcti) as tpm:
        v = verify(boot, owner, tpm)
        assert v.ok, v.render_text()
        assert v.rollback.tpm_value == value
        assert "kexec_default.1.txt" in v.signature.signed_files
        sign(boot, owner, tpm)  # ours takes over the same counter
        again = verify(boot, owner, tpm)
    assert again.ok
    assert again.rollback.counter_id == counter_id
    assert again.rollback.tpm_value == value + 1
    assert (boot / "kexec_default.1.txt").read_text() == "Debian|elf|kernel /vmlinuz\n"


def test_cli_sign_reads_the_pin_from_a_file_descriptor(
    boot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with GpgHome() as home:
        fpr = make_owner_key(home.path, passphrase="card pin 123456")
        keyring = export_public_keyring(home.path, tmp_path / "k.gpg")
        read_fd, write_fd = os.pipe()
        os.write(write_fd, b"card pin 123456\n")
        os.close(write_fd)
        try:
            args = ["boot", "sign", str(boot), "--gnupghome", str(home.path), "--key", fpr]
            assert main([*args, "--no-rollback", "--pin-fd", str(read_fd)]) == 0
        finally:
            os.close(read_fd)
    capsys.readouterr()
    assert verify_boot(boot, keyring=keyring, tpm=None).ok


def test_fifo_under_a_signed_name_is_changed_and_never_opened(boot: Path, owner: Owner) -> None:
    sign(boot, owner)
    (boot / "grub" / "grub.cfg").unlink()
    os.mkfifo(boot / "grub" / "grub.cfg")  # opening it for reading would block
    v = verify(boot, owner)
    assert statuses(v) == {"grub/grub.cfg": FileStatus.CHANGED}
    assert v.files is not None
    assert "special file" in v.render_text()
