"""The payload's size budget: components, the check, and the build refusing an oversized
payload without touching the previous one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heads.core.payload_budget import DEFAULT_BUDGET, check_budget, component_of, components
from heads.flows.image_build import MANIFEST_FORMAT, PayloadTooLargeError, enforce_budget

MIB = 2**20


@pytest.mark.parametrize(
    ("path", "component"),
    [
        ("bin/busybox", "busybox"),
        ("sbin/kexec", "kexec-tools"),
        ("usr/bin/python3.11", "python interpreter"),
        ("usr/lib/python311.zip", "python stdlib"),
        ("usr/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so", "python stdlib"),
        ("usr/lib/python3/heads-site/heads/runtime/boot.pyc", "heads"),
        ("usr/lib/python3/heads-site/segno/__init__.pyc", "python: segno"),
        ("usr/lib/python3/heads-site/segno-1.6.6.dist-info/METADATA", "python: segno"),
        ("lib/x86_64-linux-gnu/libcrypto.so.3", "library libcrypto"),
        ("lib64/ld-linux-x86-64.so.2", "library ld-linux-x86-64"),
        ("init", "heads"),
        ("etc/heads/python.env", "heads"),
        ("dev/console", "other"),
    ],
)
def test_members_are_grouped_into_components(path: str, component: str) -> None:
    assert component_of(path) == component


def test_components_add_up() -> None:
    sizes = {"bin/busybox": 10, "lib/x86_64-linux-gnu/libc.so.6": 5, "lib64/libc.so.6": 1}
    assert components(sizes) == {"busybox": 10, "library libc": 6}


def test_within_budget_is_ok() -> None:
    assert check_budget(DEFAULT_BUDGET, DEFAULT_BUDGET, {"kernel": 1}).ok
    assert not check_budget(DEFAULT_BUDGET + 1, DEFAULT_BUDGET, {"kernel": 1}).ok


def test_over_budget_names_what_grew_largest_growth_first() -> None:
    before = {"kernel": 3 * MIB, "heads": 1 * MIB, "library libssl": 1 * MIB}
    now = {"kernel": 3 * MIB, "heads": 2 * MIB, "library libssl": 4 * MIB, "python: big": MIB}
    check = check_budget(13 * MIB, 12 * MIB, now, before)
    assert not check.ok
    assert check.lines == (
        "library libssl: 4.00 MiB (+3.00 MiB; was 1.00 MiB)",
        "heads: 2.00 MiB (+1.00 MiB; was 1.00 MiB)",
        "python: big: 1.00 MiB (+1.00 MiB; new)",
    )


def test_without_a_previous_build_the_largest_components_are_named() -> None:
    now = {"kernel": 3 * MIB, "heads": 2 * MIB, "busybox": MIB}
    assert check_budget(13 * MIB, 12 * MIB, now).lines[:2] == (
        "kernel: 3.00 MiB",
        "heads: 2.00 MiB",
    )


def test_the_build_refuses_and_names_what_grew_since_the_last_build(tmp_path: Path) -> None:
    previous = {"format": MANIFEST_FORMAT, "components": {"kernel": 3 * MIB, "heads": MIB}}
    (tmp_path / "manifest.json").write_text(json.dumps(previous))
    with pytest.raises(PayloadTooLargeError) as err:
        enforce_budget(tmp_path, 13 * MIB, 12 * MIB, {"kernel": 3 * MIB, "heads": 10 * MIB})
    assert "13.00 MiB" in err.value.message
    assert "over its 12.00 MiB budget" in err.value.message
    assert "grew since the last build" in err.value.message
    assert err.value.details == ("heads: 10.00 MiB (+9.00 MiB; was 1.00 MiB)",)
    assert err.value.hint is not None
    assert "--budget" in err.value.hint
    # The previous build is left as it was.
    assert json.loads((tmp_path / "manifest.json").read_text()) == previous


def test_a_corrupt_previous_manifest_still_gives_a_clear_refusal(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PayloadTooLargeError) as err:
        enforce_budget(tmp_path, 13 * MIB, 12 * MIB, {"kernel": 13 * MIB})
    assert "weigh the most" in err.value.message
    assert err.value.details == ("kernel: 13.00 MiB",)
    enforce_budget(tmp_path, 12 * MIB, 12 * MIB, {"kernel": 12 * MIB})  # at the limit: fine
