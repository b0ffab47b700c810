"""Sealing policies: the PolicyPCR/PolicyAuthValue digests and the public seal record.

Policy digests follow TPM 2.0 Part 3: PolicyPCR (§23.7) extends the policy digest with
``CC_PolicyPCR || TPML_PCR_SELECTION || H(concatenated PCR values)``; PolicyAuthValue (§23.18)
with ``CC_PolicyAuthValue``.  Computing them here lets heads seal to PCR values the TPM does not
hold yet (a future boot) and lets tests check our arithmetic against a TPM trial session.

The *seal record* is public information kept beside each sealed object (in an NV index) so a
refused unseal can say which PCRs moved, even after a reboot::

    magic "HSR1" | u16 hash alg | u8 count | count * u8 PCR index | count * digest | 32-byte policy

It is never trusted for security: the TPM enforces the policy; the record only explains.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from heads.core.digest import HashAlg
from heads.core.pcr import PcrIndex, PcrSelection
from heads.errors import FormatError, UsageError

__all__ = [
    "SealRecord",
    "changed_pcrs",
    "pcr_values_for",
    "policy_auth_value",
    "policy_pcr",
    "prediction_lines",
    "seal_policy_digest",
]

_TPM_CC_POLICY_PCR: Final = 0x0000017F
_TPM_CC_POLICY_AUTH_VALUE: Final = 0x0000016B
_MAGIC: Final = b"HSR1"
_POLICY_SIZE: Final = 32  # sha256 policy sessions


def pcr_values_for(
    selection: PcrSelection, values: Mapping[int, bytes], *, missing: str
) -> dict[int, bytes]:
    """The values of the selected PCRs, to seal to.

    Raises:
        UsageError: a selected PCR has no value; ``missing`` is the message, its ``{pcrs}``
            replaced by their numbers.
    """
    absent = [i for i in selection.indices if i not in values]
    if absent:
        raise UsageError(missing.format(pcrs=", ".join(map(str, absent))))
    return {i: values[i] for i in selection.indices}


def _tpml_pcr_selection(selection: PcrSelection) -> bytes:
    bitmap = selection.bitmap()
    return struct.pack(">IHB", 1, selection.alg.tpm_alg_id, len(bitmap)) + bitmap


def policy_pcr(previous: bytes, selection: PcrSelection, values: Mapping[int, bytes]) -> bytes:
    """The policy digest after TPM2_PolicyPCR with the given expected PCR values.

    Raises:
        ValueError: a selected PCR has no value or a value of the wrong size.
    """
    parts = []
    for index in selection.indices:
        value = values.get(index)
        if value is None or len(value) != selection.alg.digest_size:
            raise ValueError(f"PCR {index} needs a {selection.alg.value} value")
        parts.append(value)
    pcr_digest = hashlib.sha256(b"".join(parts)).digest()
    return hashlib.sha256(
        previous
        + struct.pack(">I", _TPM_CC_POLICY_PCR)
        + _tpml_pcr_selection(selection)
        + pcr_digest
    ).digest()


def policy_auth_value(previous: bytes) -> bytes:
    """The policy digest after TPM2_PolicyAuthValue."""
    return hashlib.sha256(previous + struct.pack(">I", _TPM_CC_POLICY_AUTH_VALUE)).digest()


def seal_policy_digest(
    selection: PcrSelection, values: Mapping[int, bytes], *, with_auth: bool
) -> bytes:
    """PolicyPCR, then PolicyAuthValue when the secret also needs a passphrase."""
    digest = policy_pcr(b"\0" * _POLICY_SIZE, selection, values)
    return policy_auth_value(digest) if with_auth else digest


@dataclass(frozen=True, slots=True)
class SealRecord:
    """What a secret was sealed to: the PCR selection, the expected values and the policy."""

    selection: PcrSelection
    values: Mapping[int, bytes]
    policy: bytes

    def to_bytes(self) -> bytes:
        alg = self.selection.alg
        out = bytearray(_MAGIC)
        out += struct.pack(">HB", alg.tpm_alg_id, len(self.selection.indices))
        out += bytes(self.selection.indices)
        for index in self.selection.indices:
            out += self.values[index]
        out += self.policy
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "seal record") -> SealRecord:
        """Raises FormatError on anything but a well-formed record."""
        if len(data) < 7 or data[:4] != _MAGIC:
            raise FormatError("not a seal record (bad magic)", source=source, offset=0)
        alg_id, count = struct.unpack_from(">HB", data, 4)
        try:
            alg = HashAlg.from_tpm_alg_id(alg_id)
        except ValueError as exc:
            raise FormatError(str(exc), source=source, offset=4) from None
        pos = 7
        indices = data[pos : pos + count]
        pos += count
        need = pos + count * alg.digest_size + _POLICY_SIZE
        if len(indices) != count or len(data) < need:
            raise FormatError(f"record is truncated ({len(data)} bytes)", source=source)
        try:
            selection = PcrSelection(alg, tuple(PcrIndex(i) for i in indices))
        except ValueError as exc:
            raise FormatError(f"bad PCR list: {exc}", source=source, offset=7) from None
        values: dict[int, bytes] = {}
        for index in selection.indices:
            values[index] = data[pos : pos + alg.digest_size]
            pos += alg.digest_size
        return cls(selection, values, data[pos : pos + _POLICY_SIZE])


def changed_pcrs(record: SealRecord, current: Mapping[int, bytes]) -> tuple[int, ...]:
    """The selected PCRs whose current value differs from the sealed one."""
    return tuple(i for i in record.selection.indices if current.get(i) != record.values[i])


def prediction_lines(record: SealRecord, current: Mapping[int, bytes]) -> list[str]:
    """One line per sealed PCR: the value it was sealed to (a prediction, for a pending copy),
    the current one, and whether they match; the console lines the QEMU tests read."""
    out = []
    for index in record.selection.indices:
        sealed, now = record.values[index], current.get(index)
        verdict = "matched" if now == sealed else "DIFFERS"
        shown_now = now.hex() if now is not None else "unreadable"
        out.append(f"pending seal: PCR {index} predicted {sealed.hex()} now {shown_now}: {verdict}")
    return out
