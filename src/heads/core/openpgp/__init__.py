"""The owner's OpenPGP key in pure Python: Ed25519, v4 packets, armor (docs/openpgp.md).

The payload carries gpgv but not gpg; with this package the runtime makes the owner's key
during a factory reset, backs it up protected by a passphrase, and signs /boot with it.
Nothing here does I/O: randomness and the clock come from the caller.

Not constant time (see :mod:`heads.core.openpgp.ed25519`): Python offers no way to make
big-integer arithmetic independent of secret values.  Signing happens a few times per /boot
update on the owner's machine.
"""

from __future__ import annotations

from heads.core.openpgp.backup import export_secret, import_secret
from heads.core.openpgp.key import (
    OwnerKey,
    export_public,
    export_public_armored,
    generate_owner_key,
    sign_detached,
)
from heads.core.openpgp.signer import OwnerKeySigner
from heads.core.openpgp.transferable import PublicKey, read_public

__all__ = [
    "OwnerKey",
    "OwnerKeySigner",
    "PublicKey",
    "export_public",
    "export_public_armored",
    "export_secret",
    "generate_owner_key",
    "import_secret",
    "read_public",
    "sign_detached",
]
