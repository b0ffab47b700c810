"""The TPM cost of keeping the TOTP across a firmware update, against shell Heads' reseal.

heads, around a flash: unseal the secret and seal a pending copy to the predicted PCRs (before
the flash), then at the next boot: the current object refused, the copy unsealed, sealed again
at 0x81004d47 and evicted (the promotion).  Shell Heads instead fails the TOTP after the
update and the owner generates a new secret: the tpm2-tools seal + unseal sequence of
bench/tpm_seal_unseal.py (and a new QR code to scan, not measured).  Both against the same
swtpm in the same run; PCR 7 is extended between the two halves as a new config.user would.

    .venv/bin/python bench/pending_reseal.py [--rounds N]
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
from heads.core.digest import HashAlg, extend
from heads.core.pcr import PcrSelection
from heads.core.secret import Secret
from heads.flows.totp import pending_exists, seal_pending, unseal_totp
from heads.testing.swtpm import Swtpm, manufacture
from tpm_seal_unseal import SELECTION, tools_seal_unseal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    secret = os.urandom(20)
    selection = PcrSelection.parse(SELECTION)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manufacture(work / "state")
        with Swtpm(work / "state") as swtpm:
            before: list[float] = []
            after: list[float] = []
            with open_tpm(swtpm.tcti) as tpm:
                tpm.seal(TOTP_HANDLE, Secret(secret), selection)
                for n in range(args.rounds):
                    digest = HashAlg.SHA256.hash(f"config.user {n}".encode())
                    start = time.perf_counter()
                    released = unseal_totp(tpm)
                    values = tpm.read_pcrs(HashAlg.SHA256, selection.indices)
                    values[7] = extend(HashAlg.SHA256, values[7], digest)
                    seal_pending(tpm, released, values, profile="coreboot")
                    before.append(time.perf_counter() - start)
                    tpm.extend_digests(7, {HashAlg.SHA256: digest})
                    start = time.perf_counter()
                    assert unseal_totp(tpm).reveal() == secret
                    after.append(time.perf_counter() - start)
                    assert not pending_exists(tpm)
            env = {**os.environ, "TPM2TOOLS_TCTI": swtpm.tcti, "TSS2_LOG": "all+NONE"}
            (work / "secret.bin").write_bytes(secret)
            subprocess.run(
                ["tpm2_readpublic", "-Q", "-c", "0x81000000", "-t", "primary.handle"],
                cwd=work, env=env, check=True, capture_output=True,
            )  # fmt: skip
            tools: list[float] = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                assert tools_seal_unseal(work, env) == secret
                tools.append(time.perf_counter() - start)
    ms = [statistics.median(x) * 1e3 for x in (before, after, tools)]
    print(f"keeping the TOTP across an update, {args.rounds} rounds, same swtpm")
    print(f"  heads, before the flash (unseal + pending seal):      median {ms[0]:8.2f} ms")
    print(f"  heads, next boot (refused, copy unsealed, promoted):  median {ms[1]:8.2f} ms")
    print(f"  shell Heads' new secret (tpm2-tools seal + unseal):   median {ms[2]:8.2f} ms")
    print(f"  ratio: the tools take {ms[2] / (ms[0] + ms[1]):.1f}x heads' whole reseal")


if __name__ == "__main__":
    main()
