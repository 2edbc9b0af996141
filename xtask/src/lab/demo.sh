#!/bin/busybox sh
# The kernel-enforcement demo, run by `cargo xtask lab demo` inside the lab VM (root, BPF-LSM
# active, cgroup2 at /sys/fs/cgroup, bpffs, securityfs) with the release imgsign at
# /lab/bin/imgsign. Any expectation not met prints "DEMO FAILED: ..." and exits 1, which fails
# the lab run.
IMGSIGN=/lab/bin/imgsign
SCOPE=/sys/fs/cgroup/demo-app
DEMO=/tmp/demo
DAEMON=

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fail() {
    echo "DEMO FAILED: $*"
    [ -n "$DAEMON" ] && kill -9 "$DAEMON" 2>/dev/null
    [ -f "$DEMO/daemon.err" ] && { echo "daemon stderr:"; cat "$DEMO/daemon.err"; }
    "$IMGSIGN" enforce --policy "$DEMO/policy.toml" --detach >/dev/null 2>&1
    exit 1
}
# in_scope CMD...: runs CMD in the scope's cgroup (the shell moves itself there, then execs).
in_scope() { SCOPE="$SCOPE" sh -c 'echo $$ > "$SCOPE/cgroup.procs" && exec "$@"' sh "$@"; }
# scoped CMD...: shows and runs CMD in the scope; its output (stdout+stderr) in $OUT, status in $RC.
scoped() {
    printf '[cgroup %s] $ %s\n' "$SCOPE" "$*"
    OUT=$(in_scope "$@" 2>&1)
    RC=$?
    [ -n "$OUT" ] && printf '%s\n' "$OUT"
}
expect_runs() {
    scoped "$@"
    [ "$RC" = 0 ] || fail "expected $1 to run in the scope (exit $RC)"
    echo "(exit code 0: it ran)"
}
expect_denied() {
    scoped "$@"
    case "$OUT" in
        *"Operation not permitted"*) ;;
        *) fail "expected the kernel to refuse $1 with 'Operation not permitted' (exit $RC)" ;;
    esac
    [ "$RC" != 0 ] || fail "expected a non-zero exit for $1"
    echo "(exit code $RC: exec refused by the kernel, as it should)"
}
# wait_for PATTERN FILE SECONDS: until a line of FILE contains PATTERN.
wait_for() {
    i=0
    while [ "$i" -lt "$(($3 * 10))" ]; do
        grep -q "$1" "$2" 2>/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

echo "kernel $(uname -r); active LSMs: $(cat /sys/kernel/security/lsm)"
mkdir -p "$DEMO" && cd "$DEMO" || fail "cannot make $DEMO"
export IMGSIGN_PASSPHRASE="demo passphrase"

step "make a signing key and a trust store that trusts it (the real imgsign binary, inside the VM)"
run "$IMGSIGN" keygen --out signer || fail "keygen"
run "$IMGSIGN" trust init trust || fail "trust init"
run "$IMGSIGN" trust add trust signer.pub || fail "trust add"

step "sign a dir: tree holding one binary (a copy of busybox-static)"
mkdir -p app/bin && cp /bin/busybox app/bin/busybox || fail "copy busybox"
run "$IMGSIGN" sign dir:"$DEMO/app" --key signer.key --out app.sigstore.json --name app --version 1 || fail "sign"

step "an enforce policy: one scope = the cgroup v2 directory $SCOPE, mode enforce"
mkdir -p "$SCOPE" || fail "mkdir $SCOPE"
cat > policy.toml <<EOF
trust = "trust"
events = "events.jsonl"
pin_dir = "/sys/fs/bpf/imgsign-demo"

[[scope]]
name = "app"
cgroup = "$SCOPE"
mode = "enforce"
bundles = ["app.sigstore.json"]
EOF
run cat policy.toml
run "$IMGSIGN" enforce --policy policy.toml --check || fail "enforce --check"

step "start the daemon in the background: it loads the BPF-LSM enforcer and writes events to events.jsonl"
printf '$ %s &\n' "$IMGSIGN enforce --policy policy.toml"
"$IMGSIGN" enforce --policy policy.toml >daemon.out 2>daemon.err </dev/null &
DAEMON=$!
wait_for '"action":"started"' events.jsonl 60 || fail "the daemon did not report its plan within 60 s"
echo "daemon pid $DAEMON; its first line:"
head -n 1 events.jsonl

step "the signed binary runs inside the scope"
expect_runs "$DEMO/app/bin/busybox" echo "hello from the signed busybox"

step "someone drops a new binary into the tree (busybox with one byte appended) and runs it in the scope"
cp app/bin/busybox app/bin/busybox-new && printf '\n' >> app/bin/busybox-new && chmod 755 app/bin/busybox-new || fail "make busybox-new"
echo "sha256 of the new binary: $(sha256sum app/bin/busybox-new | cut -d' ' -f1) (not in the signed manifest)"
expect_denied "$DEMO/app/bin/busybox-new" echo "this must not run"

step "the daemon reported the denial (events.jsonl)"
wait_for '"verdict":"denied"' events.jsonl 20 || fail "no denial event in events.jsonl within 20 s"
grep '"verdict":"denied"' events.jsonl | head -n 1
grep '"verdict":"denied"' events.jsonl | head -n 1 | grep -q '"path":"'"$DEMO"'/app/bin/busybox-new"' ||
    fail "the denial event does not name $DEMO/app/bin/busybox-new"

step "what is pinned in the kernel"
run "$IMGSIGN" enforce --policy policy.toml --status || fail "enforce --status"

step "kill -9 the daemon: the pinned programs keep enforcing"
run kill -9 "$DAEMON"
wait "$DAEMON" 2>/dev/null
DAEMON=
expect_denied "$DEMO/app/bin/busybox-new" echo "this must not run either"
expect_runs "$DEMO/app/bin/busybox" echo "the signed busybox still runs"

step "detach: unpin the enforcer; enforcement ends"
run "$IMGSIGN" enforce --policy policy.toml --detach || fail "enforce --detach"
# Unpinned programs go away once the kernel releases them (RCU): give it a moment.
i=0
until in_scope "$DEMO/app/bin/busybox-new" true 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || fail "busybox-new is still refused 10 s after --detach"
    sleep 0.1
done
expect_runs "$DEMO/app/bin/busybox-new" echo "the new binary runs again: nothing enforces any more"

# ---------------------------------------------------------------------------------------------
step "a container image: busybox in one layer, packed as an OCI layout with busybox's own tools"
# blob FILE: stores FILE under image/blobs/sha256 and prints its digest.
blob() { d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$DEMO/image/blobs/sha256/$d"; echo "$d"; }
mkdir -p image/blobs/sha256 rootfs/bin || fail "mkdir image"
for d in dev etc proc run sys tmp; do mkdir -p "rootfs/$d"; done
chmod 1777 rootfs/tmp
cp /bin/busybox rootfs/bin/busybox && ln -s busybox rootfs/bin/sh || fail "rootfs"
echo "signed" > rootfs/etc/motd
(cd rootfs && tar -cf ../layer.tar bin dev etc proc run sys tmp) || fail "tar the layer"
LAYER=$(blob layer.tar)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$LAYER" > config.json
CONFIG=$(blob config.json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$CONFIG" "$(wc -c < config.json)" "$LAYER" "$(wc -c < layer.tar)" > manifest.json
MANIFEST=$(blob manifest.json)
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
    "$MANIFEST" "$(wc -c < manifest.json)" > image/index.json
echo '{"imageLayoutVersion":"1.0.0"}' > image/oci-layout
echo "image: oci:$DEMO/image:v1 (manifest sha256:$MANIFEST)"
run "$IMGSIGN" sign oci:"$DEMO/image":v1 --key signer.key --out image.sigstore.json --name busybox --version 1 ||
    fail "sign the image"

step "the daemon again, enforcing nothing yet: containers register their scopes over its control socket"
printf 'trust = "trust"\nevents = "node-events.jsonl"\npin_dir = "/sys/fs/bpf/imgsign-demo"\ncontrol = "%s/enforce.sock"\n' \
    "$DEMO" > node.toml
run cat node.toml
"$IMGSIGN" enforce --policy node.toml >daemon.out 2>daemon.err </dev/null &
DAEMON=$!
wait_for '"action":"started"' node-events.jsonl 60 || fail "the daemon did not start within 60 s"
RUN="$IMGSIGN run oci:$DEMO/image:v1 --bundle image.sigstore.json --trust trust --store $DEMO/store --state-root $DEMO/containers --enforce --control-socket $DEMO/enforce.sock"

step "imgsign run --enforce: verified, unpacked into the store, its cgroup a scope before its first instruction"
printf '$ %s --name hello -- /bin/sh -c %s\n' "$RUN" "'echo hello from a verified container; cat /etc/motd'"
OUT=$($RUN --name hello -- /bin/sh -c 'echo hello from a verified container; cat /etc/motd' 2>&1)
RC=$?
printf '%s\n' "$OUT"
[ "$RC" = 0 ] || fail "the signed container did not run (exit $RC)"
case "$OUT" in *"hello from a verified container"*) ;; *) fail "no greeting from the container" ;; esac

step "inside the container an attacker writes a script and runs it: the kernel refuses it, the daemon kills the container"
SCRIPT='printf "#!/bin/sh\necho PAYLOAD RAN\n" > /tmp/payload; chmod 755 /tmp/payload; /tmp/payload; echo "exec exit code $?"; sleep 10; echo STILL RUNNING'
printf '$ %s --name attacked --on-violation kill -- /bin/sh -c %s\n' "$RUN" "'$SCRIPT'"
OUT=$($RUN --name attacked --on-violation kill -- /bin/sh -c "$SCRIPT" 2>&1)
RC=$?
printf '%s\n' "$OUT"
echo "(imgsign run exit code $RC)"
case "$OUT" in *"PAYLOAD RAN"*) fail "the unsigned script ran" ;; esac
case "$OUT" in *"STILL RUNNING"*) fail "the container outlived its violation" ;; esac
[ "$RC" = 137 ] || fail "expected exit code 137 (SIGKILL, the daemon's response), got $RC"
wait_for '"record":"response"' node-events.jsonl 20 || fail "no response record in node-events.jsonl"
echo "the daemon's records of scope attacked (node-events.jsonl):"
grep '"scope":"attacked"' node-events.jsonl | grep -v '"record":"plan"'

kill "$DAEMON"; wait "$DAEMON" 2>/dev/null; DAEMON=
run "$IMGSIGN" enforce --policy node.toml --detach || fail "enforce --detach"

step "demo: signed, enforced by the kernel, denial reported, enforcement outlived the daemon, detached; a verified container ran enforced, and was killed for running what its image did not sign"
