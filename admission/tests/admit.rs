//! The gate on a real image: testdata's busybox image (three layers, made with umoci), signed,
//! and its umoci-unpacked rootfs as the container's root file system. Each refusal test
//! changes one thing an attacker could change and expects the reason to name it.

use admission::{admit, AdmitError, GateSpec, Policy};
use oci_spec::runtime::{MountBuilder, Spec};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use testdata::real::{paths, RealImage};
use verifier_core::progress::NoProgress;
use verifier_core::sign::{sign, SignOptions};

struct Scene {
    _dir: tempfile::TempDir,
    image: RealImage,
    bundle: PathBuf,
    trust: PathBuf,
    cache: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let image = RealImage::build(&dir.path().join("image")).expect("building the test image (umoci, busybox)");
        let bundle = dir.path().join("image.bundle.json");
        sign_as(&image.oci_ref(), "alice", "busybox", &bundle);
        let trust = dir.path().join("trust");
        trust_store(&trust, &["alice"]);
        let cache = dir.path().join("cache");
        Scene { image, bundle, trust, cache, _dir: dir }
    }

    fn policy(&self, extra: &str) -> Policy {
        let text =
            format!("trust = {:?}\nbundles = [{:?}]\ncache = {:?}\n{extra}", self.trust, self.bundle, self.cache);
        Policy::parse(&text, Path::new("runtime.toml")).unwrap()
    }

    fn admit(&self, spec: &Spec) -> Result<admission::Admitted, AdmitError> {
        admit(&self.policy(""), &GateSpec::from(spec), &self.image.rootfs)
    }

    fn file(&self, image_path: &str) -> PathBuf {
        self.image.rootfs.join(image_path.trim_start_matches('/'))
    }
}

fn sign_as(image: &str, key: &str, name: &str, out: &Path) {
    sign_valid_for(image, key, name, Duration::from_secs(86400), out)
}

fn sign_valid_for(image: &str, key: &str, name: &str, valid: Duration, out: &Path) {
    let image = image.parse().unwrap();
    let key = testdata::keys::test_key(key);
    let options = SignOptions { name: Some(name.into()), version: 1, expires_in: valid, now: SystemTime::now() };
    let signed = sign(&image, &[&key], &options, Arc::new(NoProgress)).expect("sign");
    std::fs::write(out, signed.bundles[0].to_json()).unwrap();
}

fn trust_store(dir: &Path, keys: &[&str]) {
    let mut trust = keys::TrustStore::init(dir, 1).unwrap();
    for k in keys {
        trust.add_key(&testdata::keys::test_key(k).public_key()).unwrap();
    }
}

fn refusal(result: Result<admission::Admitted, AdmitError>) -> String {
    match result {
        Ok(admitted) => panic!("admitted: {admitted:?}"),
        Err(e) => verifier_core::verify::error_chain(&e),
    }
}

/// Writes `content` over a file keeping its size, mode and mtime (only ctime moves).
fn overwrite_keeping_mtime(path: &Path, content: &[u8]) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(before.len(), content.len() as u64, "same size, so only the content tells");
    std::fs::write(path, content).unwrap();
    let mtime = before.modified().unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
}

#[test]
fn a_signed_rootfs_is_admitted_and_a_second_admission_reads_no_content() {
    let scene = Scene::new();
    let first = scene.admit(&Spec::default()).expect("the signed rootfs");
    assert_eq!(first.name, "busybox");
    assert!(first.hashed > 0, "{first:?}");
    // The same listing under the same statements: the verdict cache admits it, nothing is
    // matched or hashed.
    let second = scene.admit(&Spec::default()).expect("again");
    assert!(second.remembered && second.hashed == 0, "{second:?}");
    // Without it, the hash cache: every file's digest known, none read.
    std::fs::remove_dir_all(scene.cache.join("verdicts")).unwrap();
    let third = scene.admit(&Spec::default()).expect("again, without the verdict cache");
    assert!(!third.remembered, "{third:?}");
    assert_eq!((third.hashed, third.cached), (0, first.hashed + first.cached), "{third:?}");
}

#[test]
fn one_changed_byte_is_refused_naming_the_path_even_after_a_cached_admission() {
    let scene = Scene::new();
    scene.admit(&Spec::default()).expect("the signed rootfs, cached");
    let target = scene.file(paths::PLAIN_FILE);
    let mut content = std::fs::read(&target).unwrap();
    content[0] ^= 1;
    overwrite_keeping_mtime(&target, &content);
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains(paths::PLAIN_FILE) && why.contains("sha256"), "{why}");
}

#[test]
fn an_added_executable_a_chmod_and_a_swapped_symlink_are_refused() {
    type Change = fn(&Scene);
    let changes: [(&str, Change); 3] = [
        ("/bin/evil", |s| {
            std::fs::write(s.file("/bin/evil"), b"#!/bin/sh\n").unwrap();
            std::fs::set_permissions(s.file("/bin/evil"), std::fs::Permissions::from_mode(0o755)).unwrap();
        }),
        (paths::PLAIN_FILE, |s| {
            std::fs::set_permissions(s.file(paths::PLAIN_FILE), std::fs::Permissions::from_mode(0o4755)).unwrap()
        }),
        (paths::SYMLINK, |s| {
            std::fs::remove_file(s.file(paths::SYMLINK)).unwrap();
            std::os::unix::fs::symlink("/tmp/x", s.file(paths::SYMLINK)).unwrap();
        }),
    ];
    for (path, change) in changes {
        let scene = Scene::new();
        change(&scene);
        let why = refusal(scene.admit(&Spec::default()));
        assert!(why.contains(path), "{path}: {why}");
    }
}

#[test]
fn an_image_signed_by_a_key_the_node_does_not_trust_is_refused() {
    let scene = Scene::new();
    sign_as(&scene.image.oci_ref(), "mallory", "busybox", &scene.bundle);
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains("no signed manifest in the runtime policy verifies"), "{why}");
}

#[test]
fn a_key_revoked_after_a_cached_admission_refuses_the_next_one() {
    let scene = Scene::new();
    scene.admit(&Spec::default()).expect("admitted while trusted");
    let mut trust = keys::TrustStore::open(&scene.trust).unwrap();
    let id = testdata::keys::test_key("alice").public_key().key_id();
    trust.revoke(&id).unwrap();
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains("revoked"), "{why}");
}

#[test]
fn a_hash_cache_others_can_write_is_not_believed() {
    let scene = Scene::new();
    scene.admit(&Spec::default()).expect("cached");
    let target = scene.file(paths::PLAIN_FILE);
    let signed = std::fs::read(&target).unwrap();
    let mut content = signed.clone();
    content[0] ^= 1;
    overwrite_keeping_mtime(&target, &content);
    // Forge an entry: the tampered file's key, claiming the signed content.
    let tampered = admission::walk::walk(&scene.image.rootfs).unwrap();
    let key = tampered.iter().find(|o| o.entry.path == paths::PLAIN_FILE).unwrap().key.unwrap();
    let claimed = verifier_core::digest::Sha256Digest::parse_hex(&testdata::sha256_hex(&signed)).unwrap();
    let forged =
        admission::hashes::encode([(&key, &admission::hashes::Known { digest: claimed, xattrs: Default::default() })]);
    let cache = scene.cache.join(admission::hashes::FILE);
    std::fs::write(&cache, forged).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o666)).unwrap();
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains(paths::PLAIN_FILE), "{why}");
}

#[test]
fn a_file_capability_added_after_a_cached_admission_is_refused() {
    // The walk takes a known file's xattrs from the hash cache instead of asking the kernel:
    // only for the exact key, and setting an xattr moves ctime.
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: setting security.capability needs root");
        return;
    }
    let scene = Scene::new();
    let first = scene.admit(&Spec::default()).expect("the signed rootfs, cached");
    assert!(first.hashed > 0);
    // struct vfs_cap_data, revision 2, effective: CAP_NET_RAW permitted.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    rustix::fs::setxattr(scene.file(paths::PLAIN_FILE), "security.capability", &cap, rustix::fs::XattrFlags::empty())
        .expect("setting a file capability");
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains(paths::PLAIN_FILE) && why.contains("xattrs"), "{why}");
}

#[test]
fn an_image_name_the_policy_maps_narrows_the_candidates_and_never_widens_them() {
    let scene = Scene::new();
    let other = scene.image.root.join("other.bundle.json");
    let other_image = scene.image.root.join("other");
    testdata::hostile::write_good_image(&other_image).unwrap();
    sign_as(&format!("oci:{}:good", other_image.display()), "alice", "other", &other);
    let policy = scene.policy(&format!("[images]\n\"app:2\" = [{other:?}]\n"));
    let mut spec = Spec::default();
    spec.set_annotations(Some([("io.kubernetes.cri.image-name".to_string(), "app:2".to_string())].into()));
    let why = refusal(admit(&policy, &GateSpec::from(&spec), &scene.image.rootfs));
    assert!(why.contains("image other"), "{why}");
    // A name the policy does not know leaves the policy's bundles.
    spec.set_annotations(Some([("io.kubernetes.cri.image-name".to_string(), "app:3".to_string())].into()));
    admit(&policy, &GateSpec::from(&spec), &scene.image.rootfs).expect("the general bundles apply");
}

#[test]
fn an_empty_mount_point_the_engine_made_is_fine_only_where_it_mounts() {
    let scene = Scene::new();
    std::fs::write(scene.file("/etc/resolv.conf"), b"").unwrap();
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains("/etc/resolv.conf"), "{why}");
    // Where the signed file is hardlinked to a visible path, the mount does not hide the change.
    let original = std::fs::read(scene.file(paths::HARDLINK_TARGET)).unwrap();
    let mut changed = original.clone();
    changed[0] ^= 1; // same size: only the content tells
    std::fs::write(scene.file(paths::HARDLINK_TARGET), changed).unwrap();
    let mut spec = Spec::default();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for destination in ["/etc/resolv.conf", paths::HARDLINK_TARGET] {
        mounts.push(MountBuilder::default().destination(destination).source("/tmp/x").typ("bind").build().unwrap());
    }
    spec.set_mounts(Some(mounts));
    let why = refusal(scene.admit(&spec));
    assert!(why.contains(paths::HARDLINK), "{why}");
    std::fs::write(scene.file(paths::HARDLINK_TARGET), original).unwrap();
    let mut spec = Spec::default();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(MountBuilder::default().destination("/etc/resolv.conf").source("/tmp/x").typ("bind").build().unwrap());
    spec.set_mounts(Some(mounts));
    scene.admit(&spec).expect("a mount point the spec mounts over");
}

#[test]
fn a_verdict_cached_for_a_statement_that_has_since_expired_is_not_used() {
    let scene = Scene::new();
    sign_valid_for(&scene.image.oci_ref(), "alice", "busybox", Duration::from_secs(2), &scene.bundle);
    scene.admit(&Spec::default()).expect("admitted while valid (and the verdict cached)");
    std::thread::sleep(Duration::from_millis(2500));
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains("expired"), "{why}");
}

#[test]
fn a_statement_cache_others_can_write_is_not_believed() {
    let scene = Scene::new();
    scene.admit(&Spec::default()).expect("cached");
    let target = scene.file(paths::PLAIN_FILE);
    let signed = std::fs::read(&target).unwrap();
    let mut content = signed.clone();
    content[0] ^= 1;
    overwrite_keeping_mtime(&target, &content);
    // Forge the cached verdict: the signed file list, claiming the tampered content.
    let dir = scene.cache.join("statements");
    let entry = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let forged = std::fs::read_to_string(&entry)
        .unwrap()
        .replace(&testdata::sha256_hex(&signed), &testdata::sha256_hex(&content));
    std::fs::write(&entry, forged).unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains(paths::PLAIN_FILE), "{why}");
}

#[test]
fn a_verdict_cache_others_can_write_is_not_believed() {
    let scene = Scene::new();
    scene.admit(&Spec::default()).expect("admitted, the verdict kept");
    let target = scene.file(paths::PLAIN_FILE);
    let mut content = std::fs::read(&target).unwrap();
    content[0] ^= 1;
    overwrite_keeping_mtime(&target, &content);
    // Forge the kept verdict: the tampered listing, as if it had been admitted.
    let spec = GateSpec::from(&Spec::default());
    let mounts = admission::matcher::Mounts::new(spec.mount_destinations.iter().map(String::as_str));
    let listing = admission::verdicts::listing(&admission::walk::walk(&scene.image.rootfs).unwrap(), &mounts);
    let entry = std::fs::read_dir(scene.cache.join("verdicts")).unwrap().next().unwrap().unwrap().path();
    let mut verdict: admission::verdicts::Verdict = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    verdict.listing = listing;
    std::fs::write(&entry, serde_json::to_vec(&verdict).unwrap()).unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let why = refusal(scene.admit(&Spec::default()));
    assert!(why.contains(paths::PLAIN_FILE), "{why}");
    // The forgery itself is right: kept private, it would be believed.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(scene.admit(&Spec::default()).expect("the forged verdict, private").remembered);
}

/// `admit_early` (the hook registers the scope beside the walk): `early` runs only when the
/// policy's verified candidates are one image, is given that image, and never changes the
/// verdict: a root that does not match is refused though `early` ran.
#[test]
fn early_work_runs_for_a_sole_candidate_only_and_a_tampered_root_is_still_refused() {
    let scene = Scene::new();
    let policy = scene.policy("");
    let (verdict, early) =
        admission::admit_early(&policy, &GateSpec::default(), &scene.image.rootfs, |p| p.clone(), &mut |_| {});
    let admitted = verdict.expect("the signed rootfs");
    let preview = early.expect("one candidate: early ran");
    assert_eq!(
        (&preview.name, &preview.digest, &preview.bundles),
        (&admitted.name, &admitted.digest, &admitted.bundles)
    );

    let target = scene.file(paths::PLAIN_FILE);
    let mut content = std::fs::read(&target).unwrap();
    content[0] ^= 1;
    overwrite_keeping_mtime(&target, &content);
    let (verdict, early) =
        admission::admit_early(&policy, &GateSpec::default(), &scene.image.rootfs, |p| p.clone(), &mut |_| {});
    assert!(early.is_some(), "early ran beside the walk");
    let why = refusal(verdict);
    assert!(why.contains(paths::PLAIN_FILE), "{why}");

    // Two images the policy trusts: which one matches is the walk's to say, so nothing early.
    let other = scene.image.root.join("other.bundle.json");
    let other_image = scene.image.root.join("other");
    testdata::hostile::write_good_image(&other_image).unwrap();
    sign_as(&format!("oci:{}:good", other_image.display()), "alice", "other", &other);
    let two = scene.policy("").bundles.iter().cloned().chain([other]).collect::<Vec<_>>();
    let policy = Policy { bundles: two, ..scene.policy("") };
    let (_, early) =
        admission::admit_early(&policy, &GateSpec::default(), &scene.image.rootfs, |p| p.clone(), &mut |_| {});
    assert!(early.is_none(), "two candidates: early must not run");
}
