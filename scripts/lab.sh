#!/usr/bin/env bash
# Kernel lab: installs what the lab needs (Debian packages, idempotently) and
# runs the BPF-LSM tests inside Debian's 6.1 and 6.12 kernels under QEMU.
#
#   scripts/lab.sh              # lab unit tests, lab on both kernels, lab selftest
#   scripts/lab.sh --kernel 6.1 # any arguments go to `cargo xtask lab`
#
# Kernel packages are cached in $IMGSIGN_LAB_CACHE (default ~/.cache/imgsign-lab).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang-19 libbpf-dev bpftool qemu-system-x86 busybox-static cpio binutils xz-utils e2fsprogs mmdebstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "lab.sh: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if (($#)); then
    exec cargo xtask lab "$@"
fi
cargo test -q -p xtask          # the lab's own unit tests (console parser, ...)
cargo xtask lab --kernel all    # the vm_* tests inside Debian 6.1 and 6.12
cargo xtask lab selftest        # failing test, panic and hang each fail the lab
