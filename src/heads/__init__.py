"""heads: tamper-evident boot with a TPM 2.0, OpenPGP-signed /boot and kexec."""

__version__ = "0.1.0"
