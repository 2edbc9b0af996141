//! The verified-bundle cache: what a full verification proved about the bundle files of one
//! image, so that the next `ensure` of that image with the same files skips the signature checks
//! and the statement parse (issue 9: verifying a verified store must cost next to nothing).
//!
//! Owned by the store; [`Store::ensure_files`](crate::Store::ensure_files) is its one user.
//!
//! An entry is keyed by the image digest (what the store entry is named by) and the SHA-256 of
//! each bundle file's bytes, and holds only what was proven: the distinct trusted, unrevoked keys
//! whose signatures verified, the statement header (subject, name, version, expiry) and the
//! payload digest. It is written (atomically, `verified/<key hex>.json`, mode 0600) after a full
//! verification whose statement the stored files were checked against. It proves nothing about
//! the trust store of tomorrow: on every use [`Proof::recheck`] checks again what can change:
//! each signer still trusted and not revoked in the *current* trust store, their number against
//! the current threshold, the expiry against now, the version against the rollback state.
//!
//! An entry that does not parse, names another image or other bundle files than the lookup,
//! or whose MAC does not verify is ignored: the full verification runs (and refuses in its own
//! words). The MAC (HMAC-SHA256 under `verified/key`, 32 random bytes made once, mode 0600) means
//! an entry edited, or copied from another store, is never believed. The key sits in the same
//! root-owned directory as the unpacked trees: whoever can read it and write here can also change
//! the files that run, so the cache trusts no one the store did not already trust.

use crate::lock::LockMode;
use crate::objects::ContentStats;
use crate::{io_at, open_image, EnsureOptions, EnsureStats, OpenedImage, Store, StoreError, StoredImage};
use hmac::{Hmac, Mac};
use keys::{KeyId, TrustStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use verifier_core::bundle::{CheckedBundle, MAX_BUNDLE_BYTES};
use verifier_core::digest::{HashingReader, Sha256Digest};
use verifier_core::progress::Progress;
use verifier_core::source::ImageRef;
use verifier_core::verify::{verify_statement, Accepted, VerifiedStatement, VerifyError};

/// Below the store root.
pub(crate) const DIR: &str = "verified";
const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
/// Version of an entry.
const FORMAT: u32 = 1;
/// Domain of the entry name's hash.
const NAME_DOMAIN: &[u8] = b"imgsign store verified v1\0";

type HmacSha256 = Hmac<Sha256>;

/// The bundle files of one run by the SHA-256 of their bytes, sorted and without repeats (the
/// signatures of bundles are pooled: order and repeats do not change what they prove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleDigests(Vec<Sha256Digest>);

impl BundleDigests {
    pub fn new(digests: impl IntoIterator<Item = Sha256Digest>) -> Self {
        let mut digests: Vec<Sha256Digest> = digests.into_iter().collect();
        digests.sort();
        digests.dedup();
        BundleDigests(digests)
    }

    /// The digest of each file's bytes; `None` when one is larger than a bundle may be (the full
    /// read refuses it).
    pub fn of_files(paths: &[PathBuf]) -> Result<Option<Self>, StoreError> {
        let mut digests = Vec::with_capacity(paths.len());
        for path in paths {
            let file = std::fs::File::open(path).map_err(|e| bundle_error(path, e))?;
            let mut reader = HashingReader::new(file.take(MAX_BUNDLE_BYTES as u64 + 1));
            io::copy(&mut reader, &mut io::sink()).map_err(|e| bundle_error(path, e))?;
            let (digest, len) = reader.finish();
            if len > MAX_BUNDLE_BYTES as u64 {
                return Ok(None);
            }
            digests.push(digest);
        }
        Ok(Some(Self::new(digests)))
    }

    pub fn as_slice(&self) -> &[Sha256Digest] {
        &self.0
    }
}

/// Reads and checks each bundle file (as [`CheckedBundle::read`] does), and the digest of the
/// very bytes each was read from: what a cache entry written after their verification is keyed on.
pub fn read_bundles(paths: &[PathBuf]) -> Result<(Vec<CheckedBundle>, BundleDigests), StoreError> {
    let mut bundles = Vec::with_capacity(paths.len());
    let mut digests = Vec::with_capacity(paths.len());
    for path in paths {
        let file = std::fs::File::open(path).map_err(|e| bundle_error(path, e))?;
        let mut reader = HashingReader::new(file);
        let bundle = CheckedBundle::from_reader(&mut reader)
            .map_err(|source| StoreError::Verify(Box::new(VerifyError::Bundle { path: path.clone(), source })))?;
        // What the parse left unread (nothing, for a well-formed file) is part of the key too.
        io::copy(&mut reader, &mut io::sink()).map_err(|e| bundle_error(path, e))?;
        bundles.push(bundle);
        digests.push(reader.finish().0);
    }
    Ok((bundles, BundleDigests::new(digests)))
}

fn bundle_error(path: &Path, source: io::Error) -> StoreError {
    let source = verifier_core::bundle::BundleError::Read { path: path.to_path_buf(), source };
    StoreError::Verify(Box::new(VerifyError::Bundle { path: path.to_path_buf(), source }))
}

/// What a full verification proved, as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proof {
    /// The image (store entry digest) the statement's subject was checked against.
    pub image: Sha256Digest,
    /// The bundle files whose signatures were checked.
    pub bundles: Vec<Sha256Digest>,
    /// Distinct trusted, unrevoked keys whose signatures verified.
    pub signers: Vec<KeyId>,
    /// The statement header.
    pub subjects: Vec<Sha256Digest>,
    pub name: String,
    pub version: u64,
    /// RFC 3339 UTC, as signed.
    pub expires: String,
    pub payload_digest: Sha256Digest,
}

/// Why a remembered proof does not stand now: the full verification runs instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error("the entry is about another image")]
    OtherImage,
    #[error("the entry is about other bundle files")]
    OtherBundles,
    #[error("{valid} signer(s) still trusted and not revoked; threshold is {threshold}")]
    Threshold { valid: usize, threshold: usize },
    #[error("the expiry {0:?} does not parse")]
    Expiry(String),
    #[error("expired at {0}")]
    Expired(String),
    #[error("version {version} is older than version {highest} already accepted")]
    Rollback { version: u64, highest: u64 },
}

impl Proof {
    /// What `statement` (verified from `bundles`, its subject checked against `image`) proves.
    pub fn of(image: Sha256Digest, bundles: &BundleDigests, statement: &VerifiedStatement) -> Self {
        let header = statement.header();
        Proof {
            image,
            bundles: bundles.as_slice().to_vec(),
            signers: statement.signers().cloned().collect(),
            subjects: header.subject_digests().collect(),
            name: header.name.clone(),
            version: header.version,
            expires: header.expires.clone(),
            payload_digest: statement.payload_digest(),
        }
    }

    /// Whether the proof stands for `image` and `bundles` under the trust store as it is now and
    /// at `now`: the same image and bundle files; at least `threshold` of the signers still
    /// trusted and not revoked; not expired; not older than the version already accepted. The
    /// version to record when it does.
    pub fn recheck(
        &self,
        image: &Sha256Digest,
        bundles: &BundleDigests,
        trust: &TrustStore,
        now: SystemTime,
    ) -> Result<Accepted, Stale> {
        if self.image != *image {
            return Err(Stale::OtherImage);
        }
        if self.bundles != bundles.as_slice() {
            return Err(Stale::OtherBundles);
        }
        let mut signers = self.signers.clone();
        signers.sort();
        signers.dedup();
        let valid = signers.iter().filter(|id| trust.find(id).is_some() && !trust.is_revoked(id)).count();
        if valid < trust.threshold() {
            return Err(Stale::Threshold { valid, threshold: trust.threshold() });
        }
        let expires_at = humantime::parse_rfc3339(&self.expires).map_err(|_| Stale::Expiry(self.expires.clone()))?;
        if now > expires_at {
            return Err(Stale::Expired(self.expires.clone()));
        }
        if let Some(highest) = trust.highest_version(&self.name).filter(|&h| self.version < h) {
            return Err(Stale::Rollback { version: self.version, highest });
        }
        Ok(Accepted::remembered(self.name.clone(), self.version))
    }
}

impl Store {
    /// [`Store::ensure`] of bundle files, remembering what their verification proved.
    ///
    /// When this store verified these very bundle files (the same bytes) for this image before,
    /// and the stored entry is the one checked against their statement, the image is returned
    /// without checking the signatures or reading the statement again: [`Proof::recheck`]
    /// checks against `trust` and `options.now` what can have changed since. Otherwise (no
    /// entry, an entry that is not this store's, or a recheck that fails) the full
    /// [`Store::ensure`] runs on the bundles read from the same bytes whose digests key the entry
    /// it then writes. Each bundle file is read once more than by [`Store::ensure`] on that path.
    pub fn ensure_files(
        &self,
        image: &ImageRef,
        bundle_files: &[PathBuf],
        trust: &TrustStore,
        options: &EnsureOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<StoredImage, StoreError> {
        if bundle_files.is_empty() {
            return Err(StoreError::Verify(Box::new(VerifyError::NoBundles)));
        }
        let opened = open_image(image)?;
        let cache = Cache::new(self.root());
        if let Some(digests) = BundleDigests::of_files(bundle_files)? {
            if let Some(stored) = self.remembered(&cache, &opened, &digests, trust, options.now)? {
                return Ok(StoredImage { config: opened.source.config().cloned(), ..stored });
            }
        }
        let (bundles, digests) = read_bundles(bundle_files)?;
        let statement = verify_statement(&bundles, trust, options.now).map_err(|e| StoreError::Verify(Box::new(e)))?;
        let digest = opened.digest;
        let stored = self.ensure_verified(opened, &statement, options, progress)?;
        // Remembered only when the stored files were checked against this very statement.
        if stored.record.payload_digest == statement.payload_digest() {
            cache.remember(&Proof::of(digest, &digests, &statement))?;
        }
        Ok(stored)
    }

    /// The stored image, when a remembered proof about it and these bundles stands.
    fn remembered(
        &self,
        cache: &Cache,
        opened: &OpenedImage,
        digests: &BundleDigests,
        trust: &TrustStore,
        now: SystemTime,
    ) -> Result<Option<StoredImage>, StoreError> {
        let Some(proof) = cache.find(&opened.digest, digests) else { return Ok(None) };
        let Ok(accepted) = proof.recheck(&opened.digest, digests, trust, now) else { return Ok(None) };
        let _lock = self.lock(LockMode::Shared)?;
        let entry = self.entry(&opened.digest);
        let Ok(record) = self.read_record(&entry) else { return Ok(None) };
        // The stored files were checked against the statement the proof is about.
        if record.payload_digest != proof.payload_digest || record.digest != opened.digest {
            return Ok(None);
        }
        Ok(Some(StoredImage {
            digest: record.digest,
            rootfs: entry.join("rootfs"),
            record,
            stats: EnsureStats { unpacked: false, content: ContentStats::default(), remembered: true },
            accepted,
            config: None,
        }))
    }
}

/// An entry on disk: the proof and its MAC.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    format: u32,
    proof: Proof,
    /// HMAC-SHA256 of the proof's JSON under the store's key, hex.
    mac: String,
}

/// Where the entry about `image` with `bundles` is in the store at `root` (for inspection).
pub fn entry_path(root: &Path, image: &Sha256Digest, bundles: &BundleDigests) -> PathBuf {
    root.join(DIR).join(entry_name(image, bundles))
}

fn entry_name(image: &Sha256Digest, bundles: &BundleDigests) -> String {
    let mut name = Sha256::new();
    name.update(NAME_DOMAIN);
    name.update(image.0);
    for digest in bundles.as_slice() {
        name.update(digest.0);
    }
    format!("{}.json", hex::encode(name.finalize()))
}

/// The cache below a store root.
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub(crate) fn new(root: &Path) -> Self {
        Cache { dir: root.join(DIR) }
    }

    fn path(&self, image: &Sha256Digest, bundles: &BundleDigests) -> PathBuf {
        self.dir.join(entry_name(image, bundles))
    }

    /// The remembered proof about `image` with `bundles`, if an entry this store wrote is there
    /// (anything else, or no key yet, is no entry). Not yet rechecked.
    pub(crate) fn find(&self, image: &Sha256Digest, bundles: &BundleDigests) -> Option<Proof> {
        let key = self.read_key().ok()?;
        let bytes = std::fs::read(self.path(image, bundles)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        if entry.format != FORMAT {
            return None;
        }
        let mac = hex::decode(&entry.mac).ok()?;
        mac_of(&key, &entry.proof).verify_slice(&mac).ok()?;
        Some(entry.proof)
    }

    /// Remembers `proof` (replacing an entry of the same image and bundles).
    pub(crate) fn remember(&self, proof: &Proof) -> Result<(), StoreError> {
        let key = self.key()?;
        let entry = Entry {
            format: FORMAT,
            proof: proof.clone(),
            mac: hex::encode(mac_of(&key, proof).finalize().into_bytes()),
        };
        let bytes = serde_json::to_vec_pretty(&entry).expect("entries serialise");
        let path = self.path(&proof.image, &BundleDigests::new(proof.bundles.iter().copied()));
        atomic_file::replace_file(&path, &bytes, 0o600).map_err(|e| atomic_error(&path, e))
    }

    /// Removes every entry that is not this store's (does not parse, or its MAC fails) or whose
    /// image `stored` says is gone; the number removed. For gc, under the store's lock (entries
    /// being written have temporary names, which are left alone).
    pub(crate) fn prune(&self, stored: impl Fn(&Sha256Digest) -> bool) -> Result<u64, StoreError> {
        let dirents = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_at(&self.dir)(e)),
        };
        let key = self.read_key().ok();
        let mut removed = 0;
        for dirent in dirents {
            let path = dirent.map_err(io_at(&self.dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let proof = key.and_then(|key| {
                let entry: Entry = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
                let mac = hex::decode(&entry.mac).ok()?;
                mac_of(&key, &entry.proof).verify_slice(&mac).ok()?;
                Some(entry.proof)
            });
            if !proof.is_some_and(|p| stored(&p.image)) {
                std::fs::remove_file(&path).map_err(io_at(&path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn read_key(&self) -> io::Result<[u8; KEY_LEN]> {
        let bytes = std::fs::read(self.dir.join(KEY_FILE))?;
        bytes.try_into().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not a key of 32 bytes"))
    }

    /// The store's key, made on first use.
    fn key(&self) -> Result<[u8; KEY_LEN], StoreError> {
        use std::os::unix::fs::DirBuilderExt as _;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_at(&self.dir)(e)),
            _ => {}
        }
        let path = self.dir.join(KEY_FILE);
        if let Ok(key) = self.read_key() {
            return Ok(key);
        }
        let mut key = [0u8; KEY_LEN];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
        match atomic_file::write_new_file(&path, &key, 0o600) {
            Ok(()) => Ok(key),
            // Another process made it first: use theirs. A file that is not a key stays an error
            // (nothing is remembered) rather than being replaced behind the entries it signed.
            Err(atomic_file::AtomicFileError::Exists { .. }) => self.read_key().map_err(io_at(&path)),
            Err(e) => Err(atomic_error(&path, e)),
        }
    }
}

fn mac_of(key: &[u8; KEY_LEN], proof: &Proof) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&serde_json::to_vec(proof).expect("proofs serialise"));
    mac
}

fn atomic_error(path: &Path, e: atomic_file::AtomicFileError) -> StoreError {
    StoreError::Io { path: path.to_path_buf(), source: io::Error::other(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof() -> Proof {
        Proof {
            image: Sha256Digest([1; 32]),
            bundles: vec![Sha256Digest([2; 32])],
            signers: vec![],
            subjects: vec![Sha256Digest([1; 32])],
            name: "app".into(),
            version: 3,
            expires: "2100-01-01T00:00:00Z".into(),
            payload_digest: Sha256Digest([4; 32]),
        }
    }

    #[test]
    fn an_entry_is_found_only_under_its_own_key_and_mac() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let p = proof();
        let bundles = BundleDigests::new(p.bundles.clone());
        assert_eq!(cache.find(&p.image, &bundles), None, "nothing before the first entry");
        cache.remember(&p).unwrap();
        assert_eq!(cache.find(&p.image, &bundles), Some(p.clone()));
        // The same bytes with another key: not believed.
        std::fs::write(dir.path().join(DIR).join(KEY_FILE), [9u8; KEY_LEN]).unwrap();
        assert_eq!(cache.find(&p.image, &bundles), None);
    }

    #[test]
    fn a_stale_proof_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut trust = TrustStore::init(&dir.path().join("trust"), 1).unwrap();
        let key = keys::SigningKey::from_seed(&[7; 32]).public_key();
        let id = trust.add_key(&key).unwrap();
        let mut p = proof();
        p.signers = vec![id.clone()];
        let bundles = BundleDigests::new(p.bundles.clone());
        let now = SystemTime::now();
        assert_eq!(p.recheck(&p.image, &bundles, &trust, now).unwrap().version(), 3);
        assert_eq!(p.recheck(&Sha256Digest([5; 32]), &bundles, &trust, now), Err(Stale::OtherImage));
        let other = BundleDigests::new([Sha256Digest([6; 32])]);
        assert_eq!(p.recheck(&p.image, &other, &trust, now), Err(Stale::OtherBundles));
        let later = humantime::parse_rfc3339("2100-01-02T00:00:00Z").unwrap();
        assert!(matches!(p.recheck(&p.image, &bundles, &trust, later), Err(Stale::Expired(_))));
        trust.record_version("app", 4).unwrap();
        assert_eq!(p.recheck(&p.image, &bundles, &trust, now), Err(Stale::Rollback { version: 3, highest: 4 }));
        trust.revoke(&id).unwrap();
        assert_eq!(p.recheck(&p.image, &bundles, &trust, now), Err(Stale::Threshold { valid: 0, threshold: 1 }));
    }
}
