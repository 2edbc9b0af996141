#!/usr/bin/env bash
# Benchmark of `imgsign run` on the Debian image of bench/sign.sh (see bench/README.md), as root,
# with the release build. In one run:
#   (a) `imgsign run IMAGE -- true` with a warm store (the image stored, the bundle's verification
#       remembered) against `runc run` of an equivalent bundle (imgsign's own spec over umoci's
#       rootfs) and of a plain one (`runc spec` set to run `true`, read-only root), rounds
#       interleaved (the order alternates), medians and p10; with the median of each phase of
#       imgsign's runs (`IMGSIGN_TIMING`: open, ensure, prepare, start, wait, cleanup);
#   (b) the cold store: `imgsign run -- true` into an empty store each round (its `--json`
#       `ensureMs`: verify, unpack with verify-on-write, syncfs; and the whole run minus the warm
#       run's median) against `umoci unpack` of the same layout into an empty directory, interleaved;
#   (c) a second image, the Debian layers plus one small layer: what the store wrote for it (its
#       `--json` content stats) against what it wrote for the first.
# Writes bench/results/run-latest.txt.
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
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (imgsign run and runc run launch containers)"
SUDO=
need=()
for pkg in mmdebstrap umoci runc jq gzip tar; do
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
# (c)'s second image: the Debian layers plus one small layer (64 files of 16 KB, deterministic).
if ! jq -e '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "plus")' \
    "$OCI/index.json" >/dev/null; then
    t=$(mktemp -d)
    mkdir -p "$t/opt/app"
    for i in $(seq 1 64); do
        head -c 16384 <(yes "imgsign bench file $i") >"$t/opt/app/f$i"
    done
    tar -C "$t" --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -cf "$t/layer.tar" opt
    add_layer "$OCI" "$TAG" plus "$t/layer.tar"
    rm -rf "$t"
fi

bench_imgsign

WORK=$(mktemp -d "$CACHE/run-bench.XXXXXX")   # on disk, like /var/lib/imgsign
# Container state (the upper layers): on disk too, where container root (an unprivileged host uid)
# can walk to it (not below /root).
STATE=$(mktemp -d /var/tmp/imgsign-bench-state.XXXXXX)
trap 'rm -rf "$WORK" "$STATE"' EXIT
chmod 0755 "$STATE"
export IMGSIGN_PASSPHRASE=imgsign-bench
"$IMGSIGN" keygen --out "$WORK/key" >/dev/null 2>&1
"$IMGSIGN" trust init "$WORK/trust" >/dev/null
"$IMGSIGN" trust add "$WORK/trust" "$WORK/key.pub" >/dev/null
for t in "$TAG" plus; do
    "$IMGSIGN" sign "oci:$OCI:$t" --key "$WORK/key.key" --out "$WORK/$t.json" --name "debian-$t" >/dev/null
done
irun() { # store tag args...
    local store=$1 tag=$2
    shift 2
    "$IMGSIGN" run "oci:$OCI:$tag" --bundle "$WORK/$tag.json" --trust "$WORK/trust" --store "$store" \
        --state-root "$STATE" --no-record "$@"
}

# The runc bundle: the same image unpacked by umoci, `runc spec` running `true`.
say "umoci unpack + runc spec"
umoci unpack --image "$OCI:$TAG" "$WORK/bundle" >/dev/null
mv "$WORK/bundle/config.json" "$WORK/bundle/umoci-config.json"
(cd "$WORK/bundle" && runc spec)
jq '.process.args = ["true"] | .process.terminal = false | .root.readonly = true' "$WORK/bundle/config.json" \
    >"$WORK/bundle/config.json.new"
mv "$WORK/bundle/config.json.new" "$WORK/bundle/config.json"

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b - a) / 1e6 }'; }
# median and p10 of the numbers in a file
stats() { sort -g "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
    p = v[int((NR - 1) * 0.1) + 1]; printf "%.2f %.2f\n", m, p }'; }

# --- (a) warm store against runc run -------------------------------------------------------------
WARM=$WORK/store-warm
irun "$WARM" "$TAG" -- true >/dev/null 2>&1 || die "imgsign run of the image failed"
runc run -b "$WORK/bundle" "bench-check" >/dev/null 2>&1 || die "runc run of the bundle failed"

# The equivalent bundle: the spec imgsign generates for this image (user namespace, capabilities,
# seccomp, masked paths, /dev, mounts, cgroup limits, hostname), copied from a running container,
# with the umoci rootfs (read-only) in place of imgsign's overlay. Under $STATE: container root
# (host uid 100000) must reach it.
say "the equivalent runc bundle: imgsign's own spec"
EQ=$STATE/equivalent
mkdir -p "$EQ"
irun "$WARM" "$TAG" --name spec-dump -- sleep 30 >/dev/null 2>&1 &
dump=$!
for _ in $(seq 1 200); do [ -s "$STATE/spec-dump/config.json" ] && break; sleep 0.05; done
jq '.root = {path: "rootfs", readonly: true} | .process.args = ["true"] | .process.terminal = false
    | .linux.cgroupsPath = "/imgsign-bench-runc"' "$STATE/spec-dump/config.json" >"$EQ/config.json" ||
    die "no spec from the running container"
"$IMGSIGN" kill spec-dump --state-root "$STATE" >/dev/null 2>&1 || true
wait "$dump" 2>/dev/null || true
cp -a "$WORK/bundle/rootfs" "$EQ/rootfs"
runc run -b "$EQ" "bench-eq-check" >/dev/null 2>&1 || die "runc run of the equivalent bundle failed"

say "(a) $ROUNDS interleaved rounds: imgsign run (warm) vs runc run (equivalent bundle, plain bundle)"
: >"$WORK/a-imgsign"; : >"$WORK/a-runc"; : >"$WORK/a-eq"; : >"$WORK/a-ensure"; : >"$WORK/a-phases"
for i in $(seq 1 "$ROUNDS"); do
    for which in $( ((i % 2)) && echo "imgsign eq runc" || echo "runc eq imgsign"); do
        if [ "$which" = imgsign ]; then
            t0=$(date +%s%N)
            out=$(IMGSIGN_TIMING=1 irun "$WARM" "$TAG" --json -- true 2>"$WORK/a-stderr")
            t1=$(date +%s%N)
            ms "$t0" "$t1" >>"$WORK/a-imgsign"
            [ "$(jq -r .ensure.unpacked <<<"$out")" = false ] || die "warm run unpacked"
            [ "$(jq -r .ensure.remembered <<<"$out")" = true ] || die "warm run verified the bundle again"
            sed -n 's/^imgsign: timing (ms): //p' "$WORK/a-stderr" >>"$WORK/a-phases"
            jq -r .ensure.ensureMs <<<"$out" >>"$WORK/a-ensure"
        elif [ "$which" = eq ]; then
            t0=$(date +%s%N); runc run -b "$EQ" "bench-eq-$i" >/dev/null 2>&1; t1=$(date +%s%N)
            ms "$t0" "$t1" >>"$WORK/a-eq"
        else
            t0=$(date +%s%N); runc run -b "$WORK/bundle" "bench-$i" >/dev/null 2>&1; t1=$(date +%s%N)
            ms "$t0" "$t1" >>"$WORK/a-runc"
        fi
    done
done
read -r A_I A_I10 < <(stats "$WORK/a-imgsign")
read -r A_R A_R10 < <(stats "$WORK/a-runc")
read -r A_Q A_Q10 < <(stats "$WORK/a-eq")
read -r A_E A_E10 < <(stats "$WORK/a-ensure")
# Lines "open 0.36, ensure 1.97, ..., total 49.93": the median of each phase.
A_PHASES=
for phase in $(head -1 "$WORK/a-phases" | awk -F', ' '{ for (i = 1; i <= NF; i++) { split($i, kv, " "); print kv[1] } }'); do
    awk -F', ' -v p="$phase" '{ for (i = 1; i <= NF; i++) { split($i, kv, " "); if (kv[1] == p) print kv[2] } }' \
        "$WORK/a-phases" >"$WORK/a-phase"
    read -r m _ < <(stats "$WORK/a-phase")
    A_PHASES="${A_PHASES:+$A_PHASES, }$phase $m ms"
done

# --- (b) cold store against umoci unpack ---------------------------------------------------------
say "(b) $COLD_ROUNDS interleaved rounds: imgsign run into an empty store vs umoci unpack"
: >"$WORK/b-run"; : >"$WORK/b-ensure"; : >"$WORK/b-umoci"
for i in $(seq 1 "$COLD_ROUNDS"); do
    for which in $( ((i % 2)) && echo "imgsign umoci" || echo "umoci imgsign"); do
        rm -rf "$WORK/cold" "$WORK/unpacked"; sync
        if [ "$which" = imgsign ]; then
            t0=$(date +%s%N); out=$(irun "$WORK/cold" "$TAG" --json -- true 2>/dev/null); t1=$(date +%s%N)
            [ "$(jq -r .ensure.unpacked <<<"$out")" = true ] || die "cold run did not unpack"
            ms "$t0" "$t1" >>"$WORK/b-run"
            jq -r .ensure.ensureMs <<<"$out" >>"$WORK/b-ensure"
        else
            t0=$(date +%s%N); umoci unpack --image "$OCI:$TAG" "$WORK/unpacked" >/dev/null 2>&1; t1=$(date +%s%N)
            ms "$t0" "$t1" >>"$WORK/b-umoci"
        fi
    done
done
rm -rf "$WORK/cold" "$WORK/unpacked"
read -r B_R B_R10 < <(stats "$WORK/b-run")
read -r B_E B_E10 < <(stats "$WORK/b-ensure")
read -r B_U B_U10 < <(stats "$WORK/b-umoci")
B_RW=$(awk -v c="$B_R" -v w="$A_I" 'BEGIN { printf "%.2f", c - w }')

# --- (c) a second image sharing the Debian layers ------------------------------------------------
say "(c) bytes written: the Debian image, then the image with one more small layer"
SHARED=$WORK/store-shared
first=$(irun "$SHARED" "$TAG" --json -- true 2>/dev/null | tail -1)
second=$(irun "$SHARED" plus --json -- true 2>/dev/null | tail -1)
c() { jq -r ".ensure.content.$2" <<<"$1"; }
PLUS_LAYER=$(jq -r '.layers[-1].size' "$(manifest_of "$OCI" plus)")
du_store=$(du -sb "$SHARED/objects" | cut -f1)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
    echo "# bench/run.sh $(date -u +%Y-%m-%dT%H:%MZ) $(cd "$ROOT" && git rev-parse --short HEAD) ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)); binary $IMGSIGN"
    echo "image: oci:$OCI:$TAG ($(jq '[.layers[].size] | add' "$(manifest_of "$OCI" "$TAG")") bytes in $(jq '.layers | length' "$(manifest_of "$OCI" "$TAG")") gzip layers)"
    echo "(a) $ROUNDS rounds interleaved, \`-- true\`: imgsign run, warm store: median $A_I ms (p10 $A_I10 ms), of which ensure (verify bundle + find the stored image) $A_E ms (p10 $A_E10 ms); runc run of the equivalent bundle (imgsign's spec: user namespace, seccomp, capabilities, masked paths, limits; umoci's rootfs): median $A_Q ms (p10 $A_Q10 ms); imgsign/runc-equivalent = $(ratio "$A_I" "$A_Q")x (p10 $(ratio "$A_I10" "$A_Q10")x); runc run of the plain \`runc spec\` bundle (no user namespace, no seccomp): median $A_R ms (p10 $A_R10 ms); imgsign/runc-plain = $(ratio "$A_I" "$A_R")x (p10 $(ratio "$A_I10" "$A_R10")x); imgsign's phases (IMGSIGN_TIMING, medians): $A_PHASES"
    echo "(b) $COLD_ROUNDS rounds interleaved, empty store / empty directory each: imgsign run cold: median $B_R ms (p10 $B_R10 ms), its ensure (verify, unpack with verify-on-write, syncfs) $B_E ms (p10 $B_E10 ms), cold minus warm run $B_RW ms; umoci unpack: median $B_U ms (p10 $B_U10 ms); imgsign ensure/umoci = $(ratio "$B_E" "$B_U")x (p10 $(ratio "$B_E10" "$B_U10")x); (cold run - warm run)/umoci = $(ratio "$B_RW" "$B_U")x"
    echo "(c) one store: first image wrote $(c "$first" objectsWritten) objects, $(c "$first" bytesWritten) bytes (reused $(c "$first" bytesReused)); second image (+1 layer of $PLUS_LAYER gzip bytes, 64 files of 16 KB) wrote $(c "$second" objectsWritten) objects, $(c "$second" bytesWritten) bytes, reused $(c "$second" objectsReused) objects / $(c "$second" bytesReused) bytes; store objects total $du_store bytes"
} | tee "$RESULTS/run-latest.txt"
