"""kexec-tools: load a :class:`~heads.core.kexec_plan.KexecPlan`, then execute it.

Loads exactly the verified bytes: each file is opened beneath the boot directory without
following symlinks, read once, hashed, compared with the plan's digest, and written to an
anonymous in-memory file (``memfd_create``); kexec is given ``/proc/self/fd/N`` of that copy.
Nothing can change between the check and the load.  Several initrds become one memfd holding
their concatenation.

Runs ``kexec -s -l ...`` (elf: ``kexec_file_load``) or ``kexec -l ... --type=multiboot2-x86``
(Xen), then ``kexec -e``.  Only meaningful on the machine that is booting (the initramfs, or the
QEMU guest in the tests): ``kexec -e`` replaces the running kernel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Protocol

from heads.adapters._run import run
from heads.adapters.hashing import open_beneath
from heads.core.kexec_plan import KexecPlan, PlannedFile
from heads.errors import HashMismatchError, KexecError

__all__ = ["MAX_LOAD_BYTES", "Kexec", "KexecTools"]

MAX_LOAD_BYTES: Final = 1 << 30  # 1 GiB: more than any kernel + initrds we would boot
_CHUNK: Final = 1 << 20


class Kexec(Protocol):
    """Loads a plan into the kernel and jumps to it."""

    def load(self, plan: KexecPlan, bootdir: Path) -> list[str]:
        """Load the plan's files; returns the kexec argv that ran."""
        ...

    def execute(self) -> None:
        """Jump to the loaded kernel (does not return on success)."""
        ...


def _copy_verified(bootdir_fd: int, planned: PlannedFile, out_fd: int) -> int:
    """Append ``planned``'s bytes to ``out_fd`` after checking their digest; returns the size."""
    try:
        fd = open_beneath(bootdir_fd, os.fsencode(planned.path.lstrip("/")))
    except OSError as exc:
        raise KexecError(f"cannot open {planned.path}: {exc.strerror}") from None
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    total = 0
    try:
        while chunk := os.read(fd, _CHUNK):
            total += len(chunk)
            if total > MAX_LOAD_BYTES:
                raise KexecError(f"{planned.path} is larger than {MAX_LOAD_BYTES} bytes")
            digest.update(chunk)
            chunks.append(chunk)
    finally:
        os.close(fd)
    if planned.sha256 is not None and digest.digest() != planned.sha256:
        raise HashMismatchError(
            f"{planned.path} changed after verification: sha256 {digest.hexdigest()}, "
            f"expected {planned.sha256.hex()}",
            hint="do not boot; investigate /boot (heads boot verify)",
        )
    for chunk in chunks:
        _write_all(out_fd, chunk)
    return total


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class KexecTools:
    """The kexec-tools backend (``/sbin/kexec``)."""

    def __init__(self, *, timeout_s: float = 120.0) -> None:
        self.timeout_s = timeout_s

    @contextmanager
    def _verified_copies(
        self, plan: KexecPlan, bootdir: Path, appended: bytes
    ) -> Iterator[dict[str, int]]:
        fds: dict[str, int] = {}
        root_fd = os.open(bootdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            groups: list[tuple[str, tuple[PlannedFile, ...]]] = [("kernel", (plan.kernel,))]
            if plan.initrds or appended:
                groups.append(("initrd", plan.initrds))
            groups.extend((f"module{i}", (m,)) for i, (m, _) in enumerate(plan.modules))
            for name, members in groups:
                memfd = os.memfd_create(f"heads-{name}", 0)  # inheritable: kexec opens it
                fds[name] = memfd
                size = sum(_copy_verified(root_fd, member, memfd) for member in members)
                if name == "initrd" and appended:
                    # Heads pads the OS initrd to 512 bytes before the extra archive; the
                    # kernel unpacks concatenated archives in order.
                    _write_all(memfd, bytes(-size % 512) + appended)
            yield fds
        finally:
            os.close(root_fd)
            for fd in fds.values():
                os.close(fd)

    def load(self, plan: KexecPlan, bootdir: Path, *, appended: bytes = b"") -> list[str]:
        """Runs ``kexec -s -l`` (elf) or ``kexec -l --type=multiboot2-x86`` (xen).

        ``appended`` (the disk key archive) follows the verified initrd in the same anonymous
        memory file: it never reaches a disk.

        Raises:
            HashMismatchError: a file's bytes differ from the plan's digest.
            KexecError: a file cannot be read, or kexec refused to load.
        """
        with self._verified_copies(plan, bootdir, appended) as fds:
            opened = {plan.kernel.path: f"/proc/self/fd/{fds['kernel']}"}
            for i, (module, _) in enumerate(plan.modules):
                opened[module.path] = f"/proc/self/fd/{fds[f'module{i}']}"
            initrd = f"/proc/self/fd/{fds['initrd']}" if "initrd" in fds else None
            argv = plan.argv(opened, initrd)
            result = run(
                argv,
                desc=f"load {plan.title!r} with kexec",
                timeout_s=self.timeout_s,
                check=False,
                pass_fds=tuple(fds.values()),
            )
        if result.returncode != 0:
            tail = result.stderr.decode("utf-8", "replace").strip()[-400:]
            raise KexecError(
                f"kexec could not load {plan.kernel.path} (exit {result.returncode}): {tail}",
                hint="is the kernel built with KEXEC_FILE and are we root?",
            )
        return argv

    def execute(self) -> None:
        """Runs ``kexec -e``: the running system is replaced by the loaded kernel.

        Raises:
            KexecError: kexec returned (nothing loaded, or the jump failed).
        """
        result = run(["kexec", "-e"], desc="execute the loaded kernel", check=False)
        tail = result.stderr.decode("utf-8", "replace").strip()[-400:]
        raise KexecError(f"kexec -e returned (exit {result.returncode}): {tail}")
