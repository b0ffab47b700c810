"""Event types by name and event data decoded for display.

Sources: TCG PC Client Platform Firmware Profile 1.05 (PFP) §10.4 (event types, event data
structures), UEFI 2.10 §10.3 (device paths) and §5.3 (GPT header and entries), TCG EFI
Protocol Specification, and the tag strings the Linux EFI stub and systemd-boot log.

Decoding is for people: it never changes what is replayed, and it never fails.  A payload
that does not have the shape its type promises decodes to ``{"error": "..."}``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from heads.core.eventlog.model import EV_EFI_HCRTM_EVENT, EV_NO_ACTION, Event

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "EVENT_TYPE_NAMES",
    "decode_event",
    "decode_startup_locality",
    "device_path_text",
    "event_summary",
    "event_type_from_name",
    "event_type_name",
    "guid_text",
]

JsonValue = object

EVENT_TYPE_NAMES: Final[dict[int, str]] = {
    0x00000000: "EV_PREBOOT_CERT",
    0x00000001: "EV_POST_CODE",
    0x00000002: "EV_UNUSED",
    0x00000003: "EV_NO_ACTION",
    0x00000004: "EV_SEPARATOR",
    0x00000005: "EV_ACTION",
    0x00000006: "EV_EVENT_TAG",
    0x00000007: "EV_S_CRTM_CONTENTS",
    0x00000008: "EV_S_CRTM_VERSION",
    0x00000009: "EV_CPU_MICROCODE",
    0x0000000A: "EV_PLATFORM_CONFIG_FLAGS",
    0x0000000B: "EV_TABLE_OF_DEVICES",
    0x0000000C: "EV_COMPACT_HASH",
    0x0000000D: "EV_IPL",
    0x0000000E: "EV_IPL_PARTITION_DATA",
    0x0000000F: "EV_NONHOST_CODE",
    0x00000010: "EV_NONHOST_CONFIG",
    0x00000011: "EV_NONHOST_INFO",
    0x00000012: "EV_OMIT_BOOT_DEVICE_EVENTS",
    0x00000013: "EV_POST_CODE2",
    0x80000000: "EV_EFI_EVENT_BASE",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
    0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
    0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
    0x80000006: "EV_EFI_GPT_EVENT",
    0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x8000000C: "EV_EFI_VARIABLE_BOOT2",
    0x8000000D: "EV_EFI_GPT_EVENT2",
    0x80000010: "EV_EFI_HCRTM_EVENT",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
    0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB",
    0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
    0x800000E3: "EV_EFI_SPDM_DEVICE_POLICY",
    0x800000E4: "EV_EFI_SPDM_DEVICE_AUTHORITY",
}
_NAME_TO_TYPE: Final = {name: value for value, name in EVENT_TYPE_NAMES.items()}

# Well-known GUIDs (UEFI 2.10, edk2 MdePkg, shim, systemd) shown next to their value.
_GUID_NAMES: Final = {
    "8be4df61-93ca-11d2-aa0d-00e098032b8c": "EFI_GLOBAL_VARIABLE",
    "d719b2cb-3d3a-4596-a3bc-dad00e67656f": "EFI_IMAGE_SECURITY_DATABASE",
    "605dab50-e046-4300-abb6-3dd810dd8b23": "SHIM_LOCK",
    "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f": "LOADER (systemd-boot)",
    "eb9d2d31-2d88-11d3-9a16-0090273fc14d": "SMBIOS_TABLE",
    "f2fd1544-9794-4a2c-992e-e5bbcf20e394": "SMBIOS3_TABLE",
    "8868e871-e4f1-11d3-bc22-0080c73c8881": "ACPI_20_TABLE",
    "eb9d2d30-2d88-11d3-9a16-0090273fc14d": "ACPI_TABLE",
    "1428f772-b64a-441e-b8c3-9ebdd7f893c7": "QEMU_KERNEL_LOADER_FS_MEDIA",
    "5568e427-68fc-4f3d-ac74-ca555231cc68": "LINUX_EFI_INITRD_MEDIA",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System Partition",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
}

# Linux EFI stub tagged events (drivers/firmware/efi/libstub): the command line and initrd.
_TAG_NAMES: Final = {
    0x8F3B22EC: "Linux initrd",
    0x8F3B22ED: "LOADED_IMAGE::LoadOptions",
}

_MAX_DEVICE_PATH_NODES: Final = 256
_MAX_LIST: Final = 256


def event_type_name(event_type: int | None) -> str:
    """``EV_SEPARATOR`` for 4; ``EV_UNKNOWN_0x...`` for unassigned values."""
    if event_type is None:
        return "EV_NONE"
    return EVENT_TYPE_NAMES.get(event_type, f"EV_UNKNOWN_0x{event_type:08x}")


def event_type_from_name(name: str) -> int | None:
    """The inverse of :func:`event_type_name` (None for a name we do not know)."""
    if name.startswith("EV_UNKNOWN_0x"):
        try:
            return int(name[len("EV_UNKNOWN_0x") :], 16)
        except ValueError:
            return None
    return _NAME_TO_TYPE.get(name)


def guid_text(raw: bytes) -> str:
    """An EFI_GUID (mixed-endian, UEFI Appendix A) as its registry form."""
    # Formatted here rather than with uuid.UUID: importing uuid (and the platform module it
    # pulls in) would cost every `heads pcr replay` more than its parsing does.
    b = bytes(raw[:16])
    if len(b) != 16:
        raise ValueError(f"a GUID has 16 bytes, not {len(b)}")
    h = (b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _guid(raw: bytes) -> dict[str, str]:
    text = guid_text(raw)
    out = {"guid": text}
    if text in _GUID_NAMES:
        out["name"] = _GUID_NAMES[text]
    return out


def _text(data: bytes) -> str | None:
    """Printable ASCII/UTF-8 or UTF-16LE text (trailing NULs dropped), else None."""
    if not data:
        return ""
    if len(data) >= 2 and data[1] == 0:
        try:
            # An odd length is a firmware bug (a stray byte); the text is still readable.
            text = data[: len(data) - len(data) % 2].decode("utf-16-le").rstrip("\0")
        except UnicodeDecodeError:
            text = None
        if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
            return text
    try:
        text = data.decode("utf-8").rstrip("\0")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return text
    return None


def _utf16z(data: bytes, pos: int) -> tuple[str, int]:
    """A NUL-terminated UTF-16LE string at ``pos``; returns it and the position after it."""
    end = pos
    while end + 1 < len(data) and (data[end] or data[end + 1]):
        end += 2
    text = data[pos:end].decode("utf-16-le", "replace")
    return text, min(end + 2, len(data))


# --- device paths (UEFI 2.10 §10.3) -------------------------------------------------------


def _node_text(ntype: int, sub: int, body: bytes) -> str:
    if ntype == 0x01:  # hardware
        if sub == 0x01 and len(body) >= 2:
            return f"Pci({body[1]:#x},{body[0]:#x})"
        if sub == 0x04 and len(body) >= 16:
            return f"VenHw({guid_text(body)})"
        if sub == 0x05 and len(body) >= 1:
            return f"Ctrl({body[0]})"
    elif ntype == 0x02:  # ACPI
        if sub == 0x01 and len(body) >= 8:
            hid, uid = struct.unpack_from("<II", body, 0)
            if hid & 0xFFFF == 0x41D0:  # EISA "PNP" compressed id
                pnp = hid >> 16
                if pnp == 0x0A03:
                    return f"PciRoot({uid:#x})"
                if pnp == 0x0A08:
                    return f"PcieRoot({uid:#x})"
                return f"Acpi(PNP{pnp:04X},{uid:#x})"
            return f"Acpi({hid:#x},{uid:#x})"
    elif ntype == 0x03:  # messaging
        if sub == 0x05 and len(body) >= 2:
            return f"USB({body[0]:#x},{body[1]:#x})"
        if sub == 0x12 and len(body) >= 6:
            hba, pm, lun = struct.unpack_from("<HHH", body, 0)
            return f"Sata({hba:#x},{pm:#x},{lun:#x})"
        if sub == 0x17 and len(body) >= 12:
            nsid = struct.unpack_from("<I", body, 0)[0]
            eui = "-".join(f"{b:02X}" for b in body[4:12])
            return f"NVMe({nsid:#x},{eui})"
        if sub == 0x02 and len(body) >= 4:
            pun, lun = struct.unpack_from("<HH", body, 0)
            return f"Scsi({pun:#x},{lun:#x})"
        if sub == 0x0B and len(body) >= 33:
            return f"MAC({body[:6].hex()},{body[32]:#x})"
        if sub == 0x18:
            return f"Uri({body.decode('ascii', 'replace')})"
        if sub == 0x0A and len(body) >= 16:
            return f"VenMsg({guid_text(body)})"
        if sub == 0x1A and len(body) >= 4:
            return f"eMMC({body[0]:#x})"
    elif ntype == 0x04:  # media
        if sub == 0x01 and len(body) >= 38:
            part, start, size = struct.unpack_from("<IQQ", body, 0)
            sig, mbr_type, sig_type = body[20:36], body[36], body[37]
            del mbr_type
            if sig_type == 0x02:
                return f"HD({part},GPT,{guid_text(sig)},{start:#x},{size:#x})"
            if sig_type == 0x01:
                mbr_sig = struct.unpack_from("<I", sig, 0)[0]
                return f"HD({part},MBR,{mbr_sig:#010x},{start:#x},{size:#x})"
            return f"HD({part},{start:#x},{size:#x})"
        if sub == 0x02 and len(body) >= 20:
            entry, start, size = struct.unpack_from("<IQQ", body, 0)
            return f"CDROM({entry:#x},{start:#x},{size:#x})"
        if sub == 0x03 and len(body) >= 16:
            return f"VenMedia({guid_text(body)})"
        if sub == 0x04:
            return body.decode("utf-16-le", "replace").rstrip("\0")
        if sub == 0x06 and len(body) >= 16:
            return f"FvFile({guid_text(body)})"
        if sub == 0x07 and len(body) >= 16:
            return f"Fv({guid_text(body)})"
        if sub == 0x08 and len(body) >= 20:
            lo, hi = struct.unpack_from("<QQ", body, 4)
            return f"Offset({lo:#x},{hi:#x})"
    elif ntype == 0x05 and sub == 0x01 and len(body) >= 4:
        dev_type, _status = struct.unpack_from("<HH", body, 0)
        return f"BBS({dev_type:#x},{body[4:].decode('ascii', 'replace').rstrip(chr(0))})"
    return f"Path({ntype},{sub},{body.hex()})"


def device_path_text(data: bytes) -> str:
    """An EFI_DEVICE_PATH_PROTOCOL list as UEFI's text form (``PciRoot(0x0)/Pci(0x1,0x1)/...``).

    Instances are separated by ``,``; a malformed node ends the text with ``/<malformed>``.
    """
    parts: list[str] = []
    pos = 0
    for _ in range(_MAX_DEVICE_PATH_NODES):
        if pos + 4 > len(data):
            break
        ntype, sub, length = struct.unpack_from("<BBH", data, pos)
        if length < 4 or pos + length > len(data):
            parts.append("<malformed>")
            break
        body = data[pos + 4 : pos + length]
        pos += length
        if ntype == 0x7F:
            if sub == 0xFF:
                break
            parts.append(",")
            continue
        parts.append(_node_text(ntype, sub, body))
    text = ""
    for part in parts:
        if part == ",":
            text += ","
        elif not text or text.endswith(","):
            text += part
        else:
            text += "/" + part
    return text


# --- per-type decoders ---------------------------------------------------------------------


def decode_startup_locality(event: Event) -> int | None:
    """The locality of a StartupLocality EV_NO_ACTION event (PFP §10.4.5.3), else None."""
    if (
        event.event_type == EV_NO_ACTION
        and event.data.startswith(b"StartupLocality\0")
        and len(event.data) >= 17
    ):
        return event.data[16]
    return None


def _decode_no_action(data: bytes) -> dict[str, JsonValue]:
    sig = data[:16].rstrip(b"\0").decode("ascii", "replace")
    out: dict[str, JsonValue] = {"signature": sig}
    if data.startswith((b"Spec ID Event03\0", b"Spec ID Event00\0")) and len(data) >= 24:
        platform, minor, major, errata, uintn = struct.unpack_from("<IBBBB", data, 16)
        out.update(
            platform_class=platform,
            spec_version=f"{major}.{minor}.{errata}",
            uintn_size=uintn,
        )
        if data.startswith(b"Spec ID Event03") and len(data) >= 28:
            (count,) = struct.unpack_from("<I", data, 24)
            algs = []
            for i in range(min(count, 32)):
                if 28 + 4 * i + 4 > len(data):
                    break
                alg_id, size = struct.unpack_from("<HH", data, 28 + 4 * i)
                algs.append({"algorithm_id": f"0x{alg_id:04x}", "digest_size": size})
            out["algorithms"] = algs
    elif data.startswith(b"StartupLocality\0") and len(data) >= 17:
        out["startup_locality"] = data[16]
    elif data.startswith(b"SP800-155 Event"):
        # PFP §10.4.5.4 TCG_Sp800_155_PlatformId_Event2: reference-manifest pointers.
        out["sp800_155"] = {"size": len(data), "text": _printable_runs(data[16:])}
    return out


def _printable_runs(data: bytes) -> list[str]:
    runs: list[str] = []
    cur = bytearray()
    for b in data:
        if 0x20 <= b < 0x7F:
            cur.append(b)
            continue
        if len(cur) >= 4:
            runs.append(cur.decode("ascii"))
        cur = bytearray()
    if len(cur) >= 4:
        runs.append(cur.decode("ascii"))
    return runs[:16]


def _decode_variable(data: bytes) -> dict[str, JsonValue]:
    # UEFI_VARIABLE_DATA (PFP §10.4.9): GUID, name length (chars) u64, data length u64,
    # UnicodeName (no NUL), VariableData.
    guid = _guid(data[:16])
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    if name_len > len(data) or data_len > len(data):
        return {"error": "variable name/data lengths exceed the event"}
    name = data[32 : 32 + 2 * name_len].decode("utf-16-le", "replace")
    value = data[32 + 2 * name_len : 32 + 2 * name_len + data_len]
    out: dict[str, JsonValue] = {
        "variable_guid": guid,
        "variable": name,
        "data_size": data_len,
    }
    if len(value) < data_len:
        out["warning"] = f"variable data is {len(value)} bytes, {data_len} declared"
    if name == "BootOrder" and len(value) % 2 == 0:
        out["boot_order"] = [
            f"Boot{v:04X}" for v in struct.unpack(f"<{len(value) // 2}H", value)[:_MAX_LIST]
        ]
    elif name.startswith("Boot") and len(name) == 8 and len(value) >= 6:
        attrs, fp_len = struct.unpack_from("<IH", value, 0)
        desc, pos = _utf16z(value, 6)
        out["load_option"] = {
            "attributes": attrs,
            "description": desc,
            "device_path": device_path_text(value[pos : pos + fp_len]),
        }
    elif name in ("SecureBoot", "SetupMode", "AuditMode", "DeployedMode") and value:
        out["value"] = value[0]
    elif name in ("PK", "KEK", "db", "dbx", "MokList", "MokListX", "MokListTrusted"):
        out["signature_lists"] = _signature_lists(value)
    return out


def _signature_lists(value: bytes) -> list[dict[str, JsonValue]]:
    # EFI_SIGNATURE_LIST (UEFI 2.10 §32.4.1): type GUID, list size, header size, sig size.
    lists: list[dict[str, JsonValue]] = []
    pos = 0
    while pos + 28 <= len(value) and len(lists) < _MAX_LIST:
        list_size, header_size, sig_size = struct.unpack_from("<III", value, pos + 16)
        if list_size < 28 or pos + list_size > len(value):
            break
        count = (list_size - 28 - header_size) // sig_size if sig_size else 0
        lists.append({"type": _guid(value[pos : pos + 16]), "signatures": count})
        pos += list_size
    return lists


def _decode_image(data: bytes) -> dict[str, JsonValue]:
    # UEFI_IMAGE_LOAD_EVENT (PFP §10.4.10).
    addr, length, link, dp_len = struct.unpack_from("<QQQQ", data, 0)
    return {
        "image_address": f"{addr:#x}",
        "image_length": length,
        "link_time_address": f"{link:#x}",
        "device_path": device_path_text(data[32 : 32 + dp_len]),
    }


def _decode_gpt(data: bytes) -> dict[str, JsonValue]:
    # UEFI_GPT_DATA (PFP §10.4.11): EFI_PARTITION_TABLE_HEADER then NumberOfPartitions u64
    # and the entries (UEFI 2.10 §5.3.2-5.3.3).
    if data[:8] != b"EFI PART":
        return {"error": "no EFI PART signature"}
    (header_size,) = struct.unpack_from("<I", data, 12)
    disk_guid = guid_text(data[56:72])
    (entry_size,) = struct.unpack_from("<I", data, 84)
    pos = max(header_size, 92)
    (count,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    parts: list[dict[str, JsonValue]] = []
    if entry_size >= 128:
        for _ in range(min(count, _MAX_LIST)):
            if pos + 128 > len(data):
                break
            start, end = struct.unpack_from("<QQ", data, pos + 32)
            ptype = _guid(data[pos : pos + 16])
            parts.append(
                {
                    "type": ptype,
                    "guid": guid_text(data[pos + 16 : pos + 32]),
                    "first_lba": start,
                    "last_lba": end,
                    "name": data[pos + 56 : pos + 128].decode("utf-16-le", "replace").rstrip("\0"),
                }
            )
            pos += entry_size
    return {"disk_guid": disk_guid, "partitions": parts, "partition_count": count}


def _decode_blob(data: bytes) -> dict[str, JsonValue]:
    base, length = struct.unpack_from("<QQ", data, 0)
    return {"base": f"{base:#x}", "length": length}


def _decode_blob2(data: bytes) -> dict[str, JsonValue]:
    size = data[0]
    desc = data[1 : 1 + size].decode("ascii", "replace").rstrip("\0")
    base, length = struct.unpack_from("<QQ", data, 1 + size)
    return {"description": desc, "base": f"{base:#x}", "length": length}


def _decode_handoff(data: bytes) -> dict[str, JsonValue]:
    (count,) = struct.unpack_from("<Q", data, 0)
    tables = []
    for i in range(min(count, _MAX_LIST)):
        pos = 8 + 24 * i
        if pos + 24 > len(data):
            break
        (ptr,) = struct.unpack_from("<Q", data, pos + 16)
        tables.append({"table": _guid(data[pos : pos + 16]), "address": f"{ptr:#x}"})
    return {"tables": tables}


def _decode_tag(data: bytes) -> dict[str, JsonValue]:
    # TCG_PCClientTaggedEvent (PFP §10.4.2.1): taggedEventID u32, size u32, data.
    tag_id, size = struct.unpack_from("<II", data, 0)
    body = data[8 : 8 + size]
    out: dict[str, JsonValue] = {"tag_id": f"0x{tag_id:08x}"}
    if tag_id in _TAG_NAMES:
        out["tag"] = _TAG_NAMES[tag_id]
    text = _text(body)
    if text is not None:
        out["text"] = text
    else:
        out["data_size"] = len(body)
    return out


def _decode_separator(data: bytes) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {"value": data.hex()}
    if data == b"\xff\xff\xff\xff":
        # PFP §3.3.4: an error separator; SeaBIOS logs this value for every separator.
        out["meaning"] = "error (or SeaBIOS)"
    return out


def _decode_text(data: bytes) -> dict[str, JsonValue]:
    text = _text(data)
    if text is not None:
        return {"text": text}
    if len(data) == 16:  # EV_POST_CODE may carry a UEFI_PLATFORM_FIRMWARE_BLOB
        return _decode_blob(data)
    return {"data_size": len(data)}


def _decode_crtm_version(data: bytes) -> dict[str, JsonValue]:
    # PFP §10.4.1: a UTF-16 version string, or a GUID when the platform has none.
    text = _text(data)
    if text is not None:
        return {"text": text}
    if len(data) == 16:
        return {"version_guid": guid_text(data)}
    return {"data_size": len(data)}


_DECODERS: Final[dict[int, Callable[[bytes], dict[str, JsonValue]]]] = {
    0x00000001: _decode_text,
    0x00000003: _decode_no_action,
    0x00000004: _decode_separator,
    0x00000005: _decode_text,
    0x00000006: _decode_tag,
    0x00000008: _decode_crtm_version,
    0x0000000C: _decode_text,
    0x0000000D: _decode_text,
    0x00000012: _decode_text,
    0x80000001: _decode_variable,
    0x80000002: _decode_variable,
    0x80000003: _decode_image,
    0x80000004: _decode_image,
    0x80000005: _decode_image,
    0x80000006: _decode_gpt,
    0x80000007: _decode_text,
    0x80000008: _decode_blob,
    0x80000009: _decode_handoff,
    0x8000000A: _decode_blob2,
    0x8000000C: _decode_variable,
    0x80000010: _decode_text,
    0x800000E0: _decode_variable,
}


def decode_event(event: Event) -> dict[str, JsonValue]:
    """What the event data says, as JSON-ready values; never raises.

    Unknown types and malformed payloads yield ``{"data_size": n}`` or ``{"error": ...}``.
    """
    if event.event_type is None:
        return {"text": event.description} if event.description else {}
    decoder = _DECODERS.get(event.event_type)
    if decoder is None:
        return _decode_text(event.data) if event.data else {}
    try:
        return decoder(event.data)
    except (struct.error, ValueError, IndexError) as exc:
        return {"error": f"malformed {event_type_name(event.event_type)} data ({exc})"}


# Control characters in firmware strings must not break lines or drive a terminal.
_ONE_LINE: Final = {c: f"\\x{c:02x}" for c in [*range(32), 0x7F]}


def event_summary(event: Event) -> str:
    """One line for a human: the most telling field of the decoded data.

    Control characters are escaped (``\\x0a``): event data is untrusted text.
    """
    return _summary(event).translate(_ONE_LINE)


def _summary(event: Event) -> str:
    decoded = decode_event(event)
    if event.event_type == EV_EFI_HCRTM_EVENT:
        return "H-CRTM measurement"
    keys = ("error", "text", "device_path", "variable", "signature", "tag", "version_guid")
    for key in keys:
        value = decoded.get(key)
        if isinstance(value, str) and value:
            if key == "variable" and "load_option" in decoded:
                option = decoded["load_option"]
                if isinstance(option, dict):
                    return f"{value}: {option.get('description', '')}"
            return value if key != "error" else f"<{value}>"
    if "disk_guid" in decoded:
        return f"GPT disk {decoded['disk_guid']}"
    if "base" in decoded:
        return f"blob at {decoded['base']}, {decoded.get('length')} bytes"
    if "value" in decoded:
        return str(decoded["value"])
    return f"{len(event.data)} bytes" if event.data else ""
