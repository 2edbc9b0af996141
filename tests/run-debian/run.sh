#!/usr/bin/env bash
# Issue 9, on the host, as CI runs it (root): the Debian image of the signing benchmark
# (bench/sign.sh: mmdebstrap bookworm minbase, packed by umoci into two gzip layers) through
# `imgsign run`, verified:
#   1. `/bin/sh -c 'echo ok'` runs and prints ok (into a fresh store: verified, unpacked, launched);
#   2. a second run of the same image does not unpack again (`--json`: "unpacked": false), timed;
#      then the image's own glibc programs (perl's fork, sort's threads, xargs -P, tar | gzip,
#      dpkg, apt-get) work under the seccomp allowlist, and unshare -U and mount are refused;
#   3. the image's default command (its config has none: a clear error, exit 2);
#   4. the same image plus a layer in which one byte of /usr/bin/env is changed, every digest
#      consistent (blob, diff_id, config, manifest, index), is refused (exit 1) before launch,
#      with /usr/bin/env named, and leaves no store entry. No blob digest check catches it; what
#      refuses it is the subject check (its manifest digest is not the signed one), diagnosed by
#      a read-only scan compared with the signed file list, which names the path. (The store's
#      verify-on-write comparison is the check behind that one, for a statement whose subject
#      matches but whose file list does not: store/tests/store.rs,
#      a_last_layer_file_that_differs_from_the_statement_stops_the_unpack_when_written.)
#   5. the image signed by a key the trust store does not hold is refused (exit 1).
# The rootfs tar and the OCI layout are cached in ~/.cache/imgsign-bench (IMGSIGN_BENCH_CACHE),
# shared with bench/sign.sh and bench/run.sh; the store, keys and containers live in a temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${IMGSIGN_BENCH_CACHE:-$HOME/.cache/imgsign-bench}
MIRROR=${IMGSIGN_BENCH_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
TAG=bench
export LC_ALL=C

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'tests/run-debian: FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (imgsign run launches containers)"
SUDO=

need=()
for pkg in mmdebstrap umoci jq gzip tar; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

say "cargo build -p imgsign"
(cd "$ROOT" && cargo build --quiet -p imgsign)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
IMGSIGN=$TARGET/debug/imgsign
[ -x "$IMGSIGN" ] || die "no binary at $IMGSIGN"

mkdir -p "$CACHE"
# shellcheck source=../../bench/lib.sh
. "$ROOT/bench/lib.sh"
ROOTFS=$(build_rootfs "")
OCI=$CACHE/oci-$SUITE-minbase
pack_debian_oci "$ROOTFS" "$OCI" "$TAG"

# The tampered variant: one byte of /usr/bin/env changed, as a layer of its own (same owner,
# mode and mtime: only the content differs), every digest consistent. Cached with the layout.
if ! jq -e '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "tampered-env")' \
    "$OCI/index.json" >/dev/null; then
    say "adding the tag tampered-env (one byte of /usr/bin/env changed, in a new layer)"
    t=$(mktemp -d)
    tar -xf "$ROOTFS" -C "$t" --numeric-owner ./usr/bin/env
    printf '\x01' | dd of="$t/usr/bin/env" bs=1 seek=1000 conv=notrunc status=none
    touch -r "$ROOTFS" "$t/usr/bin/env" 2>/dev/null || true
    tar -tvf "$ROOTFS" ./usr/bin/env >&2
    tar -C "$t" --numeric-owner --format=posix --pax-option=delete=atime,delete=ctime \
        -cf "$t/layer.tar" usr/bin/env
    add_layer "$OCI" "$TAG" tampered-env "$t/layer.tar"
    rm -rf "$t"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgsign-run-debian.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Container root (an unprivileged host uid) must be able to walk to its root below the state root.
chmod 0755 "$WORK"
export IMGSIGN_PASSPHRASE=imgsign-run-debian-test
"$IMGSIGN" keygen --out "$WORK/signer" >/dev/null 2>&1
"$IMGSIGN" keygen --out "$WORK/stranger" >/dev/null 2>&1
"$IMGSIGN" trust init "$WORK/trust" >/dev/null
"$IMGSIGN" trust add "$WORK/trust" "$WORK/signer.pub" >/dev/null
say "signing oci:$OCI:$TAG"
"$IMGSIGN" sign "oci:$OCI:$TAG" --key "$WORK/signer.key" --out "$WORK/debian.json" --name debian >/dev/null
"$IMGSIGN" sign "oci:$OCI:$TAG" --key "$WORK/stranger.key" --out "$WORK/stranger.json" --name debian >/dev/null

STORE=$WORK/store
run() { # image bundle args...
    local image=$1 bundle=$2
    shift 2
    "$IMGSIGN" run "$image" --bundle "$bundle" --trust "$WORK/trust" --store "$STORE" \
        --state-root "$WORK/state" --no-record "$@"
}
stored() { "$IMGSIGN" images --store "$STORE" --json | jq length; }
now() { date +%s.%N; }

# 1. Verified, unpacked, launched.
say "1. run /bin/sh -c 'echo ok' (cold store)"
t0=$(now)
out=$(run "oci:$OCI:$TAG" "$WORK/debian.json" --json -- /bin/sh -c 'echo ok' 2>"$WORK/err1") \
    || { cat "$WORK/err1" >&2; die "the signed Debian image did not run"; }
t1=$(now)
[ "$(sed -n 1p <<<"$out")" = ok ] || die "expected ok, got: $out"
[ "$(tail -1 <<<"$out" | jq -r .ensure.unpacked)" = true ] || die "the first run did not unpack: $out"
[ "$(stored)" = 1 ] || die "expected one stored image"
cold=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
echo "ok: echo ok printed, image verified and stored (cold: ${cold} s)"

# 2. The second run does not unpack.
say "2. second run (warm store)"
t0=$(now)
out=$(run "oci:$OCI:$TAG" "$WORK/debian.json" --json -- /bin/sh -c 'echo ok' 2>"$WORK/err2") \
    || { cat "$WORK/err2" >&2; die "the second run failed"; }
t1=$(now)
warm=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
summary=$(tail -1 <<<"$out")
[ "$(jq -r .ensure.unpacked <<<"$summary")" = false ] || die "the second run unpacked again: $summary"
[ "$(jq -r '.ensure.content.bytesWritten' <<<"$summary")" = 0 ] || die "the second run wrote content: $summary"
[ "$(stored)" = 1 ] || die "expected still one stored image"
echo "ok: second run unpacked nothing ($summary), ${warm} s against ${cold} s cold"

# 2b. The image's own glibc programs under the seccomp allowlist (libseccomp filter mode 2):
#     fork (perl), threads and processes (sort --parallel, xargs -P), pipes of tar and gzip, dpkg
#     and apt-get reading their databases; and what it refuses (unshare -U, mount) still refused.
say "2b. the image's programs under the seccomp allowlist"
script='grep -q "^Seccomp:[[:space:]]*2" /proc/self/status && echo seccomp-filter
perl -e '"'"'$p = fork; if (!$p) { exit 3 } waitpid($p, 0); print "perl-fork ", $? >> 8, "\n"'"'"'
seq 200000 | sort -R --parallel=4 -S 8M | sort -n --parallel=4 -S 8M | tail -n 1
seq 1000 | xargs -P 4 -n 100 echo | wc -l
tar -cf - /etc 2>/dev/null | gzip | gzip -d | tar -tf - | grep -qx etc/passwd && echo tar-gzip
dpkg -s libc6 | grep -qx "Status: install ok installed" && echo dpkg
apt-get -v >/dev/null && echo apt-get
unshare -U true 2>/dev/null || echo unshare-refused
mount -t tmpfs none /mnt 2>/dev/null || echo mount-refused'
want='seccomp-filter
perl-fork 3
200000
10
tar-gzip
dpkg
apt-get
unshare-refused
mount-refused'
out=$(run "oci:$OCI:$TAG" "$WORK/debian.json" -- /bin/sh -c "$script" 2>"$WORK/err2b") \
    || { cat "$WORK/err2b" >&2; die "the image's programs failed under the allowlist: $out"; }
[ "$out" = "$want" ] || die "the image's programs under the allowlist: expected
$want
got
$out"
echo "ok: fork, threads, pipes, dpkg and apt-get work; unshare -U and mount refused"

# 3. No command, and the image config has none.
say "3. no command"
code=0
run "oci:$OCI:$TAG" "$WORK/debian.json" >"$WORK/out3" 2>&1 || code=$?
[ "$code" = 2 ] || { cat "$WORK/out3" >&2; die "expected exit 2 without a command, got $code"; }
grep -q "neither Entrypoint nor Cmd" "$WORK/out3" || { cat "$WORK/out3" >&2; die "unclear error"; }
echo "ok: $(tail -1 "$WORK/out3")"

# 4. One byte of /usr/bin/env changed in a layer: refused before launch, path named.
say "4. the tampered image (tag tampered-env)"
code=0
run "oci:$OCI:tampered-env" "$WORK/debian.json" -v "$WORK:/m" -- /bin/sh -c 'echo ran > /m/ran' \
    >"$WORK/out4" 2>&1 || code=$?
[ "$code" = 1 ] || { cat "$WORK/out4" >&2; die "expected exit 1 for the tampered image, got $code"; }
grep -q "/usr/bin/env" "$WORK/out4" || { cat "$WORK/out4" >&2; die "the refusal does not name /usr/bin/env"; }
[ ! -e "$WORK/ran" ] || die "the tampered image ran"
[ "$(stored)" = 1 ] || die "the refused image left a store entry"
echo "ok: $(grep -m1 refused "$WORK/out4")"

# 5. Signed by a key the trust store does not hold.
say "5. signed by an untrusted key"
code=0
STORE=$WORK/store2
run "oci:$OCI:$TAG" "$WORK/stranger.json" -- /bin/sh -c 'echo ran' \
    >"$WORK/out5" 2>&1 || code=$?
[ "$code" = 1 ] || { cat "$WORK/out5" >&2; die "expected exit 1 for an untrusted signer, got $code"; }
! grep -qx ran "$WORK/out5" || die "the untrusted image ran"
[ "$(stored)" = 0 ] || die "the refused image left a store entry"
echo "ok: $(grep -m1 refused "$WORK/out5")"

echo "run-debian: all checks passed"
