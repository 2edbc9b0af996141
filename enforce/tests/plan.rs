//! Plans from real signed bundles: exactly the manifest's digests; any bundle that does not
//! verify (unsigned, tampered, revoked key, expired, replayed) refuses the whole plan, naming the
//! scope and the bundle; cgroup ids from real cgroup v2 directories.

mod support;

use base64::Engine as _;
use enforce::plan::{self, PlanError};
use enforce::policy;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};
use support::*;

const DAY: Duration = Duration::from_secs(86400);

struct Fixture {
    dir: tempfile::TempDir,
    image: String,
    expected: std::collections::BTreeSet<verifier_core::digest::Sha256Digest>,
    trust: std::path::PathBuf,
    cgroup: TestCgroup,
}

fn fixture(name: &str) -> Option<Fixture> {
    let cgroup = TestCgroup::new(name)?;
    let dir = tempdir();
    let (written, expected) = write_image(&dir.path().join("image"));
    let trust = trust_store(&dir.path().join("trust"), &["a", "b"], 1);
    Some(Fixture { image: written.reference(), expected, trust, cgroup, dir })
}

impl Fixture {
    fn policy(&self, bundles: &[&Path], image: Option<&str>) -> policy::Policy {
        let path = write_policy(self.dir.path(), &one_scope(&self.trust, &self.cgroup.path, "enforce", bundles, image));
        policy::load(&path).unwrap()
    }

    fn bundle(&self, key: &str, version: u64, file: &str) -> std::path::PathBuf {
        sign_now(&self.image, key, "web", version, &self.dir.path().join(file))
    }

    fn refused(&self, bundles: &[&Path]) -> String {
        match plan::build(&self.policy(bundles, None), SystemTime::now()) {
            Ok(plan) => panic!("plan built: {plan:?}"),
            Err(e) => {
                let text = enforce::daemon::chain(&e);
                assert!(e.is_verification_failure(), "{text}");
                assert!(text.contains("scope \"web\""), "does not name the scope: {text}");
                text
            }
        }
    }
}

#[test]
fn plan_holds_exactly_the_manifests_digests() {
    let Some(f) = fixture("exact") else { return };
    let bundle = f.bundle("a", 1, "web.json");
    let plan = plan::build(&f.policy(&[&bundle], None), SystemTime::now()).unwrap();
    assert_eq!(plan.scopes.len(), 1);
    let scope = &plan.scopes[0];
    assert_eq!(scope.name, "web");
    assert_eq!(scope.mode, policy::Mode::Enforce);
    assert_eq!(
        keys_of(&scope.digests),
        f.expected,
        "file + hardlink digests, deduplicated, without whited-out or overridden content"
    );
    assert!(!scope.digests.contains_key(&digest(WHITED_OUT)) && !scope.digests.contains_key(&digest(OVERRIDDEN)));
    assert!(!scope.digests.contains_key(&digest(LAYER2)), "a signed 0644 text file is not loaded");
    assert!(scope.digests.values().all(|p| !p.is_privileged()) && scope.privileged.is_empty(), "no privileges");
    assert_eq!(scope.cgroup_id, std::fs::metadata(&f.cgroup.path).unwrap().ino());
    assert_eq!(scope.manifests[0].name, "web");
    assert_eq!(scope.manifests[0].signers, vec![testdata::keys::test_key("a").public_key().key_id().to_string()]);
    assert_eq!(plan.versions.get("web"), Some(&1));

    // With the image named, its files are compared too; the digests are the same.
    let with_image = plan::build(&f.policy(&[&bundle], Some(&f.image)), SystemTime::now()).unwrap();
    assert_eq!(keys_of(&with_image.scopes[0].digests), f.expected);
    assert_eq!(with_image.scopes[0].manifests[0].image.as_deref(), Some(f.image.as_str()));
}

/// The image of the code-only tests: a 0644 ELF library, a 0644 text file, a 0755 ELF, a 0755
/// text file without `#!`, a 0644 script, and a hardlink (0644) to the library.
fn code_image(dir: &Path) -> testdata::oci::Written {
    let mut layer = testdata::tar::TarWriter::new();
    layer
        .file("lib/libc.so.6", 0o644, LIBRARY)
        .hardlink("lib/libc-link.so", "lib/libc.so.6")
        .file("etc/passwd", 0o644, PASSWD)
        .file("bin/sh", 0o755, SHELL)
        .file("bin/plain-exec", 0o755, b"echo run by a shell\n")
        .file("usr/share/script", 0o644, b"#!/bin/sh\necho hi\n");
    testdata::oci::write_layout(dir, "v1", &[testdata::oci::Layer::gzip(&layer.finish())]).unwrap()
}

const LIBRARY: &[u8] = b"\x7fELF\x02\x01\x01 pretend shared library\n";
const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n";
const SHELL: &[u8] = b"\x7fELF\x02\x01\x01 pretend shell\n";

/// Signs `image` as a v1 statement (no code marks), as imgsign did before predicate v2.
fn sign_v1(image: &str, key: &str, out: &Path) -> std::path::PathBuf {
    sign_edited(image, key, out, verifier_core::statement::PREDICATE_TYPE_V1, |f| f.code = None)
}

/// Signs a statement of predicate `predicate_type` about `image` whose entries `edit` changed.
fn sign_edited(
    image: &str,
    key: &str,
    out: &Path,
    predicate_type: &str,
    edit: impl Fn(&mut verifier_core::manifest::FileEntry),
) -> std::path::PathBuf {
    use verifier_core::statement::Statement;
    let progress = std::sync::Arc::new(verifier_core::progress::NoProgress);
    let mut scanned = verifier_core::source::scan(&image.parse().unwrap(), progress).unwrap();
    scanned.files.iter_mut().for_each(edit);
    let mut statement = Statement::new(&scanned.identity, scanned.files, "web".into(), 1, SystemTime::now() + DAY);
    statement.predicate_type = predicate_type.into();
    let prepared = verifier_core::sign::Prepared::new(statement, scanned.identity).unwrap();
    let bundle = prepared.sign(&[&testdata::keys::test_key(key)]).unwrap().remove(0);
    std::fs::write(out, bundle.to_json()).unwrap();
    out.to_path_buf()
}

#[test]
fn a_file_without_a_digest_refuses_the_plan_even_if_it_is_not_loaded() {
    let Some(f) = fixture("nodigest") else { return };
    let image = code_image(&f.dir.path().join("code")).reference();
    let bundle =
        sign_edited(&image, "a", &f.dir.path().join("v2.json"), verifier_core::statement::PREDICATE_TYPE, |e| {
            if e.path == "/etc/passwd" {
                e.sha256 = None;
            }
        });
    let error = plan::build(&f.policy(&[&bundle], None), SystemTime::now()).unwrap_err();
    assert!(matches!(&error, PlanError::Digest { path, .. } if path == "/etc/passwd"), "{error}");
}

#[test]
fn a_v2_statement_loads_only_code_and_exec_bits_and_a_v1_statement_everything() {
    let Some(f) = fixture("codeonly") else { return };
    let image = code_image(&f.dir.path().join("code")).reference();
    let v2 = sign_now(&image, "a", "web", 1, &f.dir.path().join("v2.json"));
    let plan = plan::build(&f.policy(&[&v2], Some(&image)), SystemTime::now()).unwrap();
    let desired = plan.desired();
    let loaded = keys_of(&desired.scope(plan.scopes[0].cgroup_id).unwrap().digests);
    let expected: std::collections::BTreeSet<_> =
        [LIBRARY, SHELL, b"echo run by a shell\n", b"#!/bin/sh\necho hi\n"].iter().map(|c| digest(c)).collect();
    assert_eq!(loaded, expected, "the 0644 library and script, the two 0755 files; not /etc/passwd");
    assert!(!loaded.contains(&digest(PASSWD)));
    assert_eq!(plan.scopes[0].manifests[0].files, 11, "every entry is still signed (dirs included)");

    // The same image signed as v1 (verified against the image too): every file is loaded.
    let v1 = sign_v1(&image, "a", &f.dir.path().join("v1.json"));
    let plan = plan::build(&f.policy(&[&v1], Some(&image)), SystemTime::now()).unwrap();
    let loaded = keys_of(&plan.desired().scope(plan.scopes[0].cgroup_id).unwrap().digests);
    let mut everything = expected.clone();
    everything.insert(digest(PASSWD));
    assert_eq!(loaded, everything);
}

fn keys_of(set: &enforce::desired::DigestSet) -> std::collections::BTreeSet<verifier_core::digest::Sha256Digest> {
    set.keys().copied().collect()
}

#[test]
fn privileges_come_from_the_signed_entries_and_merge_per_digest() {
    use enforce::desired::Privs;
    let Some(f) = fixture("privs") else { return };
    // ping: setuid in one place, plain in another (same bytes); arping: CAP_NET_RAW (revision 2).
    let mut capability = (0x0200_0000u32 | 1).to_le_bytes().to_vec();
    for word in [1u32 << 13, 0, 0, 0] {
        capability.extend_from_slice(&word.to_le_bytes());
    }
    let mut layer = testdata::tar::TarWriter::new();
    layer.file("bin/ping", 0o4755, b"ping\n");
    layer.file("opt/ping", 0o755, b"ping\n");
    layer.add(
        testdata::tar::Entry::file("bin/arping", 0o755, b"arping\n")
            .with_pax("SCHILY.xattr.security.capability", &capability),
    );
    let dir = f.dir.path().join("privileged");
    let image = testdata::oci::write_layout(&dir, "v1", &[testdata::oci::Layer::gzip(&layer.finish())]).unwrap();
    let bundle = sign_now(&image.reference(), "a", "web", 1, &f.dir.path().join("privs.json"));
    let plan = plan::build(&f.policy(&[&bundle], None), SystemTime::now()).unwrap();
    let scope = &plan.scopes[0];
    let ping = scope.digests[&digest(b"ping\n")];
    assert_eq!(ping, Privs::of_entry(0o4755, None).unwrap().merge(Privs::NONE));
    assert_eq!(scope.digests[&digest(b"arping\n")], Privs::of_entry(0o755, Some(&capability)).unwrap());
    assert_eq!(
        scope.privileged,
        vec![digest(b"arping\n"), digest(b"ping\n")]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["scopes"][0]["privileged"].as_array().unwrap().len(), 2, "{json}");
}

#[test]
fn bundles_of_different_statements_add_up_and_cosignatures_pool() {
    let Some(f) = fixture("union") else { return };
    let web = f.bundle("a", 1, "web.json");
    let other_dir = f.dir.path().join("other");
    let mut layer = testdata::tar::TarWriter::new();
    layer.file("sidecar", 0o755, b"sidecar binary\n");
    let other = testdata::oci::write_layout(&other_dir, "v1", &[testdata::oci::Layer::gzip(&layer.finish())]).unwrap();
    let sidecar = sign_now(&other.reference(), "b", "sidecar", 1, &f.dir.path().join("sidecar.json"));
    let plan = plan::build(&f.policy(&[&web, &sidecar], None), SystemTime::now()).unwrap();
    let mut expected = f.expected.clone();
    expected.insert(digest(b"sidecar binary\n"));
    assert_eq!(keys_of(&plan.scopes[0].digests), expected);
    assert_eq!(plan.scopes[0].manifests.len(), 2);

    // Threshold 2 over two bundles of one statement, each signed by one key (at the same time:
    // the expiry is part of the statement).
    let trust2 = trust_store(&f.dir.path().join("trust2"), &["a", "b"], 2);
    let at = SystemTime::now();
    let by_a = sign_to(&f.image, &["a"], "web", 1, at, 30 * DAY, &f.dir.path().join("by-a.json"));
    let by_b = sign_to(&f.image, &["b"], "web", 1, at, 30 * DAY, &f.dir.path().join("by-b.json"));
    let text = one_scope(&trust2, &f.cgroup.path, "audit", &[&by_a, &by_b], None);
    let pooled = plan::build(&policy::parse(&text, &f.dir.path().join("p2.toml")).unwrap(), SystemTime::now()).unwrap();
    assert_eq!(pooled.scopes[0].manifests.len(), 1);
    assert_eq!(pooled.scopes[0].manifests[0].signers.len(), 2);
    assert_eq!(pooled.scopes[0].mode, policy::Mode::Audit);
    let text = one_scope(&trust2, &f.cgroup.path, "audit", &[&by_a], None);
    assert!(
        plan::build(&policy::parse(&text, &f.dir.path().join("p3.toml")).unwrap(), SystemTime::now()).is_err(),
        "one key under a threshold of 2"
    );
}

#[test]
fn an_unsigned_bundle_refuses_the_whole_plan() {
    let Some(f) = fixture("unsigned") else { return };
    let good = f.bundle("a", 1, "good.json");
    // Key c is not trusted. (A bundle of the same statement as `good` would only add an ignored
    // signature to a statement that verifies: signatures of one statement pool.)
    let stranger = sign_now(&f.image, "c", "stranger", 1, &f.dir.path().join("stranger.json"));
    let text = f.refused(&[&good, &stranger]);
    assert!(text.contains("stranger.json") && text.contains("signatures"), "{text}");
}

#[test]
fn a_tampered_bundle_refuses_the_whole_plan() {
    let Some(f) = fixture("tampered") else { return };
    let bundle = f.bundle("a", 1, "web.json");
    // Add an unlisted digest to the signed statement, keep the signature.
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let mut statement = testdata::hostile::statement(&std::fs::read(&bundle).unwrap()).unwrap();
    statement["predicate"]["files"][1]["sha256"] = testdata::sha256_hex(b"malware").into();
    let payload = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&statement).unwrap());
    value["dsseEnvelope"]["payload"] = payload.into();
    let tampered = f.dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&value).unwrap()).unwrap();
    let text = f.refused(&[&tampered]);
    assert!(text.contains("tampered.json") && text.contains("signatures"), "{text}");
}

#[test]
fn a_revoked_signer_refuses_the_whole_plan() {
    let Some(f) = fixture("revoked") else { return };
    let bundle = f.bundle("b", 1, "by-b.json");
    let mut trust = keys::TrustStore::open(&f.trust).unwrap();
    trust.revoke(&testdata::keys::test_key("b").public_key().key_id()).unwrap();
    let text = f.refused(&[&bundle]);
    assert!(text.contains("by-b.json") && text.contains("revoked"), "{text}");
}

#[test]
fn an_expired_bundle_refuses_the_whole_plan() {
    let Some(f) = fixture("expired") else { return };
    let bundle = sign_to(&f.image, &["a"], "web", 1, SystemTime::now() - 10 * DAY, DAY, &f.dir.path().join("old.json"));
    let text = f.refused(&[&bundle]);
    assert!(text.contains("old.json") && text.contains("expired"), "{text}");
}

#[test]
fn a_replayed_older_version_refuses_the_whole_plan() {
    let Some(f) = fixture("replay") else { return };
    let v3 = f.bundle("a", 3, "v3.json");
    let v2 = f.bundle("a", 2, "v2.json");
    // Within one plan: v3 and v2 of one image side by side...
    let text = f.refused(&[&v3, &v2]);
    assert!(text.contains("v2.json") && text.contains("replay"), "{text}");
    // ...and against the trust store's memory.
    keys::TrustStore::open(&f.trust).unwrap().record_version("web", 3).unwrap();
    let text = f.refused(&[&v2]);
    assert!(text.contains("v2.json") && text.contains("rollback"), "{text}");
    // The accepted version is recorded once the plan is in force.
    let fresh = trust_store(&f.dir.path().join("fresh"), &["a"], 1);
    let text = one_scope(&fresh, &f.cgroup.path, "enforce", &[&v3], None);
    let plan = plan::build(&policy::parse(&text, &f.dir.path().join("p.toml")).unwrap(), SystemTime::now()).unwrap();
    plan::record_versions(&plan, &fresh).unwrap();
    assert_eq!(keys::TrustStore::open(&fresh).unwrap().highest_version("web"), Some(3));
}

#[test]
fn an_image_that_differs_from_its_manifest_refuses_the_plan() {
    let Some(f) = fixture("image") else { return };
    let bundle = f.bundle("a", 1, "web.json");
    let other_dir = f.dir.path().join("other");
    let mut layer = testdata::tar::TarWriter::new();
    layer.file("bin/tool", 0o755, b"not the signed tool\n");
    let other =
        testdata::oci::write_layout(&other_dir, "latest", &[testdata::oci::Layer::gzip(&layer.finish())]).unwrap();
    let e = plan::build(&f.policy(&[&bundle], Some(&other.reference())), SystemTime::now()).unwrap_err();
    let text = enforce::daemon::chain(&e);
    assert!(matches!(e, PlanError::ImageMismatch { .. }), "{text}");
    assert!(text.contains("scope \"web\"") && text.contains("web.json") && text.contains("subject"), "{text}");
}

#[test]
fn unreadable_and_malformed_bundles_are_named() {
    let Some(f) = fixture("unreadable") else { return };
    let missing = f.dir.path().join("missing.json");
    let e = plan::build(&f.policy(&[&missing], None), SystemTime::now()).unwrap_err();
    assert!(matches!(e, PlanError::ReadBundle { .. }) && !e.is_verification_failure());
    assert!(e.to_string().contains("missing.json") && e.to_string().contains("scope \"web\""), "{e}");
    let junk = f.dir.path().join("junk.json");
    std::fs::write(&junk, b"[1,2,3]").unwrap();
    let e = plan::build(&f.policy(&[&junk], None), SystemTime::now()).unwrap_err();
    assert!(matches!(e, PlanError::ParseBundle { .. }) && e.to_string().contains("junk.json"), "{e}");
}

#[test]
fn cgroup_ids_come_from_real_cgroup2_directories() {
    let Some(f) = fixture("ids") else { return };
    let bundle = f.bundle("a", 1, "web.json");
    // The root of the cgroup2 hierarchy is cgroup id 1.
    let root = cgroup2_root().unwrap();
    assert_eq!(enforce::cgroup::cgroup_id(&root).unwrap(), 1);
    let child = f.cgroup.path.join("child");
    std::fs::create_dir(&child).unwrap();
    let child_id = enforce::cgroup::cgroup_id(&child);
    let child_ino = std::fs::metadata(&child).unwrap().ino();
    let parent_id = enforce::cgroup::cgroup_id(&f.cgroup.path).unwrap();
    std::fs::remove_dir(&child).unwrap();
    let child_id = child_id.unwrap();
    assert_eq!(child_id, child_ino);
    assert!(parent_id > 1 && child_id > 1);
    assert_ne!(child_id, parent_id);

    // A scope on a directory that is not cgroup v2, or missing, refuses the plan.
    let text = one_scope(&f.trust, f.dir.path(), "enforce", &[&bundle], None);
    let e = plan::build(&policy::parse(&text, &f.dir.path().join("p.toml")).unwrap(), SystemTime::now()).unwrap_err();
    assert!(enforce::daemon::chain(&e).contains("not on a cgroup v2"), "{e}");
    let text = one_scope(&f.trust, &root.join("imgsign-no-such-cgroup"), "enforce", &[&bundle], None);
    let e = plan::build(&policy::parse(&text, &f.dir.path().join("p.toml")).unwrap(), SystemTime::now()).unwrap_err();
    assert!(enforce::daemon::chain(&e).contains("imgsign-no-such-cgroup"), "{e}");
}

/// A verified scope of cgroup `id` holding `digests` (or failed closed, with no digests).
fn scope_plan(
    name: &str,
    id: u64,
    digests: std::sync::Arc<enforce::desired::DigestSet>,
    failed: bool,
) -> plan::ScopePlan {
    plan::ScopePlan {
        name: name.into(),
        cgroup: format!("/sys/fs/cgroup/{name}").into(),
        cgroup_id: id,
        mode: policy::Mode::Enforce,
        remote_fs: false,
        profile: policy::Profile::Default,
        on_violation: None,
        container: None,
        digests,
        privileged: Vec::new(),
        manifests: Vec::new(),
        failed: failed.then(|| "revoked".to_string()),
    }
}

#[test]
fn runtime_helpers_are_in_every_verified_scope_and_containers_of_one_image_still_share_one_set() {
    use enforce::desired::{DigestSet, Privs};
    use std::sync::Arc;
    let set = |contents: &[&[u8]]| -> Arc<DigestSet> {
        Arc::new(contents.iter().map(|c| (digest(c), Privs::NONE)).collect())
    };
    let (image_a, image_b) = (set(&[b"a-sh", b"libc"]), set(&[b"b-app"]));
    let scopes = vec![
        scope_plan("a-1", 11, image_a.clone(), false), // two containers of image a: one set
        scope_plan("a-2", 12, image_a.clone(), false),
        scope_plan("b-1", 13, image_b.clone(), false),
        scope_plan("parent", 14, set(&[]), false), // deny_unknown: allows nothing of its own
        scope_plan("revoked", 15, set(&[]), true), // failed closed
    ];
    let mut plan = plan::Plan {
        policy: "/etc/imgsign/policy.toml".into(),
        pin_dir: "/sys/fs/bpf/imgsign".into(),
        scopes,
        versions: Default::default(),
        runtime_helpers: Vec::new(),
    };
    let unwidened = plan.clone();
    plan.add_helpers(&[]);
    assert_eq!(plan, unwidened, "no helpers (the default): every set as signed");

    let helpers = [
        enforce::helpers::Helper { path: "/usr/sbin/runc".into(), sha256: digest(b"runc") },
        enforce::helpers::Helper { path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(), sha256: digest(b"libc") },
    ];
    plan.add_helpers(&helpers);
    let digests = |name: &str| plan.scopes.iter().find(|s| s.name == name).unwrap().digests.clone();
    for name in ["a-1", "a-2", "b-1", "parent"] {
        assert!(helpers.iter().all(|h| digests(name).contains_key(&h.sha256)), "{name} lacks a helper");
    }
    assert_eq!(digests("a-1").len(), 3, "image a's two (libc once) and runc");
    assert_eq!(digests("b-1").len(), 3);
    assert_eq!(digests("parent").len(), 2, "a deny_unknown parent allows the helpers only");
    assert!(digests("revoked").is_empty(), "a scope that failed closed stays closed");
    assert!(Arc::ptr_eq(&digests("a-1"), &digests("a-2")), "containers of one image share one widened set");
    assert_eq!(plan.runtime_helpers, helpers.to_vec(), "the plan says what it added");

    // The kernel gets one set per distinct set: a's, b's, the parent's, the closed one's.
    let ops = enforce::bpf::transition(&enforce::bpf::Loaded::default(), &plan.desired());
    let replaced = ops.iter().filter(|op| matches!(op, enforce::bpf::Op::Replace { .. })).count();
    assert_eq!(replaced, 4, "{ops:?}");
    let scope_id = |cgroup: u64| {
        ops.iter().find_map(|op| match op {
            enforce::bpf::Op::SetScope { cgroup_id, scope_id, .. } if *cgroup_id == cgroup => Some(*scope_id),
            _ => None,
        })
    };
    assert_eq!(scope_id(11), scope_id(12), "a-1 and a-2 point at one set");
    assert_ne!(scope_id(11), scope_id(13));
}
