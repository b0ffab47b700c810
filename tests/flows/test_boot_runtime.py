"""The boot runtime on the host against a real swtpm (no QEMU, kexec only printed).

What the guest does, minus the kernel: user files from a CBFS image measured into PCR 7, TOTP
provisioning then display, /boot verification against a keyring from the image, PCR 4
``generic`` on success and ``recovery`` on any failure.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import require_tools
from heads.adapters.tpm import open_tpm
from heads.core.cbfs import CbfsFile, build_cbfs
from heads.core.digest import HashAlg, extend, zero_digest
from heads.core.otp import parse_otpauth_uri, totp_code
from heads.flows.boot_entries import save_default
from heads.flows.boot_signing import sign_boot
from heads.flows.totp import totp_exists
from heads.runtime.boot import EXIT_POWEROFF, RuntimeEnv, run_boot
from heads.testing.gpghome import GpgHome, export_public_keyring, make_owner_key
from heads.testing.swtpm import Swtpm

pytestmark = [pytest.mark.swtpm, pytest.mark.gpg]

CONFIG = b'export CONFIG_BOOT_DEV="/dev/nvme0n1"\n'


@pytest.fixture
def owner() -> Iterator[tuple[GpgHome, str]]:
    require_tools("gpg", "gpgv")
    with GpgHome() as home:
        yield home, make_owner_key(home.path)


def _machine(tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str], config: bytes) -> RuntimeEnv:
    home, fpr = owner
    keyring = export_public_keyring(home.path, tmp_path / "pubring.gpg")
    rom = tmp_path / "user.rom"
    rom.write_bytes(
        build_cbfs(
            [
                CbfsFile("heads/initrd/.gnupg/pubring.kbx", keyring.read_bytes()),
                CbfsFile("heads/initrd/etc/config.user", config),
                CbfsFile("not-a-user-file", b"ignored"),
            ]
        )
    )
    boot = tmp_path / "boot"
    if not boot.exists():
        boot.mkdir()
        (boot / "vmlinuz").write_bytes(b"kernel " * 1000)
        (boot / "initrd.img").write_bytes(b"initrd " * 1000)
        (boot / "grub").mkdir()
        (boot / "grub" / "grub.cfg").write_text(
            "menuentry 'OS' {\n  linux /vmlinuz console=ttyS0\n  initrd /initrd.img\n}\n"
        )
        saved = save_default(boot, 1)
        assert saved.entry.to_line() == (
            "OS|elf|kernel /vmlinuz|initrd /initrd.img|append console=ttyS0"
        )
        with open_tpm(swtpm.tcti) as tpm:
            sign_boot(boot, gnupghome=home.path, key=fpr, tpm=tpm)
    return RuntimeEnv(
        tcti=swtpm.tcti,
        rom=rom,
        root=tmp_path / "root",
        firmware_log=tmp_path / "no-firmware-log",
        event_log=tmp_path / "root" / "run" / "measurements.cel.jsonl",
        boot_device="",
        boot_dir=boot,
        profile="uefi",
        batch=True,
        do_kexec=False,
    )


def _boot(env: RuntimeEnv) -> tuple[int, str]:
    out = io.StringIO()
    code = run_boot(env, out)
    return code, out.getvalue()


def test_first_boot_provisions_then_second_boot_shows_same_secret(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    code, text = _boot(env)
    assert code == EXIT_POWEROFF
    uri = re.search(r"heads: TOTP URI (\S+)", text)
    shown = re.search(r"heads: TOTP (\d{6}) at (\S+)", text)
    assert uri is not None, text
    assert shown is not None, text
    assert "heads: /boot verified" in text
    assert "heads: kexec not run (dry run): kexec -s -l" in text
    assert '"generic"' in text
    assert "recovery" not in text
    # The user files were written where Heads' cbfs-init puts them.
    assert (env.root / "etc" / "config.user").read_bytes() == CONFIG
    assert not (env.root / "not-a-user-file").exists()
    # PCR 7 = path string then bytes, per file, in image order.
    pcr7 = zero_digest(HashAlg.SHA256)
    keyring = (env.root / ".gnupg" / "pubring.kbx").read_bytes()
    for rel, data in (("/.gnupg/pubring.kbx", keyring), ("/etc/config.user", CONFIG)):
        pcr7 = extend(HashAlg.SHA256, pcr7, hashlib.sha256(rel.encode()).digest())
        pcr7 = extend(HashAlg.SHA256, pcr7, hashlib.sha256(data).digest())
    with open_tpm(swtpm.tcti) as tpm:
        assert tpm.read_pcrs(HashAlg.SHA256, [7])[7] == pcr7

    swtpm.restart()  # power cycle: PCRs reset, sealed secret kept (new port)
    env.event_log.unlink()
    code, text2 = _boot(replace(env, tcti=swtpm.tcti))
    assert code == EXIT_POWEROFF
    assert "TOTP URI" not in text2
    again = re.search(r"heads: TOTP (\d{6}) at (\S+)", text2)
    assert again is not None, text2
    secret = parse_otpauth_uri(uri.group(1)).secret
    when = datetime.strptime(again.group(2), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert again.group(1) == totp_code(secret, when).code


def test_changed_file_in_boot_is_refused_with_recovery(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    data = bytearray((env.boot_dir / "vmlinuz").read_bytes())
    data[10] ^= 1
    (env.boot_dir / "vmlinuz").write_bytes(bytes(data))
    code, text = _boot(env)
    assert code == EXIT_POWEROFF
    assert "heads: INTEGRITY REPORT:" in text
    assert re.search(r"\(changed\)\s+\./vmlinuz", text), text
    assert 'PCR 4 extended with "recovery"' in text
    assert re.search(r"heads: log #\d+ PCR 4 string recovery", text)
    assert "generic" not in text
    assert "kexec" not in text.replace("kexec_", "")


def test_changed_config_user_moves_pcr7_and_totp_is_refused(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    code, text = _boot(env)
    assert "TOTP URI" in text
    swtpm.restart()
    env.event_log.unlink()
    env2 = _machine(tmp_path, swtpm, owner, CONFIG + b'export CONFIG_X="y"\n')
    code, text = _boot(env2)
    assert code == EXIT_POWEROFF
    assert "heads: INTEGRITY REPORT:" in text
    # Only PCR 7 of the sealed PCRs (0-4, 7, 9) moved: the config is not part of the payload.
    assert "PCR 7 changed since it was sealed" in text, text
    assert "TOTP URI" not in text
    assert not re.search(r"heads: TOTP \d{6}", text)
    assert 'PCR 4 extended with "recovery"' in text


def _guarded_boot(env: RuntimeEnv) -> tuple[int, str]:
    """:func:`_boot` in a thread; a boot still running after 600 s fails the test (a hang
    guard, far beyond the few seconds a boot takes here, not a timing assertion)."""
    result: list[tuple[int, str]] = []
    thread = threading.Thread(target=lambda: result.append(_boot(env)), daemon=True)
    thread.start()
    thread.join(600)
    if thread.is_alive():
        pytest.fail("the boot runtime blocks on something in /boot")
    assert result, "the boot raised instead of returning an exit status"
    return result[0]


def test_fifo_commit_record_in_boot_is_refused_not_waited_on(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    (env.boot_dir / "kexec.staging").mkdir()
    os.mkfifo(env.boot_dir / "kexec.staging" / "COMMIT")
    code, text = _guarded_boot(env)
    assert code == EXIT_POWEROFF
    assert "heads: INTEGRITY REPORT:" in text
    assert "cannot read ./kexec.staging/COMMIT: not a regular file" in text
    assert 'PCR 4 extended with "recovery"' in text
    assert "generic" not in text


def test_fifo_default_entry_is_refused_not_waited_on(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    (env.boot_dir / "kexec_default.1.txt").unlink()
    os.mkfifo(env.boot_dir / "kexec_default.1.txt")
    code, text = _guarded_boot(env)
    assert code == EXIT_POWEROFF
    assert "cannot read ./kexec_default.1.txt: not a regular file" in text
    assert 'PCR 4 extended with "recovery"' in text


def test_hostile_names_are_escaped_on_the_console(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    names = {
        "zz: ok\n  verdict:   OK\x1b[8m": "zz: ok\\n  verdict:   OK\\x1b[8m",
        "cr\rheads: boot verified": "cr\\rheads: boot verified",
        "ls\u2028heads: kexec vmlinuz": "ls\\u2028heads: kexec vmlinuz",
        "gpj.\u202eexe": "gpj.\\u202eexe",
        "back\\slash": "back\\\\slash",
    }
    for name in names:
        (env.boot_dir / name).write_bytes(b"planted")
    code, text = _guarded_boot(env)
    assert code == EXIT_POWEROFF
    for escaped in names.values():
        assert f"heads:       (new)      ./{escaped}: file not in the signed list\n" in text
    for ch in ("\x1b", "\r", "\u202e", "\u2028"):
        assert ch not in text
    assert not [ln for ln in text.splitlines() if ln.startswith("  verdict")]
    assert "heads: /boot verified" not in text
    assert "\nheads: kexec" not in text
    assert 'PCR 4 extended with "recovery"' in text


def test_hostile_default_entry_title_is_escaped_on_the_console(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz").write_bytes(b"kernel " * 1000)
    # Signed by the owner, yet the title still reaches the console escaped.
    (boot / "kexec_default.1.txt").write_text(
        "OS\x1b[2J\u202eevil|elf|kernel /vmlinuz|append console=ttyS0\n"
    )
    kernel_digest = hashlib.sha256((boot / "vmlinuz").read_bytes()).hexdigest()
    (boot / "kexec_default_hashes.txt").write_text(f"{kernel_digest}  ./vmlinuz\n")
    home, fpr = owner
    with open_tpm(swtpm.tcti) as tpm:
        sign_boot(boot, gnupghome=home.path, key=fpr, tpm=tpm)
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    code, text = _guarded_boot(env)
    assert code == EXIT_POWEROFF, text
    assert "heads: default entry: OS\\x1b[2J\\u202eevil\n" in text
    assert "heads: kexec /vmlinuz (OS\\x1b[2J\\u202eevil)\n" in text
    assert "\x1b" not in text
    assert "\u202e" not in text


def test_swapped_tpm_raises_the_alarm_and_seals_nothing(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str], manufactured_state: Path
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG)
    code, text = _boot(env)
    assert "TOTP URI" in text, text
    # Another TPM, freshly manufactured: no rollback counter, no secret.
    other_state = tmp_path / "other-tpm"
    shutil.copytree(manufactured_state, other_state)
    other = Swtpm(other_state)
    other.start()
    try:
        env.event_log.unlink()
        code, text = _boot(replace(env, tcti=other.tcti))
        assert code == EXIT_POWEROFF
        assert "heads: INTEGRITY REPORT: TPM integrity counter cannot be read" in text, text
        assert "possible TPM reset or swap" in text
        assert "TOTP URI" not in text
        assert not re.search(r"heads: TOTP \d{6}", text)
        assert "/boot verified" not in text
        assert 'PCR 4 extended with "recovery"' in text
        with open_tpm(other.tcti) as tpm:
            assert not totp_exists(tpm)
    finally:
        other.stop()


def _two_entry_boot(tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]) -> RuntimeEnv:
    boot = tmp_path / "boot"
    boot.mkdir()
    for name in ("vmlinuz-old", "vmlinuz-new"):
        (boot / name).write_bytes(name.encode() * 500)
    (boot / "grub").mkdir()
    (boot / "grub" / "grub.cfg").write_text(
        "menuentry 'new' {\n  linux /vmlinuz-new console=ttyS0\n}\n"
        "menuentry 'old' {\n  linux /vmlinuz-old console=ttyS0\n}\n"
    )
    save_default(boot, 2)
    home, fpr = owner
    with open_tpm(swtpm.tcti) as tpm:
        sign_boot(boot, gnupghome=home.path, key=fpr, tpm=tpm)
    return _machine(tmp_path, swtpm, owner, CONFIG)


def test_default_entry_2_boots_entry_2(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _two_entry_boot(tmp_path, swtpm, owner)
    code, text = _boot(env)
    assert code == EXIT_POWEROFF
    assert "heads: default entry: old\n" in text, text
    assert "heads: kexec /vmlinuz-old (old)\n" in text
    assert "Boot Entry Has Changed" not in text
    assert '"generic"' in text


def test_default_hashes_that_differ_from_the_entry_are_a_boot_hash_mismatch(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _two_entry_boot(tmp_path, swtpm, owner)
    # The owner updated the kernel and re-signed /boot but did not choose the default again:
    # the signed list covers the new bytes, kexec_default_hashes.txt still has the old ones.
    (env.boot_dir / "vmlinuz-old").write_bytes(b"updated kernel")
    home, fpr = owner
    with open_tpm(env.tcti) as tpm:
        sign_boot(env.boot_dir, gnupghome=home.path, key=fpr, tpm=tpm)
    code, text = _boot(env)
    assert code == EXIT_POWEROFF
    assert "heads: INTEGRITY REPORT: /vmlinuz-old differs from the digest saved" in text, text
    assert "heads:   Boot Hash Mismatch" in text
    assert "\nheads: kexec " not in text
    assert 'PCR 4 extended with "recovery"' in text


def test_config_user_from_the_image_sets_the_mode(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG + b'export CONFIG_RESTRICTED_BOOT="y"\n')
    data = bytearray((env.boot_dir / "vmlinuz").read_bytes())
    data[10] ^= 1
    (env.boot_dir / "vmlinuz").write_bytes(bytes(data))
    code, text = _boot(env)
    assert "heads: configuration: Restricted mode\n" in text, text
    assert code == EXIT_POWEROFF
    assert 'PCR 4 extended with "recovery"' in text


def test_a_malformed_config_user_is_named_and_left_out(
    tmp_path: Path, swtpm: Swtpm, owner: tuple[GpgHome, str]
) -> None:
    env = _machine(tmp_path, swtpm, owner, CONFIG + b'export CONFIG_BASIC="$(reboot)"\n')
    code, text = _boot(env)
    assert code == EXIT_POWEROFF
    assert re.search(r"heads: configuration ignored: .*config\.user.*line 2", text), text
    assert "heads: configuration: normal mode\n" in text
    assert "heads: /boot verified" in text
