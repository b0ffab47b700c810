"""The owner's OpenPGP key in pure Python: Ed25519, v4 packets, armor (docs/openpgp.md).

The payload carries gpgv but not gpg; with this package the runtime makes the owner's key
during a factory reset, backs it up protected by a passphrase, and signs /boot with it.
Nothing here does I/O: randomness and the clock come from the caller.

Not constant time (see :mod:`heads.core.openpgp.ed25519`): Python offers no way to make
big-integer arithmetic independent of secret values.  Signing happens a few times per /boot
update on the owner's machine.
"""

from __future__ import annotations

from heads.core.lazy_exports import lazy_getattr

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
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

# Each name is imported from its submodule on first use (PEP 562): `heads boot verify` reads
# keyring packets (heads.core.keyring imports .packets, which runs this file first) and needs
# none of key generation, backup or signing (docs/architecture.md §Command start-up).
_SUBMODULE = {
    "export_secret": "backup",
    "import_secret": "backup",
    "OwnerKey": "key",
    "export_public": "key",
    "export_public_armored": "key",
    "generate_owner_key": "key",
    "sign_detached": "key",
    "OwnerKeySigner": "signer",
    "PublicKey": "transferable",
    "read_public": "transferable",
}


__getattr__ = lazy_getattr(__name__, _SUBMODULE, globals())
