"""The payload kernel's configuration on Debian's real kernel source, for every platform (no
compiling: tinyconfig and olddefconfig take seconds), and its cache.  The full compile runs
once per cache in the payload tests (tests/flows/test_image_build.py, tests/e2e)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import pinned_cache, require_tools
from heads.adapters import kernel_build
from heads.core.kernel_config import parse_config
from heads.errors import UsageError
from heads.flows.image_build import DEFAULT_LOCK
from heads.flows.kernel_build import (
    KernelConfigError,
    _from_cache,
    _store,
    build_kernel,
    configure_kernel,
    fragment_options,
    platforms,
)
from heads.flows.payload_inputs import load_lock

EPOCH = 1_700_000_000


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned kernel source, unpacked once for this module."""
    require_tools("dpkg-deb", "tar", "make", "gcc", "bison", "flex")
    lock = load_lock(DEFAULT_LOCK)
    deb = pinned_cache() / "debs" / lock.kernel_pin.filename
    return kernel_build.unpack_source(deb, tmp_path_factory.mktemp("kernel-source"))


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["qemu", "coreboot-laptop"])
def test_each_platform_configures_with_every_option_kept(source_tree: Path, platform: str) -> None:
    assert platform in platforms()
    config = configure_kernel(source_tree, platform, epoch=EPOCH)
    values = parse_config(config, source=".config")
    for option in fragment_options(platform)[2]:
        assert values.get(option.name) == option.value, option
    assert values.get("CONFIG_MODULES") is None
    assert "CONFIG_TCG_TPM" in values
    if platform == "coreboot-laptop":
        assert values["CONFIG_GOOGLE_MEMCONSOLE_COREBOOT"] == "y"
        assert values["CONFIG_GOOGLE_FRAMEBUFFER_COREBOOT"] == "y"
    else:
        assert values["CONFIG_FW_CFG_SYSFS"] == "y"
        assert values["CONFIG_VIRTIO_BLK"] == "y"
    assert values["CONFIG_LOCALVERSION"] == '"-heads"'


def _bad_fragments(tmp_path: Path) -> Path:
    """A platform whose fragment asks for USB storage and USB keyboards without USB support:
    olddefconfig drops both."""
    fragments = tmp_path / "fragments"
    fragments.mkdir()
    (fragments / "broken.fragment").write_bytes(
        b"# CONFIG_MODULES is not set\n# CONFIG_USB_SUPPORT is not set\n"
        b'CONFIG_USB_STORAGE=y\nCONFIG_USB_HID=y\nCONFIG_LOCALVERSION="-heads"\n'
    )
    return fragments


@pytest.mark.slow
def test_an_option_that_does_not_survive_is_named(source_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(KernelConfigError) as info:
        configure_kernel(source_tree, "broken", epoch=EPOCH, fragments=_bad_fragments(tmp_path))
    assert info.value.message.startswith("2 option(s) of broken.fragment did not survive")
    assert info.value.details == (
        "CONFIG_USB_STORAGE: wanted y, got not set",
        "CONFIG_USB_HID: wanted y, got not set",
    )


@pytest.mark.slow
def test_a_failed_build_leaves_no_cache_entry(tmp_path: Path) -> None:
    require_tools("dpkg-deb", "tar", "make", "gcc", "bison", "flex")
    lock = load_lock(DEFAULT_LOCK)
    cache = tmp_path / "cache"
    with pytest.raises(KernelConfigError, match=r"broken\.fragment"):
        build_kernel(
            lock.kernel_pin,
            cache_dir=cache,
            inputs=pinned_cache(),  # the pinned source, read where it is (an inputs layout)
            platform="broken",
            epoch=EPOCH,
            fragments=_bad_fragments(tmp_path),
        )
    assert not (cache / "kernel").exists() or not list((cache / "kernel").iterdir())


def test_an_unknown_platform_is_a_usage_error_naming_the_known_ones() -> None:
    lock = load_lock(DEFAULT_LOCK)
    with pytest.raises(UsageError, match="no kernel configuration for platform 'pdp11'") as info:
        build_kernel(
            lock.kernel_pin,
            cache_dir=Path("/nonexistent"),
            inputs=None,
            platform="pdp11",
            epoch=EPOCH,
        )
    assert info.value.hint is not None
    assert "coreboot-laptop, qemu" in info.value.hint


def test_cache_entries_appear_whole_and_a_damaged_one_is_dropped(tmp_path: Path) -> None:
    entry = tmp_path / "kernel" / "k1"
    image, config = b"MZ kernel" * 100, b"CONFIG_X=y\n"
    _store(entry, image, config, "6.1.192-heads")
    assert sorted(p.name for p in entry.iterdir()) == ["build.json", "bzImage", "config"]
    assert [p.name for p in entry.parent.iterdir()] == ["k1"]  # no temporary left beside it
    said: list[str] = []
    assert _from_cache(entry, said.append) == (image, config, "6.1.192-heads")
    # Storing the same key again (a concurrent build) keeps the entry as it is.
    _store(entry, image, config, "6.1.192-heads")
    assert _from_cache(entry, said.append) == (image, config, "6.1.192-heads")
    damaged = bytearray(image)
    damaged[3] ^= 1
    (entry / "bzImage").write_bytes(bytes(damaged))
    assert hashlib.sha256(bytes(damaged)).hexdigest() != hashlib.sha256(image).hexdigest()
    assert _from_cache(entry, said.append) is None
    assert not entry.exists()
    assert any("damaged" in line for line in said), said
    assert _from_cache(tmp_path / "kernel" / "never", said.append) is None
    shutil.rmtree(tmp_path / "kernel")
