"""The runtime's scenarios in the guest (QEMU TCG, OVMF, swtpm), scripted through the menus.

One machine is provisioned for the module and booted once unattended (TOTP secret sealed, OS
booted).  Each scenario runs on a copy of its directory (flash image, OS disk, TPM state,
owner key), so they are independent and can run in any order:

a. a swapped TPM stops at the preflight: nothing is sealed, no QR code or URI is shown;
b. a saved default entry 2 boots entry 2;
c. a tampered kernel: Boot Hash Mismatch, the owner returns, nothing is booted;
d. the recovery shell extends PCR 4 with "recovery": in the shell the TOTP secret is refused;
   the next boot unseals it again;
e. Basic mode boots the first entry of an unsigned /boot, and PCR 4 is still extended;
f. Restricted mode refuses the forced boot and the recovery shell;
g. turning Restricted mode off wipes the TOTP secret: the next boot has none;
h. a changed config.user moves PCR 7: the TOTP is refused until a new secret is generated
   behind the integrity gate, which then unseals.

Assertions are on dialog ids (``heads: dialog <id>:``) and console markers, never on timings;
each scenario's wall time is printed (``pytest -s``) and summed up at the end.  The payload is
the shared ``out/payload``.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import require, require_tools
from heads.adapters.qemu import OVMF_BIOS
from heads.adapters.swtpm import manufacture, serve_tcp
from heads.adapters.tpm import open_tpm
from heads.core.otp import parse_otpauth_uri, totp_code
from heads.flows.boot_entries import save_default
from heads.flows.firmware import image_config, read_image_file, with_config, write_image_file
from heads.flows.image_build import default_cache_dir
from heads.flows.qemu_platform import (
    OS_APPEND,
    OS_INITRD_NAME,
    OS_KERNEL_NAME,
    BootResult,
    Machine,
    boot_machine,
    cached_payload,
    create_machine,
    provision_machine,
    tamper_os_kernel,
    totp_matches,
    write_os_disk,
)
from heads.flows.totp import totp_exists

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.swtpm, pytest.mark.gpg]

REPO = Path(__file__).resolve().parents[2]
#: Wall time of each scenario (seconds, boots), printed at the end of the module.
TIMES: dict[str, tuple[float, int]] = {}


# -- helpers -------------------------------------------------------------------------------


def _where(result: BootResult) -> str:
    return f"see the console transcript {result.transcript}"


def _dialogs(result: BootResult) -> list[str]:
    return [
        m.group(1) for ln in result.lines if (m := re.search(r"heads: dialog ([\w-]+): ", ln.text))
    ]


def _said(result: BootResult, pattern: str) -> bool:
    return any(re.search(pattern, ln.text) for ln in result.lines)


def _copy(machine: Machine, dest: Path) -> Machine:
    """An independent copy of a machine (its boots and gpg-agent sockets left behind)."""
    shutil.copytree(
        machine.root, dest, ignore=shutil.ignore_patterns("S.*", "boots", "loaded", "*.tmp")
    )
    return Machine.load(dest)


def _set_config(machine: Machine, **values: str) -> None:
    """Write ``CONFIG_*`` values into the config.user of the machine's flash image."""
    image = read_image_file(machine.flash)
    config = image_config(image)
    for key, value in values.items():
        config = config.set(key, value)
    write_image_file(machine.flash, with_config(image, config))


def _has_totp_secret(machine: Machine) -> bool:
    with serve_tcp(machine.tpm_state) as server, open_tpm(server.tcti) as tpm:
        return totp_exists(tpm)


class Scenario:
    """Boots one machine copy with scripted answers and keeps the wall time."""

    def __init__(self, name: str, machine: Machine) -> None:
        self.name = name
        self.machine = machine
        self.boots = 0
        self.started = time.monotonic()

    def boot(self, *answers: str) -> BootResult:
        pairs = [(a.split("=", 1)[0], a.split("=", 1)[1]) for a in answers]
        self.boots += 1
        return boot_machine(self.machine, answers=pairs)

    def done(self) -> None:
        seconds = time.monotonic() - self.started
        TIMES[self.name] = (seconds, self.boots)
        print(f"\nscenario {self.name}: {seconds:.0f} s wall time, {self.boots} boot(s)")


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """A provisioned machine after its first, unattended boot (TOTP sealed, OS booted)."""
    require_tools("qemu-system-x86_64", "swtpm", "swtpm_setup", "gpg", "gpgv", "mkfs.ext4")
    require(None if OVMF_BIOS.is_file() else f"{OVMF_BIOS} missing (apt-get install ovmf)")
    started = time.monotonic()
    payload = cached_payload(REPO / "out" / "payload", cache_dir=default_cache_dir())
    machine = create_machine(tmp_path_factory.mktemp("scenarios") / "machine")
    provision_machine(machine, kernel=payload.kernel, initramfs=payload.initramfs)
    first = boot_machine(machine)
    assert totp_matches(first.otpauth_uri, first.totp), _where(first)
    assert first.os_up, _where(first)
    TIMES["provisioning and first boot"] = (time.monotonic() - started, 1)
    yield machine
    print("\nscenario wall times:")
    for name, (seconds, boots) in TIMES.items():
        print(f"  {name}: {seconds:.0f} s, {boots} boot(s)")


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, provisioned: Machine, tmp_path: Path
) -> Iterator[Scenario]:
    doc = (request.function.__doc__ or request.function.__name__).strip().splitlines()[0]
    run = Scenario(doc, _copy(provisioned, tmp_path / "machine"))
    yield run
    run.done()


# -- scenarios -----------------------------------------------------------------------------


def test_swapped_tpm_stops_at_the_preflight(scenario: Scenario) -> None:
    """(a) swapped TPM: preflight, nothing sealed"""
    machine = scenario.machine
    shutil.rmtree(machine.tpm_state)
    manufacture(machine.tpm_state)  # another TPM: the rollback counter of /boot is not in it
    result = scenario.boot(
        "preflight-failed=c",
        "main-menu=o",
        "options=t",
        "tpm-options=g",
        "tpm-reset-required=ok",
        "tpm-options=m",
        "main-menu=p",
    )
    assert _dialogs(result) == [
        "preflight-failed",
        "main-menu",
        "options",
        "tpm-options",
        "tpm-reset-required",
        "tpm-options",
        "main-menu",
    ], _where(result)
    assert _said(result, r"^heads: preflight: TPM integrity counter"), _where(result)
    assert result.otpauth_uri is None, _where(result)
    assert result.totp is None, _where(result)
    assert not _said(result, r"TOTP secret sealed|otpauth://|\[QR code"), _where(result)
    assert "kexec" not in result.marks, _where(result)
    assert not _has_totp_secret(machine)


def test_default_entry_two_boots_entry_two(scenario: Scenario) -> None:
    """(b) saved default entry 2 boots entry 2"""
    machine = scenario.machine
    boot = machine.os_boot
    entry = "\tlinux /{k} {a} heads_demo_entry={n}\n\tinitrd /{i}\n"
    (boot / "grub" / "grub.cfg").write_text(
        "set default=0\nset timeout=5\n\n"
        + "".join(
            f"menuentry 'Heads demo OS, entry {n}' {{\n"
            + entry.format(k=OS_KERNEL_NAME, a=OS_APPEND, n=n, i=OS_INITRD_NAME)
            + "}\n"
            for n in (1, 2)
        )
    )
    saved = save_default(boot, 2)  # as `heads boot default --entry 2`
    assert saved.entry.title == "Heads demo OS, entry 2"
    assert not (boot / "kexec_default.1.txt").exists()
    write_os_disk(machine, sign=True)
    result = scenario.boot("main-menu=d")
    assert _dialogs(result) == ["main-menu"], _where(result)
    assert _said(result, r"^heads: default entry: Heads demo OS, entry 2$"), _where(result)
    assert _said(result, r"^heads-demo-os: kernel command line: .*heads_demo_entry=2"), _where(
        result
    )
    assert not _said(result, r"heads_demo_entry=1"), _where(result)
    assert result.os_up, _where(result)


def test_tampered_kernel_is_refused(scenario: Scenario) -> None:
    """(c) tampered kernel: Boot Hash Mismatch, no kexec"""
    tampered = tamper_os_kernel(scenario.machine)
    result = scenario.boot("main-menu=d", "boot-hash-mismatch=m", "main-menu=p")
    assert _dialogs(result) == ["main-menu", "boot-hash-mismatch", "main-menu"], _where(result)
    assert _said(result, r"ERROR: Boot Hash Mismatch"), _where(result)
    assert any(tampered.lstrip("/") in line for line in result.report), _where(result)
    assert result.totp is not None, _where(result)  # PCRs untouched: the code still shows
    assert "kexec" not in result.marks, _where(result)
    assert not result.os_up, _where(result)


def test_recovery_shell_moves_pcr4_until_the_next_boot(scenario: Scenario) -> None:
    """(d) recovery shell: PCR 4 moved, TOTP refused until a restart"""
    pairs = [("main-menu", "o"), ("options", "x"), ("recovery-confirm", "y")]
    # An interactive boot, so that the shell really starts: in it, the TOTP is asked for
    # again (`heads totp show`), then the machine is powered off.
    shell = 'python3 -m heads totp show; echo "heads-scenario: totp show exit $?"'
    scenario.boots += 1
    result = boot_machine(
        scenario.machine,
        answers=pairs,
        typed=[
            (r"^heads: recovery shell \(type", shell),
            (r"heads-scenario: totp show exit \d+", "poweroff -f"),
        ],
    )
    assert _dialogs(result) == ["main-menu", "options", "recovery-confirm"], _where(result)
    assert result.totp is not None, _where(result)  # unsealed before the owner chose it
    assert _said(result, r"^heads: recovery shell: owner request"), _where(result)
    assert (4, "string", "recovery") in result.log, _where(result)
    assert (4, "string", "generic") not in result.log, _where(result)
    assert _said(result, r"TOTP secret not released: PCR 4 changed"), _where(result)
    assert _said(result, r"heads-scenario: totp show exit [1-9]"), _where(result)
    assert not _said(result, r"^TOTP \d{6}  "), _where(result)
    assert "kexec" not in result.marks, _where(result)
    assert not result.os_up, _where(result)
    # PCR 4 starts again from its firmware value at the next boot: the secret unseals.
    again = scenario.boot("main-menu=r", "main-menu=p")
    assert _dialogs(again) == ["main-menu", "main-menu"], _where(again)
    assert not _said(again, r"TOTP secret not released"), _where(again)
    codes = [ln.text for ln in again.lines if re.match(r"^heads: TOTP \d{6} at ", ln.text)]
    assert len(codes) == 2, _where(again)  # at start-up and after "Refresh TOTP"


def test_basic_mode_boots_unsigned_and_extends_pcr4(scenario: Scenario) -> None:
    """(e) Basic mode: first entry of an unsigned /boot, PCR 4 extended"""
    machine = scenario.machine
    _set_config(machine, CONFIG_BASIC="y")
    for signed in machine.os_boot.glob("kexec*"):
        signed.unlink()  # nothing of Heads' is left on /boot: no signature, no hashes
    write_os_disk(machine, sign=False)
    result = scenario.boot("main-menu=d")
    assert _dialogs(result) == ["main-menu"], _where(result)
    assert _said(result, r"^heads: configuration: Basic mode"), _where(result)
    assert _said(result, r"WITHOUT verification \(Basic mode\)"), _where(result)
    assert result.totp is None, _where(result)  # Basic mode does not attest
    assert (4, "string", "generic") in result.log, _where(result)
    assert result.os_up, _where(result)


def test_restricted_mode_refuses_recovery_and_forced_boot(scenario: Scenario) -> None:
    """(f) Restricted mode: no forced boot, no recovery shell"""
    _set_config(scenario.machine, CONFIG_RESTRICTED_BOOT="y")
    result = scenario.boot(
        "totp-failed=i",  # config.user changed: PCR 7 moved (scenario h)
        "main-menu=o",
        "options=b",
        "boot-options=i",
        "restricted-refused=ok",
        "boot-options=r",
        "main-menu=o",
        "options=x",
        "restricted-refused=ok",
    )
    assert _dialogs(result) == [
        "totp-failed",
        "main-menu",
        "options",
        "boot-options",
        "restricted-refused",
        "boot-options",
        "main-menu",
        "options",
        "restricted-refused",
    ], _where(result)
    assert _said(result, r"^heads: configuration: Restricted mode"), _where(result)
    assert not _said(result, r"^heads: recovery shell"), _where(result)
    assert not _said(result, r"WITHOUT verification"), _where(result)
    assert (4, "string", "recovery") not in result.log, _where(result)
    assert "kexec" not in result.marks, _where(result)
    assert not result.os_up, _where(result)


def test_disabling_restricted_mode_wipes_the_totp(scenario: Scenario) -> None:
    """(g) Restricted off wipes the TOTP secret"""
    machine = scenario.machine
    _set_config(machine, CONFIG_RESTRICTED_BOOT="y")
    answers: Sequence[str] = (
        # The changed config.user moved PCR 7: a new secret first, behind the gate.
        "totp-failed=g",
        "gate-passed=y",
        "totp-sealed=ok",
        "main-menu=o",
        "options=c",
        "config-menu=L",
        "restricted-off-confirm=y",
        # Saving config.user may not be in this build: either way the secret is gone.
        "not-available=ok",
        "config-saved=ok",
        "config-menu=r",
        "main-menu=p",
    )
    result = scenario.boot(*answers)
    seen = _dialogs(result)
    assert seen[:7] == [
        "totp-failed",
        "gate-passed",
        "totp-sealed",
        "main-menu",
        "options",
        "config-menu",
        "restricted-off-confirm",
    ], _where(result)
    assert totp_matches(result.otpauth_uri, result.totp), _where(result)
    assert _said(result, r"^heads: TOTP secret wiped$"), _where(result)
    assert not _has_totp_secret(machine)
    again = scenario.boot("totp-failed=i", "main-menu=p")
    assert _dialogs(again)[0] == "totp-failed", _where(again)
    assert _said(again, r"^heads: no TOTP secret in the TPM$"), _where(again)
    assert again.totp is None, _where(again)


def test_config_change_needs_a_new_totp_behind_the_gate(scenario: Scenario) -> None:
    """(h) config change: PCR 7 moved, TOTP refused, regenerated behind the gate"""
    _set_config(scenario.machine, CONFIG_SCENARIO_MARK="changed")
    result = scenario.boot(
        "totp-failed=g", "gate-passed=y", "totp-sealed=ok", "main-menu=r", "main-menu=p"
    )
    assert _dialogs(result) == [
        "totp-failed",
        "gate-passed",
        "totp-sealed",
        "main-menu",
        "main-menu",
    ], _where(result)
    lines = [ln.text for ln in result.lines]
    refused = next(i for i, t in enumerate(lines) if "TOTP secret not released" in t)
    gate = next(i for i, t in enumerate(lines) if t.startswith("heads: report: "))
    sealed = next(i for i, t in enumerate(lines) if "provisioning: TOTP secret sealed" in t)
    assert refused < gate < sealed, _where(result)  # the integrity report before the seal
    assert result.otpauth_uri is not None, _where(result)
    secret = parse_otpauth_uri(result.otpauth_uri).secret
    codes = [
        m for ln in result.lines if (m := re.match(r"^heads: TOTP (\d{6}) at (\S+) ", ln.text))
    ]
    assert len(codes) == 2, _where(result)  # after sealing and after "Refresh TOTP"
    for m in codes:  # RFC 6238 over the new secret at the time the guest showed
        at = datetime.strptime(m.group(2), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert totp_code(secret, at).code == m.group(1), _where(result)
