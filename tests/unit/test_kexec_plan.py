"""KexecPlan: built only from verified digests, the exact kexec-tools argv, the adapter's
refusal to load bytes that differ from the plan."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from heads.adapters.kexec import KexecTools
from heads.core.bootcfg.entry import BootEntry, EntryKind, MultibootModule
from heads.core.kexec_plan import (
    XEN_EXTRA_ARGS,
    CmdlineRules,
    VerifiedDigests,
    plan_kexec,
    unsafe_plan_without_verification,
)
from heads.errors import HashMismatchError, VerificationError

ELF = BootEntry(
    "Debian",
    EntryKind.ELF,
    "/vmlinuz",
    initrds=("/initrd.img",),
    cmdline="root=/dev/sda2 ro quiet",
)
XEN = BootEntry(
    "Qubes",
    EntryKind.XEN,
    "/xen.gz",
    cmdline="dom0_mem=max:4096M",
    modules=(MultibootModule("/vmlinuz-6.6", "root=/dev/x ro quiet"), MultibootModule("/i.img")),
)


def _digests(*paths: str) -> VerifiedDigests:
    return VerifiedDigests({p: hashlib.sha256(p.encode()).digest() for p in paths}, "test")


def _opened(*paths: str) -> dict[str, str]:
    return {p: "/boot" + p for p in paths}


def test_elf_plan_argv_uses_kexec_file_load() -> None:
    plan = plan_kexec(ELF, _digests("/vmlinuz", "/initrd.img"))
    assert plan.kernel.sha256 == hashlib.sha256(b"/vmlinuz").digest()
    assert plan.verified_by == "test"
    assert plan.argv(_opened("/vmlinuz", "/initrd.img")) == [
        "kexec",
        "-s",
        "-l",
        "/boot/vmlinuz",
        "--initrd=/boot/initrd.img",
        "--append=root=/dev/sda2 ro quiet",
    ]


def test_no_append_without_parameters_and_one_initrd_for_several() -> None:
    memtest = BootEntry("memtest", EntryKind.ELF, "/memtest")
    assert plan_kexec(memtest, _digests("/memtest")).argv(_opened("/memtest")) == [
        "kexec",
        "-s",
        "-l",
        "/boot/memtest",
    ]
    two = BootEntry("t", EntryKind.ELF, "/k", initrds=("/ucode", "/initrd"))
    plan = plan_kexec(two, _digests("/k", "/ucode", "/initrd"))
    assert plan.argv(_opened("/k"), initrd="/proc/self/fd/7") == [
        "kexec",
        "-s",
        "-l",
        "/boot/k",
        "--initrd=/proc/self/fd/7",
    ]


def test_xen_plan_uses_multiboot2_with_heads_arguments_and_rules_on_dom0() -> None:
    plan = plan_kexec(
        XEN,
        _digests("/xen.gz", "/vmlinuz-6.6", "/i.img"),
        CmdlineRules(remove=("quiet",), board_add="intel_iommu=on"),
    )
    assert plan.argv(_opened("/xen.gz", "/vmlinuz-6.6", "/i.img")) == [
        "kexec",
        "-l",
        "/boot/xen.gz",
        "--type=multiboot2-x86",
        f"--command-line=dom0_mem=max:4096M {XEN_EXTRA_ARGS}",
        "--module=/boot/vmlinuz-6.6 root=/dev/x ro intel_iommu=on",
        "--module=/boot/i.img",
    ]


def test_command_line_rules_apply_to_elf_entries() -> None:
    rules = CmdlineRules(add="iso-scan/filename=/d.iso", remove=("quiet",), blob_jail=True)
    plan = plan_kexec(ELF, _digests("/vmlinuz", "/initrd.img"), rules)
    assert plan.cmdline == (
        "root=/dev/sda2 ro iso-scan/filename=/d.iso firmware_class.path=/firmware/"
    )


def test_uncovered_file_is_a_verification_error_naming_it() -> None:
    with pytest.raises(VerificationError, match=r"/initrd\.img of entry .Debian. not covered"):
        plan_kexec(ELF, _digests("/vmlinuz"))


def test_unsafe_plan_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="heads.core.kexec_plan"):
        plan = unsafe_plan_without_verification(ELF, reason="recovery")
    assert plan.verified_by is None
    assert plan.kernel.sha256 is None
    assert "WITHOUT verifying" in caplog.text
    assert "recovery" in caplog.text


def test_adapter_refuses_bytes_that_differ_from_the_plan_before_running_kexec(
    tmp_path: Path,
) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"verified kernel")
    (tmp_path / "initrd.img").write_bytes(b"initrd")
    digests = VerifiedDigests(
        {
            "/vmlinuz": hashlib.sha256(b"verified kernel").digest(),
            "/initrd.img": hashlib.sha256(b"initrd").digest(),
        },
        "test",
    )
    plan = plan_kexec(ELF, digests)
    (tmp_path / "vmlinuz").write_bytes(b"tampered kernel")
    with pytest.raises(HashMismatchError, match="/vmlinuz changed after verification"):
        KexecTools().load(plan, tmp_path)


def test_adapter_appends_the_disk_key_archive_in_memory(tmp_path: Path) -> None:
    # What kexec would read: the verified initrd, zeros to 512 bytes, then the archive.
    (tmp_path / "vmlinuz").write_bytes(b"verified kernel")
    (tmp_path / "initrd.img").write_bytes(b"initrd" * 100)
    digests = VerifiedDigests(
        {
            "/vmlinuz": hashlib.sha256(b"verified kernel").digest(),
            "/initrd.img": hashlib.sha256(b"initrd" * 100).digest(),
        },
        "test",
    )
    plan = plan_kexec(ELF, digests)
    with KexecTools()._verified_copies(plan, tmp_path, b"ARCHIVE") as fds:
        initrd = os.pread(fds["initrd"], 4096, 0)
        assert str(Path(f"/proc/self/fd/{fds['initrd']}").readlink()).startswith("/memfd:")
    assert initrd == b"initrd" * 100 + bytes(512 - 600 % 512) + b"ARCHIVE"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initrd.img", "vmlinuz"]
