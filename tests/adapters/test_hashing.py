"""The hashing engine on real files: digests, symlink safety, FIFOs, progress, atomic writes."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from heads.adapters.atomic import write_atomic
from heads.adapters.hashing import hash_files, read_beneath, read_file_beneath, scan_tree
from heads.core.manifest import EntryKind


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "boot"
    (root / "grub").mkdir(parents=True)
    (root / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "grub" / "grub.cfg").write_bytes(b"cfg")
    (root / "empty").write_bytes(b"")
    (root / "kexec_hashes.txt").write_bytes(b"excluded")
    (root / "kexecdir").mkdir()
    (root / "kexecdir" / "also-excluded").write_bytes(b"x")
    (root / "link").symlink_to("big")
    return root


def test_scan_lists_every_kind_and_leaves_out_kexec(tree: Path) -> None:
    scan = scan_tree(tree)
    assert dict(scan.kinds) == {
        b"big": EntryKind.FILE,
        b"grub": EntryKind.DIR,
        b"grub/grub.cfg": EntryKind.FILE,
        b"empty": EntryKind.FILE,
        b"link": EntryKind.SYMLINK,
    }
    assert scan.sizes[b"big"] == 3 * 1024 * 1024 + 17


def test_parallel_digests_equal_hashlib(tree: Path) -> None:
    paths = [b"big", b"grub/grub.cfg", b"empty"]
    result = hash_files(tree, paths, workers=2)
    for p in paths:
        assert result.digests[p] == hashlib.sha256((tree / p.decode()).read_bytes()).digest()
    assert result.errors == {}


def test_symlinks_are_never_followed_even_inside_a_path(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not in /boot")
    (tree / "escape").symlink_to(outside)
    result = hash_files(tree, [b"link", b"escape/secret", b"missing", b"grub"])
    assert result.digests == {}
    assert "symbolic link" in result.errors[b"link"]
    assert "symbolic link" in result.errors[b"escape/secret"]
    assert result.errors[b"missing"]
    assert result.errors[b"grub"] == "not a regular file"


def test_a_fifo_under_a_hashed_name_does_not_hang(tree: Path) -> None:
    os.mkfifo(tree / "fifo")
    assert scan_tree(tree).kinds[b"fifo"] is EntryKind.OTHER
    result = hash_files(tree, [b"fifo"])
    assert result.errors[b"fifo"] == "not a regular file"


def test_progress_reaches_the_total_and_is_serialised(tree: Path) -> None:
    scan = scan_tree(tree)
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def progress(done: int, total: int) -> None:
        assert lock.acquire(blocking=False), "progress called concurrently"
        seen.append((done, total))
        lock.release()

    hash_files(tree, scan.files(), sizes=scan.sizes, workers=2, progress=progress)
    total = sum(scan.sizes[p] for p in scan.files())
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "kexec_hashes.txt"
    target.write_bytes(b"old")
    write_atomic(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kexec_hashes.txt"]


def test_write_atomic_refuses_to_follow_a_planted_temporary_symlink(tmp_path: Path) -> None:
    target = tmp_path / "f"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / f".f.tmp-{os.getpid()}").symlink_to(victim)
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP from O_NOFOLLOW is the point
        write_atomic(target, b"x")
    assert victim.read_bytes() == b"keep"
    assert not target.exists()


def test_read_beneath_reads_at_most_its_cap(tree: Path) -> None:
    root_fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_beneath(root_fd, b"grub/grub.cfg", 3) == b"cfg"
        with pytest.raises(OSError, match="larger than 2 bytes") as info:
            read_beneath(root_fd, b"grub/grub.cfg", 2)
        assert info.value.errno == errno.EFBIG
        with (tree / "sparse").open("wb") as f:
            f.truncate(3 * 1024**3)  # 3 GiB that take no disk space
        with pytest.raises(OSError, match="larger than 65536 bytes"):
            read_beneath(root_fd, b"sparse", 65536)
    finally:
        os.close(root_fd)


def test_read_beneath_opens_no_fifo_symlink_or_device(tree: Path) -> None:
    os.mkfifo(tree / "fifo")
    with pytest.raises(OSError, match="not a regular file") as fifo:  # a read would block
        read_file_beneath(tree, b"fifo", 100)
    assert fifo.value.errno == errno.EINVAL
    with pytest.raises(OSError, match="symbolic links") as link:
        read_file_beneath(tree, b"link", 100)
    assert link.value.errno == errno.ELOOP
    if os.geteuid() == 0:
        # /dev/null's numbers: a device node on a disk opens whatever device it names.
        os.mknod(tree / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        with pytest.raises(OSError, match=r"regular file|denied") as dev:  # EACCES if nodev
            read_file_beneath(tree, b"null", 100)
        assert dev.value.errno in {errno.EINVAL, errno.EACCES}
