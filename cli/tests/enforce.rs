//! `imgsign enforce`: `--check` verifies every bundle of a policy and prints the plan without a
//! kernel (exit 0; 1 when a bundle does not verify; 2 for a bad policy); the daemon, `--status`
//! and `--detach` exit 2 with what is missing on a host that cannot run BPF-LSM programs.

mod support;

use std::path::{Path, PathBuf};
use support::*;

/// A cgroup v2 directory for one test, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(name: &str) -> Option<Cgroup> {
        let mounts = enforce::cgroup::cgroup2_mounts().expect("mountinfo");
        let Some(root) =
            mounts.into_iter().filter(|m| m.starts_with("/sys/fs/cgroup")).min_by_key(|m| m.as_os_str().len())
        else {
            eprintln!("\n*** SKIPPED: no cgroup v2 file system is mounted under /sys/fs/cgroup ***\n");
            return None;
        };
        let path = root.join(format!("imgsign-cli-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("creating cgroup {} (tests run as root): {e}", path.display()));
        Some(Cgroup(path))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn policy(dir: &Path, trust: &Path, cgroup: &Path, bundle: &str, image: Option<&str>) -> PathBuf {
    let mut text = format!(
        "trust = {:?}\npin_dir = \"/sys/fs/bpf/imgsign-cli-test\"\n\n[[scope]]\nname = \"web\"\ncgroup = {:?}\nmode = \"enforce\"\nbundles = [{bundle:?}]\n",
        trust.display().to_string(),
        cgroup.display().to_string()
    );
    if let Some(image) = image {
        text.push_str(&format!("image = {image:?}\n"));
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn enforce(policy: &Path, extra: &[&str]) -> Run {
    run(imgsign().arg("enforce").arg("--policy").arg(policy).args(extra))
}

#[test]
fn check_verifies_and_prints_the_plan() {
    let Some(cgroup) = Cgroup::new("check") else { return };
    let [a, ..] = keys();
    let tmp = tempdir();
    let image = testdata::hostile::write_good_image(&tmp.path().join("image")).unwrap();
    sign_ok(&image.reference(), &[a], &tmp.path().join("web.sigstore.json"), &["--name", "web", "--version", "4"]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    // Relative bundle path: resolved against the policy's directory.
    let policy = policy(tmp.path(), &trust, &cgroup.0, "web.sigstore.json", Some(&image.reference()));

    let human = enforce(&policy, &["--check"]);
    human
        .code(0)
        .says("scope web")
        .says("1 allowed digest")
        .says("\"web\" version 4")
        .says(&a.id)
        .says("every file matches")
        .says("nothing was loaded");
    use std::os::unix::fs::MetadataExt as _;
    let id = std::fs::metadata(&cgroup.0).unwrap().ino();
    human.says(&format!("(id {id})"));

    let json = enforce(&policy, &["--check", "--json"]);
    json.code(0);
    let plan = json.json();
    assert_eq!(plan["scopes"][0]["name"], "web");
    assert_eq!(plan["scopes"][0]["cgroupId"], id);
    assert_eq!(plan["scopes"][0]["mode"], "enforce");
    // The image's only regular file is bin/tool.
    assert_eq!(plan["scopes"][0]["digests"], serde_json::json!([testdata::sha256_hex(b"#!/bin/sh\necho tool\n")]));
    assert_eq!(plan["versions"]["web"], 4);

    // --check records nothing: the trust store has no version for "web".
    run(imgsign().args(["trust", "show"]).arg(&trust)).code(0);
    assert!(keys::TrustStore::open(&trust).unwrap().highest_version("web").is_none());
}

#[test]
fn check_refuses_a_bundle_that_does_not_verify() {
    let Some(cgroup) = Cgroup::new("refuse") else { return };
    let [a, b, ..] = keys();
    let tmp = tempdir();
    let image = testdata::hostile::write_good_image(&tmp.path().join("image")).unwrap();
    sign_ok(&image.reference(), &[b], &tmp.path().join("by-b.json"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let policy = policy(tmp.path(), &trust, &cgroup.0, "by-b.json", None);
    let refused = enforce(&policy, &["--check"]);
    refused.code(1).says("scope \"web\"").says("by-b.json").says("signatures");
    assert_eq!(refused.stdout, "", "no plan printed");
}

#[test]
fn a_bad_policy_exits_2_naming_the_field() {
    let tmp = tempdir();
    let path = tmp.path().join("policy.toml");
    std::fs::write(&path, "trust = \"t\"\n[[scope]]\nname = \"web\"\ncgroup = \"/sys/fs/cgroup/web\"\nmode = \"strict\"\nbundles = [\"a\"]\n").unwrap();
    enforce(&path, &["--check"]).code(2).says("policy.toml").says("strict").says("line 5");
    enforce(&tmp.path().join("missing.toml"), &["--check"]).code(2).says("missing.toml");
}

#[test]
fn without_a_usable_kernel_the_daemon_status_and_detach_exit_2_saying_why() {
    let Some(cgroup) = Cgroup::new("kernel") else { return };
    let [a, ..] = keys();
    let tmp = tempdir();
    let image = testdata::hostile::write_good_image(&tmp.path().join("image")).unwrap();
    sign_ok(&image.reference(), &[a], &tmp.path().join("web.json"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let policy = policy(tmp.path(), &trust, &cgroup.0, "web.json", None);
    let found = enforce::capability::check(Path::new("/sys/fs/bpf/imgsign-cli-test"));
    if found.ok() {
        // The daemon itself is tested in the kernel lab (enforce/tests/vm_daemon.rs). Nothing is
        // pinned under this test's pin_dir: status and detach say so.
        enforce(&policy, &["--status"]).code(0).says("nothing is pinned");
        enforce(&policy, &["--detach"]).code(0).says("nothing was pinned");
        return;
    }
    let modes: &[&[&str]] = &[&[], &["--status"], &["--detach"]];
    for extra in modes {
        let out = enforce(&policy, extra);
        out.code(2).says("cannot run the BPF-LSM enforcer");
        for missing in &found.missing {
            out.says(&missing.to_string());
        }
        if !Path::new(bpf_lsm_list()).exists() {
            out.says("mount -t securityfs securityfs /sys/kernel/security");
        }
    }
}

fn bpf_lsm_list() -> &'static str {
    "/sys/kernel/security/lsm"
}
