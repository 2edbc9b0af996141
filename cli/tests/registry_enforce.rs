//! The enforcer discovers the bundles attached to a registry image: a policy scope, and a
//! control-socket `add`, that name `docker://HOST/REPO:TAG` (or `@sha256:...`) and no bundle
//! files take the bundles pushed there with `imgsign sign --push` (the tag fallback: Debian's
//! `docker-registry` has no referrers API), accepted only when they satisfy the node's trust
//! store, exactly as bundle files are. Nothing attached, nothing trusted, or the registry down is
//! that scope's failure, clearly named, and never another scope's.
//!
//! On the host, without a kernel: `imgsign enforce --check` prints the plan, and the daemon runs
//! against a recording kernel (what it would apply), with a real control socket.
//! Needs the Debian packages docker-registry, skopeo, umoci.

mod support;

use enforce::control::{self, AddScope, ControlServer, Reply, Request};
use enforce::daemon::Daemon;
use enforce::kernel::{Event, Kernel, KernelError};
use enforce::source::PolicySource;
use enforce::{DesiredState, Mode, Profile};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use support::registry::TestRegistry;
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
        let path = root.join(format!("imgsign-reg-test-{}-{name}", std::process::id()));
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

/// A policy reaching the registry over plain HTTP (loopback), with `scopes` (TOML) appended.
fn policy(dir: &Path, trust: &Path, scopes: &str) -> PathBuf {
    let text = format!(
        "trust = {:?}\npin_dir = \"/sys/fs/bpf/imgsign-reg-test\"\ncontrol = {:?}\n\n[registry]\ninsecure = true\ntimeout_seconds = 5\n\n{scopes}",
        trust.display().to_string(),
        dir.join("control.sock").display().to_string(),
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn scope(name: &str, cgroup: &Path, image: &str, bundle: Option<&Path>) -> String {
    let bundles = bundle.map(|b| format!("{:?}", b.display().to_string())).unwrap_or_default();
    format!(
        "[[scope]]\nname = {name:?}\ncgroup = {:?}\nmode = \"enforce\"\nimage = {image:?}\nbundles = [{bundles}]\n",
        cgroup.display().to_string()
    )
}

fn check(policy: &Path) -> Run {
    run(imgsign().args(["enforce", "--check", "--json", "--policy"]).arg(policy))
}

fn push_bundle(image: &str, key: &Key, version: &str, out: &Path) {
    run(imgsign()
        .args(["sign", image, "--insecure", "--push", "--name", "web", "--version", version, "--key"])
        .arg(&key.private)
        .arg("--out")
        .arg(out))
    .code(0)
    .says("pushed to");
}

#[test]
fn a_policy_scope_takes_the_bundles_attached_to_its_registry_image() {
    let Some(cgroup) = Cgroup::new("policy") else { return };
    let image = image();
    let registry = TestRegistry::plain();
    registry.push(&image.oci_ref(), "node/web:v1");
    let digest = registry.inspect_digest("node/web:v1");
    let tmp = tempdir();
    let dir = tmp.path();
    let [a, b, _] = keys();
    let trust = trust_store(&dir.join("trust"), &[a], 1);
    let by_tag = format!("{}:v1", registry.reference("node/web"));
    let by_digest = format!("{}@{digest}", registry.reference("node/web"));

    // Nothing attached yet: a verification failure naming the scope, the image and its manifest.
    let policy_tag = policy(dir, &trust, &scope("web", &cgroup.0, &by_tag, None));
    check(&policy_tag).code(1).says("scope \"web\"").says("no signed manifest is attached").says(&digest);

    // Attached by a key the node does not trust: still refused, saying why.
    push_bundle(&by_tag, b, "1", &dir.join("b.bundle"));
    check(&policy_tag).code(1).says("none of the 1 bundle(s)").says("accepted by the trust store");

    // A bundle the trusted key signed for another image, attached to this one by whoever may
    // push: its subject is not this manifest, so it is not taken.
    let other = testdata::hostile::write_good_image(&dir.join("other")).unwrap();
    registry.push(&other.reference(), "node/other:v1");
    let foreign = sign_ok(
        &format!("{}:v1", registry.reference("node/other")),
        &[a],
        &dir.join("foreign"),
        &["--insecure", "--name", "web", "--version", "9"],
    );
    attach(&by_tag, &digest, &foreign);
    check(&policy_tag).code(1).says("none of the 2 bundle(s)").says(&format!("not {digest}"));

    // Attached by the trusted key: the plan holds exactly what the same bundle as a file gives.
    push_bundle(&by_tag, a, "3", &dir.join("a.bundle"));
    let discovered = check(&policy_tag);
    discovered.code(0);
    let plan = discovered.json();
    let from_file =
        check(&policy(dir, &trust, &scope("web", &cgroup.0, &image.oci_ref(), Some(&dir.join("a.bundle")))));
    from_file.code(0);
    assert_eq!(plan["scopes"][0]["digests"], from_file.json()["scopes"][0]["digests"]);
    assert!(!plan["scopes"][0]["digests"].as_array().unwrap().is_empty());
    assert_eq!(plan["versions"]["web"], 3);
    assert_eq!(plan["scopes"][0]["manifests"][0]["subject"], digest.as_str());
    assert!(plan["scopes"][0]["manifests"][0]["bundles"][0].as_str().unwrap().contains(&by_tag));
    // By digest, the same.
    let policy_digest = policy(dir, &trust, &scope("web", &cgroup.0, &by_digest, None));
    let pinned = check(&policy_digest);
    pinned.code(0);
    assert_eq!(pinned.json()["scopes"][0]["digests"], plan["scopes"][0]["digests"]);

    // The registry down: that scope's failure, naming the image (exit 2: not a verdict).
    drop(registry);
    check(&policy_digest).code(2).says("scope \"web\"").says("cannot discover the bundles attached").says(&by_digest);
}

/// Attaches `bundle` to the manifest `subject` of `image` as a referrer, as any client with push
/// rights can, whatever the bundle signs.
fn attach(image: &str, subject: &str, bundle: &Path) {
    let reference: ::registry::Reference = image.trim_start_matches("docker://").parse().unwrap();
    let access = ::registry::Access { insecure: true, ..::registry::Access::default() };
    let mut client = ::registry::Registry::connect(&reference, &access).unwrap();
    client.enable_push().unwrap();
    let media = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let subject = ::registry::Digest::parse(subject).unwrap();
    client.push_referrer(subject, media, media, &std::fs::read(bundle).unwrap()).unwrap();
}

/// Records every desired state applied.
#[derive(Default)]
struct Recording(Vec<DesiredState>);

impl Kernel for Recording {
    fn apply(&mut self, desired: &DesiredState) -> Result<(), KernelError> {
        self.0.push(desired.clone());
        Ok(())
    }
    fn events(&mut self, _timeout: Duration) -> Result<Vec<Event>, KernelError> {
        Ok(Vec::new())
    }
}

fn add(name: &str, cgroup: &Path, image: &str) -> Request {
    Request::Add(AddScope {
        name: name.into(),
        cgroup: cgroup.to_path_buf(),
        mode: Mode::Enforce,
        profile: Profile::Default,
        remote_fs: false,
        on_violation: None,
        container: None,
        bundles: Vec::new(),
        image: Some(image.into()),
    })
}

/// Sends `request` over the daemon's socket from another thread while the daemon serves it.
fn over_socket(daemon: &mut Daemon<Recording>, socket: &Path, request: Request) -> Reply {
    let path = socket.to_path_buf();
    let client = std::thread::spawn(move || control::call(&path, &request, Duration::from_secs(30)).unwrap());
    while !client.is_finished() {
        daemon.serve_pending().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    client.join().unwrap()
}

#[test]
fn a_control_socket_add_discovers_and_a_registry_outage_fails_only_that_scope() {
    let (Some(fixed), Some(web), Some(bare)) = (Cgroup::new("fixed"), Cgroup::new("web"), Cgroup::new("bare")) else {
        return;
    };
    let image = image();
    let registry = TestRegistry::plain();
    registry.push(&image.oci_ref(), "node/web:v1");
    registry.push(&image.oci_ref(), "node/unsigned:v1");
    let digest = registry.inspect_digest("node/web:v1");
    let tmp = tempdir();
    let dir = tmp.path();
    let [a, ..] = keys();
    let trust = trust_store(&dir.join("trust"), &[a], 1);
    let by_digest = format!("{}@{digest}", registry.reference("node/web"));
    push_bundle(&by_digest, a, "1", &dir.join("a.bundle"));

    // The policy's own scope, from the bundle file: it must not depend on the registry.
    let policy = policy(dir, &trust, &scope("fixed", &fixed.0, &image.oci_ref(), Some(&dir.join("a.bundle"))));
    let source = PolicySource::open(&policy).unwrap();
    let mut daemon =
        Daemon::start(source, Recording::default(), Box::new(std::io::sink()), Box::new(|_| {}), SystemTime::now())
            .unwrap();
    let socket = dir.join("control.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());

    let reply = over_socket(&mut daemon, &socket, add("web", &web.0, &by_digest));
    assert!(reply.ok, "{reply:?}");
    let plan = daemon.plan();
    let scope = |name: &str| plan.scopes.iter().find(|s| s.name == name).unwrap().clone();
    assert!(!scope("web").digests.is_empty());
    assert_eq!(scope("web").digests, scope("fixed").digests, "the same signed manifest");
    assert_eq!(scope("web").manifests[0].subject.as_deref(), Some(digest.as_str()));
    let applied = daemon.kernel().0.last().unwrap().clone();
    assert_eq!(applied.scopes.len(), 2);

    // An image with nothing attached: refused, the others untouched.
    let unsigned = format!("{}:v1", registry.reference("node/unsigned"));
    let reply = over_socket(&mut daemon, &socket, add("bare", &bare.0, &unsigned));
    assert!(!reply.ok);
    let error = reply.error.clone().unwrap_or_default();
    assert!(error.contains("no signed manifest is attached") && error.contains(&unsigned), "{error}");
    assert_eq!(daemon.plan().scopes.len(), 2);

    // The registry goes down: at the next recheck the discovered scope fails closed, saying why;
    // the policy's scope keeps its digests.
    drop(registry);
    daemon.recheck(SystemTime::now()).unwrap();
    let plan = daemon.plan();
    let web_now = plan.scopes.iter().find(|s| s.name == "web").unwrap();
    assert!(web_now.digests.is_empty());
    let failed = web_now.failed.clone().unwrap_or_default();
    assert!(failed.contains("cannot discover the bundles attached") && failed.contains(&by_digest), "{failed}");
    assert!(!plan.scopes.iter().find(|s| s.name == "fixed").unwrap().digests.is_empty());
}
