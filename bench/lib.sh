# Shared by the benchmarks (sourced; needs ROOT, say, die and jq).

# Sets IMGSIGN to the binary to measure: $IMGSIGN_BENCH_BIN when given (to compare builds),
# else a release build of this checkout.
bench_imgsign() {
    if [ -n "${IMGSIGN_BENCH_BIN:-}" ]; then
        IMGSIGN=$IMGSIGN_BENCH_BIN
        say "using $IMGSIGN (IMGSIGN_BENCH_BIN), not building"
    else
        say "cargo build --release -p imgsign"
        (cd "$ROOT" && cargo build --release --quiet -p imgsign)
        local target_dir
        target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
        IMGSIGN=$target_dir/release/imgsign
    fi
    [ -x "$IMGSIGN" ] || die "no binary at $IMGSIGN"
}
