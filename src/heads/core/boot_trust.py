"""The verdict on a /boot: signature first, then every file, then the rollback counter.

Order matters (docs/heads-compat.md §Verification order): file results exist only when the
signature verified, and the manifests they come from are the signed ones.

JSON report (``BootVerification.to_json()``, ``heads boot verify --json``), schema
``heads.boot-verification/1``; keys are stable, new keys may be added::

    {
      "schema": "heads.boot-verification/1",
      "bootdir": "/boot",
      "ok": false,                      # signature verified, manifests valid, all files ok,
                                        # rollback ok (or deliberately not checked)
      "signature": {
        "state": "verified",            # verified | missing | broken | bad signature |
                                        # unknown key | expired or revoked key | check failed
        "fingerprint": "105E...FEE0",   # signer (when gpgv names it), else null
        "form": "relative",             # relative | absolute (legacy /boot/ names) | null
        "signed_files": ["kexec_hashes.txt", "kexec_rollback.txt", "kexec_tree.txt"],
        "detail": "..."
      },
      "manifest": {"state": "ok", "detail": ""},   # ok | invalid | missing | not checked
      "files": [                        # null unless signature and manifest are ok
        {"path": "./vmlinuz", "status": "changed", "reason": "content differs ..."}
      ],
      "summary": {"ok": 41, "changed": 1, "missing": 0, "new": 0},
      "rollback": {
        "state": "ok",                  # ok | rolled back | mismatch | missing | unreadable |
                                        # invalid | not checked
        "counter_id": "1a2b3c4",        # as in kexec_rollback.txt (Heads' id: hex, no 0x)
        "nv_index": "0x01a2b3c4", "tpm_value": 5, "signed_value": 5, "detail": "..."
      }
    }

``files`` lists every hashed file and every anomaly (new, missing, changed kind); directories
and symlinks that are unchanged are not listed.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Final

from heads.core.frozen_record import FrozenRecord
from heads.core.manifest import (
    FileStatus,
    HashManifest,
    ManifestCheck,
    SignedForm,
    display_path,
    shown_path,
)
from heads.core.text import scrub, shown
from heads.errors import HashMismatchError, RollbackError, SignatureError

__all__ = [
    "SCHEMA",
    "BootVerification",
    "ManifestReport",
    "ManifestState",
    "RollbackReport",
    "RollbackReportState",
    "SignatureReport",
    "SignatureState",
]

SCHEMA: Final = "heads.boot-verification/1"


class SignatureState(Enum):
    VERIFIED = "verified"
    MISSING = "missing"
    BROKEN = "broken"  # kexec.sig holds no valid OpenPGP data (or is truncated)
    BAD = "bad signature"  # the kexec*.txt files differ from what was signed
    UNKNOWN_KEY = "unknown key"  # signed by a key that is not in the keyring
    EXPIRED_OR_REVOKED = "expired or revoked key"
    ERROR = "check failed"


class ManifestState(Enum):
    OK = "ok"
    INVALID = "invalid"
    MISSING = "missing"
    NOT_CHECKED = "not checked"


class RollbackReportState(Enum):
    OK = "ok"
    ROLLED_BACK = "rolled back"
    MISMATCH = "mismatch"
    MISSING = "missing"  # no kexec_rollback.txt although the TPM was to be checked
    UNREADABLE = "unreadable"  # the TPM has no such counter or refused to read it
    INVALID = "invalid"  # kexec_rollback.txt is malformed
    NOT_CHECKED = "not checked"


class SignatureReport(FrozenRecord):
    state: SignatureState
    fingerprint: str | None = None
    form: SignedForm | None = None
    signed_files: tuple[str, ...] = ()
    detail: str = ""


class ManifestReport(FrozenRecord):
    state: ManifestState
    detail: str = ""


class RollbackReport(FrozenRecord):
    state: RollbackReportState
    counter_id: str | None = None
    tpm_value: int | None = None
    signed_value: int | None = None
    detail: str = ""


_SIGNATURE_TEXT: Final = {
    SignatureState.VERIFIED: "VERIFIED",
    SignatureState.MISSING: "MISSING SIGNATURE FILE",
    SignatureState.BROKEN: "SIGNATURE FILE IS BROKEN",
    SignatureState.BAD: "SIGNATURE DOES NOT MATCH BOOT FILES",
    SignatureState.UNKNOWN_KEY: "SIGNED BY UNTRUSTED KEY",
    SignatureState.EXPIRED_OR_REVOKED: "SIGNING KEY EXPIRED OR REVOKED",
    SignatureState.ERROR: "SIGNATURE CHECK FAILED",
}


class BootVerification(FrozenRecord):
    """Everything ``verify_boot`` found; build it only through that flow."""

    bootdir: str
    signature: SignatureReport
    manifest: ManifestReport
    files: ManifestCheck | None
    rollback: RollbackReport
    # The signed kexec_hashes.txt these results were checked against (None unless the
    # signature verified and it parsed): use its digests, not a fresh read of /boot, to plan
    # a boot, so what was verified is what is booted.
    verified_hashes: HashManifest | None = None

    @property
    def ok(self) -> bool:
        return (
            self.signature.state is SignatureState.VERIFIED
            and self.manifest.state is ManifestState.OK
            and self.files is not None
            and self.files.all_ok
            and self.rollback.state in {RollbackReportState.OK, RollbackReportState.NOT_CHECKED}
        )

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in FileStatus}
        for f in self.files.files if self.files is not None else ():
            out[f.status.value] += 1
        return out

    def to_json(self) -> dict[str, object]:
        """The stable JSON report (module docstring)."""
        sig = self.signature
        rb = self.rollback
        return {
            "schema": SCHEMA,
            "bootdir": self.bootdir,
            "ok": self.ok,
            "signature": {
                "state": sig.state.value,
                "fingerprint": sig.fingerprint,
                "form": sig.form.value if sig.form is not None else None,
                "signed_files": [_json_name(n) for n in sig.signed_files],
                "detail": sig.detail,
            },
            "manifest": {"state": self.manifest.state.value, "detail": self.manifest.detail},
            "files": None
            if self.files is None
            else [
                {"path": display_path(f.path), "status": f.status.value, "reason": f.reason}
                for f in self.files.files
            ],
            "summary": self.counts(),
            "rollback": {
                "state": rb.state.value,
                "counter_id": rb.counter_id,
                "nv_index": None if rb.counter_id is None else f"0x{int(rb.counter_id, 16):08x}",
                "tpm_value": rb.tpm_value,
                "signed_value": rb.signed_value,
                "detail": rb.detail,
            },
        }

    def render_text(self, *, max_listed: int = 50) -> str:
        """The report a person reads at boot: one verdict per section, then what differs.

        Every name and detail is escaped (:mod:`heads.core.text`): a file named
        ``"x\\n  verdict:   OK"`` shows as one line, not as a verdict.
        """
        sig = self.signature
        lines = [f"/boot integrity report for {shown(self.bootdir)}"]
        who = f" by {shown(sig.fingerprint)}" if sig.fingerprint else ""
        legacy = " (legacy /boot/ names)" if sig.form is SignedForm.ABSOLUTE else ""
        lines.append(f"  signature: {_SIGNATURE_TEXT[sig.state]}{who}{legacy}")
        if sig.detail and sig.state is not SignatureState.VERIFIED:
            lines.append(f"    {scrub(sig.detail)}")
        if self.manifest.state is not ManifestState.OK:
            lines.append(f"  manifest:  {self.manifest.state.value.upper()}")
            if self.manifest.detail:
                lines.append(f"    {scrub(self.manifest.detail)}")
        if self.files is None:
            lines.append(
                "  files:     NOT CHECKED (hashes are trusted only under a valid signature)"
            )
        else:
            c = self.counts()
            state = "OK" if self.files.all_ok else "ALTERED OR UNKNOWN"
            lines.append(
                f"  files:     {state} ({c['ok']} ok, {c['changed']} changed, "
                f"{c['missing']} missing, {c['new']} new)"
            )
            bad = [f for f in self.files.files if f.status is not FileStatus.OK]
            for f in bad[:max_listed]:
                tag = f"({f.status.value})"
                lines.append(f"    {tag:<10} {shown_path(f.path)}: {scrub(f.reason)}")
            if len(bad) > max_listed:
                lines.append(f"    ... and {len(bad) - max_listed} more")
        rb = self.rollback
        lines.append(
            f"  rollback:  {rb.state.value.upper()}"
            + (f": {scrub(rb.detail)}" if rb.detail else "")
        )
        verdict = "OK" if self.ok else "FAILED: possible tampering"
        if self.ok and rb.state is RollbackReportState.NOT_CHECKED:
            # A replayed older /boot would pass too: say so on the verdict line itself.
            verdict = "OK, except that the rollback counter was not checked"
        lines.append(f"  verdict:   {verdict}")
        return "\n".join(lines) + "\n"

    def raise_if_failed(self) -> None:
        """Raise the error that matches the first failed step, in trust order.

        Raises:
            SignatureError: the signature is not verified.
            HashMismatchError: the manifests are invalid or a file differs.
            RollbackError: the rollback counter does not match.
        """
        hint = f"run: heads boot verify {shown(self.bootdir)} --keyring KEYRING for the full report"
        sig = self.signature
        if sig.state is not SignatureState.VERIFIED:
            raise SignatureError(
                f"/boot signature {sig.state.value}: "
                f"{scrub(sig.detail) or _SIGNATURE_TEXT[sig.state]}",
                hint=hint,
            )
        if self.manifest.state is not ManifestState.OK or self.files is None:
            raise HashMismatchError(
                f"/boot manifest {self.manifest.state.value}: {scrub(self.manifest.detail)}",
                hint=hint,
            )
        if not self.files.all_ok:
            bad = [f for f in self.files.files if f.status is not FileStatus.OK]
            raise HashMismatchError(
                f"{len(bad)} file(s) in /boot differ from the signed manifest, first "
                f"{shown_path(bad[0].path)} ({bad[0].status.value}: {scrub(bad[0].reason)})",
                hint=hint,
                details=tuple(f"{f.status.value}: {shown_path(f.path)}" for f in bad[:20]),
            )
        rb = self.rollback
        if rb.state not in {RollbackReportState.OK, RollbackReportState.NOT_CHECKED}:
            raise RollbackError(
                f"/boot rollback check {rb.state.value}: {scrub(rb.detail)}",
                hint="an older signed /boot was restored, or the TPM was reset; "
                "inspect /boot, then re-sign it with heads boot sign",
            )


def _json_name(name: str) -> str:
    """A name ``os.fsdecode`` made, as :func:`display_path` writes names for JSON: a byte that
    is not UTF-8 becomes ``\\xNN`` rather than a lone surrogate strict JSON readers refuse."""
    return display_path(os.fsencode(name))[2:]
