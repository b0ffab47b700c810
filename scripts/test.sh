#!/usr/bin/env bash
# The whole test suite: lint, format, types, import layers, then pytest (real swtpm, gpg, QEMU...).
# Every stage runs even when an earlier one failed; the exit status is non-zero if any failed.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$top/scripts/setup.sh" || exit 1
cd "$top"
failed=()
stage() {
    local name=$1
    shift
    echo "== $name" >&2
    "$@" || failed+=("$name")
}
stage "ruff check" ruff check src tests bench
stage "ruff format" ruff format --check src tests bench
stage "mypy --strict" mypy
stage "import layers" lint-imports
stage "pytest" python -m pytest "$@"
if ((${#failed[@]})); then
    echo "FAILED stages: ${failed[*]}" >&2
    exit 1
fi
