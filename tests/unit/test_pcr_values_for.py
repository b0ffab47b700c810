"""core.sealing.pcr_values_for: the selected PCRs' values, or an error naming the missing ones."""

from __future__ import annotations

import pytest

from heads.core.digest import HashAlg
from heads.core.pcr import PcrIndex, PcrSelection
from heads.core.sealing import pcr_values_for
from heads.errors import UsageError

SELECTION = PcrSelection(HashAlg.SHA256, (PcrIndex(0), PcrIndex(4), PcrIndex(7)))


def test_keeps_only_the_selected_pcrs() -> None:
    values = {i: bytes([i]) * 32 for i in range(10)}
    assert pcr_values_for(SELECTION, values, missing="{pcrs}") == {
        0: values[0],
        4: values[4],
        7: values[7],
    }


def test_names_every_missing_pcr() -> None:
    with pytest.raises(UsageError, match=r"^no predicted value for PCR 4, 7: not sealing$"):
        pcr_values_for(
            SELECTION, {0: bytes(32)}, missing="no predicted value for PCR {pcrs}: not sealing"
        )
