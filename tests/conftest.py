"""Shared fixtures: real swtpm, tool checks that fail under CI and skip elsewhere."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from heads.testing.swtpm import Swtpm, manufacture, swtpm_missing_reason

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Real event logs and boot configurations the tests read; their origins: tests/data/SOURCES.md.
TESTDATA = Path(__file__).resolve().parent / "data"


def require(reason: str | None) -> None:
    """A missing component fails under CI=true and skips (with the reason) elsewhere."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"required component missing in CI: {reason}")
    pytest.skip(reason)


_PINNED_CACHE: list[Path] = []


def pinned_cache() -> Path:
    """The package cache holding every input of payload/lock.json: downloaded on first use
    (and checked against the pins), so a test never depends on an earlier test having run.

    A pin the Debian archive no longer offers (and the cache does not hold) skips the test:
    only exported inputs can rebuild that lock, and that is not a missing component.
    """
    if _PINNED_CACHE:
        return _PINNED_CACHE[0]
    require_tools("apt-get", "dpkg-deb")
    from heads.adapters import debian, pypi
    from heads.errors import ToolError
    from heads.flows.image_build import DEFAULT_LOCK, default_cache_dir
    from heads.flows.payload_inputs import load_lock

    cache = default_cache_dir()
    lock = load_lock(DEFAULT_LOCK)
    for pin in lock.debs:
        try:
            debian.fetch(pin, cache / "debs")
        except ToolError:
            if debian.available(pin.name, pin.version, pin.arch):
                raise
            pytest.skip(f"{pin.name} {pin.version} is gone from the Debian archive")
    for py in lock.python:
        pypi.fetch(py, cache / "python")
    _PINNED_CACHE.append(cache)
    return cache


@dataclass(frozen=True)
class Owner:
    """The owner's OpenPGP key: its GnuPG home, fingerprint and exported public keyring."""

    home: Path
    fpr: str
    keyring: Path


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Owner]:
    require_tools("gpg", "gpgv", "gpgconf", "sha256sum")
    from heads.testing.gpghome import GpgHome, export_public_keyring, make_owner_key

    with GpgHome() as home:
        fpr = make_owner_key(home.path)
        keyring = export_public_keyring(home.path, tmp_path_factory.mktemp("kr") / "pubring.gpg")
        yield Owner(home.path, fpr, keyring)


def require_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            require(f"{tool} is not installed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def manufactured_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One manufactured swtpm state (sha1+sha256 banks, EK), copied for each test (0.6 s once)."""
    require(swtpm_missing_reason())
    state = tmp_path_factory.mktemp("swtpm-template")
    manufacture(state)
    return state


@pytest.fixture
def swtpm(
    manufactured_state: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Swtpm]:
    """A fresh, manufactured swtpm on a free loopback port; its log is printed if the test fails."""
    state = tmp_path / "swtpm-state"
    shutil.copytree(manufactured_state, state)
    tpm = Swtpm(state)
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()
        if _failed(request):
            print(f"--- swtpm log ({tpm.log_path}) ---\n{tpm.log_text()}")
