//! `imgsign runtime` in the kernel lab (root, BPF-LSM, unified cgroup v2), as an engine drives
//! it (`create`/`start` through `run`): the container's root file system is admitted against
//! the node's runtime policy, and its cgroup is a scope of the enforcement daemon, holding the
//! image's signed digests, before the container's process runs anything.
//!
//! Run by `cargo xtask lab`; ignored on the host, whose kernel refuses BPF-LSM programs.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use support::node::Node;
use support::*;

const WORK: &str = "/tmp/vm-runtime";

/// A script that is not in the image: exec'ing it must be refused in an enforced container.
const DROP_AND_RUN: &str = "printf '#!/bin/sh\\necho UNSIGNED-RAN\\n' > /tmp/dropped && chmod 755 /tmp/dropped; \
                            /tmp/dropped; echo \"rc=$?\"";

/// An OCI bundle for container `id` running `args`, and the runtime policy trusting `node`'s
/// image, with the daemon's socket at `socket`.
fn bundle(node: &Node, id: &str, args: &[&str], socket: &Path) -> (PathBuf, PathBuf) {
    node.runtime_bundle(id, args, "imgsign-runtime", socket)
}

/// `imgsign runtime --root STATE run --bundle DIR ID`, with the policy at `policy`.
fn runtime_run(node: &Node, dir: &Path, policy: &Path, id: &str) -> Run {
    let mut c = imgsign();
    c.env("IMGSIGN_RUNTIME_CONFIG", policy);
    c.arg("runtime").arg("--root").arg(node.work.join("state")).args(["run", "--bundle"]).arg(dir).arg(id);
    run(&mut c)
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_runtime_scopes_the_container_before_its_process_runs() {
    let node = Node::start(Path::new(WORK), "scoped", "");

    // The signed rootfs runs; a script written inside it is refused by the kernel, and the
    // event names the container.
    let (dir, policy) = bundle(&node, "rt-drop", &["/bin/sh", "-c", DROP_AND_RUN], &node.socket);
    let r = runtime_run(&node, &dir, &policy, "rt-drop");
    r.code(0);
    assert!(r.stdout.contains("rc=126") && !r.stdout.contains("UNSIGNED-RAN"), "{}", r.all());
    node.wait_for(
        || node.events().iter().any(|e| e["verdict"] == "denied" && e["container"]["id"] == "rt-drop"),
        "the denial naming container rt-drop",
    );
    let denied = node.events().into_iter().find(|e| e["verdict"] == "denied").unwrap();
    assert_eq!(denied["path"], "/tmp/dropped", "{denied}");
    assert!(denied["cgroup"].as_str().unwrap_or("").ends_with("/imgsign-runtime/rt-drop"), "{denied}");
    // The container is gone, and so is its scope.
    assert!(!node.scopes().contains("rt-drop"), "scope left: {}", node.scopes());

    // A byte of the signed busybox changed: refused before anything is created.
    let (dir, policy) = bundle(&node, "rt-tampered", &["/bin/busybox", "echo", "RAN"], &node.socket);
    let mut tampered = busybox();
    tampered[4096] ^= 1;
    fs::write(dir.join("rootfs/bin/busybox"), tampered).unwrap();
    let r = runtime_run(&node, &dir, &policy, "rt-tampered");
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(!r.stdout.contains("RAN") && r.all().contains("/bin/busybox"), "{}", r.all());
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_runtime_refuses_to_run_unenforced_by_default() {
    let node = Node::start(Path::new(WORK), "nodaemon", "");
    let missing = node.work.join("no-such.sock");
    let (dir, policy) = bundle(&node, "rt-alone", &["/bin/busybox", "echo", "RAN"], &missing);
    let r = runtime_run(&node, &dir, &policy, "rt-alone");
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(!r.stdout.contains("RAN"), "{}", r.all());
    assert!(r.all().contains("enforce"), "the reason names the enforcer: {}", r.all());
}
