"""heads' own TPM 2.0 command layer: constants, marshalling, structures and session crypto,
with no I/O (docs/tpm-objects.md §The command layer; the transports are in
heads.adapters.tpm_transport)."""
