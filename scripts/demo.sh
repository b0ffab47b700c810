#!/usr/bin/env bash
# The main job: the end-to-end demo.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$top/scripts/setup.sh"
cd "$top"
exec heads qemu demo "$@"
