//! Container engines in the kernel lab, with `imgsign enforce` running: podman 4.3 with stock
//! runc and with crun (each through `imgsign hook` in a `hooks.d`), podman with `imgsign
//! runtime` as its runtime, and containerd 1.6's `ctr run` with `imgsign runtime` as its runc
//! binary, all inside the lab's Debian 12 tree (`support::debian`) on Debian's 6.1 and 6.12
//! kernels. For each: a signed image's container gets its scope before its first exec (a first
//! exec of a binary the image does not list is denied, with an event naming the container), its
//! entrypoint runs, a binary written into its upper layer and executed is denied, a listed
//! binary copied elsewhere runs, exec of a listed binary works and of an unlisted one is denied,
//! stopping it removes its scope, and a restart gets the scope again.
//!
//! Run by `cargo xtask lab` (which attaches the Debian tree to this suite); ignored on the host,
//! whose kernel refuses BPF-LSM programs.

#[path = "support/engines.rs"]
mod engines;
mod support;

use engines::*;
use std::fs;
use std::path::{Path, PathBuf};
use support::debian::Debian;
use support::node::Node;
use support::Run;

const WORK: &str = "/tmp/vm-engines";

/// Written into the running container (its upper layer): a listed binary copied elsewhere runs;
/// the same binary with a byte appended does not.
const COPY_AND_PATCH: &str = "mkdir -p /tmp/l /tmp/u \
     && /bin/busybox cp /bin/busybox /tmp/l/busybox && /tmp/l/busybox echo COPY-RAN; \
     /bin/busybox cp /bin/busybox /tmp/u/busybox && echo >> /tmp/u/busybox && /tmp/u/busybox echo UPPER-RAN; \
     echo rc=$?";
const UPPER: &str = "/tmp/u/busybox";
/// Where the unsigned binary of the first-exec check is mounted (over the image's `/tmp`).
const MOUNTED: &str = "/tmp/busybox";

/// The node (daemon), the signed image, the runtime policy, and a directory with an unsigned
/// busybox to mount into containers.
struct Setup {
    node: Node,
    image: Image,
    policy: PathBuf,
    payload: PathBuf,
}

fn setup(name: &str) -> Setup {
    // The tree first: it is what every engine here runs in.
    let _ = Debian::enter();
    // No periodic recheck: a scope must go because the engine removed it, not because the
    // daemon's recheck collected it after the cgroup went.
    let node = Node::start(Path::new(WORK), name, "recheck_seconds = 3600\n");
    let image = signed_image();
    let policy = runtime_policy(&node, &image, &node.work);
    let payload = node.work.join("payload");
    unsigned_busybox(&payload);
    Setup { node, image, policy, payload }
}

#[track_caller]
fn assert_denied_run(r: &Run, mark: &str) {
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(!r.stdout.contains(mark), "the unsigned binary ran: {}", r.all());
}

/// Everything the issue asks of one podman configuration (`label` tells the runs apart).
fn podman_scenario(s: &Setup, podman: &Podman, label: &str) {
    let node = &s.node;
    let image = podman.pull(&s.image.reference);
    let cid = |what: &str| node.work.join(format!("{label}-{what}.cid"));
    let read_cid = |file: &Path| fs::read_to_string(file).unwrap().trim().to_string();
    let mount = format!("{}:/tmp", s.payload.display());

    // The container's first exec is of a binary the image does not list: denied, so the scope
    // was there before it.
    let file = cid("first");
    let r = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cidfile",
        file.to_str().unwrap(),
        "-v",
        &mount,
        "--entrypoint",
        MOUNTED,
        &image,
        "echo",
        "PAYLOAD-RAN",
    ]);
    assert_denied_run(&r, "PAYLOAD-RAN");
    wait_denial(node, &read_cid(&file), MOUNTED, 0);

    // The image's entrypoint runs (the signed script), then execs the unsigned binary: denied.
    let file = cid("entry");
    let r = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cidfile",
        file.to_str().unwrap(),
        "-v",
        &mount,
        &image,
        MOUNTED,
        "echo",
        "PAYLOAD-RAN",
    ]);
    assert!(r.stdout.contains(ENTRYPOINT_MARK), "the entrypoint did not run: {}", r.all());
    assert_denied_run(&r, "PAYLOAD-RAN");
    let id = read_cid(&file);
    wait_denial(node, &id, MOUNTED, 0);
    wait_scope(node, &id, false);

    // A running container: its upper layer, exec, stop, restart.
    let name = format!("engines-{label}");
    let r = podman.run(&["run", "-d", "--network", "none", "--name", &name, &image, "/bin/busybox", "sleep", "600"]);
    r.code(0);
    let id = r.stdout.trim().to_string();
    wait_scope(node, &id, true);
    let r = podman.run(&["exec", &name, "/bin/sh", "-c", COPY_AND_PATCH]);
    assert!(r.stdout.contains("COPY-RAN"), "a listed binary copied elsewhere did not run: {}", r.all());
    assert!(!r.stdout.contains("UPPER-RAN") && r.stdout.contains("rc=126"), "{}", r.all());
    wait_denial(node, &id, UPPER, 0);
    let r = podman.run(&["exec", &name, "/bin/busybox", "echo", "LISTED-RAN"]);
    r.code(0).says("LISTED-RAN");
    let r = podman.run(&["exec", &name, UPPER, "echo", "UNLISTED-RAN"]);
    assert_denied_run(&r, "UNLISTED-RAN");
    wait_denial(node, &id, UPPER, 1);

    podman.run(&["stop", "-t", "0", &name]).code(0);
    wait_scope(node, &id, false);
    podman.run(&["start", &name]).code(0);
    wait_scope(node, &id, true);
    let r = podman.run(&["exec", &name, UPPER, "echo", "UNLISTED-RAN"]);
    assert_denied_run(&r, "UNLISTED-RAN");
    wait_denial(node, &id, UPPER, 2);
    let logs = podman.run(&["logs", &name]);
    assert_eq!(logs.stdout.matches(ENTRYPOINT_MARK).count(), 2, "the entrypoint ran at each start: {}", logs.all());

    podman.run(&["rm", "-f", "-t", "0", &name]).code(0);
    wait_scope(node, &id, false);
}

/// podman with a stock runtime and `imgsign hook` (`--hooks-dir`: crun sees hooks only then).
fn hooked(s: &Setup, runtime: &str) -> Podman {
    let hooks = hooks_dir(&s.policy, &s.node.work);
    Podman {
        debian: Debian::enter(),
        global: vec!["--runtime".into(), runtime.into(), "--hooks-dir".into(), hooks.display().to_string()],
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel and the lab's Debian tree: run by `cargo xtask lab`"]
fn vm_engines_podman_runc_with_the_hook() {
    let s = setup("podman-runc");
    podman_scenario(&s, &hooked(&s, "runc"), "runc");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel and the lab's Debian tree: run by `cargo xtask lab`"]
fn vm_engines_podman_crun_with_the_hook() {
    let s = setup("podman-crun");
    podman_scenario(&s, &hooked(&s, "crun"), "crun");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel and the lab's Debian tree: run by `cargo xtask lab`"]
fn vm_engines_podman_imgsign_runtime() {
    let s = setup("podman-imgsign");
    let wrapper = runtime_wrapper(&s.policy, &s.node.work);
    let podman = Podman { debian: Debian::enter(), global: vec!["--runtime".into(), wrapper.display().to_string()] };
    podman_scenario(&s, &podman, "imgsign");
}

/// `ctr run` with `imgsign runtime` as the runc binary: ctr has no hooks directory, and a
/// shim's runtime is exactly what `--runc-binary` (a runtime's `BinaryName`) names.
#[test]
#[ignore = "needs root in a BPF-LSM kernel and the lab's Debian tree: run by `cargo xtask lab`"]
fn vm_engines_containerd_ctr_imgsign_runtime() {
    let s = setup("containerd");
    let node = &s.node;
    let wrapper = runtime_wrapper(&s.policy, &node.work);
    let ctd = Containerd::start(&node.work);
    ctd.import(&s.image.reference, CTR_IMAGE);
    let runtime = ["--runc-binary", wrapper.to_str().unwrap()];
    let mount = format!("type=bind,src={},dst=/tmp,options=rbind:ro", s.payload.display());

    // First exec unsigned: denied. Then the image's own entrypoint runs.
    let mut args = vec!["run", "--rm"];
    args.extend(runtime);
    args.extend(["--mount", &mount, CTR_IMAGE, "ctr-first", MOUNTED, "echo", "PAYLOAD-RAN"]);
    let r = ctd.run(&args);
    assert_denied_run(&r, "PAYLOAD-RAN");
    wait_denial(node, "ctr-first", MOUNTED, 0);
    let mut args = vec!["run", "--rm"];
    args.extend(runtime);
    args.extend([CTR_IMAGE, "ctr-entry"]);
    ctd.run(&args).code(0).says(ENTRYPOINT_MARK);
    wait_scope(node, "ctr-entry", false);

    // A running container: upper layer, exec, stop (kill and delete), restart.
    let id = "ctr-long";
    let mut args = vec!["run", "-d"];
    args.extend(runtime);
    args.extend([CTR_IMAGE, id, "/usr/bin/entry", "/bin/busybox", "sleep", "600"]);
    ctd.run(&args).code(0);
    wait_scope(node, id, true);
    let r = ctd.run(&["task", "exec", "--exec-id", "e1", id, "/bin/sh", "-c", COPY_AND_PATCH]);
    assert!(r.stdout.contains("COPY-RAN"), "a listed binary copied elsewhere did not run: {}", r.all());
    assert!(!r.stdout.contains("UPPER-RAN") && r.stdout.contains("rc=126"), "{}", r.all());
    wait_denial(node, id, UPPER, 0);
    ctd.run(&["task", "exec", "--exec-id", "e2", id, "/bin/busybox", "echo", "LISTED-RAN"]).code(0).says("LISTED-RAN");
    let r = ctd.run(&["task", "exec", "--exec-id", "e3", id, UPPER, "echo", "UNLISTED-RAN"]);
    assert_denied_run(&r, "UNLISTED-RAN");
    wait_denial(node, id, UPPER, 1);

    stop_task(&ctd, id);
    wait_scope(node, id, false);
    ctd.run(&["task", "start", "-d", id]).code(0);
    wait_scope(node, id, true);
    let r = ctd.run(&["task", "exec", "--exec-id", "e4", id, UPPER, "echo", "UNLISTED-RAN"]);
    assert_denied_run(&r, "UNLISTED-RAN");
    wait_denial(node, id, UPPER, 2);
    stop_task(&ctd, id);
    wait_scope(node, id, false);
    ctd.run(&["containers", "rm", id]).code(0);
}

/// `ctr task kill -s SIGKILL`, then `ctr task rm` once the task has stopped.
fn stop_task(ctd: &Containerd, id: &str) {
    ctd.run(&["task", "kill", "-s", "SIGKILL", id]).code(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = ctd.run(&["task", "rm", id]);
        if r.code == Some(0) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "ctr task rm {id}: {}", r.all());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
