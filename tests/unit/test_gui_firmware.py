"""The menus' firmware items: what the state machine asks for and does with the outcome.

A flash or a key added to the firmware restarts the machine; a failure is shown and leads
back; Restricted Boot refuses the flash before anything is asked; a configuration change
warns that PCR 7 moves and says when the secret is resealed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from heads.core.dialogs import Dialog, DialogId
from heads.core.gui import (
    AddKey,
    Failed,
    FailureKind,
    Flash,
    Gui,
    ModeConfig,
    Ok,
    Preflight,
    Reboot,
    RefreshTotp,
    SaveConfig,
    StartFacts,
    Step,
    TotpCode,
)
from heads.core.secret import Secret

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def _main(config: ModeConfig | None = None) -> Gui:
    gui = Gui(StartFacts(config or ModeConfig(), Preflight(), NOW))
    assert isinstance(gui.start(), RefreshTotp)
    step = gui.result(TotpCode("123456", NOW))
    assert isinstance(step, Dialog)
    assert step.id is DialogId.MAIN_MENU
    return gui


def _answers(gui: Gui, *pairs: tuple[DialogId, str]) -> Step:
    step: Step = gui.current  # type: ignore[assignment]
    for id_, answer in pairs:
        assert isinstance(step, Dialog), step
        assert step.id is id_, (step.id, id_)
        step = gui.answer(answer)
    return step


def test_a_flash_that_worked_restarts_the_machine() -> None:
    gui = _main()
    step = _answers(
        gui,
        (DialogId.MAIN_MENU, "o"),
        (DialogId.OPTIONS, "f"),
        (DialogId.FLASH_MENU, "c"),
        (DialogId.FLASH_FILE, ""),
    )
    assert step == Flash("", keep_settings=False)
    assert isinstance(gui.result(Ok(("Flashed and verified.",))), Reboot)


def test_a_flash_that_failed_is_shown_and_leads_back_to_the_options() -> None:
    gui = _main()
    step = _answers(
        gui,
        (DialogId.MAIN_MENU, "o"),
        (DialogId.OPTIONS, "f"),
        (DialogId.FLASH_MENU, "f"),
        (DialogId.FLASH_FILE, "update.zip"),
    )
    assert step == Flash("update.zip", keep_settings=True)
    shown = gui.result(Failed("update.zip: the signature over sha256sum.txt is not good"))
    assert isinstance(shown, Dialog)
    assert "not good" in shown.text
    assert isinstance(gui.answer("ok"), Dialog)
    assert gui.current is not None
    assert isinstance(gui.current, Dialog)
    assert gui.current.id is DialogId.OPTIONS


def test_restricted_boot_refuses_the_flash_before_anything_is_asked() -> None:
    gui = _main(ModeConfig(restricted=True))
    step = _answers(gui, (DialogId.MAIN_MENU, "o"), (DialogId.OPTIONS, "f"))
    assert isinstance(step, Dialog)
    assert step.id is DialogId.RESTRICTED_REFUSED


def test_a_key_added_restarts_the_machine_and_a_failure_returns() -> None:
    gui = _main()
    step = _answers(
        gui, (DialogId.MAIN_MENU, "o"), (DialogId.OPTIONS, "g"), (DialogId.GPG_OPTIONS, "r")
    )
    assert isinstance(step, AddKey)
    assert isinstance(gui.result(Ok(("1 key added",))), Reboot)
    gui = _main()
    _answers(gui, (DialogId.MAIN_MENU, "o"), (DialogId.OPTIONS, "g"), (DialogId.GPG_OPTIONS, "r"))
    shown = gui.result(Failed("No USB drive found"))
    assert isinstance(shown, Dialog)
    assert shown.id is DialogId.NOT_AVAILABLE
    assert "No USB drive" in shown.text


def test_the_configuration_warning_says_when_the_secret_is_resealed() -> None:
    gui = _main()
    step = _answers(
        gui,
        (DialogId.MAIN_MENU, "o"),
        (DialogId.OPTIONS, "c"),
        (DialogId.CONFIG_MENU, "Z"),
        (DialogId.CONFIG_OUTPUT, "2"),
    )
    assert isinstance(step, Dialog)
    assert step.id is DialogId.CONFIG_PCR7_WARNING
    assert "PCR 7" in step.text
    assert "resealed" in step.text
    step = gui.answer("y")
    assert step == SaveConfig((("CONFIG_QUIET_MODE", "n"), ("CONFIG_DEBUG_OUTPUT", "y")))
    assert isinstance(gui.result(Ok()), Dialog)


def test_a_reseal_that_needs_the_owner_passphrase_asks_for_it_once() -> None:
    gui = _main()
    step = _answers(
        gui,
        (DialogId.MAIN_MENU, "o"),
        (DialogId.OPTIONS, "f"),
        (DialogId.FLASH_MENU, "f"),
        (DialogId.FLASH_FILE, "update.zip"),
    )
    assert step == Flash("update.zip", keep_settings=True)
    asked = gui.result(Failed("the TPM refused the owner authorization", FailureKind.OWNER_AUTH))
    assert isinstance(asked, Dialog)
    assert asked.id is DialogId.TPM_OWNER_AUTH
    assert "resealed for the new firmware" in asked.text
    owner = Secret(b"owner passphrase")
    again = gui.answer(owner)
    assert isinstance(again, Flash)
    assert again.owner is owner
    assert again == Flash("update.zip", keep_settings=True, owner=owner)
    # Refused a second time: shown, not asked again.
    shown = gui.result(Failed("still refused", FailureKind.OWNER_AUTH))
    assert isinstance(shown, Dialog)
    assert shown.id is DialogId.NOT_AVAILABLE
    # A configuration change and a key take the same path.
    gui = _main()
    step = _answers(
        gui,
        (DialogId.MAIN_MENU, "o"),
        (DialogId.OPTIONS, "c"),
        (DialogId.CONFIG_MENU, "M"),
        (DialogId.CONFIG_AUTO_BOOT, "5"),
        (DialogId.CONFIG_PCR7_WARNING, "y"),
    )
    assert isinstance(step, SaveConfig)
    asked = gui.result(Failed("owner", FailureKind.OWNER_AUTH))
    assert isinstance(asked, Dialog)
    assert asked.id is DialogId.TPM_OWNER_AUTH
    again = gui.answer(owner)
    assert again == SaveConfig((("CONFIG_AUTO_BOOT_TIMEOUT", "5"),), owner=owner)
