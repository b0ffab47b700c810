"""A :class:`heads.adapters.gpg.Signer` that signs with an in-memory owner key (no gpg)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from heads.core.openpgp.key import OwnerKey, sign_detached

__all__ = ["OwnerKeySigner"]


@dataclass(frozen=True, slots=True)
class OwnerKeySigner:
    """Signs /boot's manifests with ``key``, dated by ``clock`` (``time.time`` in the product).

    The clock is injected so this stays free of I/O and tests can fix the signature time.
    """

    key: OwnerKey
    clock: Callable[[], float]

    def sign(self, data: bytes) -> tuple[bytes, str]:
        """(ASCII-armored detached signature, signer fingerprint), as gpg's signer returns."""
        return sign_detached(self.key, data, created=int(self.clock())), self.key.fingerprint
