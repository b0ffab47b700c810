"""The boot runtime with menus: the gui-init state machine driven by a renderer, its effects
performed through the flows (docs/runtime-menus.md).

:func:`run_menus` takes over once the runtime has measured the user files
and mounted /boot.  It gathers the start-up facts (the rollback-counter preflight, the
keyring) before anything is unsealed, then loops: show the machine's dialog with the
renderer, or perform its effect and feed the outcome back.  It returns the runtime's exit
status (or does not return: kexec).

Secrets stay in memory: the owner passphrase typed for a TPM reset is a
:class:`~heads.core.secret.Secret` handed to the TPM adapter and dropped; the machine forgets
it on recovery entry.  The TOTP code goes to the console once per refresh
(``heads: TOTP <code> at <time>``, the line the QEMU host side reads) and into the main menu;
it is never logged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from heads.adapters._run import run
from heads.adapters.tpm import Tpm
from heads.core.dialogs import Dialog
from heads.core.digest import HashAlg
from heads.core.gui import (
    AddKey,
    BootBasic,
    BootDefault,
    BootEntry,
    Effect,
    Entries,
    FactoryReset,
    Failed,
    FailureKind,
    Flash,
    Gui,
    IntegrityReport,
    ListEntries,
    ListKeys,
    ModeConfig,
    NotAvailable,
    Ok,
    Outcome,
    PowerOff,
    Preflight,
    Reboot,
    RecoveryShell,
    RefreshTotp,
    Report,
    ResetTpm,
    SaveConfig,
    SaveDefault,
    SealTotp,
    SetTime,
    ShowSignedLists,
    SignBoot,
    StartFacts,
    SystemInfo,
    TotpCode,
    UsbBoot,
    WipeTotp,
)
from heads.core.kexec_plan import CmdlineRules, KexecPlan
from heads.core.platform import PCR_BOOT_MODE, PROFILES
from heads.core.secret import Secret
from heads.core.text import shown, shown_bytes
from heads.errors import HashMismatchError, HeadsError, MeasurementError
from heads.flows.measure import EventLogWriter
from heads.runtime.boot import EXIT_POWEROFF, RuntimeEnv, _Console, _kexec, _recovery
from heads.ui.renderer import Renderer

if TYPE_CHECKING:
    from heads.flows.boot_signing import SignResult

__all__ = ["NOT_IN_THIS_BUILD", "run_menus"]

#: How an effect this build cannot perform yet is reported (on the console and in a dialog).
NOT_IN_THIS_BUILD: Final = "not available in this build"
#: Heads' forced boot: every colour of the console red (vt.default_red ... for 16 colours),
#: and no splash hiding what happens.
_RED_CONSOLE: Final = CmdlineRules(add="vt.default_red=" + ",".join(["0xff"] * 16))
_MAX_LIST_BYTES: Final = 64 * 1024
#: A scripted or misbehaving console cannot keep the machine in the menus forever.
_MAX_STEPS: Final = 10_000


@dataclass
class _Session:
    """What the performer keeps between effects (in memory only)."""

    recovered: bool = False  # PCR 4 holds "recovery": nothing unseals until a restart
    #: The owner passphrase set by a TPM reset, for the counter and the seal that follow it
    #: in the same session; dropped on recovery entry.
    owner: Secret | None = None
    #: The TOTP secret was released in this boot: half of the gate a reseal before a flash
    #: needs (docs/firmware-update.md).
    totp_released: bool = False


class _OwnerCounter:
    """The TPM's rollback counter, created with the owner passphrase set by a TPM reset."""

    def __init__(self, tpm: Tpm, owner: Secret | None) -> None:
        self._tpm = tpm
        self._owner = owner

    def nv_exists(self, index: int) -> bool:
        return self._tpm.nv_exists(index)

    def nv_counter_create(self) -> int:
        return self._tpm.nv_counter_create(owner_auth=self._owner)

    def nv_counter_read(self, index: int) -> int:
        return self._tpm.nv_counter_read(index)

    def nv_counter_increment(self, index: int) -> int:
        return self._tpm.nv_counter_increment(index)


class _Performer:
    def __init__(
        self,
        env: RuntimeEnv,
        tpm: Tpm,
        log: EventLogWriter,
        con: _Console,
        pcr4_firmware: bytes | None,
    ) -> None:
        self.env = env
        self.tpm = tpm
        self.log = log
        self.con = con
        self.pcr4_firmware = pcr4_firmware
        self.session = _Session()

    @property
    def keyring(self) -> Path:
        return self.env.root / ".gnupg" / "pubring.kbx"

    # -- start-up facts ------------------------------------------------------------------

    def preflight(self) -> Preflight:
        """Heads' start-up checks; nothing is unsealed or sealed here."""
        from heads.core.boot_trust import RollbackReportState  # noqa: PLC0415 - after the TPM
        from heads.flows.boot_signing import preflight_rollback  # noqa: PLC0415

        keyring_empty = not self.keyring.is_file() or self.keyring.stat().st_size == 0
        signed_files = sorted(self.env.boot_dir.glob("kexec*"))
        try:
            report = preflight_rollback(self.env.boot_dir, self.tpm)
        except HeadsError as err:
            self.con.say(f"preflight: /boot cannot be checked: {err.message}")
            return Preflight(False, f"/boot cannot be checked: {err.message}", keyring_empty)
        if report.state is RollbackReportState.NOT_CHECKED:
            self.con.say(f"preflight: {report.detail}")
            return Preflight(
                True, keyring_empty=keyring_empty, clean_boot=keyring_empty and not signed_files
            )
        if report.state is not RollbackReportState.OK:
            problem = (
                "TPM integrity counter cannot be read or does not match: possible TPM reset "
                f"or swap ({report.state.value}: {report.detail})"
            )
            self.con.say(f"preflight: {problem}")
            return Preflight(False, problem, keyring_empty)
        self.con.say("preflight: TPM rollback counter readable and current")
        return Preflight(True, keyring_empty=keyring_empty)

    # -- effects -------------------------------------------------------------------------

    def perform(self, effect: Effect) -> Outcome | int:
        """Do ``effect``; an int is the runtime's exit status (the menus are over)."""
        try:
            match effect:
                case RefreshTotp():
                    return self.refresh_totp()
                case BootDefault():
                    return self.boot_default()
                case BootBasic():
                    return self.boot_entry(BootEntry(1, basic=True))
                case BootEntry():
                    return self.boot_entry(effect)
                case ListEntries():
                    return self.list_entries(verified=effect.verified)
                case SaveDefault():
                    return self.save_default(effect.index)
                case IntegrityReport():
                    return self.integrity_report()
                case ShowSignedLists():
                    return self.signed_lists()
                case SignBoot():
                    return self.sign_boot()
                case SealTotp():
                    return self.seal_totp()
                case ResetTpm():
                    self.tpm.reset(owner_auth=effect.owner)
                    self.session.owner = effect.owner
                    self.con.say("TPM reset: new owner passphrase set, its objects are gone")
                    return Ok(("The TPM was reset.",))
                case WipeTotp():
                    from heads.flows.totp import wipe_totp  # noqa: PLC0415

                    existed = wipe_totp(self.tpm, owner_auth=self.session.owner)
                    self.con.say("TOTP secret wiped" if existed else "no TOTP secret to wipe")
                    return Ok()
                case SetTime():
                    return self.set_time(effect)
                case SystemInfo():
                    return Ok(self.system_info())
                case ListKeys():
                    return self.list_keys()
                case SaveConfig() | Flash() | AddKey():
                    return self.firmware(effect)
                case FactoryReset() | UsbBoot():
                    what = {
                        FactoryReset: "the OEM factory reset / re-ownership",
                        UsbBoot: "USB boot",
                    }[type(effect)]
                    self.con.say(f"{what}: {NOT_IN_THIS_BUILD}")
                    return NotAvailable(what)
                case RecoveryShell():
                    self.con.say(f"recovery shell: {shown(effect.reason)}")
                    return self.recovery()
                case PowerOff():
                    self.con.say("power off")
                    return EXIT_POWEROFF
                case Reboot():
                    # QEMU boards power off instead of rebooting, as in Heads.
                    self.con.say("restart (this board powers off)")
                    return EXIT_POWEROFF
        except HeadsError as err:
            self.con.say(f"{type(effect).__name__}: {err.message}")
            return Failed(shown(err.message), lines=tuple(shown(d) for d in err.details))
        except OSError as exc:
            # /boot is the attacker's: a file that cannot be read is a failure to show, not
            # a reason to leave the menus.
            what = f"{exc.strerror or exc}" + (
                f": {shown(str(exc.filename))}" if exc.filename else ""
            )
            self.con.say(f"{type(effect).__name__}: {what}")
            return Failed(what)
        raise AssertionError(f"unhandled effect {effect!r}")  # pragma: no cover

    def recovery(self) -> int:
        self.session.recovered = True
        self.session.owner = None
        return _recovery(self.env, self.tpm, self.log, self.con)

    def firmware(self, effect: SaveConfig | Flash | AddKey) -> Outcome:
        from heads.runtime.firmware_menu import FirmwareContext, perform  # noqa: PLC0415

        context = FirmwareContext(
            self.env,
            self.tpm,
            self.con.say,
            totp_released=self.session.totp_released,
            recovered=self.session.recovered,
            owner=self.session.owner,
        )
        return perform(context, effect)

    def refresh_totp(self) -> Outcome:
        from heads.flows.totp import show_totp, totp_exists  # noqa: PLC0415

        if self.session.recovered:
            return Failed('PCR 4 holds "recovery": the TOTP secret unseals after a restart')
        if not totp_exists(self.tpm):
            self.con.say("no TOTP secret in the TPM")
            return Failed("No TOTP secret is sealed in this TPM.", FailureKind.NO_SECRET)
        try:
            code = show_totp(self.tpm, now=self.env.now(), say=self.con.say)
        except HeadsError as err:
            self.con.say(f"TOTP secret not released: {err.message}")
            for line in err.details:
                self.con.say(f"  {line}")
            return Failed(shown(err.message), lines=tuple(shown(d) for d in err.details))
        self.session.totp_released = True
        stamp = code.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.con.say(f"TOTP {code.code} at {stamp} ({code.seconds_left} s left)")
        return TotpCode(code.code, code.at)

    def _default_files(self) -> list[Path]:
        return sorted(self.env.boot_dir.glob("kexec_default.*.txt"))

    def boot_default(self) -> Outcome | int:
        from heads.flows.boot_entries import BootNotVerifiedError, boot_default  # noqa: PLC0415

        if not self._default_files():
            return Failed("No default boot entry is saved on /boot.", FailureKind.NO_DEFAULT)
        try:
            chosen = boot_default(self.env.boot_dir, keyring=self.keyring, tpm=self.tpm)
        except BootNotVerifiedError as err:
            self.report_lines(err.message, err.report)
            return Failed(
                shown(err.message), FailureKind.NOT_VERIFIED, tuple(shown(x) for x in err.report)
            )
        except HashMismatchError as err:
            self.report_lines(err.message, ["Boot Hash Mismatch", *err.details])
            return Failed(shown(err.message), FailureKind.DEFAULT_HASH)
        for line in chosen.report:
            self.con.say(line)
        self.con.say("/boot verified: signature, hashes and rollback counter")
        if not chosen.current:
            self.con.say(
                f"Boot Entry Has Changed: entry {chosen.default.index} of today's menu is not "
                "the saved default"
            )
            return Failed(
                f"Entry {chosen.default.index} of today's menu is not the saved default "
                f"({shown(chosen.default.entry.title)}).",
                FailureKind.ENTRY_CHANGED,
            )
        self.con.say(f"default entry: {shown(chosen.plan.title)}")
        return self.kexec(chosen.plan)

    def report_lines(self, message: str, lines: Sequence[str]) -> None:
        self.con.say(f"INTEGRITY REPORT: {message}")
        for line in lines:
            self.con.say(f"  {line}")

    def kexec(self, plan: KexecPlan) -> int:
        return _kexec(self.env, plan, self.tpm, self.log, self.con)

    def list_entries(self, *, verified: bool) -> Outcome:
        from heads.flows.boot_entries import (  # noqa: PLC0415
            BootNotVerifiedError,
            list_entries,
            verified_digests,
        )

        if verified:
            try:
                verified_digests(self.env.boot_dir, keyring=self.keyring, tpm=self.tpm)
            except BootNotVerifiedError as err:
                self.report_lines(err.message, err.report)
                return Failed(
                    shown(err.message),
                    FailureKind.NOT_VERIFIED,
                    tuple(shown(x) for x in err.report),
                )
        entries = list_entries(self.env.boot_dir).entries
        if not entries:
            return Failed("No boot entry found on /boot.")
        return Entries(tuple(shown(e.title) for e in entries))

    def boot_entry(self, effect: BootEntry) -> Outcome | int:
        from heads.flows.boot_entries import (  # noqa: PLC0415
            list_entries,
            plan_entry,
            verified_digests,
        )

        entries = list_entries(self.env.boot_dir).entries
        if not 1 <= effect.index <= len(entries):
            return Failed(f"Entry {effect.index} does not exist.")
        entry = entries[effect.index - 1]
        if effect.force or effect.basic:
            why = "forced boot: tampering ignored" if effect.force else "Basic mode"
            self.con.say(f"booting {shown(entry.title)} WITHOUT verification ({why})")
            plan = plan_entry(
                entry, None, rules=_RED_CONSOLE if effect.force else None, unsafe_reason=why
            )
        else:
            verified = verified_digests(self.env.boot_dir, keyring=self.keyring, tpm=self.tpm)
            self.con.say("/boot verified: signature, hashes and rollback counter")
            plan = plan_entry(entry, verified)
        return self.kexec(plan)

    # -- signing -------------------------------------------------------------------------

    def _writable_boot(self) -> None:
        if self.env.boot_device:
            run(
                ["mount", "-o", "remount,rw", str(self.env.boot_dir)],
                desc="remount /boot read-write",
            )

    def _readonly_boot(self) -> None:
        if self.env.boot_device:
            run(
                ["mount", "-o", "remount,ro", str(self.env.boot_dir)],
                desc="remount /boot read-only",
            )

    def _signer(self) -> Outcome | None:
        if self.env.gnupghome is None:
            return Failed(
                "No OpenPGP secret key is available to sign /boot (no card, no owner key in "
                "this build).",
                FailureKind.NO_SIGNING_KEY,
            )
        return None

    def sign_boot(self) -> Outcome:
        missing = self._signer()
        if missing is not None:
            return missing
        self._writable_boot()
        try:
            result = self._sign_boot()
        finally:
            self._readonly_boot()
        text = f"/boot signed: {result.files_hashed} files hashed"
        if result.counter_index is not None:
            text += f"; rollback counter 0x{result.counter_index:08x} = {result.counter_value}"
        self.con.say(text)
        return Ok((text,))

    def _sign_boot(self) -> SignResult:
        """Sign the (writable) /boot with the owner's key, the counter under the owner auth."""
        from heads.flows.boot_signing import sign_boot  # noqa: PLC0415

        return sign_boot(
            self.env.boot_dir,
            gnupghome=self.env.gnupghome,
            key=self.env.signing_key,
            tpm=_OwnerCounter(self.tpm, self.session.owner),
        )

    def save_default(self, index: int) -> Outcome:
        from heads.flows.boot_entries import save_default  # noqa: PLC0415

        missing = self._signer()
        if missing is not None:
            return missing
        self._writable_boot()
        try:
            saved = save_default(
                self.env.boot_dir,
                index,
                sign=self._sign_boot,
            )
        finally:
            self._readonly_boot()
        text = f"entry {saved.index} ({shown(saved.entry.title)}) is the default; /boot signed"
        self.con.say(text)
        return Ok((text,))

    # -- integrity -----------------------------------------------------------------------

    def integrity_report(self) -> Outcome:
        from heads.core.manifest import FileStatus  # noqa: PLC0415
        from heads.flows.boot_signing import verify_boot  # noqa: PLC0415

        report = verify_boot(self.env.boot_dir, keyring=self.keyring, tpm=self.tpm)
        lines = tuple(report.render_text().splitlines())
        mismatches = tuple(
            f"({f.status.value}) ./{shown_bytes(f.path)}"
            for f in (report.files.files if report.files is not None else ())
            if f.status is not FileStatus.OK
        )
        for line in lines:
            self.con.say(f"report: {line}")
        return Report(lines, report.ok, mismatches)

    def signed_lists(self) -> Outcome:
        out: list[str] = []
        for path in sorted(self.env.boot_dir.glob("kexec*.txt")):
            if path.is_symlink() or not path.is_file():
                out.append(f"{shown(path.name)}: not a regular file")
                continue
            with path.open("rb") as f:
                data = f.read(_MAX_LIST_BYTES + 1)
            out.append(f"== {shown(path.name)}")
            out.extend(shown_bytes(x) for x in data[:_MAX_LIST_BYTES].splitlines())
            if len(data) > _MAX_LIST_BYTES:
                out.append("(truncated)")
        return Ok(tuple(out) or ("no signed lists on /boot",))

    # -- TOTP ----------------------------------------------------------------------------

    def seal_totp(self) -> Outcome:
        """Seal a new secret: only ever on the owner's request (the machine's gate)."""
        from heads.flows.totp import seal_totp  # noqa: PLC0415

        if self.session.recovered:
            return Failed('PCR 4 holds "recovery": restart before sealing a new secret')
        current_pcr4 = self.tpm.read_pcrs(HashAlg.SHA256, [PCR_BOOT_MODE])[PCR_BOOT_MODE]
        if self.pcr4_firmware is not None and self.pcr4_firmware != current_pcr4:
            raise MeasurementError(
                "PCR 4 differs from its firmware-only value in the event log: not sealing"
            )
        prov = seal_totp(
            self.tpm,
            pcr4_firmware=current_pcr4,
            profile=self.env.profile,
            label=self.env.label,
            rng=os.urandom,
            event_log=None,
            owner_auth=self.session.owner,
        )
        pcrs = ",".join(map(str, PROFILES[self.env.profile]))
        self.con.say(f"provisioning: TOTP secret sealed to sha256:{pcrs}")
        self.con.say(f"TOTP URI {prov.uri}")
        from heads.core.qr import qr_matrix, render_half_blocks  # noqa: PLC0415

        self.con.raw(render_half_blocks(qr_matrix(prov.uri)))
        return Ok((f"Sealed to PCRs {pcrs} (sha256).",))

    # -- the rest ------------------------------------------------------------------------

    def set_time(self, effect: SetTime) -> Outcome:
        if not self.env.set_clock:
            return NotAvailable("setting the clock here")
        stamp = effect.when.strftime("%Y-%m-%d %H:%M:%S")
        run(["date", "-u", "-s", stamp], desc="set the system clock")
        run(["hwclock", "-u", "-w"], desc="write the hardware clock", check=False)
        self.con.say(f"clock set to {stamp} UTC")
        return Ok()

    def system_info(self) -> tuple[str, ...]:
        uname = os.uname()
        lines = [f"Kernel: {shown(uname.release)} ({shown(uname.machine)})"]
        info = self.tpm.info()
        lines.append(f"TPM: {shown(info.manufacturer)}")
        for path, key, label in (
            ("/proc/cpuinfo", "model name", "CPU"),
            ("/proc/meminfo", "MemTotal", "Memory"),
        ):
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith(key):
                    lines.append(f"{label}: {shown(line.split(':', 1)[1].strip())}")
                    break
        return tuple(lines)

    def list_keys(self) -> Outcome:
        from heads.core.keyring import parse_keyring  # noqa: PLC0415

        try:
            data = self.keyring.read_bytes()
        except OSError:
            return Ok(("no keyring in the firmware image",))
        summary = parse_keyring(data, source=str(self.keyring))
        return Ok((f"{summary.keys} public key(s) in the firmware's keyring ({summary.format})",))


def _facts(env: RuntimeEnv, performer: _Performer) -> StartFacts:
    return StartFacts(env.mode or ModeConfig(), performer.preflight(), env.now())


def run_menus(
    env: RuntimeEnv,
    *,
    tpm: Tpm,
    log: EventLogWriter,
    con: _Console,
    pcr4_firmware: bytes | None,
    renderer: Renderer,
) -> int:
    """The menus until a boot, a power-off or the recovery shell; returns the exit status.

    Raises:
        UnansweredError: a scripted boot reached a dialog it has no answer for (the caller
            reports it and takes the recovery path).
    """
    performer = _Performer(env, tpm, log, con, pcr4_firmware)
    gui = Gui(_facts(env, performer))
    step = gui.start()
    for _ in range(_MAX_STEPS):
        if isinstance(step, Dialog):
            step = gui.answer(renderer.show(step))
            continue
        outcome = performer.perform(step)
        if isinstance(outcome, int):
            return outcome
        step = gui.result(outcome)
    con.say(f"the menus ran {_MAX_STEPS} steps without booting: powering off")
    return performer.recovery()
