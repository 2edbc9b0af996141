//! `imgsign run --enforce` in the kernel lab (root, BPF-LSM, unified cgroup v2): the real
//! `imgsign` (`/lab/bin/imgsign`) runs the enforcement daemon and containers, and the kernel
//! judges every exec inside them by the image's signed manifest.
//!
//! Run by `cargo xtask lab`; ignored on the host, whose kernel refuses BPF-LSM programs.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::node::Node;
use support::*;

/// On the lab's ext4 scratch disk (the store and the containers' upper layers).
const WORK: &str = "/tmp/vm-run";
const CGROUPS: &str = "/sys/fs/cgroup/imgsign";

/// A script that is not in the image: exec'ing it must be refused in an enforced container.
const DROP_AND_RUN: &str = "printf '#!/bin/sh\\necho UNSIGNED-RAN\\n' > /tmp/dropped && chmod 755 /tmp/dropped; \
                            /tmp/dropped; echo \"rc=$?\"";

/// `imgsign run --enforce ... --name ID EXTRA... -- CMD...` (`--enforce=MODE` in EXTRA
/// replaces the plain `--enforce`).
fn run_cmd(node: &Node, id: &str, extra: &[&str], cmd: &[&str]) -> Command {
    let mut c = imgsign();
    c.arg("run").arg(&node.image).arg("--bundle").arg(&node.bundle).arg("--trust").arg(&node.trust);
    c.arg("--store").arg(Path::new(WORK).join("store")).arg("--state-root").arg(Path::new(WORK).join("state"));
    c.arg("--no-record").arg("--name").arg(id).arg("--control-socket").arg(&node.socket);
    if !extra.iter().any(|a| a.starts_with("--enforce")) {
        c.arg("--enforce");
    }
    c.args(extra).arg("--").args(cmd);
    c
}

fn start(name: &str) -> Node {
    Node::start(Path::new(WORK), name, "")
}

fn sh(script: &str) -> [&str; 3] {
    ["/bin/sh", "-c", script]
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_run_enforce_runs_the_signed_image_and_the_kernel_refuses_what_it_lacks() {
    let node = start("enforce");

    // The signed image runs; its scope is there while it runs and gone after.
    let r = run(&mut run_cmd(&node, "ok", &[], &sh("echo ok; cat /proc/self/cgroup")));
    r.code(0);
    assert!(r.stdout.starts_with("ok\n"), "{}", r.all());
    assert!(!node.scopes().contains("scope ok "), "scope left: {}", node.scopes());
    assert!(!Path::new(CGROUPS).join("ok").exists(), "cgroup left");

    // A script written inside the container is not in the manifest: the kernel refuses it.
    let r = run(&mut run_cmd(&node, "drop", &[], &sh(DROP_AND_RUN)));
    r.code(0);
    assert!(!r.stdout.contains("UNSIGNED-RAN"), "{}", r.all());
    assert!(r.stdout.contains("rc=126"), "{}", r.all());
    node.wait_for(|| !node.verdicts("drop", "denied").is_empty(), "the denial event of scope drop");
    let denied = &node.verdicts("drop", "denied")[0];
    assert_eq!(denied["path"], "/tmp/dropped", "{denied}");
    assert_eq!(denied["cgroup"], format!("{CGROUPS}/drop"), "{denied}");
    assert_eq!(
        (denied["container"]["id"].as_str(), denied["container"]["image"].as_str()),
        (Some("drop"), Some(node.image.as_str())),
        "{denied}"
    );

    // --enforce=audit: the same script runs, reported.
    let r = run(&mut run_cmd(&node, "audit", &["--enforce=audit"], &sh(DROP_AND_RUN)));
    r.code(0);
    assert!(r.stdout.contains("UNSIGNED-RAN") && r.stdout.contains("rc=0"), "{}", r.all());
    node.wait_for(|| !node.verdicts("audit", "audited").is_empty(), "the audit event of scope audit");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_run_enforce_holds_from_the_entrypoints_first_instruction() {
    let node = start("first");
    // The entrypoint itself is an unsigned program (busybox plus one byte, from a volume):
    // the scope is in force before it, so it never runs.
    let host_dir = Path::new(WORK).join("first").join("volume");
    fs::create_dir_all(&host_dir).unwrap();
    let mut unsigned = busybox();
    unsigned.push(b'\n');
    fs::write(host_dir.join("busybox"), unsigned).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(host_dir.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let volume = format!("{}:/mnt:ro", host_dir.display());
    let r = run(&mut run_cmd(&node, "first", &["--volume", &volume], &["/mnt/busybox", "echo", "UNSIGNED-RAN"]));
    assert!(!r.stdout.contains("UNSIGNED-RAN"), "{}", r.all());
    assert_ne!(r.code, Some(0), "{}", r.all());
    node.wait_for(|| !node.verdicts("first", "denied").is_empty(), "the denial of the entrypoint");
    // Without --enforce, the same command runs: what refused it was the scope.
    let mut c = imgsign();
    c.arg("run").arg(&node.image).arg("--bundle").arg(&node.bundle).arg("--trust").arg(&node.trust);
    c.arg("--store").arg(Path::new(WORK).join("store")).arg("--state-root").arg(Path::new(WORK).join("state"));
    c.args(["--no-record", "--name", "first-plain", "--volume", &volume, "--", "/mnt/busybox", "echo", "RAN"]);
    let r = run(&mut c);
    r.code(0);
    assert_eq!(r.stdout, "RAN\n", "{}", r.all());
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_run_on_violation_kills_or_freezes_the_container() {
    let node = start("respond");
    let script = format!("{DROP_AND_RUN}; sleep 30; echo SURVIVED");

    // kill: the container ends with SIGKILL, well before its sleep would.
    let started = Instant::now();
    let r = run(&mut run_cmd(&node, "killed", &["--on-violation", "kill"], &sh(&script)));
    r.code(137);
    assert!(!r.stdout.contains("SURVIVED") && !r.stdout.contains("UNSIGNED-RAN"), "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
    let responses: Vec<_> = node.events().into_iter().filter(|e| e["record"] == "response").collect();
    assert_eq!(responses[0]["action"], "kill", "{responses:?}");
    assert_eq!(responses[0]["scope"], "killed", "{responses:?}");

    // freeze: the container stops where it is; the operator snapshots, then kills it.
    let mut frozen = run_cmd(&node, "frozen", &["--on-violation", "freeze"], &sh(&script));
    let child = frozen.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let events = Path::new(CGROUPS).join("frozen").join("cgroup.events");
    node.wait_for(
        || fs::read_to_string(&events).is_ok_and(|t| t.lines().any(|l| l == "frozen 1")),
        "the container's cgroup to be frozen",
    );
    let state = Path::new(WORK).join("state");
    let dest = Path::new(WORK).join("respond").join("snapshot");
    let r = run(imgsign()
        .arg("snapshot")
        .arg("frozen")
        .arg(&dest)
        .arg("--state-root")
        .arg(&state)
        .arg("--control-socket")
        .arg(&node.socket));
    r.code(0);
    assert!(fs::read_to_string(dest.join("processes.json")).unwrap().contains("sleep"), "{}", r.all());
    // The snapshot holds the daemon's records of the container's scope: the denial, the response.
    let events: Vec<serde_json::Value> = serde_json::from_slice(&fs::read(dest.join("events.json")).unwrap()).unwrap();
    assert!(events.iter().any(|e| e["verdict"] == "denied" && e["path"] == "/tmp/dropped"), "{events:?}");
    assert!(events.iter().any(|e| e["record"] == "response" && e["action"] == "freeze"), "{events:?}");
    run(imgsign().args(["kill", "frozen", "--state-root"]).arg(&state)).code(0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SURVIVED"), "{out:?}");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_run_enforce_refuses_without_the_daemon_or_its_trust() {
    let node = start("refuse");
    // No daemon at that socket: nothing runs.
    let c = run_cmd(&node, "nodaemon", &[], &sh("echo RAN"));
    let args: Vec<_> = c.get_args().map(|a| a.to_os_string()).collect();
    let socket_at = args.iter().position(|a| a == "--control-socket").unwrap() + 1;
    let mut c = imgsign();
    for (i, a) in args.iter().enumerate() {
        c.arg(if i == socket_at { Path::new("/run/no-such-daemon.sock").as_os_str() } else { a });
    }
    let r = run(&mut c);
    r.code(125).says("cannot reach the enforcement daemon").says("unenforced");
    assert!(!r.stdout.contains("RAN"), "{}", r.all());
    assert!(!Path::new(CGROUPS).join("nodaemon").exists(), "cgroup left");

    // A signer that `run`'s trust store accepts but the node's does not: refused by the daemon.
    let [_, b, _] = keys();
    let other = Path::new(WORK).join("refuse");
    let bundle = sign_ok(&node.image, &[b], &other.join("by-b.json"), &["--name", "bb", "--version", "1"]);
    let trust = trust_store(&other.join("trust-b"), &[b], 1);
    let mut c = imgsign();
    c.arg("run").arg(&node.image).arg("--bundle").arg(&bundle).arg("--trust").arg(&trust);
    c.arg("--store").arg(Path::new(WORK).join("store")).arg("--state-root").arg(Path::new(WORK).join("state"));
    c.args(["--no-record", "--name", "untrusted", "--enforce", "--control-socket"]).arg(&node.socket);
    c.args(["--", "/bin/sh", "-c", "echo RAN"]);
    let r = run(&mut c);
    r.code(1).says("refused");
    assert!(!r.stdout.contains("RAN"), "{}", r.all());
    assert!(!Path::new(CGROUPS).join("untrusted").exists(), "cgroup left");
    assert!(!node.scopes().contains("scope untrusted "), "{}", node.scopes());
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_run_a_deny_unknown_parent_fails_unregistered_containers_closed() {
    fs::create_dir_all(CGROUPS).unwrap();
    let parent =
        format!("\n[[scope]]\nname = \"containers\"\ncgroup = {CGROUPS:?}\nmode = \"enforce\"\ndeny_unknown = true\n");
    let node = Node::start(Path::new(WORK), "unknown", &parent);
    // Without --enforce nothing gives the container a scope of its own: the parent's, which
    // allows nothing, refuses its entrypoint.
    let mut c = imgsign();
    c.arg("run").arg(&node.image).arg("--bundle").arg(&node.bundle).arg("--trust").arg(&node.trust);
    c.arg("--store").arg(Path::new(WORK).join("store")).arg("--state-root").arg(Path::new(WORK).join("state"));
    c.args(["--no-record", "--name", "unregistered", "--", "/bin/sh", "-c", "echo RAN"]);
    let r = run(&mut c);
    assert!(!r.stdout.contains("RAN"), "{}", r.all());
    assert_ne!(r.code, Some(0), "{}", r.all());
    node.wait_for(|| !node.verdicts("containers", "denied").is_empty(), "a denial in the parent scope");
    // With --enforce the container's own scope, nearer, holds the image's digests.
    let r = run(&mut run_cmd(&node, "registered", &[], &sh("echo ok")));
    r.code(0);
    assert_eq!(r.stdout, "ok\n", "{}", r.all());
}
