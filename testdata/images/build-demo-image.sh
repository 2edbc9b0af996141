#!/usr/bin/env bash
# Builds a small two-layer OCI image with umoci: layer 1 holds a static busybox with a few applet
# links, /etc files and a setuid copy; layer 2 deletes one file (a whiteout) and replaces a
# directory (an opaque directory). Usage: build-demo-image.sh OUT_DIR TAG
set -euo pipefail
out="$1"; tag="${2:-demo}"
command -v umoci >/dev/null || { echo "umoci not found: apt-get install umoci" >&2; exit 2; }
busybox="$(command -v busybox || true)"
[ -n "$busybox" ] || { echo "busybox not found: apt-get install busybox-static" >&2; exit 2; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/b" >/dev/null
root="$work/b/rootfs"
mkdir -p "$root/bin" "$root/etc/conf.d" "$root/usr/local/bin"
cp "$busybox" "$root/bin/busybox"
for applet in sh ls cat echo true; do ln -s busybox "$root/bin/$applet"; done
ln "$root/bin/busybox" "$root/usr/local/bin/busybox-hardlink"
cp "$busybox" "$root/usr/local/bin/su-like" && chmod 4755 "$root/usr/local/bin/su-like"
echo "welcome to the imgsign demo" > "$root/etc/motd"
echo "old" > "$root/etc/conf.d/old.conf"
echo "temporary" > "$root/etc/remove-me"
umoci repack --image "$out:$tag" "$work/b" >/dev/null
rm "$root/etc/remove-me"
rm -rf "$root/etc/conf.d" && mkdir "$root/etc/conf.d" && echo "new" > "$root/etc/conf.d/new.conf"
umoci repack --image "$out:$tag" "$work/b" >/dev/null
umoci gc --layout "$out"
