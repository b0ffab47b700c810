"""A /boot written by an attacker, met through the CLI: FIFOs, huge files, spoofing names, keyrings.

Whoever controls the disk controls every name and byte under /boot.  `heads boot verify` and
`heads boot sign` must then still finish, in bounded memory, with a report that cannot be
forged by a file name, and must tell a bad keyring (the owner's configuration) from tampering.

Tests that could hang if a defect came back run the command in a thread (or a child) with a
generous guard, so a regression fails the test instead of blocking the suite; the guard is not
a timing assertion.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Owner
from heads.adapters._run import run
from heads.cli.main import main
from heads.flows.boot_signing import COMMIT_NAME, STAGING_NAME, sign_boot
from heads.testing.gpghome import GpgHome, kill_agent, make_owner_key

pytestmark = [pytest.mark.gpg]

# Far beyond what any of these commands needs on this machine, even when others load it.
GUARD_S = 600.0
SPOOF = "zz: ok\n  verdict:   OK\x1b[8m"
SPARSE_SIZE = 3 * 1024**3


@pytest.fixture
def boot(tmp_path: Path, owner: Owner) -> Path:
    d = tmp_path / "boot"
    (d / "grub").mkdir(parents=True)
    (d / "vmlinuz").write_bytes(b"kernel " * 1000)
    (d / "initrd.img").write_bytes(b"initrd " * 1000)
    (d / "grub" / "grub.cfg").write_text("menuentry 'Debian' { linux /vmlinuz }\n")
    sign_boot(d, gnupghome=owner.home, key=owner.fpr, tpm=None, rollback=False)
    return d


def guarded(fn: Callable[[], int]) -> int:
    """``fn()`` in a daemon thread; fails the test if it has not returned after GUARD_S."""
    result: list[int] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(GUARD_S)
    if thread.is_alive():
        pytest.fail(f"still running after {GUARD_S:.0f} s: it blocks on something in /boot")
    if errors:
        raise errors[0]
    return result[0]


def verify_args(boot: Path, owner: Owner, *extra: str) -> list[str]:
    return ["boot", "verify", str(boot), "--keyring", str(owner.keyring), "--no-rollback", *extra]


def sign_args(boot: Path, owner: Owner) -> list[str]:
    return [
        "boot",
        "sign",
        str(boot),
        "--gnupghome",
        str(owner.home),
        "--key",
        owner.fpr,
        "--no-rollback",
    ]


# -- 1. nothing on /boot that is not a regular file is ever opened ---------------------------


def test_fifo_commit_record_fails_verify_naming_it_and_does_not_hang(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    (boot / STAGING_NAME).mkdir()
    os.mkfifo(boot / STAGING_NAME / COMMIT_NAME)
    assert guarded(lambda: main(verify_args(boot, owner))) == 3
    out = capsys.readouterr().out
    assert "./kexec.staging/COMMIT: not a regular file" in out
    assert "verdict:   FAILED" in out


def test_fifo_commit_record_is_discarded_by_sign(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    (boot / STAGING_NAME).mkdir()
    os.mkfifo(boot / STAGING_NAME / COMMIT_NAME)
    assert guarded(lambda: main(sign_args(boot, owner))) == 0
    assert "interrupted signing was discarded" in capsys.readouterr().out
    assert "./kexec.staging/COMMIT: not a regular file; discarding it" in caplog.text
    assert not (boot / STAGING_NAME).exists()
    assert main(verify_args(boot, owner)) == 0


@pytest.mark.parametrize("name", ["kexec.sig", "kexec_hashes.txt", "kexec_rollback.txt"])
def test_fifo_under_a_signed_kexec_name_fails_verify_naming_it(
    boot: Path, owner: Owner, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (boot / name).unlink(missing_ok=True)
    os.mkfifo(boot / name)
    assert guarded(lambda: main(verify_args(boot, owner))) == 3
    assert f"cannot read ./{name}: not a regular file" in capsys.readouterr().out


def test_fifo_under_a_hashed_name_is_changed_in_verify_and_refused_by_sign(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    (boot / "vmlinuz").unlink()
    os.mkfifo(boot / "vmlinuz")
    assert guarded(lambda: main(verify_args(boot, owner))) == 3
    assert "(changed)  ./vmlinuz: was a regular file, is now a special file" in (
        capsys.readouterr().out
    )
    # Signing lists the tree first: a FIFO is not a regular file, so it is neither opened
    # nor hashed; the tree records it and verification then passes.
    assert guarded(lambda: main(sign_args(boot, owner))) == 0
    assert main(verify_args(boot, owner)) == 0


def test_fifo_default_entry_is_refused_by_boot_kexec(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(boot / "kexec_default.1.txt")
    (boot / "kexec_default_hashes.txt").write_text("")
    args = ["boot", "kexec", str(boot), "--default", "--dry-run", "--unsafe-skip-verification"]
    assert guarded(lambda: main(args)) == 2
    assert "kexec_default.1.txt: not a regular file" in capsys.readouterr().err


# -- 2. every small file has a cap: a sparse 3 GiB file costs nothing --------------------------


# Runs heads as its own child and reports that child's peak RSS (wait4: gpgv and any other
# process it waited for included).  The extra process matters: a process started from this
# one (posix_spawn shares our memory until exec) inherits our own peak RSS, which after a long
# test session is larger than any bound worth asserting.
_MEASURE = """
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "heads", *argv], dict(os.environ))
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as fh:
    fh.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_child(argv: list[str], out: Path) -> tuple[int, int]:
    """``python -m heads ARGV`` as a grandchild; (exit status, its peak RSS in KiB)."""
    report = out.with_name(out.name + ".rusage")
    stdout = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", _MEASURE, str(report), *argv],
            dict(os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_DUP2, stdout, 2)],
            setpgroup=0,
        )
    finally:
        os.close(stdout)
    deadline = time.monotonic() + GUARD_S
    while True:
        done, status, _usage = os.wait4(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, out.read_text()
            code, maxrss = report.read_text().split()
            return int(code), int(maxrss)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.wait4(pid, 0)
            pytest.fail(f"still running after {GUARD_S:.0f} s")
        time.sleep(0.05)


@pytest.mark.parametrize(
    "where",
    [f"{STAGING_NAME}/{COMMIT_NAME}", "kexec_hashes.txt", "kexec.sig", "kexec_extra.txt"],
)
def test_sparse_3gib_small_file_fails_verify_in_bounded_memory(
    boot: Path, owner: Owner, tmp_path: Path, where: str
) -> None:
    target = boot / where
    target.parent.mkdir(exist_ok=True)
    with target.open("wb") as f:
        f.truncate(SPARSE_SIZE)  # sparse: no disk space, 3 GiB of zeros to whoever reads it
    log = tmp_path / "out.txt"
    code, maxrss_kib = run_child(verify_args(boot, owner), log)
    text = log.read_text()
    assert code == 3, text
    assert f"cannot read ./{where}: larger than" in text
    assert "Traceback" not in text
    assert maxrss_kib < 300 * 1024, f"peak RSS {maxrss_kib} KiB"


def test_sparse_3gib_default_entry_is_refused_by_boot_kexec(
    boot: Path, owner: Owner, tmp_path: Path
) -> None:
    with (boot / "kexec_default.1.txt").open("wb") as f:
        f.truncate(SPARSE_SIZE)
    log = tmp_path / "out.txt"
    args = ["boot", "kexec", str(boot), "--default", "--dry-run", "--unsafe-skip-verification"]
    code, maxrss_kib = run_child(args, log)
    text = log.read_text()
    assert code == 1, text  # a FormatError: the file is larger than any entry line
    assert "kexec_default.1.txt: larger than" in text
    assert maxrss_kib < 300 * 1024, f"peak RSS {maxrss_kib} KiB"


# -- 3. names cannot forge the report ---------------------------------------------------------

HOSTILE = {
    SPOOF: "zz: ok\\n  verdict:   OK\\x1b[8m",
    "cr\rshown over": "cr\\rshown over",
    "gpj.\u202eexe": "gpj.\\u202eexe",
    "back\\slash": "back\\\\slash",
    "line\u2028sep": "line\\u2028sep",
}


def assert_one_visible_report(text: str) -> None:
    verdicts = [ln for ln in text.splitlines() if ln.lstrip().startswith("verdict:")]
    assert verdicts == ["  verdict:   FAILED: possible tampering"], text
    for ch in ("\x1b", "\r", "\u202e", "\u2028"):
        assert ch not in text


def test_hostile_names_are_escaped_in_the_verify_report(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in HOSTILE:
        (boot / name).write_bytes(b"x")
    (boot / os.fsdecode(b"latin1-\xe9")).write_bytes(b"x")
    assert main(verify_args(boot, owner)) == 3
    out = capsys.readouterr().out
    assert_one_visible_report(out)
    for escaped in HOSTILE.values():
        assert f"(new)      ./{escaped}: " in out
    assert "(new)      ./latin1-\\xe9: " in out
    # JSON stays JSON: the real names, escaped by the JSON encoder, and ASCII only.
    assert main(verify_args(boot, owner, "--json")) == 3
    raw = capsys.readouterr().out
    assert raw.isascii()
    report = json.loads(raw)
    new = {f["path"] for f in report["files"] if f["status"] == "new"}
    assert new == {f"./{n}" for n in HOSTILE} | {"./latin1-\\xe9"}


def test_hostile_name_in_a_refused_signing_is_escaped(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    (boot / SPOOF).write_bytes(b"x")
    assert main(sign_args(boot, owner)) == 1
    err = capsys.readouterr().err
    assert "./zz: ok\\n  verdict:   OK\\x1b[8m contains byte 0x0a" in err
    assert "\x1b" not in err
    assert err.count("\n") == 2  # the error line and its hint


def test_hostile_boot_entry_title_and_paths_are_escaped_in_boot_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "boot"
    (d / "grub").mkdir(parents=True)
    kernel = "vmlinuz-\u202eevil"
    (d / kernel).write_bytes(b"kernel")
    (d / "grub" / "grub.cfg").write_text(
        f"menuentry 'Debian\x1b[8m hidden' {{\n  linux /{kernel} root=/dev/sda1\n}}\n"
        # A CR cannot be expressed in Heads' entry line: this one is left out, with its title.
        "menuentry 'cr\rfake  1  OK' {\n  linux /vmlinuz-missing\n}\n"
    )
    assert main(["boot", "list", str(d), "--all"]) == 0
    out = capsys.readouterr().out
    assert "Debian\\x1b[8m hidden" in out
    assert "vmlinuz-\\u202eevil" in out
    assert "cr\\rfake  1  OK" in out
    for ch in ("\x1b", "\r", "\u202e"):
        assert ch not in out
    assert main(["boot", "list", str(d), "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["entries"][0]
    assert entry["title"] == "Debian\x1b[8m hidden"


# -- 4. keyrings and signatures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the keyring is empty"),
        (b"^\x00garbage that is not OpenPGP" * 10, "not an OpenPGP packet"),
        (b"\x99\x00\x0d\x04truncated", "runs past the end of the file"),
    ],
    ids=["empty", "garbage", "truncated"],
)
def test_empty_or_corrupt_keyring_is_a_configuration_error(
    boot: Path, content: bytes, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring = boot.parent / "bad.gpg"
    keyring.write_bytes(content)
    args = ["boot", "verify", str(boot), "--keyring", str(keyring), "--no-rollback"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "unusable keyring" in captured.err
    assert reason in captured.err
    assert "tampering" not in captured.out + captured.err


def test_corrupted_tail_of_a_real_keyring_is_a_configuration_error(
    boot: Path, owner: Owner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring = tmp_path / "cut.gpg"
    keyring.write_bytes(owner.keyring.read_bytes()[:-7])
    args = ["boot", "verify", str(boot), "--keyring", str(keyring), "--no-rollback"]
    assert main(args) == 2
    assert "runs past the end of the file" in capsys.readouterr().err


def test_keybox_keyring_as_gpg_writes_it_verifies(
    boot: Path, owner: Owner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with GpgHome() as home:
        run(
            ["gpg", "--homedir", str(home.path), "--batch", "--import", str(owner.keyring)],
            desc="import into a keybox",
        )
        kill_agent(home.path)
        keybox = tmp_path / "pubring.kbx"
        shutil.copy(home.path / "pubring.kbx", keybox)
    args = ["boot", "verify", str(boot), "--keyring", str(keybox), "--no-rollback"]
    assert main(args) == 0, capsys.readouterr()


@pytest.mark.parametrize("order", ["foreign-first", "owner-first"])
def test_a_foreign_signature_beside_the_owners_fails_and_is_named(
    boot: Path, owner: Owner, order: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = (boot / "kexec.sig").read_bytes()
    with GpgHome() as stranger:
        fpr = make_owner_key(stranger.path, "Mallory", "mallory@heads.invalid")
        payload = run(["sh", "-c", "sha256sum kexec*.txt"], desc="signed text", cwd=boot).stdout
        theirs = run(
            ["gpg", "--homedir", str(stranger.path), "--batch", "--armor", "--detach-sign"],
            desc="foreign signature",
            stdin=payload,
        ).stdout
    sigs = [theirs, ours] if order == "foreign-first" else [ours, theirs]
    (boot / "kexec.sig").write_bytes(b"".join(sigs))
    # gpgv itself (and so Heads, which only reads its exit status) refuses the file.
    shell = f"sha256sum kexec*.txt | gpgv --keyring {owner.keyring} kexec.sig -"
    assert run(["sh", "-c", shell], desc="gpgv", cwd=boot, check=False).returncode != 0

    assert main(verify_args(boot, owner)) == 3
    out = capsys.readouterr().out
    assert f"signature: SIGNED BY UNTRUSTED KEY by {fpr}" in out
    assert f"signed by a key that is not in the keyring (key {fpr})" in out
    number = 1 if order == "foreign-first" else 2
    assert f"signature {number} by {fpr}: no public key" in out
    assert f"signature {3 - number} by {owner.fpr}: good" in out
    assert "files:     NOT CHECKED" in out
    assert main(verify_args(boot, owner, "--json")) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["signature"]["state"] == "unknown key"
    assert report["signature"]["fingerprint"] == fpr


def test_no_rollback_says_the_counter_was_not_checked(
    boot: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(verify_args(boot, owner)) == 0
    out = capsys.readouterr().out
    assert "  rollback:  NOT CHECKED: no TPM given\n" in out
    assert "rollback:  OK" not in out
    assert "verdict:   OK, except that the rollback counter was not checked" in out
    (boot / "kexec.sig").unlink()
    assert main(verify_args(boot, owner)) == 3
    assert "  rollback:  NOT CHECKED: no TPM given\n" in capsys.readouterr().out


def test_error_messages_are_scrubbed_before_the_terminal(
    tmp_path: Path, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no\x1b[8m\u202edir\nerror: fake"
    args = ["boot", "verify", str(missing), "--keyring", str(owner.keyring), "--no-rollback"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no\\x1b[8m\\u202edir\\nerror: fake is not a directory" in err
    assert err.count("error:") == 2  # the real one, and the escaped text of the fake
    assert err.startswith("error: ")
    assert len(err.splitlines()) == 1
