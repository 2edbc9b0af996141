#!/usr/bin/env bash
# Independent Sigstore client check: signs a small `dir:` image with the imgsign binary and
# verifies the bundle with npm's @sigstore/verify (public-key trust material, no tlog/CT/TSA),
# then checks that a flipped payload byte and a flipped signature byte are rejected. Then the same
# for a bundle that travelled through a registry: Debian's docker-registry on loopback, an image
# built with umoci and pushed by skopeo, `imgsign sign docker://... --push` (an OCI referrer in
# the sha256-<hex> tag schema index), fetched back with curl.
#
# usage: tests/sigstore-interop/run.sh
# env:   IMGSIGN_BIN  imgsign binary (default: $CARGO_TARGET_DIR or target/, debug build;
#                     built with `cargo build -p imgsign` if missing)
# Prints "N passed, M failed" last; exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

command -v node >/dev/null || { echo "node is required (Node >= 20.17)"; echo "0 passed, 1 failed"; exit 1; }
command -v npm >/dev/null || { echo "npm is required"; echo "0 passed, 1 failed"; exit 1; }

# npm ci only when node_modules is missing or was installed from another lock file.
lock_sum="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
stamp="$here/node_modules/.imgsign-lock-sha256"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" > "$stamp"
fi

bin="${IMGSIGN_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/imgsign}"
if [[ ! -x "$bin" ]]; then
    (cd "$root" && cargo build -q -p imgsign)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/img/bin" "$work/img/etc"
printf '#!/bin/sh\necho hello\n' > "$work/img/bin/hello"
chmod 0755 "$work/img/bin/hello"
echo 'name=interop' > "$work/img/etc/config"
ln -s ../bin/hello "$work/img/etc/link"

export IMGSIGN_PASSPHRASE="interop-test-passphrase"
keygen_out="$("$bin" keygen --out "$work/k")"
key_id="$(grep -oE '\b[0-9a-f]{64}\b' <<<"$keygen_out" | head -n1)"
if [[ -z "$key_id" ]]; then
    echo "could not read the key id from keygen's output: $keygen_out"
    echo "0 passed, 1 failed"
    exit 1
fi
"$bin" sign "dir:$work/img" --key "$work/k.key" --out "$work/bundle.json" >/dev/null

passed=0
failed=0
# check BUNDLE: runs check.js and adds its "N passed, M failed" to the totals.
check() {
    local out line
    out="$(node "$here/check.js" "$1" "$work/k.pub" "$key_id")" || true
    echo "$out"
    line="$(tail -n1 <<<"$out")"
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
    else
        failed=$((failed + 1))
    fi
}
check "$work/bundle.json"

# The registry round trip. Any step failing counts as one failure.
registry_bundle() {
    command -v docker-registry >/dev/null || { echo "docker-registry (Debian package) is required"; return 1; }
    local port url subject index referrer layer
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    url="http://127.0.0.1:$port"
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$work/registry" "$port" > "$work/registry.yml"
    docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 100); do curl -fsS "$url/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
    # (`errexit` does not apply inside a function called as a condition: each step says so.)
    umoci init --layout "$work/oci" && umoci new --image "$work/oci:v1" || return 1
    # (unpack, copy, repack: umoci 0.4's `insert` writes a tar without its end-of-archive blocks)
    umoci unpack --image "$work/oci:v1" "$work/bundle" >/dev/null && cp -a "$work/img/." "$work/bundle/rootfs/" \
        && umoci repack --image "$work/oci:v1" "$work/bundle" || return 1
    skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:v1" "docker://127.0.0.1:$port/interop:v1" || return 1
    "$bin" sign "docker://127.0.0.1:$port/interop:v1" --insecure --push --key "$work/k.key" \
        --out "$work/pushed.json" >/dev/null || return 1
    subject="$(skopeo inspect --tls-verify=false "docker://127.0.0.1:$port/interop:v1" | jq -r .Digest)" || return 1
    index="$(curl -fsS -H 'Accept: application/vnd.oci.image.index.v1+json' \
        "$url/v2/interop/manifests/sha256-${subject#sha256:}")" || return 1
    referrer="$(jq -er '.manifests[] | select(.artifactType == "application/vnd.dev.sigstore.bundle.v0.3+json") | .digest' <<<"$index")" || return 1
    layer="$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$url/v2/interop/manifests/$referrer" \
        | jq -er '.layers[0].digest')" || return 1
    curl -fsS "$url/v2/interop/blobs/$layer" -o "$work/from-registry.json" || return 1
    # What was fetched is what was signed: the same bytes as the bundle written with --out.
    cmp "$work/pushed.json" "$work/from-registry.json"
}
registry_pid=""
trap 'rm -rf "$work"; [[ -z "$registry_pid" ]] || kill "$registry_pid" 2>/dev/null' EXIT
if registry_bundle; then
    echo "bundle fetched from the registry: the referrer of the pushed image"
    check "$work/from-registry.json"
else
    echo "FAIL the registry round trip (sign --push, fetch the referrer): see above"
    [[ -f "$work/registry.log" ]] && tail -n 20 "$work/registry.log"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
