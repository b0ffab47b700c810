"""Owner attestation costs: TOTP codes vs oathtool, and TOTP+HOTP per boot with one unseal.

1. A TOTP code from a known secret: heads' ``totp_code`` in-process vs ``oathtool --totp``
   (one process per code, what a shell script like Heads' ``totp`` step would run).
2. What a boot spends to show TOTP and check HOTP (simulated token) on a fresh swtpm: with the
   ``UnsealedSecretCache`` (one unseal) vs unsealing for each (two unseals, as shell Heads).

Prints both medians and the ratio for each, measured in the same run.

    .venv/bin/python bench/otp_attestation.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from heads.adapters.token import HotpCheck
from heads.adapters.tpm import open_tpm
from heads.core.otp import totp_code
from heads.core.secret import Secret
from heads.flows.totp import (
    UnsealedSecretCache,
    check_hotp,
    seal_hotp,
    seal_totp,
    show_totp,
)
from heads.testing.swtpm import Swtpm, manufacture
from heads.testing.token_sim import FACTORY_ADMIN_PIN, SimulatedToken

NOW = datetime(2026, 11, 25, 21, 0, 10, tzinfo=UTC)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def bench_codes(rounds: int) -> None:
    secret = os.urandom(20)
    stamp = NOW.strftime("%Y-%m-%d %H:%M:%S UTC")
    ours: list[float] = []
    tool: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        mine = totp_code(Secret(secret), NOW).code
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = subprocess.run(
            ["oathtool", "--totp", f"--now={stamp}", secret.hex()],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        tool.append(time.perf_counter() - start)
        assert mine == theirs
    o, t = _median_ms(ours), _median_ms(tool)
    print(f"TOTP code, {rounds} rounds")
    print(f"  heads totp_code (in-process):      median {o:9.4f} ms")
    print(f"  oathtool --totp (one process):     median {t:9.4f} ms")
    print(f"  ratio: heads is {t / o:.0f}x faster")


def bench_boot(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manufacture(work / "state")
        boot = work / "boot"
        boot.mkdir()
        with Swtpm(work / "state") as swtpm, open_tpm(swtpm.tcti) as tpm:
            seal_totp(
                tpm,
                pcr4_firmware=None,
                profile="coreboot",
                label="bench",
                rng=os.urandom,
                event_log=None,
            )
            token = SimulatedToken()
            seal_hotp(tpm, token, admin_pin=FACTORY_ADMIN_PIN, boot_dir=boot)
            cached: list[float] = []
            uncached: list[float] = []
            for _ in range(rounds):
                start = time.perf_counter()
                cache = UnsealedSecretCache()
                show_totp(tpm, now=NOW, cache=cache)
                ok = check_hotp(tpm, token, boot_dir=boot, cache=cache)
                cached.append(time.perf_counter() - start)
                assert ok.check is HotpCheck.VERIFIED
                assert cache.unseals == 1
                start = time.perf_counter()
                show_totp(tpm, now=NOW)
                ok = check_hotp(tpm, token, boot_dir=boot)
                uncached.append(time.perf_counter() - start)
                assert ok.check is HotpCheck.VERIFIED
    c, u = _median_ms(cached), _median_ms(uncached)
    print(f"TOTP shown + HOTP checked per boot (swtpm, simulated token), {rounds} rounds")
    print(f"  one unseal (UnsealedSecretCache):  median {c:9.2f} ms")
    print(f"  two unseals (as shell Heads):      median {u:9.2f} ms")
    print(f"  ratio: the cache makes it {u / c:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    bench_codes(args.rounds)
    bench_boot(args.rounds)


if __name__ == "__main__":
    main()
