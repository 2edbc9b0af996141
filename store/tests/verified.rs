//! The verified-bundle cache (`store::verified`) under attack and after the world moved on: a
//! second `ensure_files` of the same bundle files is remembered; an entry copied or edited to
//! name another bundle or another image is not believed; a key revoked, a threshold raised, a
//! statement expired or a version superseded after the entry was written is refused exactly as
//! without the cache. (Run as root: the store sets owners.)

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use store::verified::{entry_path, BundleDigests};
use store::{EnsureOptions, StoreError, StoredImage};
use support::*;
use testdata::tar::TarWriter;
use verifier_core::bundle::CheckedBundle;
use verifier_core::digest::Sha256Digest;
use verifier_core::progress::NoProgress;
use verifier_core::source::ImageRef;

fn base() -> TarWriter {
    let mut w = TarWriter::new();
    w.dir("bin", 0o755).file("bin/tool", 0o755, b"#!/bin/sh\necho tool\n").file("etc-version", 0o644, b"1\n");
    w
}

fn more() -> TarWriter {
    let mut w = TarWriter::new();
    w.file("extra", 0o644, b"only in the second image\n");
    w
}

/// The bundles written as files `NAME-<i>.json` next to the store.
fn write(scene: &Scene, name: &str, bundles: &[CheckedBundle]) -> Vec<PathBuf> {
    bundles
        .iter()
        .enumerate()
        .map(|(i, bundle)| {
            let path = scene.tmp.path().join(format!("{name}-{i}.json"));
            bundle.write_file(&path).unwrap();
            path
        })
        .collect()
}

fn ensure_at(scene: &Scene, image: &ImageRef, files: &[PathBuf], now: SystemTime) -> Result<StoredImage, StoreError> {
    let options = EnsureOptions { now, create_devices: false };
    scene.store.ensure_files(image, files, &scene.trust, &options, std::sync::Arc::new(NoProgress))
}

fn ensure(scene: &Scene, image: &ImageRef, files: &[PathBuf]) -> Result<StoredImage, StoreError> {
    ensure_at(scene, image, files, SystemTime::now())
}

/// Where the entry about `image` with these bundle files is.
fn entry(scene: &Scene, image: &Sha256Digest, files: &[PathBuf]) -> PathBuf {
    entry_path(scene.store.root(), image, &BundleDigests::of_files(files).unwrap().unwrap())
}

fn read_json(path: &PathBuf) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// A refusal (a failed verification, or an image that is not the signed subject) naming `says`.
fn refused(result: Result<StoredImage, StoreError>, says: &str) {
    let err = match result {
        Ok(stored) => panic!("accepted (remembered: {}), expected a refusal naming {says:?}", stored.stats.remembered),
        Err(e) => e,
    };
    assert!(matches!(err, StoreError::Verify(_) | StoreError::Mismatch { .. }), "{}", chain(&err));
    assert!(chain(&err).contains(says), "expected {says:?} in {}", chain(&err));
}

/// The image stored from alice's bundle file, the entry remembered.
fn remembered_scene() -> (Scene, ImageRef, Vec<PathBuf>, StoredImage) {
    let scene = Scene::new();
    let image = scene.image("a", &[&base()]);
    let files = write(&scene, "alice", &signed(&image, "alice"));
    let first = ensure(&scene, &image, &files).unwrap();
    assert!(first.stats.unpacked && !first.stats.remembered);
    (scene, image, files, first)
}

#[test]
fn a_second_ensure_of_the_same_bundle_files_is_remembered() {
    let (scene, image, files, first) = remembered_scene();
    let second = ensure(&scene, &image, &files).unwrap();
    assert!(second.stats.remembered && !second.stats.unpacked);
    assert_eq!((&second.record, &second.rootfs, &second.accepted), (&first.record, &first.rootfs, &first.accepted));
    assert!(second.config.is_some(), "the image config comes from the source either way");
    // An entry that does not parse is no entry: verified in full, then remembered again.
    let path = entry(&scene, &first.digest, &files);
    fs::write(&path, b"{ not json").unwrap();
    let third = ensure(&scene, &image, &files).unwrap();
    assert!(!third.stats.remembered);
    assert!(ensure(&scene, &image, &files).unwrap().stats.remembered);
}

#[test]
fn an_entry_copied_or_edited_to_name_another_bundle_is_not_believed() {
    let (scene, image, good, stored) = remembered_scene();
    let forged = write(&scene, "mallory", &signed(&image, "mallory"));
    let genuine = entry(&scene, &stored.digest, &good);
    let target = entry(&scene, &stored.digest, &forged);
    // As it is, under the name the forged bundle is looked up by: it names the good bundle.
    fs::copy(&genuine, &target).unwrap();
    refused(ensure(&scene, &image, &forged), "0 distinct trusted key(s) signed");
    // Edited to name the forged bundle: its MAC no longer verifies.
    let mut json = read_json(&genuine);
    json["proof"]["bundles"] = serde_json::json!([BundleDigests::of_files(&forged).unwrap().unwrap().as_slice()[0]]);
    fs::write(&target, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    refused(ensure(&scene, &image, &forged), "0 distinct trusted key(s) signed");
    assert!(ensure(&scene, &image, &good).unwrap().stats.remembered, "the genuine entry still stands");
}

#[test]
fn an_entry_edited_to_name_another_image_is_not_believed() {
    let (scene, a, bundle_a, stored_a) = remembered_scene();
    let b = scene.image("b", &[&base(), &more()]);
    let stored_b = ensure(&scene, &b, &write(&scene, "b", &signed(&b, "alice"))).unwrap();
    // The entry proving a's bundle for a, edited to say it proved it for b (subject and stored
    // statement included), under the name b with a's bundle is looked up by.
    let mut json = read_json(&entry(&scene, &stored_a.digest, &bundle_a));
    json["proof"]["image"] = serde_json::json!(stored_b.digest);
    json["proof"]["subjects"] = serde_json::json!([stored_b.digest]);
    json["proof"]["payloadDigest"] = serde_json::json!(stored_b.record.payload_digest);
    let target = entry(&scene, &stored_b.digest, &bundle_a);
    fs::write(&target, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    refused(ensure(&scene, &b, &bundle_a), "is not the signed subject");
    // As it is, under that name: it names image a.
    fs::copy(entry(&scene, &stored_a.digest, &bundle_a), &target).unwrap();
    refused(ensure(&scene, &b, &bundle_a), "is not the signed subject");
    assert!(ensure(&scene, &a, &bundle_a).unwrap().stats.remembered);
}

#[test]
fn a_key_revoked_after_the_entry_was_written_is_refused() {
    let (mut scene, image, files, _) = remembered_scene();
    scene.trust.revoke(&testdata::keys::test_key("alice").public_key().key_id()).unwrap();
    refused(ensure(&scene, &image, &files), "revoked key");
}

#[test]
fn a_threshold_raised_after_the_entry_was_written_is_refused() {
    let (mut scene, image, files, _) = remembered_scene();
    scene.trust.add_key(&testdata::keys::test_key("bob").public_key()).unwrap();
    scene.trust.set_threshold(2).unwrap();
    refused(ensure(&scene, &image, &files), "1 distinct trusted key(s) signed; threshold is 2");
}

#[test]
fn a_statement_expired_after_the_entry_was_written_is_refused() {
    let scene = Scene::new();
    let image = scene.image("a", &[&base()]);
    let now = SystemTime::now();
    let files = write(&scene, "hour", &signed_as(&image, "alice", 1, now, Duration::from_secs(3600)));
    ensure_at(&scene, &image, &files, now).unwrap();
    assert!(ensure_at(&scene, &image, &files, now + Duration::from_secs(60)).unwrap().stats.remembered);
    refused(ensure_at(&scene, &image, &files, now + Duration::from_secs(7200)), "expired at");
}

#[test]
fn a_version_superseded_after_the_entry_was_written_is_refused() {
    let (mut scene, image, files, _) = remembered_scene();
    scene.trust.record_version("app", 2).unwrap();
    refused(ensure(&scene, &image, &files), "older than version 2");
}

#[test]
fn gc_removes_what_was_remembered_about_a_removed_image_only() {
    let (scene, a, bundle_a, stored_a) = remembered_scene();
    let b = scene.image("b", &[&base(), &more()]);
    let bundle_b = write(&scene, "b", &signed(&b, "alice"));
    let stored_b = ensure(&scene, &b, &bundle_b).unwrap();
    let junk = scene.store.root().join("verified").join("junk.json");
    fs::write(&junk, b"{}").unwrap();
    assert_eq!(scene.store.gc().unwrap().remembered_removed, 1, "only the entry that is not the store's");
    scene.store.remove(&stored_a.digest.to_string()).unwrap();
    assert_eq!(scene.store.gc().unwrap().remembered_removed, 1);
    assert!(!entry(&scene, &stored_a.digest, &bundle_a).exists() && !junk.exists());
    assert!(entry(&scene, &stored_b.digest, &bundle_b).exists());
    assert!(ensure(&scene, &b, &bundle_b).unwrap().stats.remembered);
    assert!(!ensure(&scene, &a, &bundle_a).unwrap().stats.remembered, "stored again, verified in full");
}
