"""`heads rom ...`: inspect and edit a firmware image, package it, flash it, predict its PCRs.

Editing commands (``add``, ``rm``, ``config set|unset``, ``keys add|replace``) rewrite IMAGE
atomically in place, or write ``-o OUT`` and leave IMAGE alone.  Every read command takes
``--json``; the shapes (keys sorted, hex in lower case):

``heads rom create OUT [--size BYTES]``
    a fresh image: the standard FMAP layout (docs/firmware-image.md) and an empty CBFS.

``heads rom ls IMAGE --json``
    ``{"size": int, "sha256": str, "layout": "fmap"|"flat", "board": str|null,
    "free": int, "regions": [{"name", "offset", "size", "flags"}],
    "files": [{"name", "offset", "type", "metadata_size", "size", "stored_size",
    "compression": "none"|"LZMA"|"LZ4", "hash": {"algorithm", "digest"}|null}]}``

``heads rom config list IMAGE [--defaults FILE] --json``
    ``{"values": {KEY: VALUE}, "origin": {KEY: "defaults"|"config.user"},
    "problems": [str]}``; ``config get IMAGE KEY --json``: ``{"key", "value"}``
    (exit 1 when the key is not set).

``heads rom keys list IMAGE --json``
    ``{"keys": [{"fingerprint", "algorithm", "created", "validity", "uids": [str]}]}``

``heads rom verify PATH [--keyring FILE | --keyring-from IMAGE] --json``
    ``{"kind": "package"|"image", "rom": str, "sha256": str, "signer": str|null,
    "board": str|null}``; exit 3 when a hash or the signature is refused.

``heads rom flash IMAGE|PACKAGE [--programmer P] [--clean] [--backup FILE] --json``
    ``{"size", "sha256", "board", "carried": [str], "backup", "write_seconds",
    "verify_seconds", "unchanged"}``; exit 3 when the chip reads back different.

``heads rom read OUT [--programmer P] --json``: ``{"size", "sha256", "path"}``.

``heads rom predict NEW [--current IMAGE|--programmer P] [--log LOG] [--profile P] --json``
    the shape of :meth:`heads.flows.rom_predict.Prediction.to_json`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from heads.cli.common import add_json_option, print_json
from heads.core.platform import FIRMWARE_EVENT_LOG, PROFILES
from heads.core.text import shown
from heads.errors import ExitCode, UsageError

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from heads.core.flash_image import FlashImage

__all__ = ["register"]

Handler = Callable[[argparse.Namespace], int]
_DEFAULT_PROGRAMMER = "internal"


def _load(path: str) -> FlashImage:
    from heads.flows.firmware import read_image_file

    return read_image_file(Path(path))


def _save(args: argparse.Namespace, image: FlashImage) -> None:
    from heads.flows.firmware import write_image_file

    target = Path(args.output or args.image)
    write_image_file(target, image)
    print(f"wrote {shown(str(target))}", file=sys.stderr)


def _size_arg(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024}
    try:
        if text[-1:].upper() in units:
            return int(text[:-1], 0) * units[text[-1].upper()]
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 16M)") from None


# -- create / ls / extract / add / rm -------------------------------------------------------


def _create(args: argparse.Namespace) -> int:
    from heads.core.flash_image import new_flash_image, standard_layout
    from heads.flows.firmware import write_image_file

    try:
        image = new_flash_image(standard_layout(args.size))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_image_file(Path(args.out), image)
    print(f"wrote {shown(args.out)} ({image.size} bytes, CBFS of {image.free_space()} bytes free)")
    return 0


def _ls(args: argparse.Namespace) -> int:
    import hashlib

    from heads.core.cbfs import type_name
    from heads.core.rom_update import board_of

    image = _load(args.image)
    files = image.files()
    if args.json:
        print_json(
            {
                "size": image.size,
                "sha256": hashlib.sha256(image.data).hexdigest(),
                "layout": "fmap" if image.fmap is not None else "flat",
                "board": board_of(image),
                "free": image.free_space(),
                "regions": [
                    {"name": a.name, "offset": a.offset, "size": a.size, "flags": a.flags}
                    for a in (image.fmap.areas if image.fmap is not None else ())
                ],
                "files": [
                    {
                        "name": f.name,
                        "offset": f.offset,
                        "type": type_name(f.type),
                        "metadata_size": f.metadata_size,
                        "size": f.decompressed_size,
                        "stored_size": len(f.data),
                        "compression": f.compression_name,
                        "hash": (
                            {"algorithm": f.hash[0], "digest": f.hash[1].hex()}
                            if f.hash is not None
                            else None
                        ),
                    }
                    for f in files
                ],
            }
        )
        return 0
    if image.fmap is not None:
        print("FMAP regions:")
        for a in image.fmap.areas:
            print(f"  {a.name:<16} {a.offset:#010x} {a.size:#010x}")
    print(f"{'Name':<40} {'Offset':>10} {'Type':<10} {'Size':>10} Comp")
    for f in files:
        comp = f.compression_name
        if f.compression:
            comp += f" ({len(f.data)} stored)"
        print(
            f"{shown(f.name):<40} {f.offset:>#10x} {type_name(f.type):<10} "
            f"{f.decompressed_size:>10} {comp}"
        )
        if f.hash is not None:
            print(f"    hash {f.hash[0]}:{f.hash[1].hex()} valid")
    print(f"free: {image.free_space()} bytes")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from heads.adapters.atomic import write_atomic

    image = _load(args.image)
    f = image.file(args.name)
    if f is None:
        raise UsageError(f"{args.image} has no file named {shown(args.name)}")
    data = f.data if args.raw else f.content(source=args.image)
    if args.output == "-":
        sys.stdout.buffer.write(data)
    else:
        write_atomic(Path(args.output), data)
    return 0


def _add_file(args: argparse.Namespace) -> int:
    from heads.core.cbfs import COMPRESS_LZMA, COMPRESS_NONE, HASH_SHA256, make_file
    from heads.flows.firmware import read_small_file

    image = _load(args.image)
    content = read_small_file(Path(args.file), "the file")
    f = make_file(
        args.name,
        content,
        type=args.type,
        compression=COMPRESS_LZMA if args.compression == "lzma" else COMPRESS_NONE,
        hash_algorithm=HASH_SHA256 if args.hash == "sha256" else None,
    )
    try:
        image = image.with_file(f, replace=args.replace)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _save(args, image)
    return 0


def _rm(args: argparse.Namespace) -> int:
    image = _load(args.image)
    try:
        image = image.without_file(args.name)
    except KeyError:
        raise UsageError(f"{args.image} has no file named {shown(args.name)}") from None
    _save(args, image)
    return 0


# -- config -----------------------------------------------------------------------------------


def _config_list(args: argparse.Namespace) -> int:
    from heads.core.heads_config import parse_config, problems
    from heads.flows.firmware import image_config, read_small_file

    config = image_config(_load(args.image))
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    found = problems(config)
    if args.defaults:
        defaults = parse_config(
            read_small_file(Path(args.defaults), "board defaults"), source=args.defaults
        )
        found = problems(defaults) + found
        for key, value in defaults.items().items():
            values[key], origin[key] = value, "defaults"
    for key, value in config.items().items():
        values[key], origin[key] = value, "config.user"
    if args.json:
        print_json({"values": values, "origin": origin, "problems": found})
        return 0
    for key, value in values.items():
        print(f"{key}={shown(value)}" + ("" if origin[key] == "config.user" else "  (default)"))
    for p in found:
        print(f"warning: {shown(p)}", file=sys.stderr)
    return 0


def _config_get(args: argparse.Namespace) -> int:
    from heads.flows.firmware import image_config

    value = image_config(_load(args.image)).get(args.key)
    if args.json:
        print_json({"key": args.key, "value": value})
    elif value is not None:
        print(shown(value))
    return 0 if value is not None else int(ExitCode.ERROR)


def _config_set(args: argparse.Namespace) -> int:
    from heads.flows.firmware import image_config, with_config

    image = _load(args.image)
    try:
        config = image_config(image).set(args.key, args.value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _save(args, with_config(image, config))
    return 0


def _config_unset(args: argparse.Namespace) -> int:
    from heads.flows.firmware import image_config, with_config

    image = _load(args.image)
    _save(args, with_config(image, image_config(image).unset(args.key)))
    return 0


# -- keys -------------------------------------------------------------------------------------


def _keys_list(args: argparse.Namespace) -> int:
    from heads.flows.firmware import image_keys

    keys = image_keys(_load(args.image))
    if args.json:
        print_json(
            {
                "keys": [
                    {
                        "fingerprint": k.fingerprint,
                        "algorithm": k.algorithm,
                        "created": k.created,
                        "validity": k.validity,
                        "uids": list(k.uids),
                    }
                    for k in keys
                ]
            }
        )
        return 0
    if not keys:
        print("no keys in the image's keyring")
    for k in keys:
        print(k.fingerprint)
        for uid in k.uids:
            print(f"  uid {shown(uid)}")
    return 0


def _keys_import(args: argparse.Namespace, *, replace: bool) -> int:
    from heads.flows.firmware import read_small_file, with_keys

    image = _load(args.image)
    key_data = read_small_file(Path(args.keyfile), "the key file")
    image, fprs = with_keys(image, key_data, replace=replace)
    _save(args, image)
    for fpr in fprs:
        print(f"{'replaced keyring with' if replace else 'added'} {fpr} (ultimate trust)")
    return 0


# -- package / verify ---------------------------------------------------------------------


def _package(args: argparse.Namespace) -> int:
    from heads.adapters.gpg import GpgSigner
    from heads.flows.firmware import make_package

    signer = GpgSigner(Path(args.gnupghome) if args.gnupghome else None, args.key)
    rom, fpr = make_package(Path(args.image), Path(args.output), signer)
    print(f"wrote {shown(args.output)}: {shown(rom)}, sha256sum.txt signed by {fpr}")
    return 0


def _keyring(args: argparse.Namespace, tmp: Path) -> Path:
    if args.keyring:
        return Path(args.keyring)
    if args.keyring_from:
        from heads.flows.firmware import image_keyring

        files = image_keyring(_load(args.keyring_from))
        if files.pubring is None:
            raise UsageError(f"{args.keyring_from} holds no keyring")
        path = tmp / files.pubring_name
        path.write_bytes(files.pubring)
        return path
    raise UsageError(
        "an update package is checked with a keyring",
        hint="pass --keyring FILE or --keyring-from IMAGE (the running firmware's keys)",
    )


def _is_package(path: str) -> bool:
    try:
        with Path(path).open("rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _verify(args: argparse.Namespace) -> int:
    import hashlib
    import tempfile

    from heads.core.rom_update import board_of
    from heads.flows.firmware import verify_package

    package = _is_package(args.path)
    if package:
        with tempfile.TemporaryDirectory(prefix="heads-rom-") as tmp:
            check = verify_package(Path(args.path), _keyring(args, Path(tmp)))
        out = {
            "kind": "package",
            "rom": check.rom_name,
            "sha256": check.sha256,
            "signer": check.fingerprint,
            "board": board_of(check.image),
        }
    else:
        image = _load(args.path)
        out = {
            "kind": "image",
            "rom": Path(args.path).name,
            "sha256": hashlib.sha256(image.data).hexdigest(),
            "signer": None,
            "board": board_of(image),
        }
    if args.json:
        print_json(out)
    elif package:
        print(f"OK: {shown(str(out['rom']))} sha256 {out['sha256']}, signed by {out['signer']}")
    else:
        print(
            f"image {shown(str(out['rom']))}: sha256 {out['sha256']} (no signature: check it "
            "against a trusted source)"
        )
    return 0


# -- flash / read -------------------------------------------------------------------------------


def _flash(args: argparse.Namespace) -> int:
    import tempfile

    from heads.flows.firmware import (
        flash,
        image_keyring,
        read_chip,
        read_image_file,
        verify_package,
    )

    if _is_package(args.image):
        with tempfile.TemporaryDirectory(prefix="heads-rom-") as tmp:
            if args.keyring or args.keyring_from:
                keyring = _keyring(args, Path(tmp))
            else:  # as Heads: the keys in the running firmware vouch for its update
                files = image_keyring(read_chip(args.programmer))
                if files.pubring is None:
                    raise UsageError(
                        "the chip's image holds no keyring to check the package with",
                        hint="pass --keyring FILE",
                    )
                keyring = Path(tmp) / files.pubring_name
                keyring.write_bytes(files.pubring)
            image = verify_package(Path(args.image), keyring).image
    else:
        image = read_image_file(Path(args.image))
    report = flash(
        args.programmer,
        image,
        clean=args.clean,
        backup=Path(args.backup) if args.backup else None,
    )
    if args.json:
        print_json(report.to_json())
        return 0
    if report.unchanged:
        print("the chip already holds this image; nothing written")
        return 0
    for name in report.carried:
        print(f"kept {shown(name)} from the current image")
    print(
        f"flashed {report.size} bytes (sha256 {report.sha256}): write {report.write_s:.2f} s, "
        f"read-back verified in {report.verify_s:.2f} s"
    )
    return 0


def _read(args: argparse.Namespace) -> int:
    import hashlib

    from heads.adapters.atomic import write_atomic
    from heads.adapters.flashrom import Flashrom

    data = Flashrom(args.programmer).read()
    write_atomic(Path(args.out), data)
    digest = hashlib.sha256(data).hexdigest()
    if args.json:
        print_json({"size": len(data), "sha256": digest, "path": args.out})
    else:
        print(f"read {len(data)} bytes (sha256 {digest}) into {shown(args.out)}")
    return 0


# -- predict ---------------------------------------------------------------------------------


def _predict(args: argparse.Namespace) -> int:
    from heads.flows.firmware import read_chip, read_image_file, read_small_file
    from heads.flows.rom_predict import predict_pcrs

    new = read_image_file(Path(args.image))
    current = read_image_file(Path(args.current)) if args.current else read_chip(args.programmer)
    log_path = Path(args.log) if args.log else FIRMWARE_EVENT_LOG
    log = None
    if args.log or args.profile == "uefi":
        log = read_small_file(log_path, "the firmware event log")
    prediction = predict_pcrs(
        new,
        current,
        profile=args.profile,
        firmware_log=log,
        log_source=str(log_path),
        clean=args.clean,
        memory_mib=args.memory_mib,
    )
    if args.json:
        print_json(prediction.to_json())
        return 0
    print(f"profile {prediction.profile}: sha256 PCRs after booting {shown(args.image)}")
    for pcr, value in sorted(prediction.values.items()):
        why = prediction.reasons.get(pcr, "")
        print(f"  PCR {pcr:>2}: {value.hex()}  {why}")
    for pcr, why in sorted(prediction.unpredictable.items()):
        print(f"  PCR {pcr:>2}: cannot be predicted: {why}")
    return 0 if not prediction.unpredictable else int(ExitCode.ERROR)


# -- registration ---------------------------------------------------------------------------


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Handler,
    help_text: str,
    *,
    edits: bool = False,
    reads: bool = False,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    if edits:
        parser.add_argument("image", metavar="IMAGE")
        parser.add_argument("-o", "--output", metavar="OUT", help="write here, not over IMAGE")
    if reads:
        add_json_option(parser)
    return parser


def _add_programmer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--programmer",
        "-p",
        default=_DEFAULT_PROGRAMMER,
        help="flashrom programmer (default: internal; e.g. dummy:emulate=W25Q128FV,image=F)",
    )


def _add_keyring(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--keyring",
        help="binary keyring that must have signed a package (flash: default the chip's keyring)",
    )
    group.add_argument(
        "--keyring-from", metavar="IMAGE", help="use the keyring inside this firmware image"
    )


def register(parser: argparse.ArgumentParser) -> None:
    rom = parser.add_subparsers(dest="rom_command", metavar="SUBCOMMAND", required=True)

    p = _add(rom, "create", _create, "a fresh image with the standard FMAP layout")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--size", type=_size_arg, default=16 * 1024 * 1024, help="chip size (16M)")

    p = _add(rom, "ls", _ls, "list the FMAP regions and CBFS files", reads=True)
    p.add_argument("image", metavar="IMAGE")

    p = _add(rom, "extract", _extract, "write a CBFS file's content (decompressed)")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-o", "--output", required=True, help="file to write, - for stdout")
    p.add_argument("--raw", action="store_true", help="the stored bytes, not decompressed")

    p = _add(rom, "add", _add_file, "add a file to the CBFS", edits=True)
    p.add_argument("file", metavar="FILE")
    p.add_argument("-n", "--name", required=True, help="CBFS name, e.g. heads/initrd/etc/x")
    p.add_argument("-t", "--type", type=lambda s: int(s, 0), default=0x50, help="type (0x50)")
    p.add_argument("-c", "--compression", choices=["none", "lzma"], default="none")
    p.add_argument("--hash", choices=["none", "sha256"], default="none")
    p.add_argument("--replace", action="store_true", help="replace a file of that name")

    p = _add(rom, "rm", _rm, "remove a file from the CBFS", edits=True)
    p.add_argument("name", metavar="NAME")

    config = rom.add_parser("config", help="config.user in the image (export CONFIG_X=...)")
    csub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    p = _add(csub, "list", _config_list, "every key and value", reads=True)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--defaults", metavar="FILE", help="board defaults (/etc/config) below it")
    p = _add(csub, "get", _config_get, "one key's value (exit 1 when unset)", reads=True)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("key", metavar="KEY")
    p = _add(csub, "set", _config_set, "set a key (known keys are checked)", edits=True)
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p = _add(csub, "unset", _config_unset, "remove a key", edits=True)
    p.add_argument("key", metavar="KEY")

    keys = rom.add_parser("keys", help="the OpenPGP keyring in the image")
    ksub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    p = _add(ksub, "list", _keys_list, "fingerprints and user ids", reads=True)
    p.add_argument("image", metavar="IMAGE")
    p = _add(ksub, "add", lambda a: _keys_import(a, replace=False), "add keys", edits=True)
    p.add_argument("keyfile", metavar="KEYFILE")
    p = _add(
        ksub, "replace", lambda a: _keys_import(a, replace=True), "replace the keyring", edits=True
    )
    p.add_argument("keyfile", metavar="KEYFILE")

    p = _add(rom, "package", _package, "an update package: ROM, sha256sum.txt, signature")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, help="the .zip to write")
    p.add_argument("--gnupghome", help="GNUPGHOME with the signing key (default: gpg's)")
    p.add_argument("--key", help="signing key (default: gpg's default key)")

    p = _add(rom, "verify", _verify, "check an update package or an image", reads=True)
    p.add_argument("path", metavar="PACKAGE|IMAGE")
    _add_keyring(p)

    p = _add(rom, "flash", _flash, "write an image or package to the chip", reads=True)
    p.add_argument("image", metavar="IMAGE|PACKAGE")
    _add_programmer(p)
    _add_keyring(p)
    p.add_argument("--clean", action="store_true", help="do not keep the current heads/* files")
    p.add_argument("--backup", metavar="FILE", help="save the current chip contents here first")

    p = _add(rom, "read", _read, "read the chip into a file", reads=True)
    p.add_argument("out", metavar="OUT")
    _add_programmer(p)

    p = _add(rom, "predict", _predict, "PCRs the TOTP is sealed to after flashing", reads=True)
    p.add_argument("image", metavar="NEW")
    p.add_argument("--current", metavar="IMAGE", help="the current image (default: read chip)")
    _add_programmer(p)
    p.add_argument("--log", help=f"firmware event log (default: {FIRMWARE_EVENT_LOG})")
    p.add_argument("--profile", choices=sorted(PROFILES), default="uefi")
    p.add_argument(
        "--clean", action="store_true", help="predict a clean flash (no user files kept)"
    )
    p.add_argument("--memory-mib", type=int, default=1024, help="guest RAM (uefi; 1024)")
