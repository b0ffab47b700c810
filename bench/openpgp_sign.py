"""The owner's key without gpg: core/openpgp vs gpg, for what the runtime does with the key.

1. Generate an Ed25519 signing key: ``generate_owner_key`` + ``export_public`` in-process vs
   ``gpg --quick-gen-key ... ed25519 sign`` + ``gpg --export`` (one warm gpg-agent).
2. Sign a /boot manifest (detached, armored): ``sign_detached`` vs ``gpg --detach-sign``
   (one process per signature, as ``heads.adapters.gpg.sign_detached`` runs it).
3. Write the passphrase-protected backup: ``export_secret`` (S2K count 65011712, as gpg's)
   vs ``gpg --export-secret-keys --armor`` with the passphrase on loopback.

gpg's times include its process start and gpg-agent unprotecting the key with the owner's
passphrase (what signing costs a user of gpg); ours sign with the seed already in memory, as
the runtime does after reading the backup once.  Every signature of ours is checked once
with gpgv.  Prints medians and the ratio of each pair,
measured in the same run.

    .venv/bin/python bench/openpgp_sign.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from heads.core.openpgp import (
    export_public,
    export_secret,
    generate_owner_key,
    sign_detached,
)
from heads.core.secret import Secret
from heads.testing.gpghome import GpgHome

CREATED = 1_700_000_000
PASSPHRASE = b"bench passphrase"
# A kexec_hashes.txt of a /boot with 40 files: what sign_boot signs.
MANIFEST = b"".join(f"{os.urandom(32).hex()}  ./file{i}\n".encode() for i in range(40))


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def _timed(action: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    argv = ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args]
    return subprocess.run(argv, check=True, capture_output=True, input=stdin).stdout


def _report(title: str, ours: list[float], theirs: list[float], tool: str) -> None:
    o, t = _median_ms(ours), _median_ms(theirs)
    print(title)
    print(f"  heads core/openpgp:   median {o:9.2f} ms")
    print(f"  {tool:<21} median {t:9.2f} ms")
    faster = f"heads is {t / o:.1f}x faster" if o < t else f"heads is {o / t:.1f}x slower"
    print(f"  ratio: {faster}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    loopback = ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    with GpgHome() as gnupg, tempfile.TemporaryDirectory() as tmp:
        home = gnupg.path
        work = Path(tmp)
        _gpg(home, "--list-keys")  # creates the keybox and starts nothing slow later

        counter = iter(range(10_000))

        def gpg_keygen() -> None:
            uid = f"Bench {next(counter)} <bench@heads.invalid>"
            _gpg(
                home,
                *loopback,
                "--quick-gen-key",
                uid,
                "ed25519",
                "sign",
                "never",
                stdin=PASSPHRASE + b"\n",
            )
            _gpg(home, "--export", uid)

        def our_keygen() -> None:
            key = generate_owner_key("Bench <bench@heads.invalid>", created=CREATED, rng=os.urandom)
            export_public(key)

        gpg_keygen()  # warm the agent
        _report(
            f"Key generation + public export, {rounds} rounds",
            _timed(our_keygen, rounds),
            _timed(gpg_keygen, rounds),
            "gpg --quick-gen-key:",
        )

        key = generate_owner_key("Bench <bench@heads.invalid>", created=CREATED, rng=os.urandom)
        secret = export_secret(key, Secret(PASSPHRASE), rng=os.urandom)
        (work / "secret.asc").write_bytes(secret)
        _gpg(home, *loopback, "--import", str(work / "secret.asc"), stdin=PASSPHRASE + b"\n")
        (work / "manifest").write_bytes(MANIFEST)

        def gpg_sign() -> None:
            _gpg(
                home,
                *loopback,
                "--armor",
                "--detach-sign",
                "--local-user",
                key.fingerprint,
                "--output",
                "-",
                str(work / "manifest"),
                stdin=PASSPHRASE + b"\n",
            )

        ours = sign_detached(key, MANIFEST, created=CREATED + 1)
        (work / "manifest.sig").write_bytes(ours)
        (work / "pubring.gpg").write_bytes(export_public(key))
        subprocess.run(
            [
                "gpgv",
                "--keyring",
                str(work / "pubring.gpg"),
                str(work / "manifest.sig"),
                str(work / "manifest"),
            ],
            check=True,
            capture_output=True,
        )
        _report(
            f"Detached signature of a {len(MANIFEST)}-byte manifest, {rounds} rounds",
            _timed(lambda: sign_detached(key, MANIFEST, created=CREATED + 1), rounds),
            _timed(gpg_sign, rounds),
            "gpg --detach-sign:",
        )

        def gpg_export() -> None:
            _gpg(
                home,
                *loopback,
                "--armor",
                "--export-secret-keys",
                key.fingerprint,
                stdin=PASSPHRASE + b"\n",
            )

        _report(
            f"Protected secret key export (S2K 65011712 bytes), {rounds} rounds",
            _timed(lambda: export_secret(key, Secret(PASSPHRASE), rng=os.urandom), rounds),
            _timed(gpg_export, rounds),
            "gpg --export-secret-keys:",
        )


if __name__ == "__main__":
    main()
