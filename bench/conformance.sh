#!/usr/bin/env bash
# OCI runtime conformance (issue 10): opencontainers/runtime-tools' validation suite, run once
# against Debian's runc and against `imgsign runtime` in the same run. Not a test and not part of
# CI: run by hand, as root, on Debian 12. Its result is $WORK/report.txt (per-runtime
# PASS/FAIL/SKIP counts and the programs that differ), with every program's TAP output, stderr
# and exit code in $WORK/out/<runtime>/.
#
#   bench/conformance.sh
#
# Environment: IMGSIGN_BENCH_BIN (the imgsign binary; default: `cargo build -p imgsign` of this
# checkout, debug), IMGSIGN_CONF_WORK (default ~/.cache/imgsign-bench/conformance),
# IMGSIGN_CONF_SUITE_SRC (where to clone the suite from, default its GitHub repository), RUNC.
#
#  1. The suite's source is fetched once (git clone into $WORK/runtime-tools, reused afterwards) at
#     $SUITE_COMMIT, the last commit Debian 12's Go 1.19 builds (the next one needs Go 1.21's
#     `slices`), and built from its vendor directory with Debian's golang-go (GOFLAGS=-mod=vendor,
#     GOPROXY=off: no Go module is downloaded).
#  2. The suite is patched so that a container's root file system is the same signable tree in
#     every test (`git -C $WORK/runtime-tools diff` shows it). Upstream, the bundle directory *is*
#     the rootfs (root.path "."), holding config.json, the stdio capture files and /runtimetest,
#     so no signed manifest could ever match it. Patched: the busybox tarball and /runtimetest go
#     to <bundle>/rootfs (root.path "rootfs"); config.json stays in the bundle and is bind-mounted
#     read-only at /config.json, where runtimetest reads it (its empty mount point file is part of
#     the rootfs); runtimetest skips that one mount in its mount checks; the tests' PreFunc hooks
#     get the rootfs directory, as before. runc passes and fails the same programs with and
#     without the patch (checked on 2026-12-01, bench/README.md).
#  3. An OCI image of exactly that rootfs is made with umoci and signed with a throwaway key
#     (`imgsign keygen`, `trust`, `sign`); `imgsign verify` checks that the signed file list is the
#     reference rootfs'. The policy (IMGSIGN_RUNTIME_CONFIG) names that bundle, with
#     when_no_enforcer = "run-unenforced" (no enforcer daemon runs here).
#  4. Every validation program runs, one after the other, against $RUNC, then against a wrapper
#     `imgsign-runtime` (IMGSIGN_RUNTIME_CONFIG=...; exec imgsign runtime --root STATE --log LOG
#     "$@"; errors still go to stderr too, and the log's "imgsign refused" lines say, per
#     program, how many containers the gate refused).
#     The programs whose result differs run twice more on each runtime (a difference that comes
#     and goes is the test's race). After each program the containers it left behind are
#     recorded and deleted, mounts it leaked to the host (the "shared" rootfs propagation case)
#     are unmounted, and its bundles removed.
#
# A program PASSES when it exits 0 with its whole TAP plan "ok" (TODO points excepted), is a SKIP
# when every point is a skip (or its plan is 1..0 without an error), and FAILS otherwise.
set -euo pipefail

SUITE_COMMIT=260e151b8552afa2678ef6d41820ea0f31cd8be1   # runtime-tools, 2025-03-03, go 1.19
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${IMGSIGN_CONF_WORK:-$HOME/.cache/imgsign-bench/conformance}
RUNC=${RUNC:-/usr/sbin/runc}
SRC=${IMGSIGN_CONF_SUITE_SRC:-https://github.com/opencontainers/runtime-tools}
export LC_ALL=C
export TMPDIR=$WORK/bundles          # the suite's bundles (os.MkdirTemp), removed after each program

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/conformance.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the suite creates containers)"
missing=()
for pkg in golang-go umoci runc git python3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -n "${IMGSIGN_BENCH_BIN:-}" ]; then
  IMGSIGN=$(realpath "$IMGSIGN_BENCH_BIN")
else
  say "cargo build -p imgsign"
  (cd "$ROOT" && cargo build --quiet -p imgsign)
  IMGSIGN=$ROOT/target/debug/imgsign
fi
[ -x "$IMGSIGN" ] || die "no imgsign binary at $IMGSIGN"
mkdir -p "$WORK" "$TMPDIR"

# 1. fetch once, build from vendor ---------------------------------------------------------------
S=$WORK/runtime-tools
if [ ! -d "$S/.git" ]; then
  say "git clone $SRC (once)"
  git clone -q "$SRC" "$S"
fi
git -C "$S" checkout -q "$SUITE_COMMIT"

# 2. the rootfs-layout patch (idempotent: applied once, recognised afterwards) --------------------
if ! grep -q 'SetRootPath("rootfs")' "$S/validation/util/test.go"; then
  python3 - "$S" <<'PATCH'
import sys
S = sys.argv[1]
def sub(path, old, new, count=1):
    p = f"{S}/{path}"
    s = open(p).read()
    assert s.count(old) == count, (path, old[:60])
    open(p, "w").write(s.replace(old, new))

sub("validation/util/test.go", '''	// Untar the root fs
	untarCmd := exec.Command("tar", "-xf", fmt.Sprintf("rootfs-%s.tar.gz", runtime.GOARCH), "-C", bundleDir)
	output, err := untarCmd.CombinedOutput()
	if err != nil {
		os.Stderr.Write(output)
		os.RemoveAll(bundleDir)
		return "", err
	}
''', '''	// As the unpatched suite's bundle (tar sets it from the tarball's "./"):
	// searchable by a user-namespaced container's root.
	if err := os.Chmod(bundleDir, 0o755); err != nil {
		os.RemoveAll(bundleDir)
		return "", err
	}
	// Untar the root fs into <bundle>/rootfs, with /runtimetest in it, so
	// that every container's rootfs is the same (signable) tree and the
	// bundle's config.json and stdio files stay outside it.
	rootfsDir := filepath.Join(bundleDir, "rootfs")
	if err := os.Mkdir(rootfsDir, 0o755); err != nil {
		os.RemoveAll(bundleDir)
		return "", err
	}
	untarCmd := exec.Command("tar", "-xf", fmt.Sprintf("rootfs-%s.tar.gz", runtime.GOARCH), "-C", rootfsDir)
	output, err := untarCmd.CombinedOutput()
	if err != nil {
		os.Stderr.Write(output)
		os.RemoveAll(bundleDir)
		return "", err
	}
	if err := fileutils.CopyFile("runtimetest", filepath.Join(rootfsDir, "runtimetest")); err != nil {
		os.RemoveAll(bundleDir)
		return "", err
	}
	// The mount point of the bundle's config.json (see Runtime.SetConfig).
	if err := os.WriteFile(filepath.Join(rootfsDir, "config.json"), nil, 0o644); err != nil {
		os.RemoveAll(bundleDir)
		return "", err
	}
''')
sub("validation/util/test.go", '	g.SetRootPath(".")\n\tg.SetProcessArgs', '	g.SetRootPath("rootfs")\n\tg.SetProcessArgs')
sub("validation/util/test.go", '''	if f != nil {
		if err := f(bundleDir); err != nil {''', '''	if f != nil {
		if err := f(filepath.Join(bundleDir, "rootfs")); err != nil {''')
sub("validation/create/create.go", 'g.SetRootPath(".")', 'g.SetRootPath("rootfs")')
sub("validation/util/container.go", '''	return g.SaveToFile(filepath.Join(r.bundleDir(), "config.json"), generate.ExportOptions{})
}''', '''	// config.json is outside the rootfs: bind it (read-only) at /config.json,
	// where runtimetest --path=/ reads it.
	configPath, err := filepath.Abs(filepath.Join(r.bundleDir(), "config.json"))
	if err != nil {
		return err
	}
	g.RemoveMount("/config.json")
	g.AddMount(rspecs.Mount{Destination: "/config.json", Type: "bind", Source: configPath, Options: []string{"rbind", "ro"}})
	return g.SaveToFile(configPath, generate.ExportOptions{})
}''')
sub("cmd/runtimetest/main.go", '''	for i, configMount := range spec.Mounts {
		if configMount.Type == "bind" || configMount.Type == "rbind" {''', '''	for i, configMount := range spec.Mounts {
		if configMount.Destination == "/config.json" {
			c.harness.Skip(1, "the validation harness's own bind mount of config.json")
			continue
		}
		if configMount.Type == "bind" || configMount.Type == "rbind" {''')
PATCH
fi

say "building runtimetest and the validation programs (Go $(go env GOVERSION), vendored modules)"
(
  cd "$S"
  export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1
  nice go build -tags "netgo osusergo" -ldflags "-extldflags -static" -o runtimetest ./cmd/runtimetest
  mkdir -p bin
  nice go build -p 2 -o bin/ ./validation/...
)

# 3. sign exactly the suite's rootfs ------------------------------------------------------------
say "signing the suite's rootfs"
G=$WORK/sign
rm -rf --one-file-system "$G" && mkdir -p "$G/cache"
mkdir "$G/R"
tar -xzf "$S/rootfs-amd64.tar.gz" -C "$G/R"
cp -p "$S/runtimetest" "$G/R/runtimetest"
install -m 0644 /dev/null "$G/R/config.json"
umoci init --layout "$G/oci"
umoci new --image "$G/oci:suite"
umoci unpack --image "$G/oci:suite" "$G/B" >/dev/null
cp -a "$G/R/." "$G/B/rootfs/"
umoci repack --image "$G/oci:suite" "$G/B"
export CONF_PASS=conformance-throwaway-key
"$IMGSIGN" keygen --out "$G/key" --passphrase-env CONF_PASS >/dev/null 2>&1
"$IMGSIGN" trust init "$G/trust" >/dev/null
"$IMGSIGN" trust add "$G/trust" "$G/key.pub" >/dev/null
"$IMGSIGN" sign --key "$G/key.key" --passphrase-env CONF_PASS --out "$G/bundle.json" \
  --name conformance/runtime-tools-rootfs "oci:$G/oci:suite" >/dev/null
# the signed file list is the reference rootfs' (the subject differs: dir: has no manifest)
check=$("$IMGSIGN" verify --trust "$G/trust" --bundle "$G/bundle.json" "dir:$G/R" 2>&1 || true)
grep -q '^ok   files' <<<"$check" || { echo "the signed file list is not the suite's rootfs:" >&2; echo "$check" >&2; exit 1; }
cat >"$G/runtime.toml" <<EOF
trust = "$G/trust"
bundles = ["$G/bundle.json"]
cache = "$G/cache"
when_no_enforcer = "run-unenforced"
EOF
cat >"$G/imgsign-runtime" <<EOF
#!/bin/sh
IMGSIGN_RUNTIME_CONFIG=$G/runtime.toml exec $IMGSIGN runtime --root $G/state --log $G/runtime.log "\$@"
EOF
chmod +x "$G/imgsign-runtime"

# 4. run ----------------------------------------------------------------------------------------
cleanup() {     # RUNTIME OUTDIR PROGRAM: containers the program left behind, leaked mounts, bundles
  local id
  if [ "$1" = "$RUNC" ]; then
    for id in $("$RUNC" list -f json 2>/dev/null | python3 -c 'import json,sys
for c in json.load(sys.stdin) or []:
    if c["bundle"].startswith(sys.argv[1]): print(c["id"])' "$TMPDIR/"); do
      echo "$3 $id" >>"$2/leftover.txt"; "$RUNC" delete --force "$id" >/dev/null 2>&1 || true
    done
  else
    for id in $(ls "$G/state" 2>/dev/null); do
      echo "$3 $id" >>"$2/leftover.txt"; "$1" delete --force "$id" >/dev/null 2>&1 || rm -rf "${G:?}/state/$id"
    done
  fi
  # mounts the "shared" rootfs propagation case leaks to the host, then the bundles
  awk -v d="$TMPDIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "${TMPDIR:?}"/ocitest* 2>/dev/null || true
}
run_one() {     # RUNTIME OUTDIR PROGRAM
  local rc=0 log=$G/runtime.log before
  touch "$log"; before=$(stat -c %s "$log")
  (cd "$S" && RUNTIME=$1 exec timeout 180 "$S/bin/$3" >"$2/$3.tap" 2>"$2/$3.err" </dev/null) || rc=$?
  echo $rc >"$2/$3.rc"
  # the gate's refusals during this program (imgsign's errors also go to its --log)
  if [ "$1" != "$RUNC" ]; then
    tail -c +$((before + 1)) "$log" | grep -c 'imgsign refused' >"$2/$3.refused" || true
  fi
  cleanup "$1" "$2" "$3"
}
run_suite() {   # RUNTIME NAME
  local out=$WORK/out/$2
  rm -rf "$out" && mkdir -p "$out"
  for b in "$S"/bin/*; do run_one "$1" "$out" "$(basename "$b")"; done
}
summarize() {   # NAME -> one line per program
  local out=$WORK/out/$1
  for f in "$out"/*.rc; do
    [ -e "$f" ] || continue
    t=$(basename "$f" .rc); rc=$(cat "$f"); tap=$out/$t.tap
    ok=$(grep -cE '^ok ' "$tap" || true)
    nok=$(grep -E '^not ok ' "$tap" | grep -vc '# TODO' || true)
    todo=$(grep -E '^not ok ' "$tap" | grep -c '# TODO' || true)
    sk=$(grep -ciE '^ok [0-9]+ # *skip' "$tap" || true)
    plan=$(grep -oE '^1\.\.[0-9]+' "$tap" | head -1 | cut -d. -f3 || true)
    if [ "$rc" = 0 ] && [ "$nok" = 0 ] && [ -n "$plan" ] && [ "$plan" = "$((ok + todo))" ]; then
      if [ "$plan" = 0 ] && grep -q '"error"' "$tap"; then s=FAIL
      elif [ "$plan" = 0 ] || [ "$sk" = "$ok" ]; then s=SKIP
      else s=PASS; fi
    else s=FAIL; fi
    printf '%-32s %s rc=%s ok=%s notok=%s skip=%s plan=%s refused=%s\n' "$t" "$s" "$rc" "$ok" "$nok" "$sk" \
      "${plan:-none}" "$(cat "$out/$t.refused" 2>/dev/null || echo -)"
  done >"$WORK/out/$1.sum"
}

say "running the suite against $RUNC"
run_suite "$RUNC" runc
say "running the suite against imgsign runtime"
run_suite "$G/imgsign-runtime" imgsign
summarize runc
summarize imgsign
differ=$(join <(awk '{print $1, $2}' "$WORK/out/runc.sum") <(awk '{print $1, $2}' "$WORK/out/imgsign.sum") |
  awk '$2 != $3 {print $1}')
# the programs that differ run twice more on each runtime: a difference that comes and goes is
# the test's race, not the runtime's
for i in 2 3; do
  for r in runc imgsign; do
    rt=$RUNC; [ $r = imgsign ] && rt=$G/imgsign-runtime
    rm -rf "$WORK/out/$r.$i" && mkdir -p "$WORK/out/$r.$i"
    for t in $differ; do run_one "$rt" "$WORK/out/$r.$i" "$t"; done
    summarize "$r.$i"
  done
done
{
  echo "runtime-tools $SUITE_COMMIT (patched: rootfs in <bundle>/rootfs), $(date -u +%FT%TZ)"
  echo "runc:    $("$RUNC" --version | head -1)"
  echo "imgsign: $IMGSIGN (checkout $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  for r in runc imgsign; do
    printf '%-8s %s; containers left behind (state after the program, deleted by this script): %s\n' "$r:" \
      "$(awk '{print $2}' "$WORK/out/$r.sum" | sort | uniq -c | tr -s ' \n' ' ')" \
      "$(cut -d' ' -f1 "$WORK/out/$r/leftover.txt" 2>/dev/null | sort -u | tr '\n' ' ')"
  done
  echo "programs during which imgsign's gate refused a container (refusals): $(awk '$NF !~ /=(0|-)$/ {sub("refused=", "", $NF); printf "%s (%s) ", $1, $NF}' "$WORK/out/imgsign.sum")"
  echo "programs that differ (first run runc | imgsign; then PASS count of 3 runs each):"
  for t in $differ; do
    rp=$(cat "$WORK"/out/runc.sum "$WORK"/out/runc.[23].sum | awk -v t="$t" '$1 == t && $2 == "PASS"' | wc -l)
    ip=$(cat "$WORK"/out/imgsign.sum "$WORK"/out/imgsign.[23].sum | awk -v t="$t" '$1 == t && $2 == "PASS"' | wc -l)
    printf '  %-32s %s | %s   runc %s/3, imgsign %s/3\n' "$t" \
      "$(awk -v t="$t" '$1 == t {print $2}' "$WORK/out/runc.sum")" \
      "$(awk -v t="$t" '$1 == t {print $2}' "$WORK/out/imgsign.sum")" "$rp" "$ip"
  done
} | tee "$WORK/report.txt"
