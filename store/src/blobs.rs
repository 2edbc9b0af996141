//! Images kept as their blobs, not unpacked: what `imgsign pull docker://...` fills and what
//! `--offline` reads. Below the store root, `layout/` is an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`), so everything that reads `oci:` layouts (verify, the
//! store's unpack, bundle discovery in a layout) reads a pulled image as it is, with no network.
//!
//! Each pulled image manifest is listed in `index.json` under the names it was pulled by
//! (`HOST/REPO@sha256:HEX`, and `HOST/REPO:TAG` when pulled by tag; the OCI `ref.name`
//! annotation), and the bundles attached to it in the registry (OCI referrers, or the tag
//! fallback) are kept beside it as the same artifacts, listed with their `artifactType`, as
//! `imgsign copy` writes them into a layout.
//!
//! Integrity: every blob streams into a temporary file in `blobs/sha256/` and is renamed to its
//! digest only once its size and SHA-256 are the descriptor's (and its data is on disk), so a
//! blob's name is its checked content; `index.json` is replaced whole (temp + rename, under
//! `layout/index.lock`) only after every blob it names is in place. A failed pull leaves the
//! index as it was, plus at most complete, checked blobs. Blobs already present are not fetched
//! again; a digest reference already listed is not looked up at all (no network).
//!
//! Owned by the store crate; the transfer itself is [`crate::pull`]'s.

use crate::lock::{self, LockMode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use verifier_core::digest::Sha256Digest;
use verifier_core::source::ImageRef;

/// The layout's directory below the store root.
pub const LAYOUT_DIR: &str = "layout";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Largest `index.json` read.
const MAX_INDEX: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{what}: digest mismatch: descriptor says {expected}, the registry sent {actual}")]
    DigestMismatch { what: String, expected: Sha256Digest, actual: Sha256Digest },
    #[error("{what}: size mismatch: descriptor says {expected} bytes, the registry sent {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what}: the transfer failed")]
    Transfer {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error("{image} is not in the local store {store} (--offline reads nothing from the network): pull it first with `imgsign pull {image}`")]
    NotStored { image: String, store: PathBuf },
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

/// The store's OCI layout.
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout below store root `root` (created with its `oci-layout` marker when missing).
    pub fn create(root: &Path) -> Result<Self, BlobError> {
        let dir = root.join(LAYOUT_DIR);
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(io_at(&blobs))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_replacing(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Self { dir })
    }

    /// The layout below `root`, only if it exists (nothing is created: `--offline` reads).
    pub fn existing(root: &Path) -> Option<Self> {
        let dir = root.join(LAYOUT_DIR);
        dir.join("index.json").is_file().then_some(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is in place with `size` bytes (its name is its checked digest).
    pub fn has(&self, digest: &Sha256Digest, size: u64) -> bool {
        std::fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Streams `from` into the blob `digest` of `size` bytes, checked before it gets its name;
    /// returns the bytes written. Nothing stays behind on failure.
    pub fn write_blob(
        &self,
        what: &str,
        digest: &Sha256Digest,
        size: u64,
        from: &mut dyn Read,
    ) -> Result<u64, BlobError> {
        let dir = self.dir.join("blobs/sha256");
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir).map_err(io_at(&dir))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        // One byte past the size is enough to know the registry sent too much.
        let mut capped = from.take(size + 1);
        loop {
            let n = match capped.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(BlobError::Transfer { what: what.to_string(), source }),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_at(tmp.path()))?;
            total += n as u64;
        }
        if total != size {
            return Err(BlobError::SizeMismatch { what: what.to_string(), expected: size, actual: total });
        }
        let actual = Sha256Digest(hasher.finalize().into());
        if actual != *digest {
            return Err(BlobError::DigestMismatch { what: what.to_string(), expected: *digest, actual });
        }
        // On disk before it has the name that vouches for it.
        tmp.as_file().sync_data().map_err(io_at(tmp.path()))?;
        let path = self.blob_path(digest);
        tmp.persist(&path).map_err(|e| BlobError::Io { path, source: e.error })?;
        Ok(size)
    }

    /// The index's entries (none when there is no `index.json` yet).
    fn entries(&self) -> Result<Vec<Value>, BlobError> {
        let path = self.dir.join("index.json");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_INDEX).read_to_end(&mut bytes).map_err(io_at(&path))?;
        let index: Value = serde_json::from_slice(&bytes)
            .map_err(|e| BlobError::Index { path: path.clone(), reason: format!("not JSON: {e}") })?;
        Ok(index["manifests"].as_array().cloned().unwrap_or_default())
    }

    /// The manifest digest listed under `name`, if any.
    pub fn lookup(&self, name: &str) -> Result<Option<Sha256Digest>, BlobError> {
        Ok(self
            .entries()?
            .iter()
            .find(|e| e["annotations"][REF_NAME].as_str() == Some(name))
            .and_then(|e| Sha256Digest::parse_oci(e["digest"].as_str()?).ok()))
    }

    /// Lists `image` (digest, size, media type) under each of `names` (their old entries
    /// dropped) and each artifact entry (once per digest), replacing `index.json` whole.
    pub fn record(&self, image: &Value, names: &[String], artifacts: Vec<Value>) -> Result<(), BlobError> {
        let lock_path = self.dir.join("index.lock");
        let _held = lock::lock(&lock_path, LockMode::Wait).map_err(io_at(&lock_path))?;
        let mut entries = self.entries()?;
        let named = |e: &Value| e["annotations"][REF_NAME].as_str().is_some_and(|n| names.iter().any(|x| x == n));
        let artifact_digest = |e: &Value| e["digest"].clone();
        entries.retain(|e| !named(e) && !artifacts.iter().any(|a| artifact_digest(a) == e["digest"]));
        for name in names {
            let mut entry = image.clone();
            entry["annotations"] = json!({ REF_NAME: name });
            entries.push(entry);
        }
        entries.extend(artifacts);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        write_replacing(&self.dir.join("index.json"), &serde_json::to_vec_pretty(&index).expect("JSON of a Value"))
    }
}

/// Writes `path` through a temporary file beside it, renamed over it once complete.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io_at(dir))?;
    tmp.write_all(bytes).map_err(io_at(path))?;
    tmp.as_file().sync_data().map_err(io_at(path))?;
    tmp.persist(path).map_err(|e| BlobError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(())
}

/// The name a registry image is listed under in the layout: `HOST/REPO:TAG` or
/// `HOST/REPO@sha256:HEX`, as the reference says.
pub fn name_of(image: &ImageRef) -> Option<String> {
    match image {
        ImageRef::Registry { reference, .. } => Some(reference.to_string()),
        _ => None,
    }
}

/// For `--offline`: `image` read from the store root `root` only. A registry reference becomes
/// the layout image listed under its name (an error naming it when it was never pulled); any
/// other reference is local already and stays as it is.
pub fn offline(root: &Path, image: &ImageRef) -> Result<ImageRef, BlobError> {
    let ImageRef::Registry { platform, .. } = image else { return Ok(image.clone()) };
    let name = name_of(image).expect("a registry image has a name");
    let not_stored = || BlobError::NotStored { image: image.to_string(), store: root.to_path_buf() };
    let layout = Layout::existing(root).ok_or_else(not_stored)?;
    let digest = layout.lookup(&name)?.ok_or_else(not_stored)?;
    if !layout.blob_path(&digest).is_file() {
        return Err(not_stored());
    }
    Ok(ImageRef::Oci { dir: layout.dir.clone(), tag: Some(name), platform: platform.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(layout: &Layout) -> Vec<String> {
        std::fs::read_dir(layout.dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn a_blob_gets_its_name_only_when_its_size_and_digest_are_the_descriptors() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::create(root.path()).unwrap();
        let good = b"layer bytes".to_vec();
        let digest = Sha256Digest::of(&good);
        let size = good.len() as u64;

        let wrong = b"other bytes".to_vec();
        let err = layout.write_blob("blob", &digest, size, &mut &wrong[..]).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err:?}");
        let longer = [good.clone(), b"!".to_vec()].concat();
        let err = layout.write_blob("blob", &digest, size, &mut &longer[..]).unwrap_err();
        assert!(matches!(err, BlobError::SizeMismatch { actual, .. } if actual == size + 1), "{err:?}");
        let err = layout.write_blob("blob", &digest, size, &mut &good[..4]).unwrap_err();
        assert!(matches!(err, BlobError::SizeMismatch { actual: 4, .. }), "{err:?}");
        assert!(leftovers(&layout).is_empty(), "nothing stays: {:?}", leftovers(&layout));

        layout.write_blob("blob", &digest, size, &mut &good[..]).unwrap();
        assert!(layout.has(&digest, size));
        assert_eq!(leftovers(&layout), vec![digest.hex()]);
    }

    #[test]
    fn offline_finds_only_what_the_index_lists() {
        let root = tempfile::tempdir().unwrap();
        let image: ImageRef = "docker://127.0.0.1:5000/web:v1".parse().unwrap();
        let not_stored = |e: BlobError| matches!(e, BlobError::NotStored { .. });
        assert!(not_stored(offline(root.path(), &image).unwrap_err()), "no layout at all");

        let layout = Layout::create(root.path()).unwrap();
        let manifest = br#"{"schemaVersion":2}"#.to_vec();
        let digest = Sha256Digest::of(&manifest);
        let entry = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest.oci(), "size": manifest.len()});
        layout.record(&entry, &["127.0.0.1:5000/web:v1".to_string()], Vec::new()).unwrap();
        assert!(not_stored(offline(root.path(), &image).unwrap_err()), "listed but its manifest blob is missing");

        layout.write_blob("manifest", &digest, manifest.len() as u64, &mut &manifest[..]).unwrap();
        let ImageRef::Oci { dir, tag, .. } = offline(root.path(), &image).unwrap() else { panic!("not a layout") };
        assert_eq!((dir, tag.as_deref()), (layout.dir().to_path_buf(), Some("127.0.0.1:5000/web:v1")));
        let other: ImageRef = "docker://127.0.0.1:5000/web:v2".parse().unwrap();
        assert!(not_stored(offline(root.path(), &other).unwrap_err()));
        let local: ImageRef = "oci:/images/web:v1".parse().unwrap();
        assert_eq!(offline(root.path(), &local).unwrap(), local, "local references stay as they are");
    }
}
