"""PCR prediction for a new firmware image, checked against real measurements and tools."""

from __future__ import annotations

import hashlib
import re
import struct
from functools import cache
from pathlib import Path

import pytest
from test_eventlog_builder import EV_EFI_ACTION, EV_SEPARATOR, Ev, agile_log, cb_table, fold

from conftest import TESTDATA, pinned_cache, require_tools
from heads.adapters._run import run
from heads.core.authenticode import authenticode_sha256
from heads.core.cbfs import CbfsFile
from heads.core.digest import HashAlg
from heads.core.eventlog import parse_cb_table, parse_tcg
from heads.core.flash_image import FlashImage, new_flash_image, standard_layout
from heads.core.pcr_predict import (
    EV_EFI_BOOT_SERVICES_APPLICATION,
    PAYLOAD_CMDLINE,
    PAYLOAD_INITRD,
    PAYLOAD_KERNEL,
    TAG_INITRD,
    TAG_LOAD_OPTIONS,
    cmdline_digest,
    predict,
    qemu_patched_kernel,
)
from heads.errors import FormatError
from heads.flows.payload_inputs import load_lock

SHA256 = HashAlg.SHA256
EV_EVENT_TAG = 6
LAB_LOG = TESTDATA / "eventlogs" / "lab" / "ovmf-swtpm.bin"
#: The kernel of the lab's OVMF log (docs/qemu-platform.md): Debian's 6.1.0-56 cloud kernel.
LAB_KERNEL_SHA256 = "51349501a3d1ff83836437d2b365fd2d57f2feb8642d315e5181dec23d4c3275"
LAB_INITRD_SIZE = 1035849
ZERO = bytes(32)


def _vmlinuz(deb: Path) -> bytes:
    require_tools("dpkg-deb", "tar")
    tar = run(["dpkg-deb", "--fsys-tarfile", deb], desc="unpack", timeout_s=120).stdout
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        for member in tf.getmembers():
            if re.fullmatch(r"\./boot/vmlinuz-.*", member.name):
                f = tf.extractfile(member)
                assert f is not None
                return f.read()
    raise AssertionError(f"no vmlinuz in {deb}")


@cache
def _pinned_kernel() -> bytes:
    from heads.flows.image_build import DEFAULT_LOCK

    lock = load_lock(DEFAULT_LOCK)
    cache_dir = pinned_cache()
    (pin,) = [p for p in lock.debs if p.name == lock.kernel]
    return _vmlinuz(next((cache_dir / "debs").glob(f"{pin.name}_*.deb")))


def test_authenticode_matches_osslsigncode(tmp_path: Path) -> None:
    """Debian signs its kernels: osslsigncode recomputes the Authenticode digest independently."""
    require_tools("osslsigncode")
    kernel = _pinned_kernel()
    path = tmp_path / "vmlinuz"
    path.write_bytes(kernel)
    out = run(["osslsigncode", "verify", "-in", path], desc="osslsigncode", check=False)
    m = re.search(rb"Calculated message digest\s*:\s*([0-9A-F]{64})", out.stdout)
    assert m is not None, out.stdout
    assert authenticode_sha256(kernel).hex() == m.group(1).decode().lower()
    with pytest.raises(FormatError, match="not a PE image"):
        authenticode_sha256(b"\0" * 100)
    with pytest.raises(FormatError, match="past the end"):
        authenticode_sha256(kernel[:4096])


def _image(kernel: bytes, initrd: bytes, cmdline: str, *user: CbfsFile) -> FlashImage:
    files = [
        CbfsFile(PAYLOAD_KERNEL, kernel),
        CbfsFile(PAYLOAD_INITRD, initrd),
        CbfsFile(PAYLOAD_CMDLINE, cmdline.encode()),
        *user,
    ]
    return new_flash_image(standard_layout(32 << 20)).with_files(files)


def _tag(tag: int, payload: bytes) -> bytes:
    return struct.pack("<II", tag, len(payload)) + payload


def _uefi_log(kernel: bytes, initrd: bytes, cmdline: str) -> bytes:
    """A log shaped like OVMF's direct-boot log (docs/qemu-platform.md), for this payload."""
    app = authenticode_sha256(qemu_patched_kernel(kernel, len(initrd), mem_below_4g=1 << 30))
    sep = Ev(0, EV_SEPARATOR, b"\0\0\0\0")
    return agile_log(
        [
            Ev(0, 0x80000008, b"firmware volume"),
            Ev(7, 0x80000001, b"SecureBoot variable"),
            Ev(7, EV_SEPARATOR, b"\0\0\0\0"),
            Ev(4, EV_EFI_BOOT_SERVICES_APPLICATION, b"File(kernel)", {SHA256: app}, [SHA256]),
            Ev(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option"),
            *[Ev(p, sep.etype, sep.data) for p in range(7)],
            Ev(9, EV_EVENT_TAG, _tag(TAG_LOAD_OPTIONS, b"opts"), {SHA256: cmdline_digest(cmdline)}),
            Ev(
                9,
                EV_EVENT_TAG,
                _tag(TAG_INITRD, b"Linux initrd"),
                {SHA256: hashlib.sha256(initrd).digest()},
            ),
        ],
        [SHA256],
    )


def _replayed(log: bytes, pcr: int, then: list[bytes] = ()) -> bytes:  # type: ignore[assignment]
    events = [e for e in parse_tcg(log).events if e.pcr == pcr and e.event_type != 3]
    return fold(SHA256, ZERO, [e.digests[SHA256] for e in events] + list(then))


def test_new_payload_and_user_files_predict_what_its_log_replays() -> None:
    kernel = _pinned_kernel()
    user = CbfsFile("heads/initrd/etc/config.user", b'export CONFIG_BOOT_DEV="/dev/vda"\n')
    current = _image(kernel, b"initrd one" * 1000, "console=ttyS0", user)
    new_kernel = kernel + b"\0" * 4096  # trailing data is part of the Authenticode hash
    new_initrd = b"initrd two, longer" * 3000
    new = _image(new_kernel, new_initrd, "console=ttyS0 quiet", user)
    log = parse_tcg(_uefi_log(kernel, b"initrd one" * 1000, "console=ttyS0"))
    prediction = predict(new, current, profile="uefi", firmware_log=log)
    assert prediction.complete, prediction.unpredictable
    truth = _uefi_log(new_kernel, new_initrd, "console=ttyS0 quiet")
    user_digests = [
        hashlib.sha256(b"/etc/config.user").digest(),
        hashlib.sha256(user.data).digest(),
    ]
    assert prediction.values[4] == _replayed(truth, 4)
    assert prediction.values[4] != _replayed(_uefi_log(kernel, new_initrd, "x"), 4)
    assert prediction.values[9] == _replayed(truth, 9)
    assert prediction.values[7] == _replayed(truth, 7, user_digests)
    for pcr in (0, 1, 2, 3):
        assert prediction.values[pcr] == _replayed(truth, pcr)
    assert "kernel" in prediction.reasons[4]
    assert set(prediction.values) == {0, 1, 2, 3, 4, 7, 9}


def test_a_model_that_does_not_reproduce_this_boot_predicts_nothing() -> None:
    kernel = _pinned_kernel()
    current = _image(kernel, b"initrd", "console=ttyS0")
    log = parse_tcg(_uefi_log(kernel, b"initrd", "console=ttyS0"))
    other = _image(kernel + b"\0", b"initrd", "console=ttyS0")  # not what this boot measured
    prediction = predict(current, other, profile="uefi", firmware_log=log)
    assert set(prediction.unpredictable) == {4}
    assert "not the one in the log" in prediction.unpredictable[4]
    assert 4 not in prediction.values
    bare = new_flash_image(standard_layout(32 << 20))
    prediction = predict(bare, bare, profile="uefi", firmware_log=log)
    assert set(prediction.unpredictable) == {4, 9}
    assert "carries no payload/kernel" in prediction.unpredictable[4]


def test_the_lab_boot_kernel_measurement_is_reproduced() -> None:
    """The real OVMF log: PCR 4 of the kernel it booted, with another initrd size predicted."""
    deb = next((pinned_cache() / "debs").glob("linux-image-6.1.0-56-cloud-amd64_*.deb"), None)
    if deb is None:
        pytest.skip("the lab log's kernel (6.1.0-56) is not in the package cache")
    kernel = _vmlinuz(deb)
    assert hashlib.sha256(kernel).hexdigest() == LAB_KERNEL_SHA256
    log = parse_tcg(LAB_LOG.read_bytes())
    # The initrd's bytes are not kept, only its size: PCR 9 cannot be checked, PCR 4 can.
    current = _image(kernel, bytes(LAB_INITRD_SIZE), "console=ttyS0")
    new = _image(kernel, bytes(LAB_INITRD_SIZE + 5000), "console=ttyS0")
    prediction = predict(new, current, profile="uefi", firmware_log=log)
    assert set(prediction.unpredictable) == {9}
    assert prediction.unpredictable[9] == "the current initrd is not the one in the log"
    patched = qemu_patched_kernel(kernel, LAB_INITRD_SIZE + 5000, mem_below_4g=1 << 30)
    pcr4 = [e for e in log.events if e.pcr == 4]
    digests = [authenticode_sha256(patched)] + [e.digests[SHA256] for e in pcr4[1:]]
    assert prediction.values[4] == fold(SHA256, ZERO, digests)
    # Same payload: every PCR is the log's own replay (and the command line rule held).
    same = predict(current, current, profile="uefi", firmware_log=log)
    assert same.values[4] == fold(SHA256, ZERO, [e.digests[SHA256] for e in pcr4])


def test_coreboot_pcr2_from_the_cbfs() -> None:
    layout = standard_layout(16 << 20)
    current = new_flash_image(layout).with_file(CbfsFile("fallback/payload", b"payload v1"))
    new = new_flash_image(layout).with_files(
        [CbfsFile("fallback/payload", b"payload v2"), CbfsFile("heads/initrd/x", b"x")]
    )
    fmap = hashlib.sha256(current.region("FMAP")).digest()
    table = cb_table(
        [
            (2, SHA256, fmap, "FMAP: FMAP"),
            (2, SHA256, hashlib.sha256(b"payload v1").digest(), "CBFS: fallback/payload"),
        ],
        pad=False,
    )
    log = parse_cb_table(table)
    prediction = predict(new, current, profile="coreboot", firmware_log=log)
    assert prediction.complete
    new_payload = hashlib.sha256(b"payload v2").digest()
    assert prediction.values[2] == fold(SHA256, ZERO, [fmap, new_payload])
    assert prediction.values[7] == fold(
        SHA256, ZERO, [hashlib.sha256(b"/x").digest(), hashlib.sha256(b"x").digest()]
    )
    assert prediction.values[4] == ZERO
    no_log = predict(new, current, profile="coreboot", firmware_log=None)
    assert set(no_log.unpredictable) == {2}
    stale = predict(new, new, profile="coreboot", firmware_log=log)
    assert "not reproduced from the current image" in stale.unpredictable[2]
