"""The boot runtime in line mode: what the payload does between /init and kexec.

A port of Heads' ``init`` + ``cbfs-init`` + ``gui-init`` default path (docs/architecture.md
§Boot flow), for a serial console and for tests:

1. find the TPM;
2. read the firmware event log and replay it against the TPM's PCRs (a report, not a gate);
3. read the firmware image's user files (a CBFS image; in QEMU through fw_cfg) and measure each
   ``heads/initrd/*`` file into PCR 7: its path string, then its bytes, in image order;
4. mount /boot read-only and run Heads' preflight: the TPM rollback counter /boot is bound to
   must be readable and current.  A cleared or swapped TPM has lost it: that is an alarm (no
   secret is unsealed or sealed), never a first boot;
5. unseal the TOTP secret and print the code;
6. verify /boot (signature, hashes, rollback counter) and plan the saved default entry
   (``kexec_default.N.txt`` checked against ``kexec_default_hashes.txt``) through the same
   flow as ``heads boot kexec --default``;
7. first boot only, once /boot has verified: seal a new TOTP secret to the profile's PCRs
   (PCR 4 still at its firmware-only value) and print the otpauth URI and its QR code;
8. extend PCR 4 with ``generic`` and kexec.

The payload kernel has every driver built in (docs/reproducible-builds.md §Kernel): there are
no modules to load, so nothing is measured into PCR 5 (Heads' ``insmod.sh`` step).

With scripted answers (fw_cfg ``opt/heads/answers``) or on an interactive console, steps 4-8
are Heads' menus instead (:mod:`heads.runtime.menu`, docs/runtime-menus.md): the same
preflight, then the main menu; nothing is sealed unless the owner chooses it.  A batch boot
without answers takes the unattended path above.

Any failure of 3-8 prints an integrity report naming what failed, extends PCR 4 with
``recovery`` (so the TOTP secret stays sealed for the rest of this boot) and returns
:data:`EXIT_RECOVERY` (interactive) or :data:`EXIT_POWEROFF` (batch boots).

The console lines starting ``heads: `` are stable; the host side of the QEMU platform and the
end-to-end tests match them.  In particular::

    heads: TOTP 123456 at 2026-11-25T21:00:00Z
    heads: TOTP URI otpauth://totp/LABEL?secret=BASE32      (first boot only)
    heads: /boot verified ...
    heads: INTEGRITY REPORT: <reason>
    heads:   <file>: changed
    heads: PCR 4 extended with "recovery"
    heads: log #N PCR P <kind> <what>
    heads: kexec <kernel>
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from heads.adapters._run import run
from heads.adapters.kexec import KexecTools
from heads.adapters.tpm import Tpm, open_tpm
from heads.core.cbfs import TYPE_RAW
from heads.core.digest import HashAlg
from heads.core.flash_image import FlashImage
from heads.core.kexec_plan import KexecPlan
from heads.core.mode_config import ModeConfig
from heads.core.platform import (
    ANSWERS_FW_CFG,
    CONSOLE_PREFIX,
    DEFAULT_TCTI,
    EVENT_LOG,
    FIRMWARE_EVENT_LOG,
    PCR_BOOT_MODE,
    PCR_LUKS_HEADERS,
    PCR_MODULES,
    PCR_PAYLOAD_STUB,
    PCR_USER_FILES,
    PROFILES,
    USER_FILE_PREFIX,
)
from heads.core.text import scrub, shown
from heads.errors import (
    FormatError,
    HashMismatchError,
    HeadsError,
    KexecError,
    MeasurementError,
    UsageError,
    VerificationError,
)
from heads.flows.measure import EventLogWriter, measure_file, measure_string
from heads.flows.totp import seal_totp, show_totp, totp_exists

if TYPE_CHECKING:
    from heads.ui.renderer import Renderer

__all__ = [
    "EXIT_POWEROFF",
    "EXIT_RECOVERY",
    "RuntimeEnv",
    "main",
    "run_boot",
]

EXIT_RECOVERY: Final = 10
EXIT_POWEROFF: Final = 11

_FW_CFG: Final = Path("/sys/firmware/qemu_fw_cfg/by_name")
_MAX_ROM_BYTES: Final = 64 * 1024 * 1024
_MAX_CONFIG_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class RuntimeEnv:
    """Where the runtime finds things; the defaults are the payload's, tests pass others.

    Attributes:
        tcti: the TPM.
        rom: the CBFS image holding the user files.
        root: where user files are written (``heads/initrd/etc/config.user`` -> ROOT/etc/...).
        firmware_log: the firmware's TCG event log.
        event_log: our own measurement log (CEL JSON lines).
        boot_device: the block device holding /boot ("" to use ``boot_dir`` as it is).
        boot_dir: where /boot is mounted.
        profile: platform profile (``uefi`` in QEMU with OVMF, ``coreboot`` on Heads boards).
        batch: no one is at the console: power off instead of starting a shell (None: ask
            fw_cfg ``opt/heads/mode``; anything but ``interactive`` is a batch boot).
        label: the TOTP label shown in authenticator apps.
        now: the clock (UTC).
        do_kexec: really run kexec (False on a host test: print the command, run nothing).
        answers: scripted answers to the menus (None: read fw_cfg ``opt/heads/answers``).
            With answers, or on an interactive console, the boot goes through the menus
            (:mod:`heads.runtime.menu`); a batch boot without answers keeps the unattended
            path below.
        ui: ``line``, ``whiptail`` or ``auto`` (whiptail on a real console, lines on a serial
            one).
        mode: Basic/Restricted mode and the other settings the menus read (None: defaults).
        gnupghome: where the owner's signing key is, for signing /boot from the menus (None:
            no key in this build, signing is refused as Heads does without a card).
        signing_key: that key's fingerprint (None: gpg's default key).
        set_clock: the menus may set the system clock (False on a host test).
    """

    tcti: str = DEFAULT_TCTI
    rom: Path = _FW_CFG / "opt/heads/rom/raw"
    root: Path = Path("/")
    firmware_log: Path = FIRMWARE_EVENT_LOG
    event_log: Path = EVENT_LOG
    boot_device: str = "/dev/nvme0n1"
    boot_dir: Path = Path("/boot")
    profile: str = "uefi"
    batch: bool | None = None
    label: str = "heads-qemu"
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    do_kexec: bool = True
    answers: tuple[tuple[str, str], ...] | None = None
    ui: str = "auto"
    mode: ModeConfig | None = None
    gnupghome: Path | None = None
    signing_key: str | None = None
    set_clock: bool = True


class BootRefused(HeadsError):  # noqa: N818 - a verdict, not a crash; HeadsError subclass
    """Verification failed: the report lines say what."""

    def __init__(self, message: str, report: Sequence[str]) -> None:
        super().__init__(message)
        self.report = tuple(report)


class _Console:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def say(self, text: str) -> None:
        # Split on newlines only, then escape what is left (heads.core.text.scrub): a CR, a
        # U+2028 or an escape sequence from a name on /boot must not start a fake "heads: "
        # line or hide one.  Names are escaped where they are formatted (shown()); this is
        # the last barrier for anything that was not.
        for line in text.rstrip("\n").split("\n"):
            self.out.write(f"{CONSOLE_PREFIX}{scrub(line)}\n")
        self.out.flush()

    def raw(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()


def _measure_user_files(env: RuntimeEnv, tpm: Tpm, log: EventLogWriter, con: _Console) -> int:
    """Extract the ``heads/initrd/*`` files under ``env.root`` and measure them into PCR 7."""
    try:
        with env.rom.open("rb") as f:
            image = f.read(_MAX_ROM_BYTES + 1)
    except OSError as exc:
        con.say(f"no firmware user files at {env.rom} ({exc.strerror}); PCR 7 not extended")
        return 0
    count = 0
    # A flat CBFS (the user-file image) or a whole FMAP flash image: the CBFS is found either way.
    for cbfs_file in FlashImage.from_bytes(image, source=str(env.rom)).files():
        if cbfs_file.type != TYPE_RAW or not cbfs_file.name.startswith(USER_FILE_PREFIX + "/"):
            continue
        rel = cbfs_file.name[len(USER_FILE_PREFIX) :]  # "/etc/config.user", as Heads measures
        if cbfs_file.compression or ".." in rel.split("/"):
            raise UsageError(f"user file {cbfs_file.name} is compressed or escapes the root")
        target = env.root / rel.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(cbfs_file.data)
        measure_string(tpm, log, PCR_USER_FILES, rel, description="user file name")
        measure_file(tpm, log, PCR_USER_FILES, target, description=f"user file {rel}")
        con.say(f"PCR 7 measured {rel} ({len(cbfs_file.data)} bytes)")
        count += 1
    return count


def _read_config(env: RuntimeEnv, con: _Console) -> ModeConfig:
    """The settings as Heads reads them: the board's defaults (``/etc/config`` in the payload,
    when it has one), then the owner's ``config.user`` from the firmware image; later wins.

    A file that does not parse is named with its line and left out: the boot goes on with the
    other file's values (both were measured into PCR 7 or the payload, so a change shows).
    """
    from heads.core.heads_config import merged, parse_config  # noqa: PLC0415
    from heads.core.mode_config import mode_from_config  # noqa: PLC0415

    configs = []
    for path in (env.root / "etc" / "config", env.root / "etc" / "config.user"):
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_CONFIG_BYTES + 1)
        except OSError:
            continue
        try:
            if len(data) > _MAX_CONFIG_BYTES:
                raise FormatError(f"larger than {_MAX_CONFIG_BYTES} bytes", source=str(path))
            configs.append(parse_config(data, source=str(path)))
        except FormatError as err:
            con.say(f"configuration ignored: {err.message}")
    mode = mode_from_config(merged(configs))
    flags = [n for n, on in (("Basic", mode.basic), ("Restricted", mode.restricted)) if on]
    con.say(f"configuration: {' and '.join(flags) + ' mode' if flags else 'normal mode'}")
    return mode


def _read_firmware_log(env: RuntimeEnv, tpm: Tpm, con: _Console) -> bytes | None:
    """The firmware's TCG log, replayed against the TPM (reported, never fatal).

    Returns:
        PCR 4's firmware-only sha256 value from the log, or None without a usable log.
    """
    from heads.core.eventlog import parse_tcg, replay_logs  # noqa: PLC0415 - large, once
    from heads.flows.totp import firmware_pcr4  # noqa: PLC0415

    try:
        data = env.firmware_log.read_bytes()
    except OSError as exc:
        con.say(f"no firmware event log at {env.firmware_log} ({exc.strerror})")
        return None
    try:
        log = parse_tcg(data, source=str(env.firmware_log))
        pcr4 = firmware_pcr4(data, source=str(env.firmware_log))
    except HeadsError as err:
        con.say(f"firmware event log unusable: {err.message}")
        return None
    replayed = replay_logs([log], banks=[HashAlg.SHA256]).pcrs.get(HashAlg.SHA256, {})
    firmware_pcrs = sorted(i for i in replayed if i < 10)
    live = tpm.read_pcrs(HashAlg.SHA256, firmware_pcrs)
    differ = [i for i in firmware_pcrs if live[i] != replayed[i]]
    verdict = "matches the TPM" if not differ else f"DIFFERS from the TPM in PCR {differ}"
    con.say(
        f"firmware event log: {len(log.events)} events; replay of PCRs "
        f"{','.join(map(str, firmware_pcrs))} {verdict}"
    )
    # What the firmware leaves in PCRs 5 and 6, for whoever predicts the disk key's policy
    # for this machine (docs/disk-key.md §Sealing for a machine that is off).
    for pcr in (PCR_MODULES, PCR_LUKS_HEADERS):
        value = replayed.get(pcr, bytes(HashAlg.SHA256.digest_size))
        con.say(f"firmware PCR {pcr} {value.hex()}")
    if env.profile == "uefi":
        # The kernel's EFI stub, not OVMF, measures the initrd and command line
        # (docs/qemu-platform.md §What OVMF measures): a stub without TPM support would leave
        # PCR 9 unmeasured.
        tags = sum(1 for e in log.events if e.pcr == PCR_PAYLOAD_STUB)
        if tags < 2:
            con.say("warning: no initrd/command-line measurements in PCR 9 (EFI stub)")
    return pcr4


def _show_totp(env: RuntimeEnv, tpm: Tpm, con: _Console) -> None:
    code = show_totp(tpm, now=env.now(), say=con.say)
    stamp = code.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    con.say(f"TOTP {code.code} at {stamp} ({code.seconds_left} s left)")


def _seal_first_totp(env: RuntimeEnv, tpm: Tpm, con: _Console, pcr4_firmware: bytes | None) -> None:
    """Seal a new TOTP secret and show it: only once /boot has verified (the integrity gate).

    PCR 4 is still at its firmware-only value: nothing of ours has extended it yet.  Where
    the firmware log gave that value too, the two must agree.
    """
    current_pcr4 = tpm.read_pcrs(HashAlg.SHA256, [PCR_BOOT_MODE])[PCR_BOOT_MODE]
    if pcr4_firmware is not None and pcr4_firmware != current_pcr4:
        raise MeasurementError(
            "PCR 4 differs from its firmware-only value in the event log: "
            "something extended it before the runtime; not sealing the TOTP secret"
        )
    prov = seal_totp(
        tpm,
        pcr4_firmware=current_pcr4,
        profile=env.profile,
        label=env.label,
        rng=os.urandom,
        event_log=None,
    )
    pcrs = ",".join(map(str, PROFILES[env.profile]))
    con.say(f"provisioning: TOTP secret sealed to sha256:{pcrs}")
    con.say(f"TOTP URI {prov.uri}")
    from heads.core.qr import qr_matrix, render_half_blocks  # noqa: PLC0415 - first boot only

    con.raw(render_half_blocks(qr_matrix(prov.uri)))
    _show_totp(env, tpm, con)


def _preflight(env: RuntimeEnv, tpm: Tpm, con: _Console) -> bool:
    """Heads' start-up checks, before any secret is unsealed or sealed.

    The rollback counter that /boot is bound to must be readable and match: a cleared or
    swapped TPM has lost it, and must raise the alarm rather than look like a first boot.

    Returns:
        Whether /boot holds signed state (False: nothing was ever signed on it).

    Raises:
        BootRefused: the counter is missing, unreadable or does not match.
    """
    from heads.core.boot_trust import RollbackReportState  # noqa: PLC0415 - after the TPM
    from heads.flows.boot_signing import preflight_rollback  # noqa: PLC0415

    try:
        report = preflight_rollback(env.boot_dir, tpm)
    except HeadsError as err:
        # Whatever stops the check is on /boot, which an attacker controls: an alarm too.
        raise BootRefused(f"/boot cannot be checked: {err.message}", list(err.details)) from None
    if report.state is RollbackReportState.NOT_CHECKED:
        con.say(f"preflight: {report.detail}")
        return False
    if report.state is not RollbackReportState.OK:
        raise BootRefused(
            "TPM integrity counter cannot be read or does not match: possible TPM reset or "
            "swap; no secret is unsealed or sealed",
            [f"rollback counter: {report.state.value}: {report.detail}"],
        )
    con.say("preflight: TPM rollback counter readable and current")
    return True


def _mount_boot(env: RuntimeEnv, con: _Console) -> None:
    if not env.boot_device:
        return
    env.boot_dir.mkdir(parents=True, exist_ok=True)
    # nodev: a device node planted on the disk cannot even be opened through /boot.
    run(
        [
            "mount",
            "-t",
            "ext4",
            "-o",
            "ro,nodev,nosuid,noexec",
            env.boot_device,
            str(env.boot_dir),
        ],
        desc=f"mount {env.boot_device} on {env.boot_dir}",
        timeout_s=60,
    )
    con.say(f"mounted {env.boot_device} read-only on {env.boot_dir}")


def _print_log(log: EventLogWriter, con: _Console) -> None:
    for rec in log.records():
        what = rec.string if rec.kind == "string" else (rec.path or rec.description)
        con.say(f"log #{rec.recnum} PCR {rec.pcr} {rec.kind} {what}")


def _verify_and_plan(env: RuntimeEnv, tpm: Tpm, con: _Console) -> KexecPlan:
    """Verify /boot and plan the saved default entry (:func:`heads.flows.boot_entries.boot_default`,
    the path ``heads boot kexec --default`` takes too).

    Raises:
        BootRefused: /boot does not verify; the report names what differs.
        HeadsError: no default entry, or its files differ from the digests saved with it.
    """
    # Imported here, after the TOTP code is on the screen: the owner sees it sooner.
    from heads.flows.boot_entries import (  # noqa: PLC0415
        BootNotVerifiedError,
        boot_default,
    )

    keyring = env.root / ".gnupg" / "pubring.kbx"
    if not keyring.is_file():
        raise BootRefused("no keyring in the firmware image", [f"{keyring}: missing"])
    try:
        chosen = boot_default(env.boot_dir, keyring=keyring, tpm=tpm)
    except BootNotVerifiedError as err:
        raise BootRefused(err.message, err.report) from None
    except HashMismatchError as err:
        raise BootRefused(err.message, ["Boot Hash Mismatch", *err.details]) from None
    for line in chosen.report:
        con.say(line)
    con.say("/boot verified: signature, hashes and rollback counter")
    if not chosen.current:
        con.say(
            f"Boot Entry Has Changed: entry {chosen.default.index} of today's menu is not the "
            "saved default; booting the saved entry"
        )
    con.say(f"default entry: {shown(chosen.plan.title)}")
    return chosen.plan


def _measure_generic(tpm: Tpm, log: EventLogWriter, con: _Console) -> None:
    measure_string(tpm, log, PCR_BOOT_MODE, "generic", description="boot mode")
    con.say('PCR 4 extended with "generic"')
    _print_log(log, con)


def _disk_key(
    env: RuntimeEnv, tpm: Tpm, log: EventLogWriter, con: _Console, renderer: Renderer | None
) -> bytes:
    """The disk key archive for the OS initrd, when /boot lists LUKS devices (else empty)."""
    if not (env.boot_dir / "kexec_key_devices.txt").exists():
        return b""
    from heads.runtime.disk_key import disk_key_archive  # noqa: PLC0415 - only with a DUK

    archive = disk_key_archive(
        boot_dir=env.boot_dir, tpm=tpm, log=log, say=con.say, renderer=renderer
    )
    return archive.reveal() if archive is not None else b""


def _kexec(
    env: RuntimeEnv,
    plan: KexecPlan,
    tpm: Tpm,
    log: EventLogWriter,
    con: _Console,
    *,
    renderer: Renderer | None = None,
) -> int:
    """Load exactly the verified bytes, extend PCR 4 with ``generic``, jump to the OS.

    The kexec adapter copies each file into memory while hashing it and refuses any byte that
    differs from the signed digest, so what runs is what was verified (no window between
    verification and loading).  The disk unlock key, when one is configured, is released
    first (PCR 4 still at its firmware value) and its archive appended to the initrd in
    memory.  PCR 4 moves only once the kernel is loaded (kexec-boot.sh).

    Raises:
        HashMismatchError: a file changed after verification.
        KexecError: kexec could not load or execute the kernel.
        DiskKeyDeclinedError: the disk key was not released and the owner declined the
            recovery key.
    """
    appended = _disk_key(env, tpm, log, con, renderer)
    con.say(f"kexec {shown(plan.kernel.path)} ({shown(plan.title)})")
    if not env.do_kexec:
        if appended:
            con.say(f"disk key archive: {len(appended)} bytes appended to the initrd")
        # Tests on a host: never load a kernel into the machine running them.
        _measure_generic(tpm, log, con)
        from heads.flows.boot_entries import dry_run_argv  # noqa: PLC0415 - host tests only

        con.say(f"kexec not run (dry run): {' '.join(dry_run_argv(plan, env.boot_dir))}")
        return EXIT_POWEROFF
    kexec = KexecTools()
    kexec.load(plan, env.boot_dir, appended=appended)
    _measure_generic(tpm, log, con)
    kexec.execute()
    raise KexecError("kexec -e returned: the OS kernel did not start")


def _fw_cfg_text(name: str) -> str:
    try:
        return (_FW_CFG / name / "raw").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _is_batch(env: RuntimeEnv) -> bool:
    return env.batch if env.batch is not None else _fw_cfg_text("opt/heads/mode") != "interactive"


def _menu_renderer(env: RuntimeEnv, out: TextIO) -> Renderer | None:
    """The renderer for the menus, or None for the unattended path (a batch boot without
    scripted answers).

    Raises:
        FormatError: the answer file is malformed (named with its line).
    """
    from heads.core.answers import ScriptedAnswers, parse_answer_file  # noqa: PLC0415

    answers = env.answers
    if answers is None:
        path = _FW_CFG / ANSWERS_FW_CFG / "raw"
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        answers = tuple(parse_answer_file(data, source=ANSWERS_FW_CFG)) if data else ()
    batch = _is_batch(env)
    if batch and not answers:
        return None
    scripted = ScriptedAnswers(answers) if answers else None
    from heads.ui.line import LineRenderer  # noqa: PLC0415
    from heads.ui.whiptail import WhiptailRenderer  # noqa: PLC0415

    on_serial = _stdin_is_serial()
    if env.ui == "whiptail" or (
        env.ui == "auto" and not batch and not on_serial and WhiptailRenderer.available()
    ):
        return WhiptailRenderer(scripted)
    return LineRenderer(out, None if batch else sys.stdin, scripted)


def _stdin_is_serial() -> bool:
    try:
        name = os.ttyname(0)
    except OSError:
        return True  # not a terminal at all: lines
    return name.startswith(("/dev/ttyS", "/dev/ttyAMA", "/dev/hvc", "/dev/ttyUSB"))


def _scripted_flash(con: _Console) -> bool:
    """Flash a new ``config.user`` when fw_cfg asks for it (after the integrity gate).

    Returns:
        Whether the image was flashed (the machine then powers off instead of kexec).
    """
    from heads.runtime.flash_update import (  # noqa: PLC0415 - only when asked
        find_flash_device,
        flash_config_user,
        scripted_config_user,
    )

    config_user = scripted_config_user()
    if config_user is None:
        return False
    device = find_flash_device()
    if device is None:
        raise UsageError("a flash was asked for but there is no flash device")
    flash_config_user(device, config_user, say=con.say)
    con.say("flash: done; powering off, the next boot loads the new image")
    return True


def _recovery(env: RuntimeEnv, tpm: Tpm | None, log: EventLogWriter, con: _Console) -> int:
    if tpm is not None:
        measure_string(tpm, log, PCR_BOOT_MODE, "recovery", description="boot mode")
        con.say('PCR 4 extended with "recovery"')
        _print_log(log, con)
    if env.mode is not None and env.mode.restricted:
        # Restricted Boot: no shell on any path (Heads reboots; this board powers off).
        con.say("recovery: Restricted Boot is enabled: no recovery shell, powering off")
        return EXIT_POWEROFF
    if _is_batch(env):
        con.say("recovery: batch boot, powering off instead of starting a shell")
        return EXIT_POWEROFF
    return EXIT_RECOVERY


def run_boot(env: RuntimeEnv, out: TextIO) -> int:
    """The whole boot; returns EXIT_RECOVERY/EXIT_POWEROFF, or does not return (kexec)."""
    con = _Console(out)
    con.say("runtime started")
    log = EventLogWriter(env.event_log)
    try:
        with open_tpm(env.tcti) as tpm:
            info = tpm.info()
            banks = ",".join(a.value for a in tpm.banks())
            con.say(f"TPM found: {info.manufacturer} at {env.tcti} (banks {banks})")
            try:
                # The firmware log first: compared with the TPM before we extend anything.
                pcr4_firmware = _read_firmware_log(env, tpm, con)
                _measure_user_files(env, tpm, log, con)
                if env.mode is None:
                    env = replace(env, mode=_read_config(env, con))
                _mount_boot(env, con)
                renderer = _menu_renderer(env, out)
                if renderer is not None:
                    from heads.runtime.menu import run_menus  # noqa: PLC0415 - menus only

                    return run_menus(
                        env,
                        tpm=tpm,
                        log=log,
                        con=con,
                        pcr4_firmware=pcr4_firmware,
                        renderer=renderer,
                    )
                signed = _preflight(env, tpm, con)
                has_secret = totp_exists(tpm)
                if has_secret:
                    _show_totp(env, tpm, con)
                elif signed:
                    con.say("no TOTP secret yet: it is sealed once /boot has verified")
                else:
                    con.say("no TOTP secret and no signed /boot: provision this machine first")
                plan = _verify_and_plan(env, tpm, con)
                if not has_secret:
                    _seal_first_totp(env, tpm, con, pcr4_firmware)
                if _scripted_flash(con):
                    return EXIT_POWEROFF
                return _kexec(env, plan, tpm, log, con)
            except BootRefused as refused:
                con.say(f"INTEGRITY REPORT: {refused.message}")
                for line in refused.report:
                    con.say(f"  {line}")
                con.say("not booting: /boot does not match what the owner signed")
                return _recovery(env, tpm, log, con)
            except HeadsError as err:
                label = "INTEGRITY REPORT" if isinstance(err, VerificationError) else "BOOT FAILED"
                con.say(f"{label}: {err.message}")
                for line in err.details:
                    con.say(f"  {line}")
                if err.hint:
                    con.say(f"hint: {err.hint}")
                return _recovery(env, tpm, log, con)
    except HeadsError as err:
        con.say(f"error: {err.message}")
        if err.hint:
            con.say(f"hint: {err.hint}")
        return _recovery(env, None, log, con)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point inside the payload."""
    del argv
    env = RuntimeEnv(tcti=os.environ.get("HEADS_TCTI", DEFAULT_TCTI))
    return run_boot(env, sys.stdout)
