# Shared by the benchmarks (sourced; needs ROOT, say, die and jq; build_rootfs also CACHE, SUITE,
# MIRROR and SUDO).

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

# Prints "<regular files> <their bytes>" for a tar file.
tar_stats() {
    [ -f "$1" ] || die "$1 is not a tar file"
    tar -tvf "$1" | awk '$1 ~ /^-/ { n++; s += $3 } END { printf "%d %d\n", n, s }'
}

# Builds $CACHE/rootfs-<name>.tar with mmdebstrap unless it is there already.
build_rootfs() { # include
    local include=$1 name out
    name=$SUITE-minbase${include:+-${include//,/-}}
    out=$CACHE/rootfs-$name.tar
    if [ ! -f "$out" ] || [ ! -s "$out" ]; then
        say "mmdebstrap --variant=minbase ${include:+--include=$include }$SUITE (a few minutes, once)"
        local partial=$CACHE/partial-rootfs-$name.tar
        $SUDO rm -rf "$partial" "$out"
        # The mirror is given explicitly: without one, mmdebstrap reads mirror lines from stdin.
        $SUDO mmdebstrap --variant=minbase --mode=root --format=tar ${include:+--include="$include"} \
            "$SUITE" "$partial" "$MIRROR" </dev/null >"$CACHE/mmdebstrap.log" 2>&1 \
            || { tail -20 "$CACHE/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $CACHE/mmdebstrap.log)"; }
        $SUDO mv "$partial" "$out"
    fi
    echo "$out"
}
