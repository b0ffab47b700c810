"""TPM 2.0 response codes: the base code, where it points, and words for it (Part 2 §6.6).

A format-1 code (bit 7 set) names the handle, session or parameter it is about in bits 8-11
(bit 6 tells a parameter; else bit 11 a session); :func:`base_rc` strips that so a code can be
compared with the constants here.  A format-0 code is a plain number, a warning when bit 11 is
set (docs/tpm-objects.md §The command layer).
"""

from __future__ import annotations

from typing import Final

SUCCESS: Final = 0x000
RC_FMT1: Final = 0x080
RC_VER1: Final = 0x100
RC_WARN: Final = 0x900

# Format 0 (RC_VER1 + n).
INITIALIZE: Final = 0x100
FAILURE: Final = 0x101
SEQUENCE: Final = 0x103
DISABLED: Final = 0x120
EXCLUSIVE: Final = 0x121
AUTH_TYPE: Final = 0x124
AUTH_MISSING: Final = 0x125
POLICY: Final = 0x126
PCR: Final = 0x127
PCR_CHANGED: Final = 0x128
REBOOT: Final = 0x130
UNBALANCED: Final = 0x131
COMMAND_SIZE: Final = 0x142
COMMAND_CODE: Final = 0x143
AUTHSIZE: Final = 0x144
AUTH_CONTEXT: Final = 0x145
NV_RANGE: Final = 0x146
NV_SIZE: Final = 0x147
NV_LOCKED: Final = 0x148
NV_AUTHORIZATION: Final = 0x149
NV_UNINITIALIZED: Final = 0x14A
NV_SPACE: Final = 0x14B
NV_DEFINED: Final = 0x14C
BAD_CONTEXT: Final = 0x150
CPHASH: Final = 0x151
PARENT: Final = 0x152
NEEDS_TEST: Final = 0x153
NO_RESULT: Final = 0x154
SENSITIVE: Final = 0x155
# Format 1 (RC_FMT1 + n).
ASYMMETRIC: Final = 0x081
ATTRIBUTES: Final = 0x082
HASH: Final = 0x083
VALUE: Final = 0x084
HIERARCHY: Final = 0x085
KEY_SIZE: Final = 0x087
MGF: Final = 0x088
MODE: Final = 0x089
TYPE: Final = 0x08A
HANDLE: Final = 0x08B
KDF: Final = 0x08C
RANGE: Final = 0x08D
AUTH_FAIL: Final = 0x08E
NONCE: Final = 0x08F
PP: Final = 0x090
SCHEME: Final = 0x092
SIZE: Final = 0x095
SYMMETRIC: Final = 0x096
TAG: Final = 0x097
SELECTOR: Final = 0x098
INSUFFICIENT: Final = 0x09A
SIGNATURE: Final = 0x09B
KEY: Final = 0x09C
POLICY_FAIL: Final = 0x09D
INTEGRITY: Final = 0x09F
TICKET: Final = 0x0A0
RESERVED_BITS: Final = 0x0A1
BAD_AUTH: Final = 0x0A2
EXPIRED: Final = 0x0A3
POLICY_CC: Final = 0x0A4
BINDING: Final = 0x0A5
CURVE: Final = 0x0A6
ECC_POINT: Final = 0x0A7
# Warnings (RC_WARN + n).
CONTEXT_GAP: Final = 0x901
OBJECT_MEMORY: Final = 0x902
SESSION_MEMORY: Final = 0x903
MEMORY: Final = 0x904
SESSION_HANDLES: Final = 0x905
OBJECT_HANDLES: Final = 0x906
LOCALITY: Final = 0x907
YIELDED: Final = 0x908
CANCELED: Final = 0x909
TESTING: Final = 0x90A
REFERENCE_H0: Final = 0x910
NV_RATE: Final = 0x920
LOCKOUT: Final = 0x921
RETRY: Final = 0x922
NV_UNAVAILABLE: Final = 0x923

_WORDS: Final = {
    INITIALIZE: "TPM not initialised by TPM2_Startup",
    FAILURE: "the TPM is in failure mode",
    SEQUENCE: "improper use of a sequence handle",
    DISABLED: "the command is disabled",
    EXCLUSIVE: "the command failed because audit sequence required exclusivity",
    AUTH_TYPE: "the authorisation handle is not correct for the command",
    AUTH_MISSING: "the command requires an authorisation session",
    POLICY: "the policy failure in math operation or an invalid authPolicy value",
    PCR: "PCR check failed",
    PCR_CHANGED: "the PCRs changed since the policy session checked them",
    REBOOT: "the TPM needs a TPM2_Startup(CLEAR)",
    UNBALANCED: "unbalanced session and key sizes",
    COMMAND_SIZE: "the command size is wrong",
    COMMAND_CODE: "command code not supported",
    AUTHSIZE: "the authorisation area size is wrong",
    AUTH_CONTEXT: "a command without authorisation came with sessions",
    NV_RANGE: "NV offset+size is out of range",
    NV_SIZE: "the NV size is too large or too small",
    NV_LOCKED: "NV access locked",
    NV_AUTHORIZATION: "NV access authorisation fails in command actions",
    NV_UNINITIALIZED: "an NV index is used before being initialised",
    NV_SPACE: "insufficient space for NV allocation",
    NV_DEFINED: "the NV index or persistent object already exists",
    BAD_CONTEXT: "context in TPM2_ContextLoad() is not valid",
    CPHASH: "cpHash value already set or not correct for use",
    PARENT: "handle for parent is not a valid parent",
    NEEDS_TEST: "some function needs testing",
    NO_RESULT: "internal function cannot process a request due to an unspecified problem",
    SENSITIVE: "the sensitive area did not unmarshal correctly after decryption",
    ASYMMETRIC: "asymmetric algorithm not supported or not correct",
    ATTRIBUTES: "inconsistent attributes",
    HASH: "hash algorithm not supported or not appropriate",
    VALUE: "value is out of range or is not correct for the context",
    HIERARCHY: "hierarchy is not enabled or is not correct for the use",
    KEY_SIZE: "key size is not supported",
    MGF: "mask generation function not supported",
    MODE: "mode of operation not supported",
    TYPE: "the type of the value is not appropriate for the use",
    HANDLE: "the handle is not correct for the use",
    KDF: "unsupported key derivation function",
    RANGE: "value was out of allowed range",
    AUTH_FAIL: "the authorisation HMAC check failed and the DA counter incremented",
    NONCE: "invalid nonce size or nonce value mismatch",
    PP: "authorisation requires assertion of physical presence",
    SCHEME: "unsupported or incompatible scheme",
    SIZE: "structure is the wrong size",
    SYMMETRIC: "unsupported symmetric algorithm or key size",
    TAG: "incorrect structure tag",
    SELECTOR: "union selector is incorrect",
    INSUFFICIENT: "the TPM was unable to unmarshal a value because there were not enough bytes",
    SIGNATURE: "the signature is not valid",
    KEY: "key fields are not compatible with the selected use",
    POLICY_FAIL: "a policy check failed",
    INTEGRITY: "integrity check failed",
    TICKET: "invalid ticket",
    RESERVED_BITS: "reserved bits not set to zero as required",
    BAD_AUTH: "authorisation failure without DA implications",
    EXPIRED: "the policy has expired",
    POLICY_CC: "the command code in the policy is not the command code of the command",
    BINDING: "public and sensitive portions of an object are not cryptographically bound",
    CURVE: "curve not supported",
    ECC_POINT: "point is not on the required curve",
    CONTEXT_GAP: "gap for context ID is too large",
    OBJECT_MEMORY: "out of memory for object contexts",
    SESSION_MEMORY: "out of memory for session contexts",
    MEMORY: "out of shared object/session memory or need space for internal operations",
    SESSION_HANDLES: "out of session handles",
    OBJECT_HANDLES: "out of object handles",
    LOCALITY: "bad locality",
    YIELDED: "the TPM has suspended operation on the command",
    CANCELED: "the command was canceled",
    TESTING: "the TPM is performing self-tests",
    NV_RATE: "the TPM is rate-limiting accesses to prevent wearout of NV",
    LOCKOUT: "authorisations for objects subject to DA protection are not allowed at this "
    "time because the TPM is in DA lockout mode",
    RETRY: "the TPM was not able to start the command",
    NV_UNAVAILABLE: "the command may require writing of NV and NV is not currently accessible",
}


def base_rc(rc: int) -> int:
    """The response code without the handle/session/parameter number of a format-1 code."""
    if rc & RC_FMT1:
        return rc & 0xBF
    return rc


def describe(rc: int) -> str:
    """A one-line text for a response code, e.g. ``tpm:parameter(2):value is out of range``."""
    base = base_rc(rc)
    words = _WORDS.get(base, "unknown error")
    if rc & 0xFFFFF000 or (not rc & RC_FMT1 and rc & 0x400):
        return f"vendor or unknown response code 0x{rc:x}"
    where = ""
    if rc & RC_FMT1:
        n = (rc >> 8) & 0xF
        if rc & 0x40:
            where = f"parameter({n}):"
        elif n & 0x8:
            where = f"session({n & 0x7}):"
        elif n:
            where = f"handle({n}):"
    elif rc & RC_WARN == RC_WARN:
        where = "warning:"
    return f"tpm:{where}{words}"
