#!/usr/bin/env bash
# The main job, end to end: build a small two-layer OCI image with umoci, make a key and a trust
# store, sign the image, verify it (and its docker-archive copy), then tamper with it three ways
# and watch verification fail; last, the kernel side: inside Debian's 6.12 kernel under QEMU (the
# kernel lab), imgsign enforces a signed tree on a cgroup and the kernel refuses an unlisted binary.
# Installs what it needs. Usage: scripts/demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_rust
ensure_packages "${BUILD_PACKAGES[@]}" umoci skopeo busybox-static qemu-system-x86 cpio binutils xz-utils
ROOT="$PWD"

OUT="${1:-demo-out}"
rm -rf "$OUT" && mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
echo "==> building imgsign (release)"
cargo build --release --quiet -p imgsign
IMGSIGN="$PWD/target/release/imgsign"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "build a two-layer OCI image with umoci (testdata/images/build-demo-image.sh)"
testdata/images/build-demo-image.sh "$OUT/image" demo >/dev/null
echo "image: oci:$OUT/image:demo"

cd "$OUT"
export IMGSIGN_PASSPHRASE="demo passphrase"   # the key's passphrase comes from the environment, never argv
step "make a signing key and a trust store that trusts it"
run "$IMGSIGN" keygen --out signer
run "$IMGSIGN" trust init trust
run "$IMGSIGN" trust add trust signer.pub

step "sign the image: a Sigstore bundle (DSSE + in-toto statement) of every file"
run "$IMGSIGN" sign oci:image:demo --key signer.key --out demo.sigstore.json --name demo --version 1

step "verify it"
run "$IMGSIGN" verify oci:image:demo --bundle demo.sigstore.json --trust trust

step "copy it to a docker-archive with skopeo; the same bundle verifies the copy"
skopeo copy --quiet --insecure-policy oci:image:demo docker-archive:image.tar:demo:latest
run "$IMGSIGN" verify docker-archive:image.tar --bundle demo.sigstore.json --trust trust

expect_failure() {
    set +e
    "$@"
    local code=$?
    set -e
    if [ "$code" -ne 1 ]; then echo "demo: expected exit code 1 (verification failed), got $code" >&2; exit 1; fi
    echo "(exit code $code: verification failed, as it should)"
}

step "tamper 1: an attacker rewrites /etc/motd and repacks the image with umoci (all digests consistent)"
cp -a image tampered
umoci unpack --image tampered:demo bundle >/dev/null
echo "owned" > bundle/rootfs/etc/motd
umoci repack --image tampered:demo bundle >/dev/null
rm -rf bundle
printf '$ %s\n' "$IMGSIGN verify oci:tampered:demo --bundle demo.sigstore.json --trust trust"
expect_failure "$IMGSIGN" verify oci:tampered:demo --bundle demo.sigstore.json --trust trust

step "tamper 2: one byte of a layer blob changes on disk"
cp -a image corrupted
blob="$(ls -S corrupted/blobs/sha256 | head -1)"
printf '\x00' | dd of="corrupted/blobs/sha256/$blob" bs=1 seek=100 conv=notrunc status=none
printf '$ %s\n' "$IMGSIGN verify oci:corrupted:demo --bundle demo.sigstore.json --trust trust"
expect_failure "$IMGSIGN" verify oci:corrupted:demo --bundle demo.sigstore.json --trust trust

step "tamper 3: a replayed old version (v2 accepted, then v1 offered again)"
run "$IMGSIGN" sign oci:image:demo --key signer.key --out demo-v2.sigstore.json --name demo --version 2 >/dev/null
run "$IMGSIGN" verify oci:image:demo --bundle demo-v2.sigstore.json --trust trust >/dev/null && echo "v2 verified"
printf '$ %s\n' "$IMGSIGN verify oci:image:demo --bundle demo.sigstore.json --trust trust"
expect_failure "$IMGSIGN" verify oci:image:demo --bundle demo.sigstore.json --trust trust

step "kernel enforcement: imgsign enforce inside Debian's 6.12 kernel under QEMU (this host's kernel refuses BPF-LSM)"
echo "(the release imgsign and xtask/src/lab/demo.sh go into the kernel lab's initramfs; the VM's console follows)"
started=$SECONDS
(cd "$ROOT" && run cargo xtask lab demo --kernel 6.12)
echo "(kernel enforcement demo: $((SECONDS - started)) s)"

step "done: signed, verified, three tamperings refused; in the kernel lab an unsigned binary refused, a verified container run enforced and killed for running what its image did not sign (outputs in $OUT)"
