#!/usr/bin/env bash
# Benchmark of `imgsign sign` on a real distribution image (see bench/README.md).
#
# Builds (once, cached) a Debian bookworm minbase rootfs with mmdebstrap, packs it with umoci into an
# OCI layout of two gzip layers, builds imgsign in release mode, then times in the same run, with
# hyperfine (warm page cache for every command):
#   imgsign  `imgsign sign oci:DIR:TAG --key K --out B`
#   peer     `tar -xzf` of every layer into a fresh directory, then `find | xargs sha256sum`, twice:
#            on tmpfs (the peer's best case, used for the headline ratio) and on disk
#   bound    `gzip -dc` of the layers piped into `sha256sum`
# and the peak RSS of `imgsign sign` (`/usr/bin/time -v`). Prints a summary table and writes it as
# JSON to bench/results/sign-latest.json.
#
# Environment:
#   IMGSIGN_BENCH_CACHE    cache directory (default ~/.cache/imgsign-bench)
#   IMGSIGN_BENCH_RUNS     hyperfine runs per command (default 5; one warmup run always)
#   IMGSIGN_BENCH_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   IMGSIGN_BENCH_INCLUDE  extra packages, comma separated (default none; added automatically if the
#                          minbase image is below 150 MB or 5,000 files)
#   IMGSIGN_BENCH_BIN      time this imgsign binary instead of building the workspace's
#   IMGSIGN_BENCH_WORK     scratch directory (default: a fresh mktemp -d, removed at exit)
#   IMGSIGN_BENCH_PEER_TMPFS  tmpfs directory for the peer's unpack (default /dev/shm; "" skips it)
#   IMGSIGN_BENCH_PEER_DISK   disk directory for the peer's unpack (default the cache directory)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${IMGSIGN_BENCH_CACHE:-$HOME/.cache/imgsign-bench}
RUNS=${IMGSIGN_BENCH_RUNS:-5}
MIRROR=${IMGSIGN_BENCH_MIRROR:-http://deb.debian.org/debian}
INCLUDE=${IMGSIGN_BENCH_INCLUDE:-}
SUITE=bookworm
TAG=bench
MIN_BYTES=150000000
MIN_FILES=5000
FALLBACK_INCLUDE=perl,python3
RESULTS=$ROOT/bench/results
export LC_ALL=C

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/sign.sh: %s\n' "$*" >&2; exit 1; }

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "needs root (mmdebstrap --mode=root, apt-get): run as root or install sudo"
    SUDO=sudo
fi

# --- tools -------------------------------------------------------------------------------------
need=()
for pkg in mmdebstrap umoci hyperfine time jq gzip tar coreutils findutils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo not found"

# --- the image ---------------------------------------------------------------------------------
mkdir -p "$CACHE"

# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"

ROOTFS=$(build_rootfs "$INCLUDE")
read -r FILES BYTES < <(tar_stats "$ROOTFS")
if [ -z "$INCLUDE" ] && { [ "$BYTES" -lt $MIN_BYTES ] || [ "$FILES" -lt $MIN_FILES ]; }; then
    say "minbase is only $FILES files / $BYTES bytes; adding --include=$FALLBACK_INCLUDE"
    INCLUDE=$FALLBACK_INCLUDE
    ROOTFS=$(build_rootfs "$INCLUDE")
    read -r FILES BYTES < <(tar_stats "$ROOTFS")
fi
[ "$BYTES" -ge $MIN_BYTES ] && [ "$FILES" -ge $MIN_FILES ] \
    || die "image too small: $FILES files, $BYTES bytes (want >= $MIN_FILES files, >= $MIN_BYTES bytes)"

# Two layers, as a real image has: everything but /usr/share, then /usr/share.
OCI=$(basename "$ROOTFS" .tar)
OCI=$CACHE/oci-${OCI#rootfs-}
if [ ! -f "$OCI/index.json" ]; then
    say "packing $ROOTFS into $OCI with umoci (2 gzip layers)"
    staging=$(mktemp -d "$CACHE/staging.XXXXXX")
    $SUDO umoci init --layout "$staging/oci"
    $SUDO umoci new --image "$staging/oci:$TAG"
    $SUDO umoci unpack --image "$staging/oci:$TAG" "$staging/bundle" >/dev/null
    $SUDO tar -xf "$ROOTFS" -C "$staging/bundle/rootfs" --numeric-owner --exclude=./usr/share
    $SUDO umoci repack --refresh-bundle --image "$staging/oci:$TAG" "$staging/bundle"
    $SUDO tar -xf "$ROOTFS" -C "$staging/bundle/rootfs" --numeric-owner ./usr/share
    $SUDO umoci repack --image "$staging/oci:$TAG" "$staging/bundle"
    $SUDO umoci gc --layout "$staging/oci"
    rm -rf "$OCI"
    $SUDO mv "$staging/oci" "$OCI"
    $SUDO rm -rf "$staging"
fi

# Layer blobs, in order, from the tag's manifest.
blob() { echo "$OCI/blobs/${1/://}"; }
MANIFEST=$(blob "$(jq -r --arg t "$TAG" \
    '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$OCI/index.json")")
mapfile -t LAYERS < <(jq -r '.layers[].digest' "$MANIFEST" | while read -r d; do blob "$d"; done)
[ ${#LAYERS[@]} -ge 1 ] || die "no layers in $MANIFEST"
COMPRESSED=$(cat "${LAYERS[@]}" | wc -c)
TAR_BYTES=$(gzip -dc "${LAYERS[@]}" | wc -c)

# --- imgsign -----------------------------------------------------------------------------------
bench_imgsign

# --- scratch -----------------------------------------------------------------------------------
if [ -n "${IMGSIGN_BENCH_WORK:-}" ]; then
    WORK=$IMGSIGN_BENCH_WORK
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgsign-bench.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
export IMGSIGN_PASSPHRASE=imgsign-bench
rm -f "$WORK/key.key" "$WORK/key.pub"
"$IMGSIGN" keygen --out "$WORK/key" >/dev/null 2>&1

# The peer unpacks where a runtime would (disk) and, as its best case, into tmpfs. Creating files
# costs far more on some disks than on others, so the headline ratio uses tmpfs when there is one.
PEER_TMPFS_BASE=${IMGSIGN_BENCH_PEER_TMPFS-/dev/shm}
PEER_DISK_BASE=${IMGSIGN_BENCH_PEER_DISK:-$CACHE}
need_kb=$(( (BYTES / 1024) * 2 ))
if [ -n "$PEER_TMPFS_BASE" ] && [ -d "$PEER_TMPFS_BASE" ] \
    && [ "$(df -Pk "$PEER_TMPFS_BASE" | awk 'NR == 2 { print $4 }')" -gt "$need_kb" ]; then
    PEER_TMPFS=$(mktemp -d "$PEER_TMPFS_BASE/imgsign-bench-peer.XXXXXX")
else
    say "no tmpfs with room for the peer's unpack at ${PEER_TMPFS_BASE:-(none)}: timing it on disk only"
    PEER_TMPFS=
fi
PEER_DISK=$(mktemp -d "$PEER_DISK_BASE/peer.XXXXXX")
trap 'rm -rf "${PEER_TMPFS:-/nonexistent}" "$PEER_DISK"; [ -n "${IMGSIGN_BENCH_WORK:-}" ] || rm -rf "$WORK"' EXIT

q() { printf '%q ' "$@"; }
SIGN_CMD="$(q "$IMGSIGN" sign "oci:$OCI:$TAG" --key "$WORK/key.key" --out "$WORK/bundle.json") >/dev/null"
peer_cmd() { # dir
    local cmd=""
    for layer in "${LAYERS[@]}"; do cmd+="tar -xzf $(q "$layer")-C $(q "$1/root")&& "; done
    echo "${cmd}cd $(q "$1/root")&& find . -type f -print0 | xargs -0 sha256sum >/dev/null"
}
# The unpack is removed before each run, outside the timing; sync so that writeback of the previous
# run is not charged to the next one.
peer_prepare() { echo "rm -rf $(q "$1/root")&& mkdir $(q "$1/root")&& sync"; }
BOUND_CMD="gzip -dc $(q "${LAYERS[@]}")| sha256sum >/dev/null"

# One checked run of each before timing, so a failure is an error and not a timing.
say "checking each command once"
eval "$SIGN_CMD" || die "imgsign sign failed: $SIGN_CMD"
for dir in $PEER_TMPFS $PEER_DISK; do
    { eval "$(peer_prepare "$dir")" && eval "$(peer_cmd "$dir")"; } || die "peer pipeline failed in $dir"
    rm -rf "$dir/root"
done
eval "$BOUND_CMD" || die "bound pipeline failed"
SIGNED_FILES=$(jq -r '.dsseEnvelope.payload' "$WORK/bundle.json" | base64 -d \
    | jq '[.predicate.files[] | select(.type == "file" or .type == "hardlink")] | length' 2>/dev/null || echo "?")

# --- timing ------------------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "hyperfine: $RUNS runs each, 1 warmup, warm page cache (load average $LOAD_BEFORE)"
peers=()
[ -z "$PEER_TMPFS" ] || peers+=(-n peer-tmpfs --prepare "$(peer_prepare "$PEER_TMPFS")" "$(peer_cmd "$PEER_TMPFS")")
peers+=(-n peer-disk --prepare "$(peer_prepare "$PEER_DISK")" "$(peer_cmd "$PEER_DISK")")
# hyperfine needs a --prepare for every command once one has one.
hyperfine --warmup 1 --runs "$RUNS" --style basic \
    --export-json "$WORK/hyperfine.json" \
    -n imgsign --prepare true "$SIGN_CMD" \
    -n bound --prepare true "$BOUND_CMD" \
    "${peers[@]}" >&2
rm -rf "${PEER_TMPFS:-/nonexistent}/root" "$PEER_DISK/root"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

say "peak memory: /usr/bin/time -v imgsign sign (3 runs, the highest counts)"
RSS_KB=0
for _ in 1 2 3; do
    /usr/bin/time -v -o "$WORK/time.txt" \
        "$IMGSIGN" sign "oci:$OCI:$TAG" --key "$WORK/key.key" --out "$WORK/bundle.json" >/dev/null
    kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt")
    [ "$kb" -gt "$RSS_KB" ] && RSS_KB=$kb
done

# --- summary -----------------------------------------------------------------------------------
mkdir -p "$RESULTS"
dirty=
(cd "$ROOT" && git diff --quiet HEAD -- cli verifier-core keys Cargo.toml Cargo.lock 2>/dev/null) || dirty=-dirty
jq -n \
    --slurpfile hf "$WORK/hyperfine.json" \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg commit "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty" \
    --arg binary "$IMGSIGN" \
    --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
    --argjson cpus "$(nproc)" \
    --arg load_before "$LOAD_BEFORE" --arg load_after "$LOAD_AFTER" \
    --arg rootfs "$(basename "$ROOTFS")" \
    --arg extra "$INCLUDE" \
    --arg oci "$OCI" \
    --argjson layers "${#LAYERS[@]}" \
    --argjson files "$FILES" \
    --argjson bytes "$BYTES" \
    --argjson tar_bytes "$TAR_BYTES" \
    --argjson compressed "$COMPRESSED" \
    --arg signed_files "$SIGNED_FILES" \
    --argjson rss_kb "$RSS_KB" \
    --argjson runs "$RUNS" '
    def r(n): (. * pow(10; n) | round) / pow(10; n);
    ($hf[0].results | map({key: .command, value: .}) | from_entries) as $res
    | ($res["peer-tmpfs"] // $res["peer-disk"]) as $peer
    | def t(name): $res[name] | if . == null then null else
        {command, median, mean, stddev, min, max, user, system, times,
         cpu_s: (.user + .system), mb_per_s: (($bytes / 1e6) / .median | r(1))} end;
    {
      date: $date, commit: $commit, binary: $binary, cpu: $cpu, cpus: $cpus, runs: $runs, warmup: 1,
      load_average: {before: $load_before, after: $load_after},
      image: {rootfs: $rootfs, debian: "bookworm minbase", extra_packages: $extra, oci: $oci,
              layers: $layers, regular_files: $files, unpacked_bytes: $bytes,
              tar_bytes: $tar_bytes, compressed_bytes: $compressed,
              signed_file_entries: ($signed_files | tonumber? // $signed_files)},
      imgsign: t("imgsign"), bound: t("bound"),
      peer_tmpfs: t("peer-tmpfs"), peer_disk: t("peer-disk"),
      peak_rss_mb: ($rss_kb / 1024 | r(1)),
      ratios: {
        peer_over_imgsign: ($peer.median / $res.imgsign.median | r(2)),
        peer_disk_over_imgsign: ($res["peer-disk"].median / $res.imgsign.median | r(2)),
        imgsign_over_bound: ($res.imgsign.median / $res.bound.median | r(2)),
        cpu_time_peer_over_imgsign: (($peer.user + $peer.system) / ($res.imgsign.user + $res.imgsign.system) | r(2)),
        cpu_time_imgsign_over_bound: (($res.imgsign.user + $res.imgsign.system) / ($res.bound.user + $res.bound.system) | r(2))
      },
      goals: {
        peer_over_imgsign_at_least_3: ($peer.median / $res.imgsign.median >= 3),
        imgsign_over_bound_at_most_1: ($res.imgsign.median / $res.bound.median <= 1),
        peak_rss_under_64_mb: ($rss_kb / 1024 < 64)
      }
    }' >"$RESULTS/sign-latest.json"

jq -r '
    def f(n): tostring | if length < n then . + (" " * (n - length)) else . end;
    def s3: . * 1000 | round / 1000;
    def yn: if . then "met" else "MISSED" end;
    "",
    "imgsign sign benchmark  \(.date)  commit \(.commit)",
    "machine: \(.cpu) x\(.cpus), load average \(.load_average.before) -> \(.load_average.after)",
    "image: debian \(.image.debian)\(if .image.extra_packages != "" then " +" + .image.extra_packages else "" end), " +
      "\(.image.layers) gzip layers, \(.image.regular_files) regular files, " +
      "\(.image.unpacked_bytes / 1e6 | floor) MB unpacked (tar \(.image.tar_bytes / 1e6 | floor) MB, " +
      "gzip \(.image.compressed_bytes / 1e6 | floor) MB)",
    "",
    "\("" | f(12))\("median s" | f(10))\("stddev s" | f(10))\("min s" | f(8))\("MB/s" | f(8))\("cpu s (user+sys)" | f(8))",
    (["imgsign", "bound", "peer_tmpfs", "peer_disk"][] as $k | select(.[$k] != null) | .[$k] |
      "\($k | f(12))\(.median | s3 | f(10))\(.stddev | s3 | f(10))\(.min | s3 | f(8))\(.mb_per_s | f(8))\(.cpu_s | s3 | f(8))"),
    "",
    "peer / imgsign    \(.ratios.peer_over_imgsign)x  (goal >= 3: \(.goals.peer_over_imgsign_at_least_3 | yn))" +
      "  [peer on disk: \(.ratios.peer_disk_over_imgsign)x]",
    "imgsign / bound   \(.ratios.imgsign_over_bound)   (goal <= 1.0: \(.goals.imgsign_over_bound_at_most_1 | yn))",
    "cpu time: peer / imgsign \(.ratios.cpu_time_peer_over_imgsign)x, imgsign / bound \(.ratios.cpu_time_imgsign_over_bound)" +
      " (less sensitive to other load on the machine than wall time)",
    "peak RSS          \(.peak_rss_mb) MB (goal < 64: \(.goals.peak_rss_under_64_mb | yn))",
    ""
' "$RESULTS/sign-latest.json"
echo "results: $RESULTS/sign-latest.json"
