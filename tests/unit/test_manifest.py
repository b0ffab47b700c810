"""kexec_hashes.txt / kexec_tree.txt / signed text: Heads' exact formats, hostile input, diffs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heads.core.manifest import (
    EntryKind,
    FileStatus,
    HashManifest,
    SignedForm,
    TreeList,
    UnsignableNameError,
    check_manifest,
    check_signable,
    is_excluded,
    is_signed_name,
    signed_payload,
)
from heads.errors import FormatError

D1 = hashlib.sha256(b"kernel").digest()
D2 = hashlib.sha256(b"initrd").digest()


def line(digest: bytes, name: bytes) -> bytes:
    return digest.hex().encode() + b"  " + name + b"\n"


def test_hashes_parse_sha256sum_output_and_round_trip_bytes_exactly() -> None:
    raw = line(D1, b"./vmlinuz") + line(D2, b"./grub/initrd.img")
    m = HashManifest.from_bytes(raw)
    assert m.to_bytes() == raw
    assert m.digests() == {b"vmlinuz": D1, b"grub/initrd.img": D2}


def test_hashes_accept_legacy_absolute_boot_names() -> None:
    m = HashManifest.from_bytes(line(D1, b"/boot/vmlinuz"))
    assert m.digests() == {b"vmlinuz": D1}


def test_hashes_accept_uppercase_hex_and_binary_marker() -> None:
    raw = D1.hex().upper().encode() + b" *./vmlinuz\n"
    assert HashManifest.from_bytes(raw).digests() == {b"vmlinuz": D1}


def test_build_is_sorted_with_dot_slash_names() -> None:
    m = HashManifest.build({b"b": D2, b"a/x": D1})
    assert m.to_bytes() == line(D1, b"./a/x") + line(D2, b"./b")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"abc  ./x\n", "64 hexadecimal"),
        (D1.hex().encode() + b" ./x\n", "two spaces"),
        (line(D1, b"./x")[:-1], "truncated"),
        (line(D1, b"./x")[:40], "truncated"),
        (line(D1, b"./../etc/passwd"), "'..'"),
        (line(D1, b"../vmlinuz"), "outside /boot"),
        (line(D1, b"/etc/passwd"), "outside /boot"),
        (line(D1, b"./a//b"), "empty"),
        (line(D1, b"./"), "empty file name"),
        (line(D1, b"./x") + line(D2, b"./x"), "listed twice"),
        (b"\\" + line(D1, b"./a\\nb"), "escaped"),
        (line(D1, b"./a\rb"), "control byte"),
    ],
)
def test_hashes_reject_malformed_lines_naming_the_line(raw: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason) as info:
        HashManifest.from_bytes(raw, source="kexec_hashes.txt")
    assert "kexec_hashes.txt" in str(info.value)


def test_hashes_error_names_the_line_number() -> None:
    raw = line(D1, b"./a") + b"garbage\n"
    with pytest.raises(FormatError) as info:
        HashManifest.from_bytes(raw)
    assert info.value.line == 2


def test_tree_matches_find_print0_sort_z_and_round_trips() -> None:
    tree = TreeList.build([b"vmlinuz", b"grub", b"grub/grub.cfg", b"a-b"])
    assert tree.to_bytes() == b"./\0./a-b\0./grub\0./grub/grub.cfg\0./vmlinuz\0"
    parsed = TreeList.from_bytes(tree.to_bytes())
    assert parsed.paths == frozenset({b"", b"a-b", b"grub", b"grub/grub.cfg", b"vmlinuz"})
    assert parsed.to_bytes() == tree.to_bytes()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"./\0./x", "truncated"),
        (b"./\0\0", "outside"),
        (b"./\0../x\0", "outside"),
        (b"./\0./x\0./x\0", "twice"),
    ],
)
def test_tree_rejects_malformed_input(raw: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        TreeList.from_bytes(raw)


def test_signed_payload_is_sha256sum_kexec_glob_in_c_order() -> None:
    files = [(b"kexec_default_hashes.txt", D1), (b"kexec_default.1.txt", D2)]
    rel = signed_payload(files, SignedForm.RELATIVE)
    assert rel == line(D2, b"kexec_default.1.txt") + line(D1, b"kexec_default_hashes.txt")
    absolute = signed_payload(files, SignedForm.ABSOLUTE)
    assert absolute.startswith(D2.hex().encode() + b"  /boot/kexec_default.1.txt\n")


def test_exclusion_and_signed_names_follow_find_and_glob() -> None:
    assert is_excluded(b"kexec_hashes.txt")
    assert is_excluded(b"kexecdir/anything")
    assert not is_excluded(b"grub/kexec.txt")
    assert is_signed_name(b"kexec_rollback.txt")
    assert not is_signed_name(b"kexec.sig")
    assert not is_signed_name(b"kexec_hotp_counter")


@pytest.mark.parametrize("name", [b"a\nb", b"back\\slash", b"caf\xc3\xa9", b"del\x7f", b"tab\t"])
def test_unsignable_names_are_refused_like_heads(name: bytes) -> None:
    with pytest.raises(UnsignableNameError, match="0x"):
        check_signable(name)


def test_signable_name_passes() -> None:
    check_signable(b"grub/x86_64-efi/normal.mod")


def _scan(**kinds: EntryKind) -> dict[bytes, EntryKind]:
    return {k.replace("__", "/").encode(): v for k, v in kinds.items()}


def test_check_reports_ok_changed_missing_and_new() -> None:
    hashes = HashManifest.build({b"vmlinuz": D1, b"initrd": D2, b"gone": D1})
    tree = TreeList.build([b"vmlinuz", b"initrd", b"gone"])
    scan = {b"vmlinuz": EntryKind.FILE, b"initrd": EntryKind.FILE, b"evil": EntryKind.FILE}
    check = check_manifest(hashes, tree, scan, {b"vmlinuz": D1, b"initrd": D1})
    status = {f.path: f.status for f in check.files}
    assert status == {
        b"vmlinuz": FileStatus.OK,
        b"initrd": FileStatus.CHANGED,
        b"gone": FileStatus.MISSING,
        b"evil": FileStatus.NEW,
    }
    assert not check.all_ok


def test_check_catches_a_hashed_file_swapped_for_a_symlink() -> None:
    hashes = HashManifest.build({b"vmlinuz": D1})
    tree = TreeList.build([b"vmlinuz"])
    check = check_manifest(hashes, tree, {b"vmlinuz": EntryKind.SYMLINK}, {})
    assert check.files[0].status is FileStatus.CHANGED
    assert "symbolic link" in check.files[0].reason


def test_check_catches_a_symlink_swapped_for_a_file() -> None:
    # The tree lists ./vmlinuz but the hashes do not: it was a symlink when signed.
    hashes = HashManifest.build({b"vmlinuz-6.1": D1})
    tree = TreeList.build([b"vmlinuz-6.1", b"vmlinuz"])
    scan = {b"vmlinuz-6.1": EntryKind.FILE, b"vmlinuz": EntryKind.FILE}
    check = check_manifest(hashes, tree, scan, {b"vmlinuz-6.1": D1})
    changed = check.with_status(FileStatus.CHANGED)
    assert [f.path for f in changed] == [b"vmlinuz"]


def test_check_reports_new_directory_and_missing_tree_entry() -> None:
    hashes = HashManifest.build({})
    tree = TreeList.build([b"efi"])
    check = check_manifest(hashes, tree, {b"extra": EntryKind.DIR}, {})
    status = {f.path: f.status for f in check.files}
    assert status == {b"extra": FileStatus.NEW, b"efi": FileStatus.MISSING}


def test_check_without_tree_reports_unlisted_files_as_new() -> None:
    hashes = HashManifest.build({b"a": D1})
    scan = {b"a": EntryKind.FILE, b"b": EntryKind.FILE, b"d": EntryKind.DIR}
    check = check_manifest(hashes, None, scan, {b"a": D1})
    assert [(f.path, f.status) for f in check.files] == [
        (b"a", FileStatus.OK),
        (b"b", FileStatus.NEW),
    ]


def test_unreadable_file_is_changed_with_the_reason() -> None:
    hashes = HashManifest.build({b"a": D1})
    check = check_manifest(hashes, None, {b"a": EntryKind.FILE}, {}, {b"a": "Permission denied"})
    assert check.files[0].status is FileStatus.CHANGED
    assert "Permission denied" in check.files[0].reason


@settings(deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_manifest_or_format_error(data: bytes) -> None:
    for parse in (HashManifest.from_bytes, TreeList.from_bytes):
        try:
            parsed = parse(data)
        except FormatError:
            continue
        assert parsed.to_bytes() == data


names = st.lists(
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="/\\"),
        min_size=1,
        max_size=12,
    )
    .map(str.encode)
    .filter(lambda b: b not in {b".", b".."}),
    min_size=1,
    max_size=3,
).map(b"/".join)


@settings(deadline=None)
@given(st.dictionaries(names, st.binary(min_size=32, max_size=32), max_size=20))
def test_build_then_parse_round_trips(digests: dict[bytes, bytes]) -> None:
    m = HashManifest.build(digests)
    again = HashManifest.from_bytes(m.to_bytes())
    assert again.digests() == digests
    assert again.to_bytes() == m.to_bytes()
    tree = TreeList.build(digests)
    assert TreeList.from_bytes(tree.to_bytes()).paths == frozenset({b"", *digests})


@settings(deadline=None)
@given(
    st.dictionaries(names, st.binary(min_size=32, max_size=32), min_size=1, max_size=12),
    st.data(),
)
def test_any_single_change_to_a_signed_tree_is_detected(
    digests: dict[bytes, bytes], data: st.DataObject
) -> None:
    hashes = HashManifest.build(digests)
    parents = {p.rsplit(b"/", 1)[0] for p in digests if b"/" in p}
    dirs = {b"/".join(d.split(b"/")[:i]) for d in parents for i in range(1, d.count(b"/") + 2)}
    dirs -= set(digests)
    scan = dict.fromkeys(digests, EntryKind.FILE) | dict.fromkeys(dirs, EntryKind.DIR)
    tree = TreeList.build(scan)
    assert check_manifest(hashes, tree, scan, digests).all_ok
    victim = data.draw(st.sampled_from(sorted(digests)))
    change = data.draw(st.sampled_from(["flip", "remove", "symlink", "add"]))
    now_scan, now_digests = dict(scan), dict(digests)
    if change == "flip":
        now_digests[victim] = bytes([victim_byte ^ 1 for victim_byte in digests[victim][:1]])
        now_digests[victim] += digests[victim][1:]
    elif change == "remove":
        del now_scan[victim], now_digests[victim]
    elif change == "symlink":
        now_scan[victim] = EntryKind.SYMLINK
        del now_digests[victim]
    else:
        added = victim + b".new"
        while added in now_scan:
            added += b".new"
        now_scan[added] = EntryKind.FILE
    assert not check_manifest(hashes, tree, now_scan, now_digests).all_ok
