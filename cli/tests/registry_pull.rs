//! `imgsign pull` keeps a registry image's blobs (and the bundles attached to it) in the store
//! without unpacking them; `verify --offline` and `run --offline` then read only the store: the
//! registry can be gone, a reference never pulled is a clear error, and nothing touches the
//! network (a host that does not exist is never looked up). A hostile registry leaves nothing in
//! the store. Against Debian's `docker-registry` on loopback, the image pushed by skopeo.
//! Needs the Debian packages docker-registry, skopeo, umoci.

mod support;

use std::path::Path;
use support::registry::TestRegistry;
use support::*;

fn pull(store: &Path, image: &str) -> Run {
    run(imgsign().args(["pull", image, "--insecure", "--json", "--store"]).arg(store))
}

/// Every blob of the store's layout hashes to its name, and no temporary file is left.
fn assert_blobs_sound(store: &Path) {
    let dir = store.join("layout/blobs/sha256");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(!name.starts_with(".tmp-"), "temporary {name} left behind");
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(testdata::sha256_hex(&bytes), name, "blob {name} is not what its name says");
    }
}

#[test]
fn pull_then_verify_and_run_offline() {
    let image = image();
    let registry = TestRegistry::plain();
    registry.push(&image.oci_ref(), "pulled/image:v1");
    let digest = registry.inspect_digest("pulled/image:v1");
    let tmp = tempdir();
    let home = tmp.path();
    let store = home.join("store");
    let [a, ..] = keys();
    let trust = trust_store(&home.join("trust"), &[a], 1);
    let by_tag = format!("{}:v1", registry.reference("pulled/image"));
    let by_digest = format!("{}@{digest}", registry.reference("pulled/image"));
    run(imgsign()
        .args(["sign", &by_tag, "--insecure", "--push", "--name", "pulled", "--key"])
        .arg(&a.private)
        .arg("--out")
        .arg(home.join("a.bundle")))
    .code(0);

    let first = pull(&store, &by_tag);
    first.code(0);
    let first = first.json();
    assert_eq!(first["digest"], digest.as_str());
    assert_eq!(first["alreadyStored"], false);
    assert!(first["blobsFetched"].as_u64().unwrap() >= 2, "{first}");
    assert_eq!(first["bundles"], 1);
    assert_blobs_sound(&store);
    assert!(!store.join("images").read_dir().unwrap().any(|_| true), "nothing unpacked");

    // The store's layout is a plain OCI layout: skopeo reads the pulled image from it by the name
    // it is listed under, with the digest the registry gave.
    let listed = by_digest.trim_start_matches("docker://");
    let out = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{listed}", store.join("layout").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["Digest"], digest.as_str());

    // Again, by tag (one manifest request) and by digest (no request): nothing fetched.
    for again in [&by_tag, &by_digest] {
        let again = pull(&store, again);
        again.code(0);
        assert_eq!(again.json()["alreadyStored"], true, "{}", again.stdout);
    }

    // The registry gone: verify reads the image and its bundle from the store.
    drop(registry);
    for reference in [&by_tag, &by_digest] {
        run(imgsign()
            .args(["verify", reference, "--offline", "--no-record", "--store"])
            .arg(&store)
            .arg("--trust")
            .arg(&trust))
        .code(0)
        .says("verified")
        .says(&a.id);
    }
    // What `run --offline` does before it launches: the store unpacks the pulled image (verify on
    // write) from its own layout, with the bundle kept beside it.
    {
        use std::sync::Arc;
        use store::{EnsureOptions, Store};
        use verifier_core::source::ImageRef;
        let offline = store::blobs::offline(&store, &by_digest.parse::<ImageRef>().unwrap()).unwrap();
        let bundles = verifier_core::referrers::discover_bundles(&offline).unwrap().bundles;
        let trust = keys::TrustStore::open(&trust).unwrap();
        let options = EnsureOptions::default();
        let stored = Store::open(&store)
            .unwrap()
            .ensure(&offline, &bundles, &trust, &options, Arc::new(verifier_core::progress::NoProgress))
            .unwrap();
        assert!(stored.stats.unpacked);
        assert_eq!(stored.digest.oci(), digest);
        assert!(stored.rootfs.join("bin/busybox").is_file());
    }
    // Without --offline it would reach the (stopped) registry.
    run(imgsign()
        .args(["verify", &by_tag, "--insecure", "--no-record", "--registry-timeout", "2s", "--trust"])
        .arg(&trust))
    .code(2);

    // Never pulled: a clear error; a host that does not exist is not even looked up.
    let other_digest = format!("{}@sha256:{}", by_tag.rsplit_once(':').unwrap().0, "0".repeat(64));
    let nowhere = "docker://no-such-registry.invalid/x/y:v1".to_string();
    for absent in [&other_digest, &nowhere] {
        run(imgsign().args(["verify", absent, "--offline", "--store"]).arg(&store).arg("--trust").arg(&trust))
            .code(2)
            .says("is not in the local store")
            .says("imgsign pull");
        run(imgsign().args(["run", absent, "--offline", "--store"]).arg(&store).arg("--trust").arg(&trust))
            .code(2)
            .says("is not in the local store");
    }
    // Copy from a registry needs the registry: refused.
    let out = home.join("copy");
    run(imgsign().args(["copy", &nowhere, &format!("oci:{}:x", out.display()), "--offline"])).code(2).says("--offline");
    assert!(!out.exists());
}

#[test]
fn a_hostile_registry_leaves_nothing_in_the_store() {
    use support::hostile_registry::{Fault, HostileRegistry};
    let image = image();
    let tmp = tempdir();
    for (fault, says) in [
        (Fault::WrongLayerBytes, "digest mismatch"),
        (Fault::WrongConfigBytes, "digest mismatch"),
        (Fault::TruncatedLayer, "the transfer failed"),
        (Fault::HugeManifest, "larger than"),
    ] {
        let registry = HostileRegistry::serve(&image.oci_dir, testdata::real::TAG, fault);
        let store = tmp.path().join(format!("{fault:?}"));
        let reference = format!("{}:v1", registry.reference("hostile/image"));
        run(imgsign().args(["pull", &reference, "--insecure", "--registry-timeout", "2s", "--store"]).arg(&store))
            .code(2)
            .says(says);
        assert!(!store.join("layout/index.json").exists(), "{fault:?}: an index was written");
        assert_blobs_sound(&store);
        let reference_digest = format!("{}:v1", registry.reference("hostile/image"));
        run(imgsign()
            .args(["verify", &reference_digest, "--offline", "--store"])
            .arg(&store)
            .args(["--trust", "/nonexistent"]))
        .code(2)
        .says("is not in the local store");
    }
}
