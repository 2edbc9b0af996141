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
    qemu-system-x86 cpio xz-utils zstd docker-registry apache2-utils \
    podman containerd runc
command -v node >/dev/null && command -v npm >/dev/null || ensure_packages nodejs npm

FUZZ_SECONDS="${IMGSIGN_FUZZ_SECONDS:-20}"
fast=0; [ "${1:-}" = "--fast" ] && fast=1
passed=0; failed=0; failed_names=()
stage_pid=
# Ctrl-C reaches the stage's own process group too (setsid takes it off the terminal's).
trap '[ -n "$stage_pid" ] && kill -KILL -- -"$stage_pid" 2>/dev/null; exit 130' INT TERM
# stage NAME SECONDS CMD...: runs CMD in its own process group with a deadline. A stage that
# hangs fails with the process tree it hung in, instead of eating CI's whole budget.
stage() {
    local name="$1" limit="$2"; shift 2
    printf '\n\033[1m==> stage: %s\033[0m\n' "$name"
    local start=$SECONDS rc
    setsid "$@" &
    local pid=$!
    stage_pid=$pid
    while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - start)) -lt "$limit" ]; do sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "==> stage $name: no end after $limit s; the processes it left:"
        ps -eo pid,ppid,pgid,stat,wchan:24,etime,args --forest | cut -c1-220 | head -200
        kill -KILL -- -"$pid" 2>/dev/null
    fi
    wait "$pid"; rc=$?
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1)); echo "==> stage $name: PASS ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1)); failed_names+=("$name"); echo "==> stage $name: FAIL ($((SECONDS - start)) s, exit $rc)"
    fi
}

# Deadlines are ceilings well above a cold run's (a clean clone, empty caches): a hang fails
# its own stage, with the process tree it hung in, instead of eating CI's 90 minutes.
stage format 120 cargo fmt --all -- --check
# [workspace.lints] (no unsafe, no printing in libraries) and clippy's defaults, as errors.
stage lint 1200 cargo clippy --workspace --all-targets --quiet -- -D warnings
stage host-tests 1500 cargo test --workspace --quiet
stage sigstore-interop 600 bash tests/sigstore-interop/run.sh
stage run-debian 1200 bash tests/run-debian/run.sh
if [ "$fast" -eq 0 ]; then
    stage fuzz 1500 bash fuzz/run.sh "$FUZZ_SECONDS"
    stage kernel-lab 2400 bash scripts/lab.sh
fi

echo
[ "$failed" -eq 0 ] || echo "failed stages: ${failed_names[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
