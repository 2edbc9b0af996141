//! The local image store of `imgsign run`: verified images unpacked once, their files kept once.
//!
//! Layout below the root (default [`DEFAULT_ROOT`], root-owned, mode 0700):
//! - `objects/sha256/<2 hex>/<content hex>-<metadata hex>`: each regular file's content once, as
//!   one inode carrying the metadata hardlinks share (see [`objects`] for the key);
//!   `objects/tmp/`: unnamed `O_TMPFILE`s being written.
//! - `images/<digest hex>/`: one verified image, named by its OCI manifest digest (the config
//!   digest for a docker-archive, which has no manifest): `image.json` (the [`ImageRecord`]),
//!   `files.json` (the manifest of what was unpacked), `verity.json` (object key -> fs-verity
//!   SHA-256 of each object it uses, when the file system has fs-verity: [`verity`]) and
//!   `rootfs/`, the flattened tree with
//!   directories, symlinks and (when asked) device nodes created for real and every regular file a
//!   hardlink to its object. `rootfs/` is what the launch engine mounts as the read-only overlay
//!   lower. An entry is written as `images/.tmp-<random>` and renamed into place only when
//!   complete.
//! - `verified/`: what full verifications of bundle files proved, so a second `ensure` of the
//!   same image with the same files does not verify them again, only rechecks what can change
//!   ([`verified`]).
//! - `lock`: `flock`ed around every mutation.
//!
//! [`Store::ensure`] verifies the bundles against the trust store (signatures, threshold,
//! revocation, expiry, rollback) and the image's identity against the statement's subject
//! before anything is written; then unpacks with verifier-core's one implementation of the layer
//! rules and its in-root writer, through the store's [`objects::ObjectSink`], checking each file
//! against the VERIFIED manifest as it is written and the whole unpacked manifest at the end.
//! A stored image is found by its record: a second `ensure` costs no unpack and no hashing.

pub mod blobs;
pub mod lock;
pub mod objects;
pub mod process;
pub mod pull;
pub mod verified;
pub mod verity;

use crate::lock::LockMode;
use crate::objects::{ContentStats, Expected, ObjectSink, Shared};
use keys::TrustStore;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use verifier_core::bundle::CheckedBundle;
use verifier_core::digest::Sha256Digest;
use verifier_core::image::tree::LayerError;
use verifier_core::image::{unpack_source, UnpackError, UnpackOptions, UnpackedImage, Written};
use verifier_core::manifest::{Difference, FileEntry, FileType};
use verifier_core::progress::{NoProgress, Progress};
use verifier_core::source::{
    self, ImageConfiguration, ImageContent, ImageIdentity, ImageRef, ImageSource, LayerDescriptor, SourceError,
};
use verifier_core::statement::ManifestFormat;
use verifier_core::verify::{error_chain, verify_statement, Accepted, PolicyError, VerifiedStatement, VerifyError};

/// Where the store lives unless told otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/imgsign";

/// Version of `image.json`.
/// 2: `files.json` entries carry code marks.
const RECORD_FORMAT: u32 = 2;
const TMP_PREFIX: &str = ".tmp-";
/// Beside `image.json`: the fs-verity digests of the image's objects.
pub const VERITY_FILE: &str = "verity.json";

/// The fs-verity SHA-256 digest of each object an image uses, by object key.
type VerityDigests = BTreeMap<String, [u8; 32]>;
/// Differences named in an error message.
const NAMED_DIFFERENCES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bundles did not verify against the trust store (unsigned, untrusted key, revoked,
    /// below threshold, expired, rolled back) or the image is not the signed subject: the
    /// verifier's error, as it is.
    #[error("verification failed")]
    Verify(#[source] Box<VerifyError>),
    /// The image could not be opened or read.
    #[error("reading image {image}")]
    Source {
        image: String,
        #[source]
        source: Box<SourceError>,
    },
    /// The store keeps layered images only.
    #[error("{image}: a dir: image is not made of layers; the store keeps layered images")]
    NotLayered { image: String },
    /// Unpacking failed at `path` (an image path, or the image when the fault is not one entry);
    /// nothing of it was kept.
    #[error("unpacking {image}: at {path}")]
    Unpack {
        image: String,
        path: String,
        #[source]
        source: Box<UnpackError>,
    },
    /// What the image holds at `path` is not what the verified manifest says.
    #[error("{path}: does not match the signed manifest: {detail}")]
    Mismatch { path: String, detail: String },
    #[error("store file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store record {path} is not readable")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no stored image matches {0:?}")]
    NotFound(String),
    #[error("{query:?} matches several stored images: {matches}")]
    Ambiguous { query: String, matches: String },
    #[error("the store at {path} is locked by another imgsign process; try again")]
    Locked { path: PathBuf },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// An image source opened for the store: a layered image and the digest its entry is named by.
struct OpenedImage {
    reference: String,
    source: Box<dyn ImageSource>,
    identity: ImageIdentity,
    digest: Sha256Digest,
}

fn open_image(image: &ImageRef) -> Result<OpenedImage, StoreError> {
    let reference = image.to_string();
    let source = source::open(image)
        .map_err(|source| StoreError::Source { image: reference.clone(), source: Box::new(source) })?;
    if let ImageContent::Directory(_) = source.content() {
        return Err(StoreError::NotLayered { image: reference });
    }
    let identity = source.identity().clone();
    let Some(digest) = identity.manifest_digest.or(identity.config_digest) else {
        return Err(StoreError::NotLayered { image: reference });
    };
    Ok(OpenedImage { reference, source, identity, digest })
}

/// What `image.json` records about a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub format: u32,
    /// The image reference as given to the first `ensure`.
    pub reference: String,
    /// What the entry is named by: the OCI manifest digest (the config digest for a
    /// docker-archive).
    pub digest: Sha256Digest,
    pub manifest_digest: Option<Sha256Digest>,
    pub config_digest: Option<Sha256Digest>,
    /// The verified statement the unpacked files were compared with.
    pub name: String,
    pub version: u64,
    pub signers: Vec<String>,
    pub payload_digest: Sha256Digest,
    /// Entries of the unpacked manifest.
    pub files: usize,
    /// What unpacking wrote and reused.
    pub content: ContentStats,
    /// RFC 3339 UTC.
    pub stored_at: String,
}

/// What [`Store::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnsureStats {
    /// False when the image was already stored (nothing unpacked or hashed).
    pub unpacked: bool,
    /// This call's content work (all zero when not unpacked).
    pub content: ContentStats,
    /// The bundles' verification was remembered ([`verified`]): their signatures were not checked
    /// again, what can change since was ([`verified::Proof::recheck`]).
    pub remembered: bool,
}

/// A verified image in the store, ready to be mounted.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub digest: Sha256Digest,
    /// The flattened tree (read-only overlay lower).
    pub rootfs: PathBuf,
    pub record: ImageRecord,
    pub stats: EnsureStats,
    /// The version the verified statement would record in the trust store: the caller records
    /// it ([`verifier_core::verify::accept`]) once it uses the image (the store only reads trust).
    pub accepted: Accepted,
    /// The image config (default command, environment, working directory, user), from the
    /// source this call verified: covered by the signature only through the manifest digest
    /// (OCI) or config digest (docker archive) the statement's subject was checked against,
    /// not by the per-file manifest. See [`process`].
    pub config: Option<ImageConfiguration>,
}

/// How to ensure.
#[derive(Debug, Clone)]
pub struct EnsureOptions {
    /// The time expiry is checked against.
    pub now: SystemTime,
    /// Create device nodes and fifos in the rootfs (otherwise they stay metadata only).
    pub create_devices: bool,
}

impl Default for EnsureOptions {
    fn default() -> Self {
        Self { now: SystemTime::now(), create_devices: false }
    }
}

/// One stored image, as listed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedImage {
    pub record: ImageRecord,
    pub rootfs: PathBuf,
}

/// What [`Store::remove`] removed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedImage {
    pub digest: Sha256Digest,
    pub reference: String,
}

/// What [`Store::gc`] freed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcStats {
    pub objects_removed: u64,
    pub bytes_freed: u64,
    pub objects_kept: u64,
    /// Stale `images/.tmp-*` entries and `objects/tmp` files removed.
    pub temporaries_removed: u64,
    /// Remembered verifications ([`verified`]) of images no longer stored, or not this store's.
    pub remembered_removed: u64,
}

/// The store at one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating it (mode 0700) and its directories when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Store { root: root.into() };
        for dir in [store.root.clone(), store.root.join("objects"), store.objects(), store.tmp(), store.images()] {
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_at(&dir)(e)),
                _ => {}
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn objects(&self) -> PathBuf {
        self.root.join("objects/sha256")
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("objects/tmp")
    }

    fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    fn entry(&self, digest: &Sha256Digest) -> PathBuf {
        self.images().join(digest.hex())
    }

    fn lock(&self, mode: LockMode) -> Result<lock::LockGuard, StoreError> {
        let path = self.root.join("lock");
        lock::lock(&path, mode).map_err(io_at(&path))?.ok_or(StoreError::Locked { path: self.root.clone() })
    }

    /// Makes sure the image `image` is in the store, verified, and returns it.
    ///
    /// `bundles` (already read and shape-checked, [`verifier_core::verify::read_bundles`]) are
    /// verified against `trust` first: signatures (distinct trusted, unrevoked keys, threshold),
    /// expiry at `options.now`, rollback; then the image's identity against the statement's
    /// subject. Any refusal happens before anything is written (a subject mismatch is diagnosed
    /// by a read-only scan naming the differing paths). An image already stored under the same
    /// digest is returned from its record (its files were compared with a statement of this
    /// digest; a different statement is compared with the stored manifest, in memory).
    /// Otherwise the image is unpacked with verify-on-write: each regular file is hashed as it
    /// is written and compared with the verified manifest (a mismatch in the last layer aborts at
    /// once; an earlier layer's may be replaced later), the whole unpacked manifest is compared at
    /// the end, and a failure removes the partial entry and names the first differing path.
    /// Objects a failed unpack wrote stay until [`Store::gc`].
    ///
    /// The trust store is only read: record [`StoredImage::accepted`] when the image is used.
    /// Holds the store's lock while it works (waiting for another holder).
    pub fn ensure(
        &self,
        image: &ImageRef,
        bundles: &[CheckedBundle],
        trust: &TrustStore,
        options: &EnsureOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<StoredImage, StoreError> {
        let statement = verify_statement(bundles, trust, options.now).map_err(|e| StoreError::Verify(Box::new(e)))?;
        let opened = open_image(image)?;
        self.ensure_verified(opened, &statement, options, progress)
    }

    /// [`Store::ensure`] once the statement is verified: the subject, then the stored entry or
    /// an unpack.
    fn ensure_verified(
        &self,
        opened: OpenedImage,
        statement: &VerifiedStatement,
        options: &EnsureOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<StoredImage, StoreError> {
        let OpenedImage { reference, source, identity, digest } = opened;
        if let Err(policy) = statement.check_subject(&identity, &[]) {
            return Err(diagnose_subject(source.as_ref(), statement, policy));
        }

        // The subject check above bound this source's identity to the signed statement; the
        // config below is the one that identity names (digest-checked by the source).
        let config = source.config().cloned();

        let _lock = self.lock(LockMode::Wait)?;
        let entry = self.entry(&digest);
        if entry.exists() {
            match self.read_record(&entry) {
                Ok(record) => return Ok(StoredImage { config, ..self.stored(&entry, record, statement)? }),
                // An entry without a readable record is not one this store completed.
                Err(_) => std::fs::remove_dir_all(&entry).map_err(io_at(&entry))?,
            }
        }
        let stored = self.unpack(reference, source.as_ref(), identity, digest, statement, options, progress)?;
        Ok(StoredImage { config, ..stored })
    }

    /// An image already stored: returned from its record.
    fn stored(
        &self,
        entry: &Path,
        record: ImageRecord,
        statement: &VerifiedStatement,
    ) -> Result<StoredImage, StoreError> {
        if record.payload_digest != statement.payload_digest() {
            // Another statement about the same image: compare its file list with the stored one.
            let path = entry.join("files.json");
            let bytes = std::fs::read(&path).map_err(io_at(&path))?;
            let files: Vec<FileEntry> =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Record { path: path.clone(), source })?;
            // A record of format 1 listed no code marks: the content digests pin every byte, the
            // marks only say which signed digests the enforcer loads.
            let format = if record.format < 2 { ManifestFormat::V1 } else { statement.header().format };
            check_differences(&statement.compare_files_as(&files, format).map_err(statement_error)?)?;
        }
        Ok(StoredImage {
            digest: record.digest,
            rootfs: entry.join("rootfs"),
            record,
            stats: EnsureStats { unpacked: false, content: ContentStats::default(), remembered: false },
            accepted: statement.accepted(),
            config: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn unpack(
        &self,
        reference: String,
        source: &dyn ImageSource,
        identity: ImageIdentity,
        digest: Sha256Digest,
        statement: &VerifiedStatement,
        options: &EnsureOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<StoredImage, StoreError> {
        let images = self.images();
        let tmp = tempfile::Builder::new().prefix(TMP_PREFIX).tempdir_in(&images).map_err(io_at(&images))?;
        let rootfs = tmp.path().join("rootfs");

        let mut signed = Vec::with_capacity(statement.header().files);
        statement.for_each_file(&mut |entry| signed.push(entry)).map_err(statement_error)?;
        let expected = Rc::new(objects::expected_by_path(signed));
        let format = statement.header().format;
        let attempt = |predict: bool, progress: Arc<dyn Progress>| {
            self.unpack_once(source, &rootfs, (expected.clone(), format), predict, options, progress)
        };
        let (unpacked, content, verity) = match attempt(true, progress.clone()) {
            Ok(done) => done,
            // Rare: a hardlink to a lower layer's version of a path that was only hashed. Redone
            // writing every file (what the first attempt wrote is reused).
            Err(failed) if failed.placeholder_linked => match attempt(false, progress) {
                Ok(done) => done,
                Err(failed) => return Err(unpack_failure(reference, failed.error, failed.mismatch)),
            },
            Err(failed) => return Err(unpack_failure(reference, failed.error, failed.mismatch)),
        };
        // Verify-on-write saw each file; the whole manifest, every field, must match too.
        check_differences(&statement.compare_files(&unpacked.files).map_err(statement_error)?)?;

        std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755)).map_err(io_at(&rootfs))?;
        let record = ImageRecord {
            format: RECORD_FORMAT,
            reference,
            digest,
            manifest_digest: identity.manifest_digest,
            config_digest: identity.config_digest,
            name: statement.header().name.clone(),
            version: statement.header().version,
            signers: statement.signers().map(ToString::to_string).collect(),
            payload_digest: statement.payload_digest(),
            files: unpacked.files.len(),
            content,
            stored_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        write_json(&tmp.path().join("files.json"), &unpacked.files)?;
        if !verity.is_empty() {
            let digests: BTreeMap<&String, String> = verity.iter().map(|(k, d)| (k, hex::encode(d))).collect();
            write_json(&tmp.path().join(VERITY_FILE), &digests)?;
        }
        write_json(&tmp.path().join("image.json"), &record)?;
        // One flush of the whole file system instead of one fsync per object.
        let root_fd = std::fs::File::open(&self.root).map_err(io_at(&self.root))?;
        rustix::fs::syncfs(&root_fd).map_err(|e| io_at(&self.root)(e.into()))?;
        let entry = self.entry(&digest);
        let tmp = tmp.keep();
        std::fs::rename(&tmp, &entry).map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            io_at(&entry)(e)
        })?;
        Ok(StoredImage {
            digest,
            rootfs: entry.join("rootfs"),
            record,
            stats: EnsureStats { unpacked: true, content, remembered: false },
            accepted: statement.accepted(),
            config: None,
        })
    }

    /// One unpack of `source` into `rootfs` through the object sink, with verify-on-write.
    fn unpack_once(
        &self,
        source: &dyn ImageSource,
        rootfs: &Path,
        (expected, format): (Rc<Expected>, ManifestFormat),
        predict: bool,
        options: &EnsureOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<(UnpackedImage, ContentStats, VerityDigests), Box<FailedUnpack>> {
        let shared = Rc::new(RefCell::new(Shared::default()));
        let counted = CountedLayers::new(source);
        let first_mismatch = Rc::new(RefCell::new(None));
        let mut verify_on_write = WriteVerifier {
            expected: expected.clone(),
            format,
            shared: shared.clone(),
            opened: counted.opened.clone(),
            layers: counted.layers(),
            first_mismatch: first_mismatch.clone(),
        };
        let sink = ObjectSink::new(self.objects(), self.tmp(), expected, shared.clone(), predict);
        let unpack_options = UnpackOptions {
            create_devices: options.create_devices,
            check: Some(Box::new(move |written: &Written<'_>| verify_on_write.check(written))),
            content: Some(Box::new(sink)),
        };
        match unpack_source(&counted, rootfs, unpack_options, progress) {
            Ok(unpacked) => {
                let shared = shared.borrow();
                Ok((unpacked, shared.stats, shared.verity.clone()))
            }
            Err(error) => Err(Box::new(FailedUnpack {
                error,
                mismatch: first_mismatch.borrow_mut().take(),
                placeholder_linked: shared.borrow().placeholder_linked,
            })),
        }
    }

    fn read_record(&self, entry: &Path) -> Result<ImageRecord, StoreError> {
        let path = entry.join("image.json");
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Record { path, source })
    }

    /// Every stored image, by digest.
    pub fn list(&self) -> Result<Vec<ListedImage>, StoreError> {
        let _lock = self.lock(LockMode::Shared)?;
        self.list_unlocked()
    }

    fn list_unlocked(&self) -> Result<Vec<ListedImage>, StoreError> {
        let images = self.images();
        let mut out = Vec::new();
        for dirent in std::fs::read_dir(&images).map_err(io_at(&images))? {
            let dirent = dirent.map_err(io_at(&images))?;
            let name = dirent.file_name();
            if name.to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let entry = dirent.path();
            let record = self.read_record(&entry)?;
            out.push(ListedImage { record, rootfs: entry.join("rootfs") });
        }
        out.sort_by_key(|i| i.record.digest);
        Ok(out)
    }

    /// Removes the stored image `query` names: a digest (`sha256:<hex>` or a unique hex prefix)
    /// or the reference it was stored from. Its objects stay until [`Store::gc`]. Fails with
    /// [`StoreError::Locked`] while another process holds the store.
    pub fn remove(&self, query: &str) -> Result<RemovedImage, StoreError> {
        let _lock = self.lock(LockMode::Try)?;
        let images = self.list_unlocked()?;
        let hex = query.strip_prefix("sha256:").unwrap_or(query);
        let by_reference: Vec<&ListedImage> = images.iter().filter(|i| i.record.reference == query).collect();
        let matches: Vec<&ListedImage> = if !by_reference.is_empty() {
            by_reference
        } else if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            images.iter().filter(|i| i.record.digest.hex().starts_with(&hex)).collect()
        } else {
            Vec::new()
        };
        let found = match matches.as_slice() {
            [] => return Err(StoreError::NotFound(query.to_string())),
            [one] => *one,
            many => {
                let matches = many.iter().map(|i| i.record.digest.to_string()).collect::<Vec<_>>().join(", ");
                return Err(StoreError::Ambiguous { query: query.to_string(), matches });
            }
        };
        let entry = self.entry(&found.record.digest);
        // Renamed first: an interrupted removal leaves a temporary that gc finishes.
        let doomed = self.images().join(format!("{TMP_PREFIX}rm-{}", found.record.digest.hex()));
        std::fs::rename(&entry, &doomed).map_err(io_at(&entry))?;
        std::fs::remove_dir_all(&doomed).map_err(io_at(&doomed))?;
        Ok(RemovedImage { digest: found.record.digest, reference: found.record.reference.clone() })
    }

    /// Removes objects no stored image links to (link count 1: only the store's own name),
    /// stale temporaries (unfinished unpacks and removals) and remembered verifications of images
    /// no longer stored. Fails with [`StoreError::Locked`]
    /// while another process holds the store.
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        let _lock = self.lock(LockMode::Try)?;
        let remembered_removed =
            verified::Cache::new(&self.root).prune(|digest| self.entry(digest).join("image.json").is_file())?;
        let mut stats = GcStats { remembered_removed, ..GcStats::default() };
        let images = self.images();
        for dirent in std::fs::read_dir(&images).map_err(io_at(&images))? {
            let path = dirent.map_err(io_at(&images))?.path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX)) {
                std::fs::remove_dir_all(&path).map_err(io_at(&path))?;
                stats.temporaries_removed += 1;
            }
        }
        let tmp = self.tmp();
        for dirent in std::fs::read_dir(&tmp).map_err(io_at(&tmp))? {
            let path = dirent.map_err(io_at(&tmp))?.path();
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            stats.temporaries_removed += 1;
        }
        let objects = self.objects();
        for fanout in std::fs::read_dir(&objects).map_err(io_at(&objects))? {
            let fanout = fanout.map_err(io_at(&objects))?.path();
            let mut left = 0;
            for dirent in std::fs::read_dir(&fanout).map_err(io_at(&fanout))? {
                let path = dirent.map_err(io_at(&fanout))?.path();
                let meta = std::fs::symlink_metadata(&path).map_err(io_at(&path))?;
                if meta.is_file() && meta.nlink() == 1 {
                    std::fs::remove_file(&path).map_err(io_at(&path))?;
                    stats.objects_removed += 1;
                    stats.bytes_freed += meta.len();
                } else {
                    stats.objects_kept += 1;
                    left += 1;
                }
            }
            if left == 0 {
                std::fs::remove_dir(&fanout).map_err(io_at(&fanout))?;
            }
        }
        Ok(stats)
    }

    /// The manifest of what was unpacked for a stored image (`files.json`), e.g. for the digest
    /// set an enforcer scope gets.
    pub fn files(&self, digest: &Sha256Digest) -> Result<Vec<FileEntry>, StoreError> {
        let path = self.entry(digest).join("files.json");
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Record { path, source })
    }
}

use std::os::unix::fs::DirBuilderExt as _;

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(value).expect("records serialise");
    std::fs::write(path, bytes).map_err(io_at(path))
}

fn statement_error(e: verifier_core::statement::StatementError) -> StoreError {
    StoreError::Verify(Box::new(VerifyError::Statement(e)))
}

/// One line per difference, the first few.
fn describe(differences: &[Difference]) -> String {
    let mut parts: Vec<String> = differences
        .iter()
        .take(NAMED_DIFFERENCES)
        .map(|d| match d {
            Difference::Missing { path } => format!("missing {path}"),
            Difference::Extra { path } => format!("extra {path} (not signed)"),
            Difference::Changed { path, fields } => {
                let what: Vec<String> =
                    fields.iter().map(|f| format!("{}: {} -> {}", f.field, f.expected, f.actual)).collect();
                format!("changed {path} ({})", what.join(", "))
            }
        })
        .collect();
    if differences.len() > NAMED_DIFFERENCES {
        parts.push(format!("and {} more", differences.len() - NAMED_DIFFERENCES));
    }
    parts.join("; ")
}

fn check_differences(differences: &[Difference]) -> Result<(), StoreError> {
    match differences.first() {
        None => Ok(()),
        Some(first) => Err(StoreError::Mismatch { path: first.path().to_string(), detail: describe(differences) }),
    }
}

/// The image is not the statement's subject: a read-only scan says which paths differ when it
/// can (a layer changed and the image repacked); otherwise the verifier's subject error.
fn diagnose_subject(source: &dyn ImageSource, statement: &VerifiedStatement, policy: PolicyError) -> StoreError {
    if let Ok(scanned) = source::scan_source(source, Arc::new(NoProgress)) {
        if let Ok(differences) = statement.compare_files(&scanned.files) {
            if let Some(first) = differences.first() {
                return StoreError::Mismatch {
                    path: first.path().to_string(),
                    detail: format!(
                        "{}; the image is not the signed subject ({policy}); nothing was written",
                        describe(&differences)
                    ),
                };
            }
        }
    }
    StoreError::Verify(Box::new(VerifyError::Policy(policy)))
}

/// The image path a layer error is about.
fn layer_error_path(e: &LayerError) -> Option<&str> {
    match e {
        LayerError::Tar(_) => None,
        LayerError::AbsolutePath { path, .. }
        | LayerError::DotDot { path, .. }
        | LayerError::BareWhiteout { path, .. }
        | LayerError::UnsupportedWhiteout { path, .. }
        | LayerError::Duplicate { path, .. }
        | LayerError::ParentNotDirectory { path, .. }
        | LayerError::BadHardlink { path, .. }
        | LayerError::NonUtf8 { path, .. }
        | LayerError::Write { path, .. }
        | LayerError::Refused { path, .. } => Some(path),
    }
}

/// An unpack error as the store reports it: a file that did not match the verified manifest
/// (refused as written, or noted before the layer turned out damaged) is named as a mismatch.
fn unpack_failure(image: String, e: UnpackError, mismatch: Option<(String, String)>) -> StoreError {
    let integrity_or_refused = match &e {
        UnpackError::Source(SourceError::Layer { source: LayerError::Refused { .. }, .. }) => true,
        UnpackError::Source(s) => s.is_integrity(),
        _ => false,
    };
    if let (true, Some((path, detail))) = (integrity_or_refused, mismatch) {
        return StoreError::Mismatch { path, detail: format!("{detail}; {}", error_chain(&e)) };
    }
    let path = match &e {
        UnpackError::Source(SourceError::Layer { source, .. }) => layer_error_path(source).map(str::to_string),
        _ => None,
    };
    StoreError::Unpack { path: path.unwrap_or_else(|| image.clone()), image, source: Box::new(e) }
}

/// Why one unpack attempt failed.
struct FailedUnpack {
    error: UnpackError,
    /// The first file that did not match the verified manifest (image path, what differed).
    mismatch: Option<(String, String)>,
    placeholder_linked: bool,
}

/// Verify-on-write: each regular file, as written, against the verified manifest.
struct WriteVerifier {
    expected: Rc<Expected>,
    /// Whether the manifest signs code marks (v1 does not).
    format: ManifestFormat,
    shared: Rc<RefCell<Shared>>,
    opened: Arc<AtomicUsize>,
    layers: usize,
    /// The first file that differed (image path, what differed).
    first_mismatch: Rc<RefCell<Option<(String, String)>>>,
}

impl WriteVerifier {
    fn check(&mut self, written: &Written<'_>) -> Result<(), String> {
        let path = written.path;
        let mut shared = self.shared.borrow_mut();
        match written.kind {
            FileType::File => {
                shared.placeholders.remove(path);
                let Some(detail) = self.file_difference(written) else { return Ok(()) };
                let shown = format!("/{}", String::from_utf8_lossy(path));
                let mut first = self.first_mismatch.borrow_mut();
                // In the last layer nothing can replace this file any more: stop now (and name
                // it). A lower layer's version may be replaced later; the final comparison decides.
                if self.opened.load(Ordering::SeqCst) >= self.layers {
                    *first = Some((shown.clone(), detail.clone()));
                    return Err(format!("{shown} does not match the signed manifest: {detail}"));
                }
                if first.is_none() {
                    *first = Some((shown, detail));
                }
                Ok(())
            }
            FileType::Hardlink => {
                let target = written.link_target.unwrap_or_default();
                if shared.placeholders.contains(target) {
                    shared.placeholder_linked = true;
                    return Err(format!(
                        "hardlink to /{}, a version that does not match the signed manifest",
                        String::from_utf8_lossy(target)
                    ));
                }
                shared.placeholders.remove(path);
                Ok(())
            }
            _ => {
                shared.placeholders.remove(path);
                Ok(())
            }
        }
    }

    /// How a written regular file differs from its signed entry, if it does and is signed.
    fn file_difference(&self, written: &Written<'_>) -> Option<String> {
        let meta = written.meta?;
        let content = written.content?;
        let mut expected = self.expected.get(written.path)?.clone();
        if expected.kind == FileType::Hardlink {
            // The manifest names hardlink groups in path order; the bytes and metadata are the same.
            expected.kind = FileType::File;
            expected.link_target = None;
        }
        let actual = FileEntry {
            path: expected.path.clone(),
            kind: FileType::File,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            size: Some(content.size),
            sha256: Some(Sha256Digest(content.sha256)),
            code: content.code,
            link_target: None,
            dev_major: None,
            dev_minor: None,
            xattrs: FileEntry::signed_xattrs(&meta.xattrs),
        };
        let fields = self.format.field_differences(&expected, &actual);
        (!fields.is_empty()).then(|| {
            fields.iter().map(|f| format!("{}: {} -> {}", f.field, f.expected, f.actual)).collect::<Vec<_>>().join(", ")
        })
    }
}

/// The image source with a count of the layers opened so far (the layer being applied is the
/// last one opened).
struct CountedLayers<'a> {
    inner: &'a dyn ImageSource,
    opened: Arc<AtomicUsize>,
}

impl<'a> CountedLayers<'a> {
    fn new(inner: &'a dyn ImageSource) -> Self {
        Self { inner, opened: Arc::new(AtomicUsize::new(0)) }
    }

    fn layers(&self) -> usize {
        match self.inner.content() {
            ImageContent::Layers(layers) => layers.len(),
            ImageContent::Directory(_) => 0,
        }
    }
}

impl ImageSource for CountedLayers<'_> {
    fn identity(&self) -> &ImageIdentity {
        self.inner.identity()
    }

    fn content(&self) -> ImageContent<'_> {
        self.inner.content()
    }

    fn open_layer(&self, layer: &LayerDescriptor) -> Result<Box<dyn Read + Send>, SourceError> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        self.inner.open_layer(layer)
    }

    fn config(&self) -> Option<&ImageConfiguration> {
        self.inner.config()
    }
}
