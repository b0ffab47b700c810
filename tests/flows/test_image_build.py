"""The payload builder on the real pinned inputs: reproducible, manifest true, inputs checked,
and the result boots under OVMF with a TPM (Python and heads' TPM layer, kexec, gpgv, drivers
built into the kernel: no modules)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import pinned_cache, require_tools
from heads.adapters._run import run
from heads.adapters.qemu import OVMF_BIOS, QemuConsole, QemuSpec
from heads.adapters.swtpm import manufacture, serve_qemu
from heads.cli.main import main
from heads.core.cpio import Kind, read_newc
from heads.errors import FormatError, HashMismatchError, UsageError
from heads.flows.image_build import (
    DEFAULT_LOCK,
    Payload,
    PayloadLock,
    _diff_manifests,
    _elf_info,
    build_payload,
    compare_published,
    default_cache_dir,
    published_digests,
)
from heads.flows.kernel_build import build_kernel

SMOKE_INIT = b"""#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
echo "SMOKE: init"
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
[ -e /proc/modules ] || [ -e /lib/modules ] || echo "SMOKE: no modules"
[ -e /dev/tpmrm0 ] && echo "SMOKE: tpm ok"
[ "$(cat /proc/sys/kernel/kexec_load_disabled)" = 0 ] && echo "SMOKE: kexec allowed"
mount -t securityfs securityfs /sys/kernel/security
log=/sys/kernel/security/tpm0/binary_bios_measurements
[ "$(head -c 32 "$log" | wc -c)" = 32 ] && echo "SMOKE: event log ok"
[ -d /sys/firmware/qemu_fw_cfg/by_name/opt/heads ] && echo "SMOKE: fw_cfg ok"
. /etc/heads/python.env; export PYTHONHOME PYTHONPATH PYTHONDONTWRITEBYTECODE
kexec --version 2>&1 | head -n 1 | sed 's/^/SMOKE: /'
gpgv --version 2>&1 | head -n 1 | sed 's/^/SMOKE: /'
python3 -c "
import heads.runtime, segno
from heads.adapters.tpm import open_tpm
with open_tpm('device:/dev/tpmrm0') as tpm:
    print('SMOKE: python ok, random', len(tpm.get_random(8)))
"
echo "SMOKE: done"
poweroff -f
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    require_tools("apt-get", "dpkg-deb", "zstd")
    out = tmp_path_factory.mktemp("payload")
    init = out.parent / "smoke-init.sh"
    init.write_bytes(SMOKE_INIT)
    return build_payload(out, cache_dir=default_cache_dir(), init_script=init)


def _archive_parts(payload: Payload) -> list[bytes]:
    cpio = run(["zstd", "-dc"], desc="decompress", stdin=payload.initramfs.read_bytes()).stdout
    manifest = json.loads(payload.manifest.read_bytes())
    parts, pos = [], 0
    for part in manifest["initramfs"]["parts"]:
        parts.append(cpio[pos : pos + part["cpio_size"]])
        pos += part["cpio_size"]
    assert pos == len(cpio)
    return parts


PUBLISHED = DEFAULT_LOCK.parent / "published.json"


@pytest.mark.slow
def test_the_published_digests_are_those_of_the_committed_lock(built: Payload) -> None:
    """The kernel and the pinned-inputs part of the initramfs do not depend on /init or on
    heads' own sources, so a build with any /init must reproduce their published digests; a
    lock changed without republishing fails here."""
    if not built.published:
        # The archive moved on: this build used current versions, as it says.  Only the
        # exported inputs of the lock rebuild the published payload now.
        pytest.skip(f"pinned packages are gone from the archive: {', '.join(built.lock_changes)}")
    published = json.loads(PUBLISHED.read_bytes())
    manifest = json.loads(built.manifest.read_bytes())
    ours = published_digests(manifest)
    assert published["lock_sha256"] == ours["lock_sha256"], "run heads build --publish"
    assert published["kernel_sha256"] == ours["kernel_sha256"]
    assert published["base_cpio_sha256"] == ours["base_cpio_sha256"]
    # With another /init, only the parts holding it may differ.
    for line in compare_published(manifest, published):
        assert line.startswith(("heads and /init", "the compressed initramfs")), line


def test_compare_published_names_each_part_that_differs() -> None:
    manifest = {
        "lock_sha256": "l",
        "kernel": {"sha256": "k"},
        "initramfs": {"sha256": "i", "parts": [{"cpio_sha256": "b"}, {"cpio_sha256": "h"}]},
    }
    same = published_digests(manifest)
    assert compare_published(manifest, same) == []
    other = {**same, "kernel_sha256": "x", "heads_cpio_sha256": "y"}
    lines = compare_published(manifest, other)
    assert len(lines) == 2
    assert lines[0].startswith("the kernel: published x, built k")
    assert lines[1].startswith("heads and /init")


@pytest.mark.slow
def test_manifest_describes_every_member_and_output(built: Payload) -> None:
    manifest = json.loads(built.manifest.read_bytes())
    assert (
        manifest["initramfs"]["sha256"] == hashlib.sha256(built.initramfs.read_bytes()).hexdigest()
    )
    assert manifest["kernel"]["sha256"] == hashlib.sha256(built.kernel.read_bytes()).hexdigest()
    members: dict[str, str] = manifest["members"]
    seen = 0
    for part in _archive_parts(built):
        for m in read_newc(part):
            seen += 1
            assert (m.uid, m.gid, m.mtime) == (0, 0, manifest["source_date_epoch"])
            if m.kind is Kind.FILE:
                assert members[m.name].endswith(hashlib.sha256(m.data).hexdigest()), m.name
    assert seen >= len([k for k in members if "!" not in k])
    for path in ("init", "bin/busybox", "sbin/kexec", "usr/bin/gpgv", "usr/bin/python3.11"):
        assert path in members
    assert members["dev/console"] == "c 5,1"
    assert any(k.startswith("usr/lib/python311.zip!encodings/") for k in members)
    assert "usr/lib/python3/heads-site/heads/runtime/__init__.pyc" in members
    assert not any("heads/testing" in k for k in members)
    assert not any("libtss2" in k or "cryptography" in k or "cffi" in k for k in members)
    # cryptsetup for the disk key menus; what the runtime never uses is left out.
    assert "sbin/cryptsetup" in members
    assert "lib/x86_64-linux-gnu/libcryptsetup.so.12" in members
    assert not any("libssl" in k or "/_ssl." in k or "/_bz2." in k for k in members)
    assert not any(k.startswith("usr/lib/python311.zip!tarfile") for k in members)
    assert "usr/lib/python3/heads-site/heads/flows/image_build.pyc" not in members
    assert "usr/lib/python3/heads-site/heads/flows/disk_key.pyc" in members
    # The kernel: compiled from the pinned source, every driver built in (no modules shipped).
    assert not any(k.startswith("lib/modules") for k in members)
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    kernel = manifest["kernel"]
    assert kernel["source"] == f"{lock.kernel_pin.name} {lock.kernel_pin.version}"
    assert kernel["source_sha256"] == lock.kernel_pin.sha256
    assert kernel["platform"] == "qemu"
    assert kernel["version"] == built.kernel_version
    assert built.kernel_version.endswith("-heads")
    assert built.kernel_config is not None
    config = built.kernel_config.read_bytes()
    assert kernel["config_sha256"] == hashlib.sha256(config).hexdigest()
    assert b"# CONFIG_MODULES is not set\n" in config
    fragment = (DEFAULT_LOCK.parent / "kernel" / "qemu.fragment").read_bytes()
    assert kernel["fragment_sha256"] == hashlib.sha256(fragment).hexdigest()
    assert {"gcc-12", "binutils", "make"} <= set(kernel["toolchain"])
    assert manifest["build"] == {"kernel_from_cache": built.kernel_from_cache}


@pytest.mark.slow
def test_a_second_build_takes_the_kernel_from_the_cache(built: Payload) -> None:
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    said: list[str] = []
    again = build_kernel(
        lock.kernel_pin,
        cache_dir=default_cache_dir(),
        inputs=None,
        platform="qemu",
        epoch=lock.source_date_epoch,
        progress=said.append,
    )
    assert again.from_cache, said
    assert again.image == built.kernel.read_bytes()
    assert built.kernel_config is not None
    assert again.config == built.kernel_config.read_bytes()


@pytest.mark.slow
def test_pyc_are_hash_based_and_name_in_image_paths(built: Payload) -> None:
    top = read_newc(_archive_parts(built)[1])
    pyc = next(m for m in top if m.name.endswith("heads/__init__.pyc"))
    flags = int.from_bytes(pyc.data[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked (PEP 552)
    assert b"/usr/lib/python3/heads-site/heads/__init__.py" in pyc.data
    assert b"/tmp/" not in pyc.data


@pytest.mark.slow
def test_tampered_cached_package_is_refused(tmp_path: Path) -> None:
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    first = sorted(lock.debs, key=lambda d: (d.name == lock.kernel, d.name))[0]
    good = pinned_cache() / "debs" / first.filename
    bad = tmp_path / "cache" / "debs" / first.filename
    bad.parent.mkdir(parents=True)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    init = tmp_path / "init"
    init.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(HashMismatchError, match=first.name):
        build_payload(tmp_path / "out", cache_dir=tmp_path / "cache", init_script=init)


@pytest.mark.slow
def test_tampered_cached_python_artifact_is_refused(tmp_path: Path) -> None:
    require_tools("apt-get", "dpkg-deb")
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    cache = pinned_cache()
    pin = next(p for p in lock.python if p.name == "segno")
    files = [
        *(("debs", d.filename) for d in lock.debs),
        *(("python", p.file) for p in lock.python),
    ]
    # The debs as they are (links), the Python artifacts copied, segno's with one bit flipped.
    other = tmp_path / "cache"
    for sub, name in files:
        (other / sub).mkdir(parents=True, exist_ok=True)
        if sub == "debs":
            (other / sub / name).symlink_to(cache / sub / name)
        else:
            data = (cache / sub / name).read_bytes()
            if name == pin.file:
                flipped = bytearray(data)
                flipped[len(flipped) // 2] ^= 0x01
                data = bytes(flipped)
            (other / sub / name).write_bytes(data)
    init = tmp_path / "init"
    init.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(HashMismatchError, match=rf"segno {re.escape(pin.version)}") as info:
        build_payload(tmp_path / "out", cache_dir=other, init_script=init)
    assert pin.file in info.value.message
    assert not (tmp_path / "out").exists()


def test_lock_round_trip_and_malformed_locks(tmp_path: Path) -> None:
    lock = PayloadLock.from_bytes(DEFAULT_LOCK.read_bytes(), source="lock")
    assert PayloadLock.from_bytes(lock.to_bytes(), source="again") == lock
    assert lock.to_bytes() == DEFAULT_LOCK.read_bytes()
    for bad in (b"{", b"[]", b'{"format": 2}', b'{"format": 1, "debian": [{}]}'):
        with pytest.raises(FormatError, match=r"lock\.json"):
            PayloadLock.from_bytes(bad, source="lock.json")
    with pytest.raises(UsageError, match="does not exist"):
        build_payload(tmp_path, cache_dir=tmp_path, lock_path=tmp_path / "missing.json")


@pytest.mark.slow
@pytest.mark.rebuild
def test_build_check_two_builds_are_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("apt-get", "dpkg-deb", "zstd")
    init = tmp_path / "init"
    init.write_bytes(SMOKE_INIT)
    assert main(["build", "--check", "--init", str(init), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["differences"] == []
    assert report["identical"] is True
    assert report["first"]["initramfs_size"] > 0
    assert report["first"]["published"] is True
    varied = report["varied"]
    for what in ("HOME", "TZ", "umask 077", "cache path", "output path", "locale"):
        assert what in varied, varied
    if os.geteuid() == 0 and shutil.which("unshare") is not None:
        assert "host name" in varied
    else:
        assert "host name" not in varied


def test_build_cli_without_a_lock_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.json"
    assert main(["build", "--lock", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"error: lock file {missing} does not exist" in err
    assert "--update-lock" in err


def test_check_names_the_member_that_differs() -> None:
    a = {"members": {"init": "0755 aa", "bin/x": "0755 bb"}, "kernel": {"sha256": "k"}}
    b = {"members": {"init": "0755 aa", "bin/x": "0755 cc"}, "kernel": {"sha256": "k"}}
    assert _diff_manifests(a, b) == ["member bin/x: 0755 bb vs 0755 cc"]


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.swtpm
def test_payload_boots_and_runs_python_with_the_tpm(built: Payload, tmp_path: Path) -> None:
    require_tools("qemu-system-x86_64", "swtpm", "swtpm_setup")
    if not OVMF_BIOS.is_file():
        require_tools("ovmf-missing")
    state = tmp_path / "tpm"
    state.mkdir()
    manufacture(state)
    rom = tmp_path / "rom.bin"
    rom.write_bytes(b"test")
    with serve_qemu(state) as tpm:
        spec = QemuSpec(
            kernel=built.kernel,
            initrd=built.initramfs,
            append="console=ttyS0",
            tpm_socket=tpm.ctrl_socket,
            fw_cfg=(("opt/heads/rom", rom),),
        )
        with QemuConsole(spec, transcript=tmp_path / "console.txt") as q:
            assert q.wait(timeout_s=300) == 0
    text = (tmp_path / "console.txt").read_text()
    smoke = [line for line in text.splitlines() if "SMOKE:" in line]
    wanted = (
        "no modules",
        "tpm ok",
        "kexec allowed",
        "event log ok",
        "fw_cfg ok",
        "kexec-tools 2.0",
        "gpgv (GnuPG) 2.2",
        "python ok, random 8",
        "done",
    )
    for want in wanted:
        assert any(want in s for s in smoke), (want, smoke)


def test_elf_reader_agrees_with_readelf() -> None:
    require_tools("readelf")
    binary = Path("/usr/bin/python3.11").resolve()
    info = _elf_info(binary.read_bytes(), str(binary))
    assert info is not None
    out = run(["readelf", "-d", "-l", binary], desc="readelf").stdout.decode()
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    assert list(info.needed) == needed
    assert info.interp is not None
    assert f"[Requesting program interpreter: {info.interp}]" in out
    assert _elf_info(b"#!/bin/sh\n", "script") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
# A program-header offset of 2**63: past what a Python index can hold.
@example(tail=bytes(26) + b"\x00\x00\x00\x00\x00\x00\x00\x80" + bytes(17) + b"\x01")
def test_elf_reader_on_hostile_bytes(tail: bytes) -> None:
    data = b"\x7fELF\x02\x01" + tail
    with contextlib.suppress(FormatError):
        _elf_info(data, "fuzz")
