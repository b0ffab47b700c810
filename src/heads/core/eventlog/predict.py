"""Predict PCR values and PolicyPCR digests: the basis for sealing to future values.

The port of Heads' ``calcfuturepcr`` (docs/heads-compat.md §PCR prediction): take the
firmware's part of the log for PCR N, fold its digests from the reset value, then fold the
given extends (a string, a file's bytes, or a digest used as is).  And the policy digest the
TPM would compute for ``TPM2_PolicyPCR`` over predicted values (TPM 2.0 Part 3 §23.7), so a
seal to future values can be checked against the TPM's own trial-session computation.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from heads.core.digest import HashAlg
from heads.core.eventlog.model import bank_hash
from heads.core.eventlog.replay import Replay, initial_value
from heads.core.pcr import PcrSelection
from heads.errors import UsageError

__all__ = ["Measurement", "Prediction", "policy_pcr_digest", "predict_pcr"]

_TPM_CC_POLICY_PCR: Final = 0x0000017F  # TPM 2.0 Part 2 §6.5.2


@dataclass(frozen=True, slots=True)
class Measurement:
    """Something to extend: ``string`` (H(text), UTF-8, no newline: docs/pcr-layout.md §How
    heads measures), ``data`` (H(bytes), e.g. a file's contents) or ``digest`` (used as is)."""

    kind: str
    label: str
    payload: bytes

    @classmethod
    def string(cls, text: str) -> Measurement:
        return cls("string", text, text.encode("utf-8"))

    @classmethod
    def data(cls, label: str, payload: bytes) -> Measurement:
        return cls("data", label, payload)

    @classmethod
    def digest(cls, hex_digest: str) -> Measurement:
        """A digest in hex.

        Raises:
            UsageError: not hex, or not the size of any hash algorithm.
        """
        text = hex_digest.strip().lower()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise UsageError(f"digest {hex_digest[:80]!r} is not hex") from None
        if len(raw) not in {a.digest_size for a in HashAlg}:
            raise UsageError(f"digest {hex_digest[:80]!r} has {len(raw)} bytes, not a hash size")
        return cls("digest", text, raw)

    def digest_for(self, alg: HashAlg) -> bytes:
        """The digest this measurement extends into ``alg``'s bank.

        Raises:
            UsageError: a given digest does not have that bank's size.
        """
        if self.kind == "digest":
            if len(self.payload) != alg.digest_size:
                raise UsageError(
                    f"digest {self.label[:16]}... has {len(self.payload)} bytes; the "
                    f"{alg.value} bank needs {alg.digest_size}",
                    hint="give a digest of the bank's size, or use --string/--file",
                )
            return self.payload
        return bank_hash(alg, self.payload)


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predicted PCR: where it started, each extend, and the final value."""

    alg: HashAlg
    pcr: int
    firmware_value: bytes
    steps: tuple[tuple[Measurement, bytes, bytes], ...]  # (what, digest, value after)
    value: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "bank": self.alg.value,
            "pcr": self.pcr,
            "firmware": self.firmware_value.hex(),
            "extends": [
                {"kind": m.kind, "label": m.label, "digest": d.hex(), "after": a.hex()}
                for m, d, a in self.steps
            ],
            "value": self.value.hex(),
        }


def predict_pcr(
    firmware: Replay | None,
    alg: HashAlg,
    pcr: int,
    measurements: Sequence[Measurement] = (),
) -> Prediction:
    """PCR ``pcr`` of bank ``alg`` after the firmware log's events plus ``measurements``.

    ``firmware`` is the replay of the firmware log only (None: the PCR's reset value).

    Raises:
        UsageError: a digest does not fit the bank, or the firmware replay cannot give this
            bank's value (an event lacks its digest).
    """
    if not 0 <= pcr < 24:
        raise UsageError(f"PCR {pcr} does not exist (0-23)")
    if firmware is None:
        start = initial_value(alg, pcr, None, hcrtm=False)
    elif alg not in firmware.banks:
        raise UsageError(
            f"the firmware log has no {alg.value} bank",
            hint=f"choose one of: {', '.join(a.value for a in firmware.banks) or 'none'}",
        )
    else:
        try:
            start = firmware.value(alg, pcr)
        except KeyError:
            raise UsageError(f"the firmware log lacks {alg.value} digests for PCR {pcr}") from None
    value = start
    steps: list[tuple[Measurement, bytes, bytes]] = []
    for m in measurements:
        digest = m.digest_for(alg)
        value = bank_hash(alg, value + digest)
        steps.append((m, digest, value))
    return Prediction(alg, pcr, start, tuple(steps), value)


def policy_pcr_digest(
    selection: PcrSelection,
    values: Mapping[int, bytes],
    *,
    policy_alg: HashAlg = HashAlg.SHA256,
    previous: bytes | None = None,
) -> bytes:
    """The policy digest after ``TPM2_PolicyPCR(selection)`` with the PCRs at ``values``.

    TPM 2.0 Part 3 §23.7: ``policyDigest' = H(policyDigest || TPM_CC_PolicyPCR || pcrs ||
    digestTPM)``, ``pcrs`` the marshalled TPML_PCR_SELECTION (count, hash, sizeofSelect,
    pcrSelect) and ``digestTPM = H(the selected PCR values in index order)``.

    Raises:
        ValueError: a selected PCR has no value or a value of the wrong size.
    """
    size = selection.alg.digest_size
    parts: list[bytes] = []
    for i in selection.indices:
        value = values.get(i)
        if value is None or len(value) != size:
            raise ValueError(f"PCR {i} needs a {size}-byte {selection.alg.value} value")
        parts.append(value)
    pcr_digest = bank_hash(policy_alg, b"".join(parts))
    bitmap = selection.bitmap()
    tpml = struct.pack(">IHB", 1, selection.alg.tpm_alg_id, len(bitmap)) + bitmap
    old = previous if previous is not None else b"\0" * policy_alg.digest_size
    return bank_hash(policy_alg, old + struct.pack(">I", _TPM_CC_POLICY_PCR) + tpml + pcr_digest)
