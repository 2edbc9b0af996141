#!/usr/bin/env bash
# Benchmark of `imgsign runtime` under podman, on the Debian image of bench/sign.sh (see
# bench/README.md), as root, with the release build. In one run:
#   (a) warm: `podman run --rm IMAGE true` with `--runtime` imgsign against the same with runc,
#       rounds interleaved (the order alternates), medians and p10, and the ratio (goal <= 1.10x);
#       imgsign's gate lists the root from podman's overlay layers (checked against the mount)
#       and finds the listing it admitted last time in its verdict cache (else every file in
#       its hash cache: inode, size, mtime, ctime); with no hook before start in podman's spec,
#       the gate decides beside libcontainer's create;
#   (c) the same as (a) with a one-file image (static busybox as /bin/true, /bin/sh): the
#       runtime's own cost beside runc's, with almost nothing for the gate to walk;
#   (b) the first start of an image: the same with imgsign's hash cache emptied before each
#       round (every file of the image hashed), interleaved with warm imgsign rounds; reports the
#       files hashed/cached from the runtime's debug log and the extra time.
# Both runtimes are given as the same kind of two-line wrapper script (imgsign's names its policy).
# This machine has no BPF-LSM, so the policy says when_no_enforcer = "run-unenforced": no scope
# is registered (the daemon's share is not measured here).
# Writes bench/results/runtime-latest.txt.
#
# Environment: IMGSIGN_BENCH_CACHE (default ~/.cache/imgsign-bench), IMGSIGN_BENCH_BIN (a binary
# to measure instead of building), IMGSIGN_BENCH_ROUNDS (warm rounds, default 20),
# IMGSIGN_BENCH_COLD_ROUNDS (default 5), IMGSIGN_BENCH_MIRROR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${IMGSIGN_BENCH_CACHE:-$HOME/.cache/imgsign-bench}
MIRROR=${IMGSIGN_BENCH_MIRROR:-http://deb.debian.org/debian}
ROUNDS=${IMGSIGN_BENCH_ROUNDS:-20}
COLD_ROUNDS=${IMGSIGN_BENCH_COLD_ROUNDS:-5}
SUITE=bookworm
TAG=bench
RESULTS=$ROOT/bench/results
export LC_ALL=C

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/runtime.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (podman with a root storage, runc)"
SUDO=
need=()
for pkg in mmdebstrap umoci podman runc jq gzip tar; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$CACHE" "$RESULTS"
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
ROOTFS=$(build_rootfs "")
OCI=$CACHE/oci-$SUITE-minbase
pack_debian_oci "$ROOTFS" "$OCI" "$TAG"
bench_imgsign

WORK=$(mktemp -d "$CACHE/runtime-bench.XXXXXX")
RUNROOT=$(mktemp -d /tmp/imgsign-bench-run.XXXXXX) # podman wants it short
P=(podman --root "$WORK/storage" --runroot "$RUNROOT" --tmpdir "$WORK/tmp" --storage-driver overlay
    --cgroup-manager cgroupfs --events-backend none)
# podman derives the image's name from the layout's path, which must parse as a reference
# (no dot-directories such as ~/.cache): pulled through a symlink.
LINKS=/tmp/imgsign-bench-image-$$ # lowercase, as a reference
mkdir -p "$LINKS"
ln -s "$OCI" "$LINKS/debian"
ln -s "$WORK/tiny" "$LINKS/tiny"
cleanup() {
    "${P[@]}" system reset --force >/dev/null 2>&1 || true
    rm -rf "$WORK" "$RUNROOT" "$LINKS"
}
trap cleanup EXIT

export IMGSIGN_PASSPHRASE=imgsign-bench
"$IMGSIGN" keygen --out "$WORK/key" >/dev/null 2>&1
"$IMGSIGN" trust init "$WORK/trust" >/dev/null
"$IMGSIGN" trust add "$WORK/trust" "$WORK/key.pub" >/dev/null
say "signing oci:$OCI:$TAG"
"$IMGSIGN" sign "oci:$OCI:$TAG" --key "$WORK/key.key" --out "$WORK/bundle.json" --name "debian-$TAG" >/dev/null
# (c)'s image: busybox-static alone.
TINY=$WORK/tiny
umoci init --layout "$TINY"
umoci new --image "$TINY:tiny"
umoci unpack --image "$TINY:tiny" "$WORK/tiny-bundle" >/dev/null
mkdir -p "$WORK/tiny-bundle/rootfs/bin" "$WORK/tiny-bundle/rootfs/etc"
cp /bin/busybox "$WORK/tiny-bundle/rootfs/bin/busybox"
ln -s busybox "$WORK/tiny-bundle/rootfs/bin/sh"
ln -s busybox "$WORK/tiny-bundle/rootfs/bin/true"
umoci repack --image "$TINY:tiny" "$WORK/tiny-bundle"
"$IMGSIGN" sign "oci:$TINY:tiny" --key "$WORK/key.key" --out "$WORK/tiny.json" --name tiny >/dev/null
cat >"$WORK/runtime.toml" <<TOML
trust = "$WORK/trust"
bundles = ["$WORK/bundle.json", "$WORK/tiny.json"]
cache = "$WORK/hash-cache"
when_no_enforcer = "run-unenforced"
TOML
# podman passes no --log to the runtime: the wrapper's own log gets the debug line with the
# admission's hashed/cached counts.
cat >"$WORK/imgsign-runtime" <<SH
#!/bin/sh
IMGSIGN_RUNTIME_CONFIG='$WORK/runtime.toml' exec '$IMGSIGN' runtime --debug --log '$WORK/runtime.log' "\$@"
SH
cat >"$WORK/runc" <<SH
#!/bin/sh
exec runc "\$@"
SH
chmod 0755 "$WORK/imgsign-runtime" "$WORK/runc"

say "podman pull oci:$OCI:$TAG"
IMAGE=$("${P[@]}" pull --quiet "oci:$LINKS/debian:$TAG")
TINY_IMAGE=$("${P[@]}" pull --quiet "oci:$LINKS/tiny:tiny")
prun() { # runtime-wrapper [image]
    "${P[@]}" --runtime "$1" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        "${2:-$IMAGE}" true
}
prun "$WORK/runc" || die "podman run with runc failed"
prun "$WORK/imgsign-runtime" || die "podman run with imgsign runtime failed: $(tail -3 "$WORK/runtime.log")"

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b - a) / 1e6 }'; }
stats() { sort -g "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
    p = v[int((NR - 1) * 0.1) + 1]; printf "%.2f %.2f\n", m, p }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
timed() { # file runtime-wrapper [image]
    local t0 t1
    t0=$(date +%s%N); prun "$2" "${3:-}" >/dev/null || die "podman run with $2 failed"; t1=$(date +%s%N)
    ms "$t0" "$t1" >>"$1"
}
# "<files hashed, or the verdict cache>; listed <how>; gate G ms, libcontainer create C ms" of the
# last create.
counts() { grep -o '), [^"]*libcontainer create [0-9]* ms' "$WORK/runtime.log" | tail -1 | cut -c4-; }
# median gate ms of the creates logged so far
gate_median() { grep -o 'gate [0-9]* ms' "$WORK/runtime.log" | awk '{ print $2 }' >"$WORK/gates"; stats "$WORK/gates"; }

say "(a) $ROUNDS interleaved rounds: podman run --rm IMAGE true, imgsign runtime (warm) vs runc"
: >"$WORK/a-imgsign"; : >"$WORK/a-runc"; : >"$WORK/runtime.log"
for i in $(seq 1 "$ROUNDS"); do
    for which in $( ((i % 2)) && echo "imgsign runc" || echo "runc imgsign"); do
        if [ "$which" = imgsign ]; then timed "$WORK/a-imgsign" "$WORK/imgsign-runtime"; else timed "$WORK/a-runc" "$WORK/runc"; fi
    done
done
WARM_COUNTS=$(counts)
read -r A_G _ < <(gate_median)
read -r A_I A_I10 < <(stats "$WORK/a-imgsign")
read -r A_R A_R10 < <(stats "$WORK/a-runc")

say "(c) $ROUNDS interleaved rounds: the one-file image, imgsign runtime vs runc"
prun "$WORK/imgsign-runtime" "$TINY_IMAGE" >/dev/null || die "the tiny image failed: $(tail -3 "$WORK/runtime.log")"
: >"$WORK/c-imgsign"; : >"$WORK/c-runc"; : >"$WORK/runtime.log"
for i in $(seq 1 "$ROUNDS"); do
    for which in $( ((i % 2)) && echo "imgsign runc" || echo "runc imgsign"); do
        if [ "$which" = imgsign ]; then timed "$WORK/c-imgsign" "$WORK/imgsign-runtime" "$TINY_IMAGE"
        else timed "$WORK/c-runc" "$WORK/runc" "$TINY_IMAGE"; fi
    done
done
read -r C_G _ < <(gate_median)
read -r C_I C_I10 < <(stats "$WORK/c-imgsign")
read -r C_R C_R10 < <(stats "$WORK/c-runc")

say "(b) $COLD_ROUNDS interleaved rounds: imgsign runtime with its hash cache emptied vs warm"
: >"$WORK/b-cold"; : >"$WORK/b-warm"
for i in $(seq 1 "$COLD_ROUNDS"); do
    for which in $( ((i % 2)) && echo "cold warm" || echo "warm cold"); do
        if [ "$which" = cold ]; then
            rm -rf "$WORK/hash-cache"; sync
            timed "$WORK/b-cold" "$WORK/imgsign-runtime"
            COLD_COUNTS=$(counts)
        else
            timed "$WORK/b-warm" "$WORK/imgsign-runtime"
        fi
    done
done
read -r B_C B_C10 < <(stats "$WORK/b-cold")
read -r B_W B_W10 < <(stats "$WORK/b-warm")
B_X=$(awk -v c="$B_C" -v w="$B_W" 'BEGIN { printf "%.2f", c - w }')

{
    echo "# bench/runtime.sh $(date -u +%Y-%m-%dT%H:%MZ) $(cd "$ROOT" && git rev-parse --short HEAD) ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)); binary $IMGSIGN; $(podman --version), $(runc --version | head -1)"
    echo "image: oci:$OCI:$TAG ($(jq '[.layers[].size] | add' "$(manifest_of "$OCI" "$TAG")") bytes in $(jq '.layers | length' "$(manifest_of "$OCI" "$TAG")") gzip layers)"
    echo "(a) $ROUNDS rounds interleaved, podman run --rm IMAGE true: --runtime imgsign (warm: $WARM_COUNTS) median $A_I ms (p10 $A_I10 ms), of which waiting for the gate (spec, policy, verdict or statement cache, rootfs listing, match; beyond what ran beside libcontainer's create) median $A_G ms; --runtime runc median $A_R ms (p10 $A_R10 ms); imgsign/runc = $(ratio "$A_I" "$A_R")x (p10 $(ratio "$A_I10" "$A_R10")x)"
    echo "(c) $ROUNDS rounds interleaved, the one-file image: --runtime imgsign median $C_I ms (p10 $C_I10 ms), gate median $C_G ms; --runtime runc median $C_R ms (p10 $C_R10 ms); imgsign/runc = $(ratio "$C_I" "$C_R")x (p10 $(ratio "$C_I10" "$C_R10")x)"
    echo "(b) $COLD_ROUNDS rounds interleaved: first start of the image (hash and verdict caches emptied: ${COLD_COUNTS:-?}) median $B_C ms (p10 $B_C10 ms); warm median $B_W ms (p10 $B_W10 ms); first-start verification cost $B_X ms ($(ratio "$B_C" "$B_W")x the warm start)"
} | tee "$RESULTS/runtime-latest.txt"
