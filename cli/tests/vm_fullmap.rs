//! A kernel map that is full refuses a new container instead of leaving it unenforced, in the
//! kernel lab, with the real `imgsign enforce` (its enforcer pinned under a directory of this
//! file's own, so the enforcers other tests share never see the filler), `imgsign runtime`, and
//! podman with stock runc and `imgsign hook` in the lab's Debian tree.
//!
//! The enforcer's digest map (`enf_allowed`, 262144 entries) and, in the other test, its scopes
//! map (`enf_scopes`, 4096 entries) are filled through their pins from the test process (root,
//! outside every scope) with entries no decision can reach (`bpf_lsm::enforcer::occupy`): the
//! kernel refuses a new key by the number of elements a map holds, whatever the keys are, so
//! this fills the map as real scopes and sets would, without making 4096 cgroups or a quarter
//! of a million signed files under emulation. Then: `imgsign enforce scope add` for a new
//! cgroup is refused naming the full map (and the daemon's log and event stream say so), a
//! container started by `imgsign runtime` and one started by podman are refused before their
//! entrypoint runs (a marker it would write is never written), the scope already in force
//! stays enforced (an unlisted exec in it is denied, a listed one runs), no set is left behind
//! by the refusal, and once the filler is gone a new container gets its scope and runs.
//!
//! Run by `cargo xtask lab` (which attaches the Debian tree to this suite); ignored on the host,
//! whose kernel refuses BPF-LSM programs.

// Only some of the engines' helpers are used here.
#[allow(dead_code)]
#[path = "support/engines.rs"]
mod engines;
mod support;

use bpf_lsm::enforcer::occupy::{self, Filler};
use bpf_lsm::enforcer::Enforcer;
use engines::*;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::debian::Debian;
use support::lab_cgroup::Cgroup;
use support::node::Node;
use support::*;

const WORK: &str = "/tmp/vm-fullmap";
/// This file's own enforcer: the filler never reaches the ones other tests share.
const PIN: &str = "/sys/fs/bpf/imgsign-vm-fullmap";
/// What a container's entrypoint prints and writes to its marker file, if it ever runs.
const RAN: &str = "FULLMAP-ENTRYPOINT-RAN";

/// A `dir:` tree holding busybox and a `#!` script (so its digest set differs from the
/// containers' images, and a new container cannot share it), signed by the first test key:
/// (tree, bundle).
fn signed_tree(dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("web");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("bin/busybox"), busybox()).unwrap();
    fs::write(tree.join("bin/hello"), "#!/bin/busybox sh\necho HELLO\n").unwrap();
    for f in ["bin/busybox", "bin/hello"] {
        fs::set_permissions(tree.join(f), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bundle = dir.join("web.json");
    let [a, ..] = keys();
    sign_ok(&format!("dir:{}", tree.display()), &[a], &bundle, &["--name", "web", "--version", "1"]);
    (tree, bundle)
}

/// The files of `support::busybox_layer` (the node's signed image) as an OCI bundle's rootfs,
/// config.json from `imgsign runtime spec` running `args`, and the runtime policy trusting the
/// node's image: (bundle dir, policy).
fn runtime_bundle(node: &Node, id: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    node.runtime_bundle(id, args, "imgsign-fullmap", &node.socket)
}

/// `imgsign runtime run` of a container whose entrypoint writes its marker (in its rootfs's
/// `/tmp`) and prints [`RAN`]: the run, and whether the marker was written.
fn runtime_container(node: &Node, id: &str) -> (Run, bool) {
    let script = format!("echo {RAN} > /tmp/marker; echo {RAN}");
    let (dir, policy) = runtime_bundle(node, id, &["/bin/sh", "-c", &script]);
    let mut c = imgsign();
    c.env("IMGSIGN_RUNTIME_CONFIG", &policy);
    c.arg("runtime").arg("--root").arg(node.work.join("state")).args(["run", "--bundle"]).arg(&dir).arg(id);
    let r = run(&mut c);
    (r, dir.join("rootfs/tmp/marker").exists())
}

/// `podman run --rm` (stock runc, `imgsign hook`) of the engines' signed image, its entrypoint
/// followed by a shell writing a marker into a directory mounted from the host: the run, and
/// whether the marker was written.
fn podman_container(podman: &Podman, image: &str, dir: &Path) -> (Run, bool) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let mount = format!("{}:/m", dir.display());
    let script = format!("echo {RAN} > /m/marker; echo {RAN}");
    let r = podman.run(&["run", "--rm", "--network", "none", "-v", &mount, image, "/bin/sh", "-c", &script]);
    (r, dir.join("marker").exists())
}

/// `imgsign enforce scope add NAME --cgroup CGROUP --bundle BUNDLE`.
fn scope_add(node: &Node, name: &str, cgroup: &Path, bundle: &Path) -> Run {
    run(imgsign()
        .args(["enforce", "scope", "--socket"])
        .arg(&node.socket)
        .args(["add", name, "--cgroup"])
        .arg(cgroup)
        .arg("--bundle")
        .arg(bundle))
}

/// The scope ids that have a digest set in the pinned enforcer.
fn sets_in_kernel() -> Vec<u32> {
    Enforcer::inspect_pinned(Path::new(PIN)).unwrap().scope_ids_with_sets().unwrap()
}

/// The scope already in force: its listed programs run, an unlisted copy is denied.
#[track_caller]
fn web_still_enforced(web: &Cgroup, tree: &Path, unlisted: &Path, node: &Node) {
    let (code, out) = web.run(&tree.join("bin/busybox"), &["echo", "LISTED-RAN"]);
    assert!(code == Some(0) && out.contains("LISTED-RAN"), "a listed exec in the scope in force failed: {out}");
    let (code, out) = web.run(&tree.join("bin/hello"), &[]);
    assert!(code == Some(0) && out.contains("HELLO"), "a listed script in the scope in force failed: {out}");
    let denied = node.verdicts("web", "denied").len();
    let (code, out) = web.run(unlisted, &["echo", "UNLISTED-RAN"]);
    assert!(
        code != Some(0) && !out.contains("UNLISTED-RAN") && out.contains("Operation not permitted"),
        "an unlisted exec in the scope in force was not denied: {code:?} {out}"
    );
    node.wait_for(|| node.verdicts("web", "denied").len() > denied, "the denial in scope web");
}

/// Everything the issue asks of a full `which` map (`label` names the run's files).
fn full_map_refuses_new_containers(which: Filler, map: &str, label: &str) {
    let _ = Debian::enter();
    let work = Path::new(WORK).join(label);
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let (tree, web_bundle) = signed_tree(&work);
    let web = Cgroup::new("vm-fullmap", &format!("{label}-web"));
    let scope = format!(
        "recheck_seconds = 3600\n\n[[scope]]\nname = \"web\"\ncgroup = {:?}\nmode = \"enforce\"\nbundles = [{:?}]\n",
        web.0, web_bundle
    );
    let node = Node::start_pinned(&work, "node", &scope, Path::new(PIN));
    let unlisted = unsigned_busybox(&work.join("unlisted"));
    web_still_enforced(&web, &tree, &unlisted, &node);

    // podman with stock runc and the hook, and its image, ready before the map fills.
    let image = signed_image();
    let policy = runtime_policy(&node, &image, &node.work);
    let hooks = hooks_dir(&policy, &node.work);
    let podman = Podman {
        debian: Debian::enter(),
        global: vec!["--runtime".into(), "runc".into(), "--hooks-dir".into(), hooks.display().to_string()],
    };
    let podman_image = podman.pull(&image.reference);
    let sets_before = sets_in_kernel();

    // Fill the map until the kernel refuses an entry.
    let started = Instant::now();
    let filled = occupy::occupy(Path::new(PIN), which, usize::MAX).unwrap();
    eprintln!("filled {map} with {filled} entries in {:?}", started.elapsed());
    assert!(filled > 0);
    assert_eq!(occupy::occupy(Path::new(PIN), which, usize::MAX).unwrap(), filled, "{map} is full: nothing more fits");

    // A new cgroup's scope: refused, naming the map; logged and recorded.
    let cgroup = Cgroup::new("vm-fullmap", &format!("{label}-new"));
    let r = scope_add(&node, "new", &cgroup.0, &node.bundle);
    assert_eq!(r.code, Some(1), "{}", r.all());
    r.says(&format!("BPF map {map} is full"));
    eprintln!("scope add refused: {}", r.stderr.trim());
    let failed = node.events().into_iter().find(|e| e["action"] == "apply-failed").expect("an apply-failed record");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains(&format!("BPF map {map} is full")), "{failed}");
    assert!(failed["outcome"].as_str().unwrap().contains("old plan was re-applied"), "{failed}");
    eprintln!("daemon record: {failed}");
    let log = fs::read_to_string(node.work.join("daemon.err")).unwrap();
    assert!(log.contains("apply-failed") && log.contains(&format!("BPF map {map} is full")), "daemon log: {log}");
    assert!(!node.scopes().contains("new"), "{}", node.scopes());

    // Containers: refused before their entrypoint runs.
    let (r, marker) = runtime_container(&node, "rt-full");
    eprintln!("imgsign runtime: exit {:?}: {}", r.code, r.stderr.trim());
    assert!(r.code != Some(0) && !marker && !r.stdout.contains(RAN), "the container ran: {}", r.all());
    r.says(&format!("BPF map {map} is full"));
    let (r, marker) = podman_container(&podman, &podman_image, &node.work.join("podman-full"));
    eprintln!("podman (runc + hook): exit {:?}: {}", r.code, r.stderr.trim());
    assert!(r.code != Some(0) && !marker && !r.stdout.contains(RAN), "the container ran: {}", r.all());
    r.says(&format!("BPF map {map} is full"));

    // The scope in force keeps enforcing; nothing of the refused scopes is left in the kernel
    // (a set written for a scope whose own entry was refused is forgotten after the grace
    // period).
    web_still_enforced(&web, &tree, &unlisted, &node);
    assert_eq!(node.scopes().lines().filter(|l| l.contains("control")).count(), 0, "{}", node.scopes());
    if which == Filler::Scopes {
        let deadline = Instant::now() + Duration::from_secs(30);
        while sets_in_kernel() != sets_before {
            assert!(Instant::now() < deadline, "sets left: {:?}, before {:?}", sets_in_kernel(), sets_before);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Room made: the same requests succeed, and the containers run in their scopes.
    occupy::release(Path::new(PIN), which, filled).unwrap();
    scope_add(&node, "new", &cgroup.0, &node.bundle).code(0);
    assert!(node.scopes().contains("new"), "{}", node.scopes());
    let (r, marker) = runtime_container(&node, "rt-room");
    assert!(r.code == Some(0) && marker && r.stdout.contains(RAN), "{}", r.all());
    let (r, marker) = podman_container(&podman, &podman_image, &node.work.join("podman-room"));
    assert!(r.code == Some(0) && marker && r.stdout.contains(RAN), "{}", r.all());
    let added = node.events().iter().filter(|e| e["action"] == "scope-added").count();
    assert!(added >= 3, "scope-added records: {added}");
    web_still_enforced(&web, &tree, &unlisted, &node);
    run(imgsign().args(["enforce", "scope", "--socket"]).arg(&node.socket).args(["rm", "new"])).code(0);
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel and the lab's Debian tree: run by `cargo xtask lab`"]
fn vm_fullmap_digests_full_refuses_new_containers() {
    full_map_refuses_new_containers(Filler::Digests, "enf_allowed", "digests");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel and the lab's Debian tree: run by `cargo xtask lab`"]
fn vm_fullmap_scopes_full_refuses_new_containers() {
    full_map_refuses_new_containers(Filler::Scopes, "enf_scopes", "scopes");
}
