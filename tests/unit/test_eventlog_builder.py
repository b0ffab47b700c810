"""Builds TCG binary logs, coreboot tables and `cbmem -L` text for the event-log tests.

Written from the layouts in the TCG PC Client PFP 1.05 §10 and coreboot's cbmem.c, so tests
can make every quirk on purpose (StartupLocality, H-CRTM, PCR >= 24, truncation, padding).
The self-checks at the bottom make sure the builder itself frames events as the real logs do.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conftest import TESTDATA
from heads.core.digest import HashAlg
from heads.core.eventlog import parse_tcg

EV_NO_ACTION = 3
EV_SEPARATOR = 4
EV_ACTION = 5
EV_EFI_ACTION = 0x80000007
EV_EFI_HCRTM_EVENT = 0x80000010


def h(alg: HashAlg, data: bytes) -> bytes:
    name = "sm3" if alg is HashAlg.SM3_256 else alg.value
    return hashlib.new(name, data).digest()


@dataclass
class Ev:
    """One event to build; digests default to H(data) in every bank."""

    pcr: int
    etype: int
    data: bytes = b""
    digests: Mapping[HashAlg, bytes] | None = None
    banks: Sequence[HashAlg] | None = None  # restrict to these banks (a malformed log)
    extra: list[tuple[int, bytes]] = field(default_factory=list)

    def digest(self, alg: HashAlg) -> bytes:
        if self.digests is not None and alg in self.digests:
            return self.digests[alg]
        return h(alg, self.data)


def spec_id_event03(
    algs: Sequence[HashAlg], vendor: bytes = b"", extra_algs: Sequence[tuple[int, int]] = ()
) -> bytes:
    body = b"Spec ID Event03\0" + struct.pack("<IBBBB", 0, 0, 2, 0, 2)
    pairs = [(a.tpm_alg_id, a.digest_size) for a in algs] + list(extra_algs)
    body += struct.pack("<I", len(pairs))
    for alg_id, size in pairs:
        body += struct.pack("<HH", alg_id, size)
    body += bytes([len(vendor)]) + vendor
    return struct.pack("<II20sI", 0, EV_NO_ACTION, b"\0" * 20, len(body)) + body


def agile_event(ev: Ev, algs: Sequence[HashAlg]) -> bytes:
    use = list(ev.banks) if ev.banks is not None else list(algs)
    out = struct.pack("<III", ev.pcr, ev.etype, len(use) + len(ev.extra))
    for alg in use:
        out += struct.pack("<H", alg.tpm_alg_id) + ev.digest(alg)
    for alg_id, value in ev.extra:
        out += struct.pack("<H", alg_id) + value
    return out + struct.pack("<I", len(ev.data)) + ev.data


def agile_log(
    events: Sequence[Ev],
    algs: Sequence[HashAlg] = (HashAlg.SHA1, HashAlg.SHA256),
    *,
    vendor: bytes = b"",
    extra_algs: Sequence[tuple[int, int]] = (),
) -> bytes:
    out = spec_id_event03(algs, vendor, extra_algs)
    for ev in events:
        out += agile_event(ev, algs)
    return out


def sha1_event(ev: Ev) -> bytes:
    return struct.pack("<II20sI", ev.pcr, ev.etype, ev.digest(HashAlg.SHA1), len(ev.data)) + ev.data


def sha1_log(events: Sequence[Ev]) -> bytes:
    return b"".join(sha1_event(ev) for ev in events)


def startup_locality(locality: int) -> Ev:
    return Ev(0, EV_NO_ACTION, b"StartupLocality\0" + bytes([locality]), digests={})


def cb_table(entries: Sequence[tuple[int, HashAlg, bytes, str]], *, pad: bool) -> bytes:
    out = struct.pack("<HH", max(len(entries), 1) + 2, len(entries))
    if pad:
        out += b"\0" * 4
    for pcr, alg, digest, name in entries:
        dtype = alg.value.upper().replace("_256", "").encode()
        out += struct.pack(
            "<I10s64sI50s", pcr, dtype, digest.ljust(64, b"\0"), len(digest), name.encode()
        )
    return out


def fold(alg: HashAlg, start: bytes, digests: Sequence[bytes]) -> bytes:
    value = start
    for d in digests:
        value = h(alg, value + d)
    return value


def test_builder_frames_like_real_logs() -> None:
    log = agile_log([Ev(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option")])
    parsed = parse_tcg(log)
    assert [e.pcr for e in parsed.events] == [0, 4]
    assert parsed.events[1].digests[HashAlg.SHA256] == h(
        HashAlg.SHA256, b"Calling EFI Application from Boot Option"
    )


def test_builder_spec_id_matches_a_real_header() -> None:
    real = (TESTDATA / "eventlogs" / "tss-specid-vendordata.bin").read_bytes()
    ours = spec_id_event03((HashAlg.SHA1, HashAlg.SHA256), vendor=real[-4:])
    # Same layout; the real one differs only in the platform class / errata bytes.
    assert len(ours) == len(real)
    assert ours[32:48] == real[32:48]
