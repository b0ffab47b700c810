"""The payload's pinned inputs against a real archive: a pin Debian no longer offers is refused
(--locked) or replaced by the current version with a warning, and an export of every input
rebuilds the published payload with no network and an empty cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import pinned_cache, require_tools
from heads.adapters import debian
from heads.adapters._run import run
from heads.cli.build import _print_sizes
from heads.cli.main import main
from heads.core.payload_lock import LockChange, PayloadLock
from heads.flows.image_build import (
    DEFAULT_LOCK,
    RESOLVED_LOCK,
    _diff_manifests,
    build_payload,
    read_manifest,
)
from heads.flows.payload_inputs import (
    INPUTS_LOCK,
    INPUTS_SUMS,
    MissingPinsError,
    load_lock,
    resolve_debian,
)

BUSYBOX = "busybox-static"
GONE = "1:1.35.0-4+deb12u99"
GONE_KERNEL = ("linux-source-5.10", "5.10.4-1")
INIT = b"#!/bin/sh\necho payload-inputs test\n"


def _edited_lock(tmp_path: Path, edit: dict[str, tuple[str, str]], kernel: str = "") -> Path:
    """A copy of payload/lock.json with pins renamed or re-versioned: ``{old name: (new name,
    new version)}``; the sha256 of an edited pin becomes 64 zeros."""
    obj: dict[str, Any] = json.loads(DEFAULT_LOCK.read_bytes())
    for pin in obj["debian"]:
        if pin["name"] in edit:
            pin["name"], pin["version"] = edit[pin["name"]]
            pin["sha256"] = "0" * 64
    if kernel:
        obj["kernel"] = kernel
    path = tmp_path / "lock.json"
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


@pytest.fixture
def vanished(tmp_path: Path) -> Path:
    """payload/lock.json with busybox-static pinned at a version the archive never had."""
    require_tools("apt-cache")
    return _edited_lock(tmp_path, {BUSYBOX: (BUSYBOX, GONE)})


def _apt_candidate(name: str) -> str:
    out = run(
        ["apt-cache", "show", "--no-all-versions", name], desc=f"look up {name}"
    ).stdout.decode()
    found = re.search(r"^Version: (\S+)$", out, re.MULTILINE)
    assert found is not None, out
    return found.group(1)


def _init(tmp_path: Path) -> Path:
    init = tmp_path / "init"
    init.write_bytes(INIT)
    return init


# --------------------------------------------------------------------- a pin that vanished


def test_locked_resolution_refuses_the_vanished_pin(vanished: Path) -> None:
    lock = load_lock(vanished)
    gone = next(d for d in lock.debs if d.name == BUSYBOX)
    said: list[str] = []
    with pytest.raises(MissingPinsError) as info:
        resolve_debian(lock, pinned_cache(), locked=True, say=said.append)
    assert info.value.missing == (gone,)
    assert info.value.details == (f"{BUSYBOX} {GONE} (amd64)",)
    assert info.value.hint is not None
    assert "--inputs" in info.value.hint


def test_locked_cli_build_exits_3_naming_the_pin_and_writes_nothing(
    vanished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["build", "--locked", "--lock", str(vanished), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "error: 1 pinned Debian package(s) are gone from the archive" in err
    assert f"  {BUSYBOX} {GONE} (amd64)" in err
    assert "heads build --inputs DIR" in err
    assert not out.exists()


def test_unlocked_resolution_uses_the_current_version_and_says_so(vanished: Path) -> None:
    lock = load_lock(vanished)
    current = _apt_candidate(BUSYBOX)
    said: list[str] = []
    resolved = resolve_debian(lock, pinned_cache(), locked=False, say=said.append)
    pin = next(d for d in resolved.debs if d.name == BUSYBOX)
    assert pin.version == current
    cached = pinned_cache() / "debs" / pin.filename
    assert pin.sha256 == debian.sha256_file(cached)
    assert resolved.changes == (LockChange(f"{BUSYBOX} {GONE}", f"{BUSYBOX} {current}"),)
    assert {d for d in resolved.debs if d.name != BUSYBOX} == {
        d for d in lock.debs if d.name != BUSYBOX
    }
    assert len(resolved.debs) == len(lock.debs)
    assert resolved.python == lock.python
    assert resolved.kernel == lock.kernel
    assert resolved.source_date_epoch == lock.source_date_epoch
    assert resolved.extra_modules == lock.extra_modules
    warnings = [line for line in said if line.startswith("warning:")]
    assert len(warnings) == 1, said
    assert BUSYBOX in warnings[0]
    assert GONE in warnings[0]
    assert current in warnings[0]


def test_a_vanished_kernel_resolves_through_its_metapackage(tmp_path: Path) -> None:
    require_tools("apt-cache")
    published = load_lock(DEFAULT_LOCK)
    old_name, old_version = GONE_KERNEL
    path = _edited_lock(tmp_path, {published.kernel: GONE_KERNEL}, kernel=old_name)
    lock = load_lock(path)
    assert lock.kernel == old_name
    depends = run(
        ["apt-cache", "depends", lock.kernel_metapackage], desc="kernel metapackage"
    ).stdout.decode()
    found = re.search(r"Depends: (linux-source-\S+)", depends)
    assert found is not None, depends
    current = found.group(1)
    version = _apt_candidate(current)
    said: list[str] = []
    resolved = resolve_debian(lock, pinned_cache(), locked=False, say=said.append)
    assert resolved.kernel == current
    names = {d.name for d in resolved.debs}
    assert old_name not in names
    assert current in names
    assert next(d for d in resolved.debs if d.name == current).version == version
    assert {str(c) for c in resolved.changes} == {
        f"{old_name} {old_version} -> -",
        f"- -> {current} {version}",
    }
    assert {d for d in resolved.debs if d.name != current} == {
        d for d in lock.debs if d.name != old_name
    }
    assert any(line.startswith("warning:") and old_name in line for line in said), said
    # The resolved lock is a valid lock in its own right.
    assert PayloadLock.from_bytes(resolved.to_bytes(), source="resolved") == resolved


@pytest.mark.slow
def test_a_build_from_a_vanished_pin_is_not_the_published_payload(
    vanished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("apt-get", "dpkg-deb", "zstd")
    out = tmp_path / "out"
    said: list[str] = []
    payload = build_payload(
        out,
        cache_dir=pinned_cache(),
        lock_path=vanished,
        init_script=_init(tmp_path),
        progress=said.append,
    )
    used = resolve_debian(load_lock(vanished), pinned_cache(), locked=False, say=said.append)
    assert payload.published is False
    assert any(BUSYBOX in change for change in payload.lock_changes), payload.lock_changes
    assert payload.lock_changes == tuple(str(c) for c in used.changes)
    assert any(line.startswith("warning:") and BUSYBOX in line for line in said), said
    assert payload.resolved_lock == out / RESOLVED_LOCK
    data = (out / RESOLVED_LOCK).read_bytes()
    written = PayloadLock.from_bytes(data, source=RESOLVED_LOCK)
    assert written == used
    assert data == used.to_bytes()
    manifest = read_manifest(payload.manifest)
    assert manifest["published"] is False
    assert manifest["lock_changes"] == [str(c) for c in used.changes]
    assert manifest["lock_sha256"] == used.digest()
    assert manifest["published_lock_sha256"] == load_lock(vanished).digest()
    assert manifest["inputs"]["debian"][BUSYBOX].startswith(_apt_candidate(BUSYBOX) + " ")
    capsys.readouterr()
    _print_sizes(payload)
    summary = capsys.readouterr().out
    assert "warning: this is NOT the published payload" in summary
    assert f"{BUSYBOX} {GONE} -> {BUSYBOX}" in summary
    assert str(out / RESOLVED_LOCK) in summary


# ------------------------------------------------------------------ exported inputs, offline


def _inputs_from_cache(dest: Path, lock: PayloadLock, *, leave_out: str = "") -> None:
    """An inputs directory of links into the package cache, without ``leave_out``."""
    cache = pinned_cache()
    for sub, names in (
        ("debs", [d.filename for d in lock.debs]),
        ("python", [p.file for p in lock.python]),
    ):
        (dest / sub).mkdir(parents=True)
        for name in names:
            if name != leave_out:
                (dest / sub / name).symlink_to(cache / sub / name)
    (dest / INPUTS_LOCK).write_bytes(lock.to_bytes())


def test_inputs_without_a_lock_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    out = tmp_path / "out"
    assert main(["build", "--inputs", str(inputs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{inputs} is not an inputs directory ({INPUTS_LOCK} is missing)" in err
    assert "--export-inputs" in err
    assert not out.exists()


def test_inputs_missing_a_file_fail_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("dpkg-deb")
    lock = load_lock(DEFAULT_LOCK)
    missing = next(d for d in lock.debs if d.name == "gpgv")
    inputs = tmp_path / "inputs"
    _inputs_from_cache(inputs, lock, leave_out=missing.filename)
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["build", "--inputs", str(inputs), "--cache", str(cache), "--out", str(out)]
    assert main([*argv, "--init", str(_init(tmp_path))]) == 4
    err = capsys.readouterr().err
    assert f"error: {missing.filename} is not in the inputs directory {inputs}" in err
    assert "--export-inputs" in err
    assert not out.exists()
    assert not cache.exists()  # nothing was downloaded in its place


def test_export_refuses_a_directory_that_holds_something_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine\n")
    assert main(["build", "--export-inputs", str(dest)]) == 2
    assert f"{dest} is not empty and holds no earlier export" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_exported_inputs_rebuild_the_published_payload_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("apt-get", "dpkg-deb", "zstd", "sha256sum")
    exported = tmp_path / "exported"
    assert main(["build", "--export-inputs", str(exported)]) == 0
    assert f"heads build --inputs {exported}" in capsys.readouterr().out
    run(["sha256sum", "--check", "--strict", "--quiet", INPUTS_SUMS], desc="check", cwd=exported)
    lock = load_lock(DEFAULT_LOCK)
    listed = {line.split("  ", 1)[1] for line in (exported / INPUTS_SUMS).read_text().splitlines()}
    wanted = {
        INPUTS_LOCK,
        *(f"debs/{d.filename}" for d in lock.debs),
        *(f"python/{p.file}" for p in lock.python),
    }
    assert listed == wanted
    on_disk = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()}
    assert on_disk == {*wanted, INPUTS_SUMS}
    assert (exported / INPUTS_LOCK).read_bytes() == DEFAULT_LOCK.read_bytes()
    for deb in lock.debs:
        assert debian.sha256_file(exported / "debs" / deb.filename) == deb.sha256
    # Exporting again into the same directory is allowed (an earlier export is replaced).
    assert main(["build", "--export-inputs", str(exported), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == len(wanted)

    init = _init(tmp_path)
    reference = build_payload(tmp_path / "reference", cache_dir=pinned_cache(), init_script=init)
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the build without network needs root and unshare (unshare --net)")
    empty_cache, home, out = tmp_path / "empty-cache", tmp_path / "home", tmp_path / "offline"
    empty_cache.mkdir()
    home.mkdir()
    # The compiled kernel is shared (a build product, not a download): compiling it again from
    # exported inputs and an empty cache is what `heads build --check` does.
    (empty_cache / "kernel").symlink_to(pinned_cache() / "kernel", target_is_directory=True)
    argv = [sys.executable, "-m", "heads", "build", "--inputs", str(exported)]
    argv += ["--cache", str(empty_cache), "--out", str(out), "--init", str(init), "--json"]
    no_net = run(["unshare", "--net", "cat", "/proc/net/dev"], desc="a network namespace")
    assert [ln.split(":")[0].strip() for ln in no_net.stdout.decode().splitlines()[2:]] == ["lo"]
    result = run(
        ["unshare", "--net", *argv],
        desc="the offline rebuild",
        timeout_s=3600,
        env={"HOME": str(home), "XDG_CACHE_HOME": ""},
        cwd=home,
    )
    summary = json.loads(result.stdout)
    assert summary["published"] is True
    assert summary["lock_changes"] == []
    assert summary["resolved_lock"] is None
    assert not (out / RESOLVED_LOCK).exists()
    differences = _diff_manifests(
        read_manifest(reference.manifest), read_manifest(out / "manifest.json")
    )
    assert differences == []
    for name in ("initramfs.cpio.zst", "vmlinuz", "kernel.config"):
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    # Nothing was downloaded: the empty cache received no package.
    assert not list(empty_cache.glob("debs/*.deb"))
    assert not list(empty_cache.glob("python/*"))
