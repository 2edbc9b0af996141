//! Revocation in force without a reload, in the kernel lab: the real `imgsign enforce` (policy
//! `recheck_seconds = 1`) withdraws a scope's digests within seconds of its signer's key being
//! revoked in the trust store, while another scope's bundle is broken, and leaves a third
//! scope's digests alone.
//!
//! Run by `cargo xtask lab`; ignored on the host, whose kernel refuses BPF-LSM programs.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::lab_cgroup::Cgroup;
use support::*;

const WORK: &str = "/tmp/vm-recheck";

/// A cgroup of this file's tests (`/sys/fs/cgroup/vm-recheck-NAME`).
fn cgroup(name: &str) -> Cgroup {
    Cgroup::new("vm-recheck", name)
}

/// A `dir:` tree holding a copy of busybox, signed by `key` as `name`: (tree, bundle).
fn signed_tree(name: &str, key: &Key) -> (PathBuf, PathBuf) {
    let tree = Path::new(WORK).join(name);
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("bin/busybox"), busybox()).unwrap();
    fs::set_permissions(tree.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = Path::new(WORK).join(format!("{name}.json"));
    sign_ok(&format!("dir:{}", tree.display()), &[key], &bundle, &["--name", name, "--version", "1"]);
    (tree, bundle)
}

struct Daemon(Child, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = imgsign().args(["enforce", "--detach", "--policy"]).arg(&self.1).output();
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_a_revoked_key_loses_its_scope_within_seconds_without_a_reload() {
    let _ = fs::remove_dir_all(WORK);
    fs::create_dir_all(WORK).unwrap();
    let [a, b, _] = keys();
    let trust = trust_store(&Path::new(WORK).join("trust"), &[a, b], 1);
    let (web, web_bundle) = signed_tree("web", a);
    let (rev, rev_bundle) = signed_tree("rev", b);
    let (_, broken_bundle) = signed_tree("broken", a);
    let cgroups = [cgroup("web"), cgroup("rev"), cgroup("broken")];
    let events = Path::new(WORK).join("events.jsonl");
    let mut policy = format!(
        "trust = {:?}\nevents = {:?}\npin_dir = \"/sys/fs/bpf/imgsign-vm-recheck\"\ncontrol = \"{WORK}/enforce.sock\"\nrecheck_seconds = 1\n",
        trust, events
    );
    for (name, cgroup, bundle) in
        [("web", &cgroups[0], &web_bundle), ("rev", &cgroups[1], &rev_bundle), ("broken", &cgroups[2], &broken_bundle)]
    {
        policy.push_str(&format!(
            "\n[[scope]]\nname = {name:?}\ncgroup = {:?}\nmode = \"enforce\"\nbundles = [{:?}]\n",
            cgroup.0, bundle
        ));
    }
    let policy_path = Path::new(WORK).join("policy.toml");
    fs::write(&policy_path, policy).unwrap();
    let child = imgsign()
        .args(["enforce", "--policy"])
        .arg(&policy_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = Daemon(child, policy_path);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string(&events).unwrap_or_default().contains("\"started\"") {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let web_busybox = web.join("bin/busybox");
    let rev_busybox = rev.join("bin/busybox");
    assert_eq!(cgroups[0].run(&web_busybox, &["true"]).0, Some(0));
    assert_eq!(cgroups[1].run(&rev_busybox, &["true"]).0, Some(0));

    // Break one scope's bundle and revoke the other's signer; no SIGHUP.
    fs::write(&broken_bundle, b"{ not a bundle").unwrap();
    let revoked = Instant::now();
    let r = run(imgsign().arg("trust").arg("revoke").arg(&trust).arg(&b.public));
    r.code(0);
    let mut denied = false;
    while revoked.elapsed() < Duration::from_secs(15) {
        let (code, out) = cgroups[1].run(&rev_busybox, &["true"]);
        if code != Some(0) && out.contains("Operation not permitted") {
            denied = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = revoked.elapsed();
    let log = || fs::read_to_string(&events).unwrap_or_default();
    assert!(denied, "still allowed 15 s after the revocation; events:\n{}", log());
    eprintln!("revocation in force after {took:?}");
    // The web scope, signed by the key that stays, keeps its digests.
    assert_eq!(cgroups[0].run(&web_busybox, &["true"]).0, Some(0), "{}", log());
    // The record follows the kernel update.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(log().contains("\"scope-failed\"") && log().contains("revoked")) {
        assert!(Instant::now() < deadline, "no scope-failed record naming the revocation:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
