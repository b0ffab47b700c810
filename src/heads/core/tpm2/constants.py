"""TPM 2.0 numbers heads uses (TPM 2.0 Part 2): command codes, tags, handles, algorithms,
attributes, capabilities and properties (docs/tpm-objects.md §The command layer)."""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Final


class CC(IntEnum):
    """TPM_CC: command codes (Part 2 §6.5)."""

    NV_UNDEFINE_SPACE = 0x122
    EVICT_CONTROL = 0x120
    CLEAR = 0x126
    CLEAR_CONTROL = 0x127
    HIERARCHY_CHANGE_AUTH = 0x129
    NV_DEFINE_SPACE = 0x12A
    CREATE_PRIMARY = 0x131
    NV_INCREMENT = 0x134
    NV_WRITE = 0x137
    DICTIONARY_ATTACK_PARAMETERS = 0x13A
    STARTUP = 0x144
    NV_READ = 0x14E
    CREATE = 0x153
    LOAD = 0x157
    UNSEAL = 0x15E
    FLUSH_CONTEXT = 0x165
    NV_READ_PUBLIC = 0x169
    POLICY_AUTH_VALUE = 0x16B
    READ_PUBLIC = 0x173
    START_AUTH_SESSION = 0x176
    GET_CAPABILITY = 0x17A
    GET_RANDOM = 0x17B
    PCR_READ = 0x17E
    POLICY_PCR = 0x17F
    PCR_EXTEND = 0x182
    POLICY_GET_DIGEST = 0x189


class ST(IntEnum):
    """TPM_ST: command/response tags (Part 2 §6.9)."""

    RSP_COMMAND = 0x00C4  # a TPM 1.2-style answer to a malformed command
    NO_SESSIONS = 0x8001
    SESSIONS = 0x8002


class RH(IntEnum):
    """Permanent handles (Part 2 §7.4)."""

    OWNER = 0x40000001
    NULL = 0x40000007
    PW = 0x40000009  # TPM_RS_PW: the password session
    LOCKOUT = 0x4000000A
    ENDORSEMENT = 0x4000000B
    PLATFORM = 0x4000000C


class HT(IntEnum):
    """TPM_HT: the top byte of a handle (Part 2 §7.2)."""

    PCR = 0x00
    NV_INDEX = 0x01
    HMAC_SESSION = 0x02
    POLICY_SESSION = 0x03
    PERMANENT = 0x40
    TRANSIENT = 0x80
    PERSISTENT = 0x81


class ALG(IntEnum):
    """TPM_ALG_ID (Part 2 §6.3)."""

    RSA = 0x0001
    SHA1 = 0x0004
    HMAC = 0x0005
    AES = 0x0006
    KEYEDHASH = 0x0008
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    NULL = 0x0010
    SM3_256 = 0x0012
    RSASSA = 0x0014
    RSAES = 0x0015
    RSAPSS = 0x0016
    OAEP = 0x0017
    ECDSA = 0x0018
    ECDH = 0x0019
    ECDAA = 0x001A
    SM2 = 0x001B
    ECSCHNORR = 0x001C
    ECMQV = 0x001D
    KDF1_SP800_56A = 0x0020
    KDF2 = 0x0021
    KDF1_SP800_108 = 0x0022
    ECC = 0x0023
    SYMCIPHER = 0x0025
    CAMELLIA = 0x0026
    SHA3_256 = 0x0027
    SHA3_384 = 0x0028
    SHA3_512 = 0x0029
    CTR = 0x0040
    OFB = 0x0041
    CBC = 0x0042
    CFB = 0x0043
    ECB = 0x0044
    SM4 = 0x0013
    XOR = 0x000A


class ECC_CURVE(IntEnum):  # noqa: N801  # the spec's name
    NIST_P256 = 0x0003


class SE(IntEnum):
    """TPM_SE: session types (Part 2 §6.11)."""

    HMAC = 0x00
    POLICY = 0x01
    TRIAL = 0x03


class SU(IntEnum):
    CLEAR = 0x0000
    STATE = 0x0001


class CAP(IntEnum):
    """TPM_CAP (Part 2 §6.12)."""

    ALGS = 0
    HANDLES = 1
    COMMANDS = 2
    PP_COMMANDS = 3
    AUDIT_COMMANDS = 4
    PCRS = 5
    TPM_PROPERTIES = 6
    PCR_PROPERTIES = 7
    ECC_CURVES = 8


class PT(IntEnum):
    """TPM_PT properties (Part 2 §6.13)."""

    FIXED = 0x100
    REVISION = 0x102
    MANUFACTURER = 0x105
    VENDOR_STRING_1 = 0x106
    VENDOR_STRING_2 = 0x107
    VENDOR_STRING_3 = 0x108
    VENDOR_STRING_4 = 0x109
    FIRMWARE_VERSION_1 = 0x10B
    FIRMWARE_VERSION_2 = 0x10C
    NV_BUFFER_MAX = 0x12C
    PERMANENT = 0x200
    LOCKOUT_COUNTER = 0x20E
    MAX_AUTH_FAIL = 0x20F
    LOCKOUT_INTERVAL = 0x210
    LOCKOUT_RECOVERY = 0x211


class TPMA_OBJECT(IntFlag):  # noqa: N801
    """Object attributes (Part 2 §8.3)."""

    FIXEDTPM = 0x00000002
    STCLEAR = 0x00000004
    FIXEDPARENT = 0x00000010
    SENSITIVEDATAORIGIN = 0x00000020
    USERWITHAUTH = 0x00000040
    ADMINWITHPOLICY = 0x00000080
    NODA = 0x00000400
    ENCRYPTEDDUPLICATION = 0x00000800
    RESTRICTED = 0x00010000
    DECRYPT = 0x00020000
    SIGN_ENCRYPT = 0x00040000


class TPMA_NV(IntFlag):  # noqa: N801
    """NV index attributes (Part 2 §13.4); the index type TPM_NT sits in bits 4-7."""

    PPWRITE = 0x00000001
    OWNERWRITE = 0x00000002
    AUTHWRITE = 0x00000004
    POLICYWRITE = 0x00000008
    PPREAD = 0x00010000
    OWNERREAD = 0x00020000
    AUTHREAD = 0x00040000
    POLICYREAD = 0x00080000
    NO_DA = 0x02000000
    WRITTEN = 0x20000000


NV_TYPE_SHIFT: Final = 4
NV_TYPE_MASK: Final = 0xF0


class NT(IntEnum):
    """TPM_NT: NV index types (Part 2 §13.4)."""

    ORDINARY = 0
    COUNTER = 1


class TPMA_SESSION(IntFlag):  # noqa: N801
    """Session attributes (Part 2 §8.4)."""

    CONTINUESESSION = 0x01
    AUDITEXCLUSIVE = 0x02
    AUDITRESET = 0x04
    DECRYPT = 0x20
    ENCRYPT = 0x40
    AUDIT = 0x80


TPMA_PERMANENT_IN_LOCKOUT: Final = 0x00000200
TPMA_PERMANENT_OWNER_AUTH_SET: Final = 0x00000001
PCR_SELECT_MAX: Final = 3  # octets of a PCR bitmap for 24 PCRs


_NAMES: Final = {
    CC.NV_UNDEFINE_SPACE: "NV_UndefineSpace",
    CC.EVICT_CONTROL: "EvictControl",
    CC.CLEAR: "Clear",
    CC.CLEAR_CONTROL: "ClearControl",
    CC.HIERARCHY_CHANGE_AUTH: "HierarchyChangeAuth",
    CC.NV_DEFINE_SPACE: "NV_DefineSpace",
    CC.CREATE_PRIMARY: "CreatePrimary",
    CC.NV_INCREMENT: "NV_Increment",
    CC.NV_WRITE: "NV_Write",
    CC.DICTIONARY_ATTACK_PARAMETERS: "DictionaryAttackParameters",
    CC.STARTUP: "Startup",
    CC.NV_READ: "NV_Read",
    CC.CREATE: "Create",
    CC.LOAD: "Load",
    CC.UNSEAL: "Unseal",
    CC.FLUSH_CONTEXT: "FlushContext",
    CC.NV_READ_PUBLIC: "NV_ReadPublic",
    CC.POLICY_AUTH_VALUE: "PolicyAuthValue",
    CC.READ_PUBLIC: "ReadPublic",
    CC.START_AUTH_SESSION: "StartAuthSession",
    CC.GET_CAPABILITY: "GetCapability",
    CC.GET_RANDOM: "GetRandom",
    CC.PCR_READ: "PCR_Read",
    CC.POLICY_PCR: "PolicyPCR",
    CC.PCR_EXTEND: "PCR_Extend",
    CC.POLICY_GET_DIGEST: "PolicyGetDigest",
}


def command_name(cc: int) -> str:
    """The spec's name of a command, e.g. ``TPM2_NV_Read``."""
    try:
        return "TPM2_" + _NAMES[CC(cc)]
    except (ValueError, KeyError):
        return f"TPM command 0x{cc:x}"
