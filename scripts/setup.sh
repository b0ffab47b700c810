#!/usr/bin/env bash
# Installs what heads needs on Debian 12 (as root) and prepares .venv; a no-op when all is there.
# Sourced by scripts/demo.sh and scripts/test.sh; may also be run on its own.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

missing=()
while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done < "$top/deps/debian-packages.txt"
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: run as root (or install them yourself) to continue" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The payload builder fetches its pinned packages with apt-get download and looks up what the
# archive still offers: that needs package lists, and recent ones (the archive moves weekly).
if [[ $(id -u) -eq 0 ]] && [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -7 2>/dev/null | head -n 1)" ]]; then
    echo "setup: refreshing apt's package lists" >&2
    apt-get -o DPkg::Lock::Timeout=900 update -qq
fi

# pip's notes about index locations this machine does not have.
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

venv="$top/.venv"
stamp="$venv/.heads-stamp"
want=$(cat "$top/requirements-build.lock" "$top/requirements.lock" "$top/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "setup: preparing the Python environment in .venv" >&2
    # Debian's interpreter, not any other python3 on PATH: the same one goes into the payload.
    [[ -x "$venv/bin/python" ]] || /usr/bin/python3 -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps)
    # Exactly the downloads the locks name (by SHA-256).  heads' own build backend (setuptools)
    # comes first, from its own lock, and installs heads without an isolated environment, so
    # nothing unpinned is fetched.
    "${pip[@]}" --only-binary :all: -r "$top/requirements-build.lock" 2>&1 | quiet >&2
    "${pip[@]}" --no-build-isolation -r "$top/requirements.lock" 2>&1 | quiet >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$top"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
