#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script). Installs what it needs
# (idempotently), then runs, in order:
#   1. host tests: `cargo test --workspace` (unit, integration, CLI, hostile inputs; as root the
#      tests that need root run too)
#   2. the independent Sigstore client check (npm @sigstore/verify verifies imgsign's bundles)
#   2b. run-debian: `imgsign run` of the signing benchmark's Debian image as root (verified run,
#      warm second run, a tampered /usr/bin/env and an untrusted signer refused)
#   3. a short fuzz run of every cargo-fuzz target
#   4. the kernel lab: in-VM tests on Debian 12 (6.1) and Debian 13 (6.12) kernels under QEMU,
#      plus the lab's own tests (an injected failure and an injected panic must fail the run)
#   0. `cargo fmt --all -- --check` (rustfmt.toml: max_width 120), then `cargo clippy -D warnings`
#      with the workspace lints (unsafe forbidden outside bpf-lsm, libraries do not print)
# Every stage runs even if an earlier one failed; the exit code is non-zero if any failed.
# Usage: scripts/test.sh [--fast]   (--fast: stages 1-2 only, for a quick local loop)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_rust
ensure_packages "${BUILD_PACKAGES[@]}" umoci skopeo busybox-static openssl \
    qemu-system-x86 cpio xz-utils zstd
command -v node >/dev/null && command -v npm >/dev/null || ensure_packages nodejs npm

FUZZ_SECONDS="${IMGSIGN_FUZZ_SECONDS:-20}"
fast=0; [ "${1:-}" = "--fast" ] && fast=1
passed=0; failed=0; failed_names=()
stage() {
    local name="$1"; shift
    printf '\n\033[1m==> stage: %s\033[0m\n' "$name"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1)); echo "==> stage $name: PASS ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1)); failed_names+=("$name"); echo "==> stage $name: FAIL ($((SECONDS - start)) s)"
    fi
}

stage format cargo fmt --all -- --check
# [workspace.lints] (no unsafe, no printing in libraries) and clippy's defaults, as errors.
stage lint cargo clippy --workspace --all-targets --quiet -- -D warnings
stage host-tests cargo test --workspace --quiet
stage sigstore-interop bash tests/sigstore-interop/run.sh
stage run-debian bash tests/run-debian/run.sh
if [ "$fast" -eq 0 ]; then
    stage fuzz bash fuzz/run.sh "$FUZZ_SECONDS"
    stage kernel-lab bash scripts/lab.sh
fi

echo
[ "$failed" -eq 0 ] || echo "failed stages: ${failed_names[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
