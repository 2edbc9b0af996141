#!/usr/bin/env bash
# Short fuzzing run of every cargo-fuzz target, for the test suite.
#
# usage: fuzz/run.sh [SECONDS]     (SECONDS of fuzzing per target, default 20)
#
# Installs cargo-fuzz (crates.io) if it is missing, builds the targets with the nightly toolchain
# (release, debug assertions, overflow checks, AddressSanitizer), replays every input under
# fuzz/regressions/<target>/, then fuzzes each target for SECONDS starting from fuzz/seeds/<target>/
# and the local corpus fuzz/corpus/<target>/ (kept between runs, not committed).
# Prints "N passed, M failed" last (one test per target); exits non-zero on any crash, leak,
# timeout or out-of-memory, leaving the input under fuzz/artifacts/<target>/.
set -uo pipefail

seconds="${1:-20}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
targets=(bundle_parse layer_reader)

toolchain="${IMGSIGN_FUZZ_TOOLCHAIN:-nightly}"
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz: the $toolchain toolchain is missing (cargo-fuzz needs a nightly: rustup toolchain install nightly)"
    echo "0 passed, ${#targets[@]} failed"
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io (a few minutes, once)"
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz: could not install cargo-fuzz"
        echo "0 passed, ${#targets[@]} failed"
        exit 1
    fi
fi

echo "fuzz: building targets with $toolchain"
if ! cargo "+$toolchain" fuzz build; then
    echo "0 passed, ${#targets[@]} failed"
    exit 1
fi

passed=0
failed=0
for target in "${targets[@]}"; do
    ok=1
    mkdir -p "corpus/$target" "artifacts/$target"
    dict=()
    [[ -f "dicts/$target.dict" ]] && dict=("-dict=dicts/$target.dict")

    shopt -s nullglob
    regressions=(regressions/"$target"/*)
    shopt -u nullglob
    if ((${#regressions[@]})); then
        echo "fuzz: $target: replaying ${#regressions[@]} regression input(s)"
        if ! cargo "+$toolchain" fuzz run "$target" "${regressions[@]}" -- -runs=1 >"artifacts/$target/regressions.log" 2>&1; then
            echo "fuzz: $target: a regression input crashes again:"
            tail -n 40 "artifacts/$target/regressions.log"
            ok=0
        fi
    fi

    if ((ok)); then
        echo "fuzz: $target: fuzzing for ${seconds}s"
        if ! cargo "+$toolchain" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
            "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            >"artifacts/$target/run.log" 2>&1; then
            echo "fuzz: $target: FAILED; last lines of artifacts/$target/run.log:"
            tail -n 60 "artifacts/$target/run.log"
            ok=0
        else
            grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "artifacts/$target/run.log" | sed "s/^/fuzz: $target: /"
        fi
    fi

    if ((ok)); then
        passed=$((passed + 1))
        echo "ok   fuzz $target"
    else
        failed=$((failed + 1))
        echo "FAIL fuzz $target"
    fi
done

echo "$passed passed, $failed failed"
((failed == 0))
