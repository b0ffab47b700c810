"""LUKS header parsing and the header backup Heads measures, against real cryptsetup images."""

from __future__ import annotations

import contextlib
import hashlib
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_tools
from heads.core.luks import FIRST_READ, header_backup, header_bytes_needed, parse_header
from heads.errors import FormatError

pytestmark = pytest.mark.cryptsetup


def _image(tmp: Path, version: int, size_mib: int = 20) -> Path:
    require_tools("cryptsetup")
    path = tmp / f"luks{version}.img"
    with path.open("wb") as f:
        f.truncate(size_mib << 20)
    key = tmp / "key"
    key.write_bytes(b"recovery passphrase")
    subprocess.run(
        [
            "cryptsetup",
            "luksFormat",
            "--batch-mode",
            f"--type=luks{version}",
            "--pbkdf=pbkdf2",
            "--pbkdf-force-iterations=1000",
            f"--key-file={key}",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


def _backup(tmp: Path, image: Path) -> bytes:
    out = tmp / f"{image.name}.bak"
    out.unlink(missing_ok=True)
    subprocess.run(
        ["cryptsetup", "luksHeaderBackup", str(image), "--header-backup-file", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def _ours(data: bytes) -> tuple[object, bytes]:
    need = header_bytes_needed(data[:FIRST_READ], source="img")
    header = parse_header(data[:need], source="img")
    return header, header_backup(header, data, source="img")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    tmp = tmp_path_factory.mktemp("luks")
    return {1: _image(tmp, 1), 2: _image(tmp, 2)}


@pytest.mark.parametrize("version", [1, 2])
def test_backup_equals_cryptsetups(images: dict[int, Path], version: int, tmp_path: Path) -> None:
    data = images[version].read_bytes()
    header, backup = _ours(data)
    assert backup == _backup(tmp_path, images[version])
    uuid = (
        subprocess.run(
            ["cryptsetup", "luksUUID", str(images[version])], check=True, capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    assert header.uuid == uuid  # type: ignore[attr-defined]
    assert header.version == version  # type: ignore[attr-defined]


def test_luks1_gap_is_measured_as_cryptsetup_backs_it_up(
    images: dict[int, Path], tmp_path: Path
) -> None:
    # Bytes between the header and the first key slot are part of the backup, hence measured.
    copy = tmp_path / "dirty.img"
    data = bytearray(images[1].read_bytes())
    data[600:700] = b"\xaa" * 100
    copy.write_bytes(data)
    assert _ours(bytes(data))[1] == _backup(tmp_path, copy)


def test_changed_key_slot_changes_the_backup(images: dict[int, Path]) -> None:
    data = bytearray(images[2].read_bytes())
    before = hashlib.sha256(_ours(bytes(data))[1]).digest()
    data[0x8000 * 2 + 10] ^= 1  # keyslots area
    assert hashlib.sha256(_ours(bytes(data))[1]).digest() != before


def test_luks2_checksum_is_checked(images: dict[int, Path]) -> None:
    data = bytearray(images[2].read_bytes())
    data[FIRST_READ + 5] ^= 1  # JSON area
    with pytest.raises(FormatError, match="checksum") as exc:
        _ours(bytes(data))
    assert exc.value.source == "img"


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ((0, b"NOTLUKS"), "no LUKS magic"),
        ((6, struct.pack(">H", 3)), "version 3"),
        ((8, struct.pack(">Q", 12345)), "header size"),
    ],
)
def test_hostile_luks2_headers(
    images: dict[int, Path], patch: tuple[int, bytes], reason: str
) -> None:
    data = bytearray(images[2].read_bytes()[: 1 << 20])
    at, value = patch
    data[at : at + len(value)] = value
    with pytest.raises(FormatError, match=reason):
        _ours(bytes(data))


def test_truncated_device_is_refused(images: dict[int, Path]) -> None:
    data = images[2].read_bytes()[: 1 << 20]
    with pytest.raises(FormatError, match="inside its LUKS header area"):
        _ours(data)


@pytest.fixture(scope="module")
def prefixes(images: dict[int, Path]) -> dict[int, bytes]:
    return {v: p.read_bytes()[: 1 << 16] for v, p in images.items()}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutated_headers(prefixes: dict[int, bytes], data: st.DataObject) -> None:
    version = data.draw(st.sampled_from([1, 2]))
    raw = bytearray(prefixes[version])
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, 700 if version == 1 else FIRST_READ + 600))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(FormatError):
        _ours(bytes(raw[:cut]))


@given(st.binary(max_size=5000))
def test_fuzz_random_bytes(raw: bytes) -> None:
    with contextlib.suppress(FormatError):
        _ours(b"LUKS\xba\xbe" + raw)
