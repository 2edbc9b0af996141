#!/usr/bin/env bash
# Benchmarks of the kernel enforcer, in the kernel lab (see bench/README.md):
#   exec latency   fork+exec of a listed binary: bare, programs loaded, enforced cold and warm,
#                  and IMA measure/appraise (the peer)           vm_enforcer_bench_exec_latency
#   file I/O       open/write/close loop and untar of the Debian benchmark image's root file
#                  system: bare, programs loaded, in a scope     vm_enforcer_bench_file_io
#   overlay exec   warm exec through overlayfs (lower on ext4) against bare
#                                                                vm_enforcer_bench_overlay_exec
# each on Debian's 6.1 and 6.12 kernels, one boot at a time, with `-icount shift=0,sleep=off`
# (guest time counts instructions, so the host's load does not move the ratios). Every figure is
# a ratio to the bare configuration measured in the same boot. Prints the BENCH lines and writes
# them to bench/results/enforce-latest.txt.
#
# Environment: IMGSIGN_BENCH_CACHE, IMGSIGN_BENCH_MIRROR as for bench/sign.sh (the root file
# system tar is shared with it); IMGSIGN_BENCH_FILTER (default _bench_) picks the benchmarks; extra arguments go to `cargo xtask lab` (e.g. --kernel 6.12).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${IMGSIGN_BENCH_CACHE:-$HOME/.cache/imgsign-bench}
MIRROR=${IMGSIGN_BENCH_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
RESULTS=$ROOT/bench/results
export LC_ALL=C

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/enforce.sh: %s\n' "$*" >&2; exit 1; }

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
dpkg -s mmdebstrap >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
}
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
mkdir -p "$CACHE" "$RESULTS"
ROOTFS=$(build_rootfs "")
read -r FILES BYTES < <(tar_stats "$ROOTFS")
say "data disk: $ROOTFS ($FILES files, $((BYTES >> 20)) MB)"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--kernel all)
# --verbose streams the console (where the BENCH lines are) into the log.
IMGSIGN_LAB_PROFILE=release IMGSIGN_LAB_DATA_DISK=$ROOTFS IMGSIGN_LAB_QEMU_ARGS="-icount shift=0,sleep=off" \
    bash "$ROOT/scripts/lab.sh" "${args[@]}" --sequential --verbose --filter "${IMGSIGN_BENCH_FILTER:-_bench_}" \
    --timeout 3000 2>&1 | tee "$log"
{
    echo "# bench/enforce.sh $(date -u +%FT%TZ) $(git -C "$ROOT" rev-parse --short HEAD)"
    grep -E "^lab [0-9.]+ \(|BENCH" "$log" | sed 's/^ *//'
} >"$RESULTS/enforce-latest.txt"
say "results: $RESULTS/enforce-latest.txt"
