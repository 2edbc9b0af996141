#!/usr/bin/env bash
# Peak memory of `imgsign sign` and `imgsign verify` on an image of many small files (issue 8's
# goal: under 64 MB for 200,000 files). See bench/README.md.
#
# Builds the release imgsign, makes (once, reused) a `dir:` image of 200 directories of 1,000
# one-line files, a test key and a trust store, then runs `imgsign sign dir:...` and
# `imgsign verify dir:... --bundle ...` under `/usr/bin/time -v` and prints, for each, the peak RSS,
# the wall time and (for sign) the bundle size, and whether the goal is met. A failed sign or verify
# exits non-zero; a missed goal does not (this is a benchmark, not a test).
#
# Usage: bench/many-files.sh [--files N]     N files in all, 1,000 per directory (default 200000)
#
# Environment:
#   IMGSIGN_BENCH_BIN    measure this imgsign binary instead of building the workspace's
#   IMGSIGN_BENCH_TREES  where the synthetic trees are kept (default ${TMPDIR:-/tmp}/imgsign-many-files)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILES=200000
PER_DIR=1000
GOAL_MB=64
export LC_ALL=C

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/many-files.sh: %s\n' "$*" >&2; exit 1; }
usage() { grep '^# Usage:' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        --files) [ $# -ge 2 ] || usage; FILES=$2; shift 2 ;;
        --files=*) FILES=${1#--files=}; shift ;;
        -h | --help) usage ;;
        *) printf 'bench/many-files.sh: unknown argument %s\n' "$1" >&2; usage ;;
    esac
done
[[ $FILES =~ ^[1-9][0-9]*$ ]] || die "--files wants a positive number, got '$FILES'"

# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
ensure_packages time jq
ensure_rust

# --- imgsign -----------------------------------------------------------------------------------
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
bench_imgsign

# --- the image ---------------------------------------------------------------------------------
TREES=${IMGSIGN_BENCH_TREES:-${TMPDIR:-/tmp}/imgsign-many-files}
DIRS=$(((FILES + PER_DIR - 1) / PER_DIR))
IMAGE=$TREES/files-$FILES
# The marker is written last: a tree without it was interrupted and is made again.
if [ -f "$IMAGE/.complete" ]; then
    say "reusing $IMAGE ($FILES files in $DIRS directories)"
else
    say "making $IMAGE: $FILES one-line files in $DIRS directories (once)"
    rm -rf "$IMAGE"
    mkdir -p "$IMAGE/root"
    for ((d = 0; d < DIRS; d++)); do
        dir=$IMAGE/root/d$d
        mkdir "$dir"
        n=$((FILES - d * PER_DIR))
        [ "$n" -le "$PER_DIR" ] || n=$PER_DIR
        for ((f = 0; f < n; f++)); do
            printf 'file %d of directory %d\n' "$f" "$d" >"$dir/f$f"
        done
    done
    touch "$IMAGE/.complete"
fi
made=$(find "$IMAGE/root" -type f | wc -l)
[ "$made" -eq "$FILES" ] || die "$IMAGE/root holds $made files, not $FILES: remove $IMAGE and run again"

# --- key and trust store (fresh each run) ------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgsign-many-files-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export IMGSIGN_PASSPHRASE=imgsign-bench
"$IMGSIGN" keygen --out "$WORK/key" >/dev/null 2>&1 || die "imgsign keygen failed"
"$IMGSIGN" trust init "$WORK/trust" >/dev/null || die "imgsign trust init failed"
"$IMGSIGN" trust add "$WORK/trust" "$WORK/key.pub" >/dev/null || die "imgsign trust add failed"
BUNDLE=$WORK/bundle.sigstore.json

# measure NAME COMMAND...: runs the command under /usr/bin/time -v (its output to $WORK/NAME.out),
# sets RSS_MB and WALL_S, and dies naming the command if it fails.
measure() {
    local name=$1 status=0
    shift
    say "$name: $*"
    /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$WORK/$name.out" >&2
        die "$name failed (exit $status): $*"
    fi
    RSS_MB=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/$name.time")
    # "h:mm:ss" or "m:ss.ss"
    WALL_S=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' \
        "$WORK/$name.time")
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
measure sign "$IMGSIGN" sign "dir:$IMAGE/root" --key "$WORK/key.key" --out "$BUNDLE" --name many-files
SIGN_RSS=$RSS_MB SIGN_WALL=$WALL_S
BUNDLE_MB=$(stat -c %s "$BUNDLE" | awk '{ printf "%.1f", $1 / 1e6 }')
measure verify "$IMGSIGN" verify "dir:$IMAGE/root" --bundle "$BUNDLE" --trust "$WORK/trust"
VERIFY_RSS=$RSS_MB VERIFY_WALL=$WALL_S
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summary -----------------------------------------------------------------------------------
met() { awk -v mb="$1" -v goal="$GOAL_MB" 'BEGIN { print (mb < goal) ? "met" : "MISSED" }'; }
dirty=
(cd "$ROOT" && git diff --quiet HEAD -- cli verifier-core keys Cargo.toml Cargo.lock 2>/dev/null) || dirty=-dirty
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty
cat <<EOF

imgsign many-files benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit $COMMIT
image: dir:$IMAGE/root, $FILES one-line files in $DIRS directories
binary: $IMGSIGN
machine: $(nproc) CPUs, load average $LOAD_BEFORE -> $LOAD_AFTER

          peak RSS MB   wall s   goal < $GOAL_MB MB
sign      $(printf '%-13s %-8s %s' "$SIGN_RSS" "$SIGN_WALL" "$(met "$SIGN_RSS")")
verify    $(printf '%-13s %-8s %s' "$VERIFY_RSS" "$VERIFY_WALL" "$(met "$VERIFY_RSS")")
bundle    $BUNDLE_MB MB

EOF
