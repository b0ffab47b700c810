"""TOTP-style seal + unseal: heads (its own TPM layer) vs the tpm2-tools sequence shell Heads runs.

Both run against the same freshly manufactured swtpm in the same run.  Seal = read PCRs, build
the PolicyPCR policy, create the sealed object, load it, persist it at 0x81004d47 (replacing the
previous one).  Unseal = policy session, PolicyPCR, unseal.  Prints both medians and the ratio.

    .venv/bin/python bench/tpm_seal_unseal.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from heads.adapters.tpm import TOTP_HANDLE, open_tpm
from heads.core.pcr import PcrSelection
from heads.core.secret import Secret
from heads.testing.swtpm import Swtpm, manufacture

SELECTION = "sha256:0,1,2,3,4,7"


def tools_seal_unseal(work: Path, env: dict[str, str]) -> bytes:
    """Shell Heads' tpmr seal/unseal commands, one process each (docs/heads-compat.md §TOTP and
    HOTP)."""

    def run(*argv: str) -> bytes:
        return subprocess.run(
            argv, cwd=work, env=env, check=True, capture_output=True, timeout=60
        ).stdout

    def run_ok(*argv: str) -> None:
        subprocess.run(argv, cwd=work, env=env, check=False, capture_output=True, timeout=60)

    # seal
    run("tpm2_pcrread", "-Q", SELECTION, "-o", "pcrs.bin")
    run("tpm2_startauthsession", "-g", "sha256", "-S", "trial.session")
    run("tpm2_policypcr", "-Q", "-l", SELECTION, "-f", "pcrs.bin", "-S", "trial.session",
        "-L", "auth.policy")  # fmt: skip
    run("tpm2_flushcontext", "trial.session")
    attrs = "fixedtpm|fixedparent|adminwithpolicy|noda"
    run("tpm2_create", "-Q", "-C", "primary.handle", "-i", "secret.bin", "-u", "s.priv",
        "-r", "s.pub", "-L", "auth.policy", "-a", attrs)  # fmt: skip
    run("tpm2_load", "-Q", "-C", "primary.handle", "-u", "s.priv", "-r", "s.pub", "-c", "s.ctx")
    run_ok("tpm2_evictcontrol", "-Q", "-C", "o", "-c", f"0x{TOTP_HANDLE:08x}")
    run("tpm2_evictcontrol", "-Q", "-C", "o", "-c", "s.ctx", f"0x{TOTP_HANDLE:08x}")
    run("tpm2_flushcontext", "-t")
    # unseal
    run("tpm2_startauthsession", "-Q", "-g", "sha256", "-S", "policy.session", "--policy-session")
    run("tpm2_policypcr", "-Q", "-l", SELECTION, "-S", "policy.session")
    out = run("tpm2_unseal", "-c", f"0x{TOTP_HANDLE:08x}", "-p", "session:policy.session")
    run("tpm2_flushcontext", "policy.session")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    secret = os.urandom(20)
    selection = PcrSelection.parse(SELECTION)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manufacture(work / "state")
        with Swtpm(work / "state") as swtpm:
            env = {**os.environ, "TPM2TOOLS_TCTI": swtpm.tcti, "TSS2_LOG": "all+NONE"}
            ours: list[float] = []
            with open_tpm(swtpm.tcti) as tpm:
                tpm.seal(TOTP_HANDLE, Secret(secret), selection)  # creates the primary key
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    tpm.seal(TOTP_HANDLE, Secret(secret), selection)
                    released = tpm.unseal(TOTP_HANDLE)
                    ours.append(time.perf_counter() - start)
                    assert released.reveal() == secret
            (work / "secret.bin").write_bytes(secret)
            subprocess.run(
                ["tpm2_readpublic", "-Q", "-c", "0x81000000", "-t", "primary.handle"],
                cwd=work, env=env, check=True, capture_output=True,
            )  # fmt: skip
            tools: list[float] = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                out = tools_seal_unseal(work, env)
                tools.append(time.perf_counter() - start)
                assert out == secret
    ours_ms, tools_ms = statistics.median(ours) * 1e3, statistics.median(tools) * 1e3
    print(f"seal+unseal, {args.rounds} rounds, same swtpm")
    print(f"  heads (own TPM layer, encrypted sessions, record):   median {ours_ms:8.2f} ms")
    print(f"  tpm2-tools (13 processes, as shell Heads):          median {tools_ms:8.2f} ms")
    print(f"  ratio: heads is {tools_ms / ours_ms:.1f}x faster")


if __name__ == "__main__":
    main()
