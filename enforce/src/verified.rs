//! The one place `enforce` calls verifier-core's verification and touches the trust store:
//! reading bundle files, grouping them by the statement they carry, verifying a statement
//! (signatures, threshold, revocation, expiry, rollback), comparing an image with its manifest,
//! and recording accepted versions. Everything else in the crate sees the results as
//! [`VerifiedStatement`]s; when verifier-core's API changes, this module is what changes.
//!
//! Verification is cached per statement ([`StatementCache`]): the key is the digest of the trust
//! store's files (keys, revocations, threshold, versions seen) and of the bundle files of the
//! statement (which hold its DSSE payload and signatures); a hit is used only while the statement
//! has not expired. So an unchanged bundle is not verified again at every reload, and any change
//! to what its verdict depends on (a key revoked, a version recorded, a signature added, time
//! passing its expiry) verifies it afresh.
//!
//! Which signed entries give a digest to the scope is decided here ([`may_run`]): for a v2
//! manifest, only code (an ELF object or a `#!` script, by the signed code mark) and files with
//! an exec bit; for a v1 manifest, which cannot say, every file.

use crate::desired::{DigestSet, Privs};
use keys::{TrustError, TrustStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use verifier_core::bundle::{BundleError, CheckedBundle};
use verifier_core::digest::Sha256Digest;
use verifier_core::manifest::{FileEntry, FileType};
use verifier_core::progress::NoProgress;
use verifier_core::source::ImageRef;
use verifier_core::statement::ManifestFormat;
use verifier_core::verify::{accept, verify, verify_statement, VerifyError, VerifyOptions};

/// An error and its sources on one line.
pub use verifier_core::verify::error_chain;
/// A version to record as accepted once a plan is in force; made only by verification.
pub use verifier_core::verify::Accepted;

#[derive(Debug, thiserror::Error)]
pub enum VerifiedError {
    #[error("cannot read the bundle")]
    Read(#[source] std::io::Error),
    // The verifier-core errors are passed through as they are, so messages do not change.
    #[error(transparent)]
    Parse(BundleError),
    #[error(transparent)]
    Refused(Box<VerifyError>),
    #[error("entry {path} has no valid sha256")]
    Digest { path: String },
    /// A signed `security.capability` the kernel would not read: refused rather than guessed.
    #[error("entry {path} has a security.capability that cannot be read: {reason}")]
    Privileges { path: String, reason: String },
    #[error(transparent)]
    Image(Box<VerifyError>),
}

/// A statement whose bundles verified against the trust store, reduced to what enforcement and
/// its reports need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedStatement {
    pub name: String,
    pub version: u64,
    /// RFC 3339, as signed.
    pub expires: String,
    pub expires_at: SystemTime,
    /// The image manifest digest the statement is about (`sha256:<hex>`).
    pub subject: Option<String>,
    /// Key ids of the distinct trusted signers.
    pub signers: Vec<String>,
    /// Entries in the signed manifest.
    pub files: usize,
    /// The digest of every `file` and `hardlink` entry that may run ([`may_run`]), once each,
    /// with the privileges of those entries (setuid/setgid bits, file capabilities; merged when
    /// several entries share a digest).
    pub digests: Arc<DigestSet>,
    /// What recording this statement's version writes to the rollback state.
    pub accepted: Accepted,
}

/// One bundle file, read and checked (its payload is streamed to a temporary file, never held
/// whole in memory).
pub struct BundleFile {
    pub path: PathBuf,
    /// SHA-256 of what the verdict depends on: the payload and every signature (part of the
    /// cache key).
    content_digest: Sha256Digest,
    bundle: CheckedBundle,
}

impl BundleFile {
    pub fn read(path: &Path) -> Result<Self, VerifiedError> {
        let bundle = CheckedBundle::read(path).map_err(|e| match e {
            BundleError::Read { source, .. } => VerifiedError::Read(source),
            other => VerifiedError::Parse(other),
        })?;
        Ok(Self::from_bundle(path.to_path_buf(), bundle))
    }

    /// A bundle that did not come from a file (one discovered in a registry), named by `label`
    /// in reports and errors.
    pub fn from_bundle(label: PathBuf, bundle: CheckedBundle) -> Self {
        let mut content = bundle.payload().digest().0.to_vec();
        for signature in bundle.signatures() {
            content.extend_from_slice(&(signature.sig.len() as u64).to_le_bytes());
            content.extend_from_slice(&signature.sig);
        }
        BundleFile { path: label, content_digest: Sha256Digest::of(&content), bundle }
    }

    fn same_statement(&self, other: &BundleFile) -> bool {
        self.bundle.payload().digest() == other.bundle.payload().digest()
    }
}

/// Bundles grouped by the statement they carry, in the order first seen: bundles of one
/// statement pool their signatures (co-signers towards the threshold).
pub fn group_by_statement(files: Vec<BundleFile>) -> Vec<Vec<BundleFile>> {
    let mut groups: Vec<Vec<BundleFile>> = Vec::new();
    for file in files {
        match groups.iter_mut().find(|g| g[0].same_statement(&file)) {
            Some(group) => group.push(file),
            None => groups.push(vec![file]),
        }
    }
    groups
}

/// The trust store as of one plan: opened once, with the digest of its files.
pub struct Trust {
    store: TrustStore,
    state: Sha256Digest,
}

impl Trust {
    pub fn open(dir: &Path) -> Result<Self, TrustError> {
        let store = TrustStore::open(dir)?;
        // An unreadable file leaves a state no cache entry matches: everything is verified.
        let state = keys::trust::files_digest(dir)
            .map(Sha256Digest)
            .unwrap_or_else(|_| Sha256Digest::of(format!("{:?}", SystemTime::now()).as_bytes()));
        Ok(Trust { store, state })
    }

    pub fn store(&self) -> &TrustStore {
        &self.store
    }
}

/// Verified statements by (trust store state, bundle files): the key holds everything a
/// verdict depends on but time, and time (expiry) is checked at every hit. What the plan in
/// force uses is kept; of what it no longer uses (the image of a container that has just
/// stopped, which the next container of that image will ask for), the [`KEPT_UNUSED`] most
/// recently used are kept too ([`StatementCache::finish_plan`]).
#[derive(Default)]
pub struct StatementCache {
    /// Each statement with the plan generation that last used it.
    entries: HashMap<Sha256Digest, (Arc<VerifiedStatement>, u64)>,
    generation: u64,
    hits: u64,
    misses: u64,
}

/// How many statements no plan uses any more stay cached.
pub const KEPT_UNUSED: usize = 16;

impl StatementCache {
    /// Verifies the statement carried by `group` (one statement, one or more bundles) as of
    /// `now`, or takes the verdict of an identical earlier call.
    pub fn verify(
        &mut self,
        group: &[BundleFile],
        trust: &Trust,
        now: SystemTime,
    ) -> Result<Arc<VerifiedStatement>, VerifiedError> {
        let key = cache_key(group, trust);
        if let Some((hit, used)) = self.entries.get_mut(&key).filter(|(s, _)| now <= s.expires_at) {
            self.hits += 1;
            *used = self.generation;
            return Ok(hit.clone());
        }
        self.misses += 1;
        let statement = Arc::new(verify_group(group, trust, now)?);
        self.entries.insert(key, (statement.clone(), self.generation));
        Ok(statement)
    }

    /// Ends a plan: keeps what it used, and the [`KEPT_UNUSED`] most recently used others.
    pub fn finish_plan(&mut self) {
        let current = self.generation;
        let mut unused: Vec<u64> = self.entries.values().map(|(_, g)| *g).filter(|g| *g != current).collect();
        if unused.len() > KEPT_UNUSED {
            unused.sort_unstable_by(|a, b| b.cmp(a));
            let oldest_kept = unused[KEPT_UNUSED - 1];
            // Ties at the boundary are all kept: generations, not entries, are ordered.
            self.entries.retain(|_, (_, g)| *g == current || *g >= oldest_kept);
        }
        self.generation += 1;
    }

    /// (hits, misses) since the cache was made.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// How many statements are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn cache_key(group: &[BundleFile], trust: &Trust) -> Sha256Digest {
    let mut files: Vec<[u8; 32]> = group.iter().map(|f| f.content_digest.0).collect();
    files.sort();
    let mut key = trust.state.0.to_vec();
    for digest in files {
        key.extend_from_slice(&digest);
    }
    Sha256Digest::of(&key)
}

fn verify_group(group: &[BundleFile], trust: &Trust, now: SystemTime) -> Result<VerifiedStatement, VerifiedError> {
    let bundles: Vec<CheckedBundle> = group.iter().map(|f| f.bundle.clone()).collect();
    let statement = verify_statement(&bundles, &trust.store, now).map_err(|e| VerifiedError::Refused(Box::new(e)))?;
    let format = statement.header().format;
    let mut digests = DigestSet::new();
    let mut missing = None;
    let mut unreadable = None;
    statement
        .for_each_file(&mut |entry| {
            if !matches!(entry.kind, FileType::File | FileType::Hardlink) {
                return;
            }
            // Every file must have its digest, loaded or not: a malformed manifest is refused.
            let Some(digest) = entry.sha256 else {
                missing = missing.take().or(Some(entry.path));
                return;
            };
            if !may_run(format, &entry) {
                return;
            }
            match entry_privileges(&entry) {
                Ok(privs) => {
                    digests.entry(digest).and_modify(|p| *p = p.merge(privs)).or_insert(privs);
                }
                Err(reason) => unreadable = unreadable.take().or(Some((entry.path, reason))),
            }
        })
        .map_err(|e| VerifiedError::Refused(Box::new(VerifyError::Statement(e))))?;
    if let Some(path) = missing {
        return Err(VerifiedError::Digest { path });
    }
    if let Some((path, reason)) = unreadable {
        return Err(VerifiedError::Privileges { path, reason });
    }
    let header = statement.header();
    Ok(VerifiedStatement {
        name: header.name.clone(),
        version: header.version,
        expires: header.expires.clone(),
        expires_at: header.expires_at,
        subject: Some(statement.subject().oci()),
        signers: statement.signers().map(ToString::to_string).collect(),
        files: header.files,
        digests: Arc::new(digests),
        accepted: statement.accepted(),
    })
}

/// Whether the digest of a signed entry belongs in the scope's digest set: a regular file or a
/// hardlink that is code (a v2 manifest's `code` mark: an ELF object, so a 0644 shared library
/// stays mappable, or a `#!` script) or has any exec bit (it can be exec'd whatever it holds).
/// A v1 manifest has no code marks, so every file counts. Content of files that are neither is
/// never loaded: a copy of it with an exec bit is denied.
pub fn may_run(format: ManifestFormat, entry: &FileEntry) -> bool {
    if !matches!(entry.kind, FileType::File | FileType::Hardlink) {
        return false;
    }
    !format.has_code_marks() || entry.code.is_some() || entry.mode & 0o111 != 0
}

/// The privileges a signed entry gives an exec of its content: its setuid/setgid bits and its
/// signed `security.capability` (base64 in the manifest).
fn entry_privileges(entry: &FileEntry) -> Result<Privs, String> {
    let capability = entry.xattr_bytes("security.capability").transpose().map_err(|e| format!("not base64: {e}"))?;
    Privs::of_entry(entry.mode, capability.as_deref()).map_err(|e| e.to_string())
}

/// Compares the files of `image` with the manifest of `group`'s statement as of `now`: `None`
/// when every file matches, else what differs (never cached: the image on disk may change).
pub fn check_image(
    image: &ImageRef,
    group: &[BundleFile],
    trust: &mut Trust,
    now: SystemTime,
) -> Result<Option<String>, VerifiedError> {
    let bundles: Vec<CheckedBundle> = group.iter().map(|f| f.bundle.clone()).collect();
    let options = VerifyOptions { now, record_version: false };
    let report = verify(image, &bundles, &mut trust.store, &options, Arc::new(NoProgress))
        .map_err(|e| VerifiedError::Image(Box::new(e)))?;
    if report.verified {
        return Ok(None);
    }
    let mut failures: Vec<String> = report.failures().map(|c| format!("{}: {}", c.name, c.detail)).collect();
    failures.extend(report.differences.iter().take(5).map(|d| format!("{} differs", d.path())));
    Ok(Some(failures.join("; ")))
}

/// Records each accepted version in the trust store at `trust_dir` (rollback protection),
/// through verifier-core's [`accept`], the one writer of rollback state.
pub fn record_versions<'a>(
    accepted: impl IntoIterator<Item = &'a Accepted>,
    trust_dir: &Path,
) -> Result<(), TrustError> {
    let mut trust = TrustStore::open(trust_dir)?;
    accept(&mut trust, accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier_core::manifest::CodeKind;

    fn entry(kind: FileType, mode: u32, code: Option<CodeKind>) -> FileEntry {
        FileEntry {
            path: "/x".into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: Some(1),
            sha256: Some(verifier_core::digest::Sha256Digest([1; 32])),
            code,
            link_target: None,
            dev_major: None,
            dev_minor: None,
            xattrs: Default::default(),
        }
    }

    #[test]
    fn v2_loads_code_and_exec_bits_only() {
        use FileType::*;
        let v2 = ManifestFormat::V2;
        assert!(may_run(v2, &entry(File, 0o644, Some(CodeKind::Elf))), "a 0644 shared library is mapped");
        assert!(may_run(v2, &entry(Hardlink, 0o644, Some(CodeKind::Elf))));
        assert!(may_run(v2, &entry(File, 0o644, Some(CodeKind::Script))));
        for mode in [0o100, 0o010, 0o001, 0o4755] {
            assert!(may_run(v2, &entry(File, mode, None)), "{mode:o}: an exec bit runs whatever it holds");
        }
        assert!(!may_run(v2, &entry(File, 0o644, None)), "data is not loaded");
        assert!(!may_run(v2, &entry(Hardlink, 0o4644, None)), "setuid without an exec bit runs nothing");
        assert!(!may_run(v2, &entry(Symlink, 0o777, None)));
        assert!(!may_run(v2, &entry(Dir, 0o755, None)));
    }

    #[test]
    fn v1_loads_every_file() {
        assert!(may_run(ManifestFormat::V1, &entry(FileType::File, 0o644, None)));
        assert!(may_run(ManifestFormat::V1, &entry(FileType::Hardlink, 0o600, None)));
        assert!(!may_run(ManifestFormat::V1, &entry(FileType::Dir, 0o755, None)));
    }
}
