#!/usr/bin/env bash
# The whole test suite: lint, types, import layers, then pytest (real swtpm, gpg, QEMU...).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$top/scripts/setup.sh"
cd "$top"
echo "== ruff" >&2
ruff check src tests bench
ruff format --check src tests bench
echo "== mypy --strict" >&2
mypy
echo "== import layers" >&2
lint-imports
echo "== pytest" >&2
exec python -m pytest "$@"
