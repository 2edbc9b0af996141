#!/usr/bin/env bash
# Independent Sigstore client check: signs a small `dir:` image with the imgsign binary and
# verifies the bundle with npm's @sigstore/verify (public-key trust material, no tlog/CT/TSA),
# then checks that a flipped payload byte and a flipped signature byte are rejected.
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

node "$here/check.js" "$work/bundle.json" "$work/k.pub" "$key_id"
