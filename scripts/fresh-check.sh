#!/usr/bin/env bash
# The README's two commands as a new user meets them: clones the committed HEAD of this
# repository into a fresh temporary directory (nothing beside the clone), runs the commands
# there with an empty HOME and a minimal environment, and prints how long each took and how it
# exited. Caches left by earlier runs (~/.cache, pip's cache, .venv, ../something) would hide a
# missing setup step; here there are none on the first run and all of them on the second.
#
# Usage: scripts/fresh-check.sh [--fast] [--keep] [-- ARGS...]
#   (default)  ./scripts/test.sh, ./scripts/demo.sh, then both again with warm caches
#   --fast     only ./scripts/test.sh -m "not qemu and not rebuild", once (what CI runs: no
#              QEMU boots, no second payload build; the full suite ran those already)
#   --keep     keep the temporary directory (clone, HOME, logs); otherwise removed on exit
#   -- ARGS    passed on to every ./scripts/test.sh run
# Environment:
#   HEADS_FRESH_SOURCE  the git repository to clone (default: the one holding this script).
#                       Only its committed HEAD is checked, never uncommitted changes.
# Exit status: 0 if every command succeeded; 1 if any failed (named at the end); 2 bad usage.
#
# The commands see only PATH (Debian's default for root), HOME (empty), LANG=C.UTF-8, TERM, CI
# (when set) and the caller's PIP_* variables but PIP_CACHE_DIR: those name the machine's
# package indexes, find-links and certificates, which a fresh run has to use as well. pip's
# user configuration in the caller's HOME is not read. Debian packages are system-wide, so once
# they are installed this no longer shows a missing apt step.
set -euo pipefail

usage() { sed -n '8,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

fast=0
keep=0
test_args=()
while (($#)); do
    case $1 in
        --fast) fast=1 ;;
        --keep) keep=1 ;;
        --) shift; test_args=("$@"); break ;;
        -h | --help) usage; exit 0 ;;
        *) echo "fresh-check: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

src=${HEADS_FRESH_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
dir=$(mktemp -d)
cleanup() {
    if ((keep)); then
        echo "fresh-check: kept $dir"
    else
        # --one-file-system: never reach through anything a command left mounted in there.
        rm -rf --one-file-system "$dir"
    fi
}
trap cleanup EXIT
# Make an interrupt go through the EXIT trap too, so the directory is still removed.
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n $(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    echo "fresh-check: note: uncommitted changes in $src are not part of this check"
fi
git clone --no-local --quiet "$src" "$dir/heads"
clone=$dir/heads
# A file beside the checkout (a data directory or a config file one level up) that the project silently relies
# on would make a fresh clone fail; make sure there is nothing for it to find.
beside=$(find "$dir" -mindepth 1 -maxdepth 1 ! -name heads -printf '%f ')
if [[ -n $beside ]]; then
    echo "fresh-check: $dir holds more than the clone: $beside" >&2
    exit 1
fi
home=$dir/home
mkdir "$home"
echo "fresh-check: $(git -C "$clone" log -1 --format='%h %s') (from $src) in $clone"

# Debian's PATH for root, not the caller's, which may lead into the old HOME (~/.local/bin,
# version managers) or to tools a new machine does not have.
child_env=(
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    HOME="$home"
    LANG=C.UTF-8
    TERM="${TERM:-dumb}"
)
if [[ -n ${CI+set} ]]; then child_env+=(CI="$CI"); fi
while read -r name; do
    if [[ $name == PIP_* && $name != PIP_CACHE_DIR ]]; then child_env+=("$name=${!name}"); fi
done < <(compgen -e)
# pip reads these configuration files whatever HOME is; a cache-dir in one would give the
# first run a warm cache, so point pip at the place it uses by default under the empty HOME.
for f in /etc/pip.conf /etc/xdg/pip/pip.conf "${PIP_CONFIG_FILE:-}"; do
    if [[ -n $f && -r $f ]] && grep -Eiq '^[[:space:]]*cache[-_]dir[[:space:]]*=' "$f"; then
        echo "fresh-check: $f sets a pip cache-dir; using $home/.cache/pip instead"
        child_env+=(PIP_CACHE_DIR="$home/.cache/pip")
        break
    fi
done

# The command as a user would type it, for messages and the table.
show() {
    local out=() a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./=:,+-]+$ ]]; then out+=("$a"); else out+=("\"$a\""); fi
    done
    echo "${out[*]}"
}

declare -A secs status cmdline
keys=()
failed=()
# run KEY N CMD...: runs CMD in the clone with the child environment, streams its output with a
# "[KEY N]" prefix into the terminal and unprefixed into $dir/KEY-N.log, records time and status.
run() {
    local key=$1 n=$2 log="$dir/$1-$2.log" rc=0 start end
    shift 2
    [[ -n ${cmdline[$key]+set} ]] || keys+=("$key")
    cmdline[$key]=$(show "$@")
    echo "fresh-check: run $n of ${cmdline[$key]} (log: $log)"
    start=$(date +%s.%N)
    (cd "$clone" && exec env -i "${child_env[@]}" "$@") </dev/null 2>&1 \
        | tee "$log" | sed -u "s/^/[$key $n] /" || rc=${PIPESTATUS[0]}
    end=$(date +%s.%N)
    secs[$key,$n]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    status[$key,$n]=$rc
    if ((rc)); then
        failed+=("$key-$n")
        echo "fresh-check: run $n of ${cmdline[$key]} FAILED (exit $rc) after ${secs[$key,$n]} s"
    fi
}

# The first run must start from nothing at all.
if [[ -n $(ls -A "$home") ]]; then
    echo "fresh-check: $home is not empty" >&2
    exit 1
fi
if ((fast)); then
    runs=(1)
    run test 1 ./scripts/test.sh -m "not qemu and not rebuild" "${test_args[@]}"
else
    runs=(1 2)
    for n in "${runs[@]}"; do
        run test "$n" ./scripts/test.sh "${test_args[@]}"
        run demo "$n" ./scripts/demo.sh
    done
fi

# Repeat the end of each failed log here: the stream above may be long, and the logs go away
# with the directory unless --keep.
for f in "${failed[@]}"; do
    echo
    echo "==== last 40 lines of $dir/$f.log"
    tail -n 40 "$dir/$f.log"
done

echo
printf '%-40s %9s %9s  %s\n' command "run 1 s" "run 2 s" "exit status"
for key in "${keys[@]}"; do
    t2=- s=${status[$key,1]}
    if ((${#runs[@]} > 1)); then
        t2=${secs[$key,2]}
        s="$s ${status[$key,2]}"
    fi
    printf '%-40s %9s %9s  %s\n' "${cmdline[$key]}" "${secs[$key,1]}" "$t2" "$s"
done

if ((${#failed[@]})); then
    names=()
    for f in "${failed[@]}"; do names+=("${cmdline[${f%-*}]} (run ${f##*-})"); done
    echo "fresh-check: FAILED: $(printf '%s; ' "${names[@]}" | sed 's/; $//')"
    exit 1
fi
echo "fresh-check: all passed"
