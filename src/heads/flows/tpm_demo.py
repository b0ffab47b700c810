"""The TPM walkthrough on a fresh software TPM: seal, unseal, extend, refused unseal.

Shows in a minute what heads relies on: a secret sealed to PCR values is released only while
the measured state is unchanged, and a refusal names the PCR that moved.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from heads.adapters.swtpm import manufacture, serve_tcp
from heads.adapters.tpm import TOTP_HANDLE, open_tpm
from heads.core.digest import HashAlg
from heads.core.pcr import PcrSelection
from heads.core.secret import Secret
from heads.errors import UnsealError
from heads.flows.measure import EventLogWriter, measure_string

__all__ = ["run_tpm_demo"]

_SELECTION = PcrSelection.parse("sha256:0,1,2,3,4,7")


def run_tpm_demo(say: Callable[[str], None]) -> int:
    """Run the walkthrough, reporting each step through ``say``; returns 0 when all held."""
    with tempfile.TemporaryDirectory(prefix="heads-tpm-demo-") as tmp:
        state = Path(tmp) / "tpm"
        say("1. manufacturing a fresh software TPM (swtpm_setup: EK, sha1+sha256 banks)")
        manufacture(state)
        with serve_tcp(state) as server, open_tpm(server.tcti) as tpm:
            info = tpm.info()
            say(
                f"   {info.manufacturer} {info.vendor}, banks "
                f"{', '.join(b.value for b in info.banks)}, lockout "
                f"{info.lockout.failed_tries}/{info.lockout.max_tries}"
            )
            # Mix the TPM's RNG with the OS's: neither alone has to be trusted.
            mixed = zip(tpm.get_random(20), os.urandom(20), strict=True)
            secret = Secret(bytes(a ^ b for a, b in mixed))
            say(f"2. sealing a 20-byte secret at 0x{TOTP_HANDLE:08x} to {_SELECTION}")
            record = tpm.seal(TOTP_HANDLE, secret, _SELECTION)
            say(f"   policy digest {record.policy.hex()}")
            released = tpm.unseal(TOTP_HANDLE)
            ok = released == secret
            say(f"3. unsealing: {'released, identical to what was sealed' if ok else 'MISMATCH'}")
            log = EventLogWriter(Path(tmp) / "measurements.cel.jsonl")
            say('4. extending PCR 7 with the string "config.user changed" (logged)')
            measure_string(tpm, log, 7, "config.user changed", description="demo")
            pcr7 = tpm.read_pcrs(HashAlg.SHA256, [7])[7]
            say(f"   PCR 7 sha256 is now {pcr7.hex()}")
            say("5. unsealing again:")
            try:
                tpm.unseal(TOTP_HANDLE)
            except UnsealError as err:
                say(f"   refused: {err.message}")
                for line in err.details:
                    say(f"     {line}")
                refused = 7 in err.changed_pcrs
            else:
                say("   RELEASED although PCR 7 changed: this must not happen")
                refused = False
        if ok and refused:
            say("the TPM released the secret only to the measured state it was sealed to")
            return 0
        return 1
