//! Shared by the store tests: a scene (a store root, a sentinel directory next to it, a trust
//! store trusting test key "alice"), images written with testdata's tar/OCI writers, bundles
//! signed with test keys through verifier-core (also over a chosen file list, for hostile images
//! the signer cannot scan), and snapshots of trees. (Run as root: the store sets owners.)
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::{EnsureOptions, StoreError, StoredImage};
use testdata::oci::{write_layout, Layer};
use testdata::tar::TarWriter;
use verifier_core::bundle::CheckedBundle;
use verifier_core::manifest::FileEntry;
use verifier_core::progress::NoProgress;
use verifier_core::sign::{sign, Prepared, SignOptions};
use verifier_core::source::ImageRef;
use verifier_core::statement::Statement;

pub const MONTH: Duration = Duration::from_secs(30 * 86400);

pub struct Scene {
    pub tmp: tempfile::TempDir,
    pub store: store::Store,
    pub trust: keys::TrustStore,
}

impl Scene {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("store-test-").tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("canary"), b"canary\n").unwrap();
        fs::write(outside.join("sub/passwd"), b"root:x:0:0\n").unwrap();
        let store = store::Store::open(tmp.path().join("store")).unwrap();
        let mut trust = keys::TrustStore::init(&tmp.path().join("trust"), 1).unwrap();
        trust.add_key(&testdata::keys::test_key("alice").public_key()).unwrap();
        Scene { tmp, store, trust }
    }

    pub fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    pub fn outside_abs(&self) -> String {
        self.outside().display().to_string()
    }

    /// An OCI layout `name` holding `layers` (gzip); its reference.
    pub fn image(&self, name: &str, layers: &[&TarWriter]) -> ImageRef {
        let layers: Vec<Layer> = layers.iter().map(|l| Layer::gzip(&l.finish())).collect();
        write_layout(&self.tmp.path().join("images").join(name), "t", &layers).unwrap().reference().parse().unwrap()
    }

    /// The same with uncompressed layers (so a byte of a file can be changed in the blob).
    pub fn image_tar(&self, name: &str, layers: &[&TarWriter]) -> ImageRef {
        let layers: Vec<Layer> = layers.iter().map(|l| Layer::tar(l.finish())).collect();
        write_layout(&self.tmp.path().join("images").join(name), "t", &layers).unwrap().reference().parse().unwrap()
    }

    pub fn ensure(&self, image: &ImageRef, bundles: &[CheckedBundle]) -> Result<StoredImage, StoreError> {
        self.store.ensure(image, bundles, &self.trust, &EnsureOptions::default(), Arc::new(NoProgress))
    }

    /// Every entry under `images/` (complete or temporary).
    pub fn image_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.store.root().join("images"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every object file.
    pub fn objects(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = self.store.root().join("objects/sha256");
        for fanout in fs::read_dir(&root).unwrap() {
            for object in fs::read_dir(fanout.unwrap().path()).unwrap() {
                out.push(object.unwrap().path());
            }
        }
        out.sort();
        out
    }
}

/// Signs `image` with the test key `key` (version 1, valid a month).
pub fn signed(image: &ImageRef, key: &str) -> Vec<CheckedBundle> {
    signed_as(image, key, 1, SystemTime::now(), MONTH)
}

pub fn signed_as(image: &ImageRef, key: &str, version: u64, now: SystemTime, valid: Duration) -> Vec<CheckedBundle> {
    let key = testdata::keys::test_key(key);
    let options = SignOptions { name: Some("app".into()), version, expires_in: valid, now };
    sign(image, &[&key], &options, Arc::new(NoProgress)).expect("sign").bundles
}

/// A statement about `image` (its real identity) claiming `files`, signed by `key`: what a
/// compromised signer, or one that signed before the image was altered, produces.
pub fn signed_claiming(image: &ImageRef, files: Vec<FileEntry>, key: &str) -> Vec<CheckedBundle> {
    let identity = verifier_core::source::open(image).unwrap().identity().clone();
    let statement = Statement::new(&identity, files, "app".into(), 1, SystemTime::now() + MONTH);
    let key = testdata::keys::test_key(key);
    Prepared::new(statement, identity).unwrap().sign(&[&key]).unwrap()
}

/// A v1 statement (no code marks, as signed before predicate v2) of `image`, signed by `key`.
pub fn signed_v1(image: &ImageRef, key: &str) -> Vec<CheckedBundle> {
    let files = scanned(image).into_iter().map(|f| FileEntry { code: None, ..f }).collect();
    let identity = verifier_core::source::open(image).unwrap().identity().clone();
    let mut statement = Statement::new(&identity, files, "app".into(), 1, SystemTime::now() + MONTH);
    statement.predicate_type = verifier_core::statement::PREDICATE_TYPE_V1.into();
    let key = testdata::keys::test_key(key);
    Prepared::new(statement, identity).unwrap().sign(&[&key]).unwrap()
}

/// The manifest `image` yields.
pub fn scanned(image: &ImageRef) -> Vec<FileEntry> {
    verifier_core::source::scan(image, Arc::new(NoProgress)).unwrap().files
}

/// Every path below `dir` with its type, mode, owner, size, link count and content.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() { fs::read(&path).unwrap() } else { Vec::new() };
            let desc = format!(
                "{:o} {}:{} {} nlink {} {:?}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.len(),
                meta.nlink(),
                content
            );
            out.insert(path.clone(), desc);
            if meta.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// The error and its sources on one line.
pub fn chain(e: &StoreError) -> String {
    verifier_core::verify::error_chain(e)
}
