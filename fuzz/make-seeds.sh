#!/usr/bin/env bash
# Writes small valid seed inputs for the fuzz targets into OUT/<target>/ (default: fuzz/seeds).
# Layer seeds come from GNU tar (ustar, pax and gnu formats, long names, links, whiteouts, an
# opaque directory, a fifo) plus gzip/zstd copies; the bundle seed is signed by the imgsign binary
# ($IMGSIGN_BIN, else target/debug/imgsign) when it exists, next to the committed one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${1:-$here/seeds}"
mkdir -p "$out/layer_reader" "$out/bundle_parse"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

tree="$work/tree"
mkdir -p "$tree/usr/bin" "$tree/etc/opq" "$tree/var/a-rather-long-directory-name-that-needs-an-extension-header-to-be-stored-in-a-tar-archive/x"
printf '#!/bin/sh\necho hi\n' > "$tree/usr/bin/hello"
chmod 4755 "$tree/usr/bin/hello"
ln "$tree/usr/bin/hello" "$tree/usr/bin/hello-hardlink"
ln -s ../usr/bin/hello "$tree/etc/link"
echo conf > "$tree/etc/config"
: > "$tree/etc/.wh.removed"
: > "$tree/etc/opq/.wh..wh..opq"
echo deep > "$tree/var/a-rather-long-directory-name-that-needs-an-extension-header-to-be-stored-in-a-tar-archive/x/file"
mkfifo "$tree/etc/fifo" 2>/dev/null || true

common=(--sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --blocking-factor=1 -C "$tree")
tar --format=pax --pax-option=delete=atime,delete=ctime "${common[@]}" -cf "$out/layer_reader/pax.tar" .
tar --format=gnu "${common[@]}" -cf "$out/layer_reader/gnu.tar" .
tar --format=ustar "${common[@]}" -cf "$out/layer_reader/ustar.tar" usr etc 2>/dev/null || true
gzip -9n < "$out/layer_reader/pax.tar" > "$out/layer_reader/pax.tar.gz"
if command -v zstd >/dev/null; then
    zstd -q -19 -c < "$out/layer_reader/gnu.tar" > "$out/layer_reader/gnu.tar.zst"
fi

bin="${IMGSIGN_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/imgsign}"
if [[ -x "$bin" ]]; then
    export IMGSIGN_PASSPHRASE=fuzz-seed
    "$bin" keygen --out "$work/k" >/dev/null 2>&1
    "$bin" sign "dir:$tree" --key "$work/k.key" --out "$out/bundle_parse/signed.json" >/dev/null 2>&1 || true
fi
if [[ -f "$out/bundle_parse/signed.json" ]] && command -v python3 >/dev/null; then
    python3 -c 'import json,base64,sys; b=json.load(open(sys.argv[1])); sys.stdout.buffer.write(base64.b64decode(b["dsseEnvelope"]["payload"]))' \
        "$out/bundle_parse/signed.json" > "$out/bundle_parse/statement.json"
fi
