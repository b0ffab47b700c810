"""A disk unlock key sealed by shell Heads is released by heads on the next boot.

Shell Heads' side is reproduced with its own tools: ``cryptsetup luksHeaderBackup`` into
``/tmp/lukshdr-<device>``, ``sha256sum`` of those files as the listing, ``tpm2_pcrextend`` of
PCR 6 with the listing's hash (``qubes-measure-luks.sh``), then ``tpmr seal`` of the key at
0x81000003 to PCRs 0-7 with the passphrase (tpm2-tools, as tests/flows/test_totp_shell_heads).
After a power cycle heads measures the headers with its own reader, and the TPM must release
the key: the two measurements are the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from test_totp_shell_heads import DISK_PCRS, Tools, heads_seal, tools  # noqa: F401 - fixture

from conftest import require_tools
from heads.adapters import cryptsetup
from heads.adapters.tpm import DISK_KEY_HANDLE, open_tpm
from heads.core.secret import Secret
from heads.flows.disk_key import DiskTarget, measure_headers, unseal_disk_key
from heads.testing.swtpm import Swtpm

pytestmark = [pytest.mark.swtpm, pytest.mark.cryptsetup]

DRK = Secret(b"recovery passphrase")
PASSPHRASE = b"disk unlock passphrase"


def test_shell_heads_duk_unseals_with_heads(swtpm: Swtpm, tools: Tools, tmp_path: Path) -> None:  # noqa: F811
    require_tools("cryptsetup", "sha256sum", "tpm2_pcrextend")
    image = tmp_path / "luks.img"
    with image.open("wb") as f:
        f.truncate(20 << 20)
    cryptsetup.format_luks(image, DRK)
    key = os.urandom(128)
    cryptsetup.add_key(image, DRK, Secret(key), slot=cryptsetup.DUK_SLOT_LUKS2)

    # qubes-measure-luks.sh, with a device name no other test uses (the path is in the listing).
    device = f"/dev/heads-test-{uuid.uuid4().hex[:12]}"
    backup = Path("/tmp/lukshdr-" + device.replace("/", "_"))
    try:
        subprocess.run(
            ["cryptsetup", "luksHeaderBackup", str(image), "--header-backup-file", str(backup)],
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(["sha256sum", str(backup)], check=True, capture_output=True).stdout
    finally:
        backup.unlink(missing_ok=True)
    tools("tpm2_pcrextend", f"6:sha256={hashlib.sha256(listing).hexdigest()}")
    heads_seal(tools, key, DISK_KEY_HANDLE, DISK_PCRS, passphrase=PASSPHRASE)

    swtpm.stop()  # power cycle: PCRs back to zero, the sealed object stays
    swtpm.start()
    with open_tpm(swtpm.tcti) as tpm:
        ours = measure_headers(tpm, None, [DiskTarget(device, image)])
        assert ours == listing
        released = unseal_disk_key(tpm, Secret(PASSPHRASE))
    assert released.reveal() == key
