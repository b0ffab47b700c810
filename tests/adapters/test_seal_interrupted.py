"""Replacing a sealed secret is safe at every step: the connection is cut after each command.

A proxy between heads and swtpm lets the N-th TPM command of ``heads tpm seal`` run and then
drops the connection before its response arrives (testing/tpm_proxy.py).  For every N, the
next ``heads tpm unseal`` and ``heads totp show`` must release the old or the new secret, and
the next seal must work and leave no journal behind.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest

from heads.adapters.tpm import (
    TOTP_HANDLE,
    DirectTpm,
    open_tpm,
    seal_journal_index,
    seal_record_index,
)
from heads.cli.main import main
from heads.core.otp import totp_code
from heads.core.secret import Secret
from heads.errors import ExitCode
from heads.testing.swtpm import Swtpm
from heads.testing.tpm_proxy import TpmProxy

pytestmark = pytest.mark.swtpm

HANDLE = f"0x{TOTP_HANDLE:08x}"
AT = "2026-11-25T21:00:10Z"
OLD = b"old secret, twenty b"
NEW = b"new secret, 20 bytes"
TPM2_CC_EVICT_CONTROL = 0x120
TPM2_CC_NV_WRITE = 0x137


class Cli:
    """``heads`` in this process, with a given standard input, capturing standard output."""

    def __init__(
        self,
        tcti: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[bytes],
        mp: pytest.MonkeyPatch,
    ) -> None:
        self.tcti = tcti
        self.tmp = tmp_path
        self.capsys = capsys
        self.mp = mp

    def run(self, *argv: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        path = self.tmp / "stdin"
        path.write_bytes(stdin)
        with path.open("rb") as fh:
            self.mp.setattr(sys, "stdin", fh)
            rc = main([*argv, "--tcti", self.tcti])
        out, err = self.capsys.readouterr()
        return rc, out, err

    def seal(self, secret: bytes) -> int:
        return self.run("tpm", "seal", "--handle", HANDLE, "--pcrs", "0,1,2,3,4,7", stdin=secret)[0]

    def unseal(self) -> bytes:
        rc, out, err = self.run("tpm", "unseal", "--handle", HANDLE)
        assert rc == 0, err.decode()
        return out

    def totp(self) -> str:
        rc, out, err = self.run("totp", "show", "--time", AT)
        assert rc == 0, err.decode()
        return out.decode().split()[1]


def _code(secret: bytes) -> str:
    return totp_code(Secret(secret), datetime.fromisoformat(AT)).code


@pytest.mark.parametrize("nv_chunk", [None, 64], ids=["tpm-nv-buffer", "64-byte-nv-writes"])
def test_every_cut_leaves_the_old_or_the_new_secret(
    swtpm: Swtpm,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    nv_chunk: int | None,
) -> None:
    if nv_chunk is not None:
        # Small NV writes, so that cuts also fall between the chunks of the journal.
        monkeypatch.setattr(DirectTpm, "_nv_chunk", lambda self: nv_chunk)
    with TpmProxy(swtpm.port) as proxy:
        cli = Cli(proxy.tcti, tmp_path, capsysbinary, monkeypatch)
        assert cli.seal(OLD) == 0
        proxy.arm(None)
        assert cli.seal(NEW) == 0
        commands = list(proxy.commands)
        # Sanity: the count covers the switch (old object out, new object in).
        assert commands.count(TPM2_CC_EVICT_CONTROL) == 2
        if nv_chunk is not None:
            assert commands.count(TPM2_CC_NV_WRITE) > 4
        assert cli.seal(OLD) == 0
        released = {}
        for n in range(1, len(commands) + 1):
            proxy.arm(n)
            rc, _, err = cli.run(
                "tpm", "seal", "--handle", HANDLE, "--pcrs", "0,1,2,3,4,7", stdin=NEW
            )
            assert proxy.cut, n
            # The last commands only tidy up (the session flush at exit is best effort).
            assert rc in (ExitCode.TPM_UNREACHABLE, 0), (n, " ".join(hex(c) for c in commands), err)
            secret = cli.unseal()
            assert secret in (OLD, NEW), n
            assert cli.totp() == _code(secret), n
            released[n] = secret
            # The next seal completes or drops what the cut left, then replaces it.
            assert cli.seal(OLD) == 0, n
            assert cli.unseal() == OLD, n
        with open_tpm(swtpm.tcti) as tpm:
            assert not tpm.nv_exists(seal_journal_index(TOTP_HANDLE))
            assert tpm.nv_exists(seal_record_index(TOTP_HANDLE))
    # Cuts before the old object's eviction keep it; cuts after give the new one.
    order = [released[n] for n in sorted(released)]
    assert order[0] == OLD
    assert order[-1] == NEW
    first_new = order.index(NEW)
    assert all(s == NEW for s in order[first_new:]), order


def test_a_cut_first_seal_leaves_nothing_or_the_secret(
    swtpm: Swtpm,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with TpmProxy(swtpm.port) as proxy:
        cli = Cli(proxy.tcti, tmp_path, capsysbinary, monkeypatch)
        assert cli.seal(NEW) == 0  # makes the primary key
        assert cli.run("totp", "wipe", "--force")[0] == 0
        proxy.arm(None)
        assert cli.seal(NEW) == 0
        total = len(proxy.commands)
        assert cli.run("totp", "wipe", "--force")[0] == 0
        outcomes = set()
        for n in range(1, total + 1):
            proxy.arm(n)
            cli.seal(NEW)
            rc, out, err = cli.run("tpm", "unseal", "--handle", HANDLE)
            if rc == 0:
                assert out == NEW, n
                outcomes.add("sealed")
            else:
                assert b"no sealed secret" in err, (n, err)
                outcomes.add("nothing")
            assert cli.run("totp", "wipe", "--force")[0] == 0, n
        assert outcomes == {"sealed", "nothing"}
