#!/usr/bin/env bash
# Benchmark of imgsign against a registry (a script, not a timed test; see bench/README.md).
#
# The Debian bookworm minbase image of bench/sign.sh (built and cached by that script: run it once
# first) is pushed by skopeo to Debian's docker-registry on a loopback port, signed by reference,
# then timed in one hyperfine run (warm page cache, warm registry):
#   verify_ref        `imgsign verify docker://HOST/bench:v1` (layers streamed, nothing stored)
#   pull_then_verify  `skopeo copy docker://... oci:DIR` then `imgsign verify oci:DIR`
#   skopeo_pull       `skopeo copy docker://... oci:DIR` alone, into an empty layout
#   imgsign_pull      `imgsign pull docker://...` into an empty store: the same work as skopeo_pull
#                     (blobs fetched, digest- and size-checked, kept as an OCI layout, nothing
#                     unpacked), plus the attached bundles and an fsync per blob
#   imgsign_pull_serial  imgsign_pull with --jobs 1 (one layer at a time: what the parallel
#                     transfers are worth)
#   imgsign_pull_again  the same pull by digest into the store that has it (must cost nothing)
#   run_ref           `imgsign run docker://... -- /bin/true` into an empty store (verify-on-write
#                     unpack of every file, then a container launch; as root)
# Prints the table and the ratios pull_then_verify/verify_ref, imgsign_pull/skopeo_pull (like for
# like) and run_ref/skopeo_pull; writes the hyperfine JSON to bench/results/registry-latest.json.
#
# Environment:
#   IMGSIGN_BENCH_CACHE  cache directory of bench/sign.sh (default ~/.cache/imgsign-bench)
#   IMGSIGN_BENCH_RUNS   hyperfine runs per command (default 5; one warmup run always)
#   IMGSIGN_BENCH_BIN    time this imgsign binary instead of a release build of the workspace
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${IMGSIGN_BENCH_CACHE:-$HOME/.cache/imgsign-bench}
RUNS=${IMGSIGN_BENCH_RUNS:-5}
OCI=$CACHE/oci-bookworm-minbase
TAG=bench
RESULTS=$ROOT/bench/results
export LC_ALL=C

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/registry.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (imgsign run launches a container)"
[ -f "$OCI/index.json" ] || die "no benchmark image at $OCI: run bench/sign.sh once first"
need=()
for pkg in docker-registry skopeo hyperfine jq curl; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
bench_imgsign

WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgsign-bench-registry.XXXXXX")
REGISTRY_PID=
trap '[ -z "$REGISTRY_PID" ] || kill "$REGISTRY_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
# Container root (an unprivileged host uid) must be able to walk to its root below the state root.
chmod 0755 "$WORK"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n  secret: bench\n' \
    "$WORK/storage" "$PORT" >"$WORK/registry.yml"
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
REF=docker://127.0.0.1:$PORT/bench:v1
say "pushing $OCI:$TAG to $REF with skopeo"
skopeo copy --quiet --dest-tls-verify=false "oci:$OCI:$TAG" "$REF"

export IMGSIGN_PASSPHRASE=imgsign-bench
"$IMGSIGN" keygen --out "$WORK/key" >/dev/null 2>&1
"$IMGSIGN" trust init "$WORK/trust" >/dev/null
"$IMGSIGN" trust add "$WORK/trust" "$WORK/key.pub" >/dev/null
"$IMGSIGN" sign "$REF" --insecure --push --key "$WORK/key.key" --out "$WORK/bundle.json" >/dev/null
DIGEST=$(skopeo inspect --tls-verify=false "$REF" | jq -r .Digest)
REF_DIGEST=docker://127.0.0.1:$PORT/bench@$DIGEST

q() { printf '%q ' "$@"; }
VERIFY="$(q "$IMGSIGN" verify "$REF" --insecure --bundle "$WORK/bundle.json" --trust "$WORK/trust" --no-record) >/dev/null"
PULL="$(q skopeo copy --quiet --src-tls-verify=false "$REF" "oci:$WORK/pulled:$TAG")"
VERIFY_PULLED="$(q "$IMGSIGN" verify "oci:$WORK/pulled:$TAG" --bundle "$WORK/bundle.json" --trust "$WORK/trust" --no-record) >/dev/null"
RUN="$(q "$IMGSIGN" run "$REF" --insecure --bundle "$WORK/bundle.json" --trust "$WORK/trust" --no-record \
    --store "$WORK/store" --state-root "$WORK/state") -- /bin/true"
IPULL="$(q "$IMGSIGN" pull "$REF" --insecure --store "$WORK/pullstore") >/dev/null"
IPULL_SERIAL="$(q "$IMGSIGN" pull "$REF" --insecure --jobs 1 --store "$WORK/pullstore") >/dev/null"
IPULL_AGAIN="$(q "$IMGSIGN" pull "$REF_DIGEST" --insecure --store "$WORK/pullstore") >/dev/null"
CLEAN_PULL="rm -rf $(q "$WORK/pulled")&& sync"
CLEAN_IPULL="rm -rf $(q "$WORK/pullstore")&& sync"
CLEAN_STORE="rm -rf $(q "$WORK/store")&& sync"

say "checking each command once"
eval "$VERIFY" || die "imgsign verify failed"
eval "$CLEAN_PULL" && eval "$PULL" && eval "$VERIFY_PULLED" || die "pull then verify failed"
eval "$CLEAN_IPULL" && eval "$IPULL" && eval "$IPULL_AGAIN" || die "imgsign pull failed"
"$IMGSIGN" verify "$REF_DIGEST" --offline --store "$WORK/pullstore" --trust "$WORK/trust" --no-record >/dev/null \
    || die "the pulled image does not verify offline"
eval "$CLEAN_STORE" && eval "$RUN" || die "imgsign run failed"

say "hyperfine: $RUNS runs each, 1 warmup (load average $(cut -d' ' -f1-3 /proc/loadavg))"
hyperfine --warmup 1 --runs "$RUNS" --style basic --export-json "$WORK/hyperfine.json" \
    -n verify_ref --prepare true "$VERIFY" \
    -n pull_then_verify --prepare "$CLEAN_PULL" "$PULL && $VERIFY_PULLED" \
    -n skopeo_pull --prepare "$CLEAN_PULL" "$PULL" \
    -n imgsign_pull --prepare "$CLEAN_IPULL" "$IPULL" \
    -n imgsign_pull_serial --prepare "$CLEAN_IPULL" "$IPULL_SERIAL" \
    -n imgsign_pull_again --prepare true "$IPULL_AGAIN" \
    -n run_ref --prepare "$CLEAN_STORE" "$RUN" >&2

mkdir -p "$RESULTS"
cp "$WORK/hyperfine.json" "$RESULTS/registry-latest.json"
mean() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .mean' "$WORK/hyperfine.json"; }
printf '%-18s %8s\n' command "mean s"
for n in verify_ref pull_then_verify skopeo_pull imgsign_pull imgsign_pull_serial imgsign_pull_again run_ref; do printf '%-18s %8.3f\n' "$n" "$(mean "$n")"; done
awk -v a="$(mean pull_then_verify)" -v b="$(mean verify_ref)" \
    'BEGIN { printf "pull_then_verify / verify_ref = %.2f (above 1: verifying by reference is faster)\n", a / b }'
awk -v a="$(mean imgsign_pull)" -v b="$(mean skopeo_pull)" \
    'BEGIN { printf "imgsign_pull / skopeo_pull = %.2f (like for like; below 1: imgsign pulls faster)\n", a / b }'
awk -v a="$(mean imgsign_pull_again)" -v b="$(mean skopeo_pull)" \
    'BEGIN { printf "imgsign_pull_again / skopeo_pull = %.3f (a second pull of the same digest)\n", a / b }'
awk -v a="$(mean run_ref)" -v b="$(mean skopeo_pull)" \
    'BEGIN { printf "run_ref / skopeo_pull = %.2f (run_ref also unpacks, verifies every file and launches)\n", a / b }'
