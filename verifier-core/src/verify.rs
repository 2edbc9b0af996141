//! Verification, in stages that keep untrusted data away from work, each stage a type that only
//! the one before can give:
//! 1. bundles: [`CheckedBundle::read`] checks each file's shape (media type, payload type,
//!    signatures); the payload is streamed to a temporary file, never held in memory;
//! 2. signatures: [`verify_signatures`] counts distinct trusted, unrevoked keys over the pooled
//!    bundles of one statement against the trust store's threshold, and only then parses the
//!    statement's shape, giving a [`VerifiedStatement`];
//! 3. policy: on the verified statement, expiry, rollback and (with an image) its subject;
//! 4. image: the image is read, every blob checked against its digest;
//! 5. files: the signed file list is streamed from the payload and merged with the image's
//!    sorted file list in one pass.
//!
//! [`verify`] runs them all into a [`VerifyReport`] (the CLI's output); [`verify_statement`]
//! runs stages 2 and 3 for callers that act on the signed manifest without an image (the
//! enforcer). [`accept`] is the one writer of rollback state.

use crate::bundle::CheckedBundle;
use crate::digest::Sha256Digest;
use crate::dsse::{pae_header, IN_TOTO_PAYLOAD_TYPE};
use crate::manifest::{Difference, FileEntry};
use crate::payload::Payload;
use crate::progress::Progress;
use crate::source::{scan, ImageIdentity, ImageRef, SourceError};
use crate::statement::{file_list_digest, StatementError, StatementHeader};
use keys::{KeyId, TrustError, TrustStore};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No bundle was given.
    #[error("no bundle given")]
    NoBundles,
    /// Stage 1: a bundle file could not be read or is not an acceptable bundle.
    #[error("bundle {}", .path.display())]
    Bundle {
        path: std::path::PathBuf,
        #[source]
        source: crate::bundle::BundleError,
    },
    /// Stage 2: the signatures do not verify the statement (or the bundles carry different ones).
    #[error("signatures check failed")]
    Signatures(#[source] SignatureError),
    /// Stage 2: the signed payload is not a statement of the expected shape (or could not be
    /// read back from its temporary file).
    #[error("statement check failed")]
    Statement(#[source] StatementError),
    /// Stage 3: the verified statement is expired, a rollback, or not about this image.
    #[error("{} check failed", .0.check_name())]
    Policy(#[source] PolicyError),
    /// Stage 4: the image could not be read (a reference or file that is not there or not an
    /// image; a blob that contradicts its digest is a failed check in the report instead).
    #[error("reading image {image}")]
    Image {
        image: String,
        #[source]
        source: Box<SourceError>,
    },
    /// Recording the accepted version in the trust store failed.
    #[error("recording the accepted version in the trust store")]
    Trust(#[source] TrustError),
}

/// Why the signatures of a statement do not count.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the bundles carry different statements")]
    DifferentStatements,
    /// Fewer distinct trusted, unrevoked keys signed than the threshold asks.
    #[error("{0}")]
    Threshold(SignatureTally),
    #[error("reading the payload back from its temporary file")]
    Io(#[source] std::io::Error),
}

/// Stage 3 failures.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("expired at {expires}")]
    Expired { expires: String },
    #[error("version {version} is older than version {highest} already accepted for {name:?}")]
    Rollback { name: String, version: u64, highest: u64 },
    #[error("signed subject {signed} is not this image ({have})")]
    Subject { signed: String, have: String },
}

impl PolicyError {
    /// The check that failed, as the report names it.
    pub fn check_name(&self) -> &'static str {
        match self {
            PolicyError::Expired { .. } => "expiry",
            PolicyError::Rollback { .. } => "rollback",
            PolicyError::Subject { .. } => "subject",
        }
    }
}

/// Who signed: distinct trusted, unrevoked keys, and notes on signatures that did not count.
#[derive(Debug, Clone)]
pub struct SignatureTally {
    pub signers: BTreeSet<KeyId>,
    pub notes: Vec<String>,
    pub threshold: usize,
}

impl fmt::Display for SignatureTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} distinct trusted key(s) signed; threshold is {}", self.signers.len(), self.threshold)?;
        for note in &self.notes {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

pub struct VerifyOptions {
    pub now: SystemTime,
    /// Remember the accepted version (rollback protection). Off for dry runs.
    pub record_version: bool,
}

/// A statement whose signatures met the trust store's threshold and whose shape was checked.
/// Only [`verify_signatures`] makes one; the policy and file checks run on it.
pub struct VerifiedStatement {
    payload: Arc<Payload>,
    header: StatementHeader,
    tally: SignatureTally,
}

/// A version that may be recorded as accepted (see [`accept`]); made only from a
/// [`VerifiedStatement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    name: String,
    version: u64,
}

impl Accepted {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// A version a [`VerifiedStatement`] proved earlier, as a cache of verified statements
    /// (the store's, `store::verified`) remembers it: the caller vouches that it took `name` and
    /// `version` from such a statement, and has just re-checked its signers against the current
    /// trust store, its expiry and rollback.
    pub fn remembered(name: String, version: u64) -> Self {
        Accepted { name, version }
    }
}

/// Stage 1: reads and checks every bundle file (see [`CheckedBundle::read`]), naming the first
/// that fails.
pub fn read_bundles(paths: &[impl AsRef<std::path::Path>]) -> Result<Vec<CheckedBundle>, VerifyError> {
    paths
        .iter()
        .map(|path| {
            let path = path.as_ref();
            CheckedBundle::read(path).map_err(|source| VerifyError::Bundle { path: path.to_path_buf(), source })
        })
        .collect()
}

/// Stage 2: the bundles' signatures against `trust` (distinct trusted keys, revocation,
/// threshold), then the shape of the statement they sign. The bundles must carry the same
/// statement (the same payload digest); their signatures are pooled.
pub fn verify_signatures(bundles: &[CheckedBundle], trust: &TrustStore) -> Result<VerifiedStatement, VerifyError> {
    let (payload, tally) = tally_signatures(bundles, trust)?;
    if tally.signers.len() < trust.threshold() {
        return Err(VerifyError::Signatures(SignatureError::Threshold(tally)));
    }
    VerifiedStatement::parse(payload, tally)
}

/// Every signature of every bundle, against every trusted key, in one pass over the payload.
fn tally_signatures(
    bundles: &[CheckedBundle],
    trust: &TrustStore,
) -> Result<(Arc<Payload>, SignatureTally), VerifyError> {
    let first = bundles.first().ok_or(VerifyError::NoBundles)?;
    let payload = first.payload().clone();
    if bundles.iter().any(|b| b.payload().digest() != payload.digest() || b.payload().len() != payload.len()) {
        return Err(VerifyError::Signatures(SignatureError::DifferentStatements));
    }
    // The key id in a signature is only a hint: every trusted key is tried.
    let header = pae_header(IN_TOTO_PAYLOAD_TYPE, payload.len());
    let mut checks = Vec::new();
    for (b, bundle) in bundles.iter().enumerate() {
        for (s, signature) in bundle.signatures().iter().enumerate() {
            for (k, key) in trust.trusted_keys().iter().enumerate() {
                if let Some(mut verifier) = key.verify_streaming(&signature.sig) {
                    verifier.update(&header);
                    checks.push(((b, s, k), verifier));
                }
            }
        }
    }
    payload
        .for_each_chunk(|chunk| checks.iter_mut().for_each(|(_, v)| v.update(chunk)))
        .map_err(|e| VerifyError::Signatures(SignatureError::Io(e)))?;
    let valid: BTreeSet<(usize, usize, usize)> =
        checks.into_iter().filter_map(|(at, verifier)| verifier.finish().then_some(at)).collect();

    let mut tally = SignatureTally { signers: BTreeSet::new(), notes: Vec::new(), threshold: trust.threshold() };
    for (b, bundle) in bundles.iter().enumerate() {
        for (s, signature) in bundle.signatures().iter().enumerate() {
            let key =
                (0..trust.trusted_keys().len()).find(|&k| valid.contains(&(b, s, k))).map(|k| &trust.trusted_keys()[k]);
            match key {
                Some(key) if trust.is_revoked(&key.key_id()) => {
                    tally.notes.push(format!("signature by revoked key {} ignored", key.key_id()))
                }
                Some(key) => {
                    if !tally.signers.insert(key.key_id()) {
                        tally.notes.push(format!("repeated signature by key {} counted once", key.key_id()));
                    }
                }
                None => {
                    tally.notes.push(format!("signature {s} (key hint {:?}) matches no trusted key", signature.keyid))
                }
            }
        }
    }
    Ok((payload, tally))
}

impl VerifiedStatement {
    fn parse(payload: Arc<Payload>, tally: SignatureTally) -> Result<Self, VerifyError> {
        let header = StatementHeader::read(payload.reader(), &mut |_| {}).map_err(VerifyError::Statement)?;
        Ok(VerifiedStatement { payload, header, tally })
    }

    /// The statement without its file list.
    pub fn header(&self) -> &StatementHeader {
        &self.header
    }

    /// Distinct trusted, unrevoked keys whose signatures verified.
    pub fn signers(&self) -> impl Iterator<Item = &KeyId> {
        self.tally.signers.iter()
    }

    pub fn tally(&self) -> &SignatureTally {
        &self.tally
    }

    /// The first subject digest (the image the statement names).
    pub fn subject(&self) -> Sha256Digest {
        self.header.subject[0].digest.sha256
    }

    /// SHA-256 of the signed payload (what bundles of one statement share).
    pub fn payload_digest(&self) -> Sha256Digest {
        self.payload.digest()
    }

    /// Stage 3: not expired at `now`; returns what the report says when it passes.
    pub fn check_expiry(&self, now: SystemTime) -> Result<String, PolicyError> {
        if now > self.header.expires_at {
            return Err(PolicyError::Expired { expires: self.header.expires.clone() });
        }
        Ok(format!("valid until {}", self.header.expires))
    }

    /// Stage 3: not older than a version of the same name already accepted.
    pub fn check_rollback(&self, trust: &TrustStore) -> Result<String, PolicyError> {
        let (name, version) = (&self.header.name, self.header.version);
        match trust.highest_version(name) {
            Some(highest) if version < highest => Err(PolicyError::Rollback { name: name.clone(), version, highest }),
            highest => Ok(format!(
                "version {version} (highest accepted so far: {})",
                highest.map_or("none".into(), |h| h.to_string())
            )),
        }
    }

    /// Stage 3, with an image: whether the statement's subject is this image: by OCI manifest
    /// digest, or by config digest (which pins every layer through its diff_ids, so a
    /// docker-archive copy verifies too), or for a `dir:` tree by the digest of its file list.
    pub fn check_subject(&self, identity: &ImageIdentity, files: &[FileEntry]) -> Result<String, PolicyError> {
        let subjects: Vec<Sha256Digest> = self.header.subject_digests().collect();
        if let Some(manifest) = identity.manifest_digest {
            if subjects.contains(&manifest) {
                return Ok(format!("subject is the image manifest {manifest}"));
            }
        }
        if let Some(config) = identity.config_digest {
            if self.header.source.config_digest == Some(config) {
                return Ok(format!("signed config digest {config} matches the image's"));
            }
        }
        if identity.manifest_digest.is_none() && identity.config_digest.is_none() {
            // A v1 statement named the file list it signed, without code marks.
            let listed = file_list_digest(&self.header.format.strip(files));
            if subjects.contains(&listed) {
                return Ok(format!("subject is the file list digest {listed}"));
            }
        }
        let have = identity.manifest_digest.or(identity.config_digest).map_or("(none)".into(), |d| d.oci());
        let signed = subjects.first().map_or("(none)".into(), |d| d.oci());
        Err(PolicyError::Subject { signed, have })
    }

    /// Streams the signed file list, entry by entry, in path order.
    pub fn for_each_file(&self, on_file: &mut dyn FnMut(FileEntry)) -> Result<(), StatementError> {
        StatementHeader::read(self.payload.reader(), on_file).map(|_| ())
    }

    /// Stage 5: the signed file list against `actual` (sorted by path bytes) in one merge pass:
    /// every path missing from the image, extra in it, or changed, in path order. Every field
    /// is compared, the code mark too when the statement's format signs it.
    pub fn compare_files(&self, actual: &[FileEntry]) -> Result<Vec<Difference>, StatementError> {
        self.compare_files_as(actual, self.header.format)
    }

    /// [`VerifiedStatement::compare_files`] with the code marks compared as `format` says: for
    /// a file list recorded before code marks existed (`ManifestFormat::V1`: marks ignored;
    /// every content digest is still compared).
    pub fn compare_files_as(
        &self,
        actual: &[FileEntry],
        format: crate::statement::ManifestFormat,
    ) -> Result<Vec<Difference>, StatementError> {
        let mut out = Vec::new();
        let mut next = 0;
        self.for_each_file(&mut |expected| {
            while next < actual.len() && actual[next].path.as_bytes() < expected.path.as_bytes() {
                out.push(Difference::Extra { path: actual[next].path.to_string() });
                next += 1;
            }
            if next < actual.len() && actual[next].path == expected.path {
                let fields = format.field_differences(&expected, &actual[next]);
                if !fields.is_empty() {
                    out.push(Difference::Changed { path: expected.path.to_string(), fields });
                }
                next += 1;
            } else {
                out.push(Difference::Missing { path: expected.path.to_string() });
            }
        })?;
        out.extend(actual[next..].iter().map(|a| Difference::Extra { path: a.path.to_string() }));
        Ok(out)
    }

    /// The version this statement would record once accepted.
    pub fn accepted(&self) -> Accepted {
        Accepted { name: self.header.name.clone(), version: self.header.version }
    }
}

/// Records accepted versions in the trust store (rollback protection): the only writer of
/// rollback state. A version only rises: one not above what is recorded changes nothing.
pub fn accept<'a>(trust: &mut TrustStore, accepted: impl IntoIterator<Item = &'a Accepted>) -> Result<(), TrustError> {
    for a in accepted {
        if trust.highest_version(&a.name).is_none_or(|h| h < a.version) {
            trust.record_version(&a.name, a.version)?;
        }
    }
    Ok(())
}

/// Stages 2 and 3 without an image: signatures, then expiry and rollback. For callers that act
/// on the signed manifest itself (the enforcer hands its digests to the kernel). Nothing is
/// recorded in the trust store.
pub fn verify_statement(
    bundles: &[CheckedBundle],
    trust: &TrustStore,
    now: SystemTime,
) -> Result<VerifiedStatement, VerifyError> {
    let statement = verify_signatures(bundles, trust)?;
    statement.check_expiry(now).map_err(VerifyError::Policy)?;
    statement.check_rollback(trust).map_err(VerifyError::Policy)?;
    Ok(statement)
}

/// One named check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub verified: bool,
    pub image: String,
    pub name: Option<String>,
    pub version: Option<u64>,
    pub expires: Option<String>,
    pub subject: Option<Sha256Digest>,
    /// Distinct trusted, unrevoked keys whose signatures verified.
    pub signers: Vec<KeyId>,
    pub threshold: usize,
    pub checks: Vec<Check>,
    pub differences: Vec<Difference>,
    pub files_signed: usize,
    pub files_in_image: usize,
}

impl VerifyReport {
    /// An empty, passing report on `image`.
    fn new(image: String, threshold: usize) -> Self {
        VerifyReport {
            verified: true,
            image,
            name: None,
            version: None,
            expires: None,
            subject: None,
            signers: Vec::new(),
            threshold,
            checks: Vec::new(),
            differences: Vec::new(),
            files_signed: 0,
            files_in_image: 0,
        }
    }

    fn check(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) {
        self.verified &= ok;
        self.checks.push(Check { name, ok, detail: detail.into() });
    }

    fn outcome<E: std::error::Error>(&mut self, name: &'static str, result: Result<String, E>) {
        match result {
            Ok(detail) => self.check(name, true, detail),
            Err(e) => self.check(name, false, error_chain(&e)),
        }
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

/// Verifies `image` against one or more bundles that must carry the same statement, every stage
/// in order, into a report. A failed check is a report with `verified: false`; `Err` is input
/// that could not be read at all. With `record_version`, a verified statement is [`accept`]ed.
pub fn verify(
    image: &ImageRef,
    bundles: &[CheckedBundle],
    trust: &mut TrustStore,
    options: &VerifyOptions,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport::new(image.to_string(), trust.threshold());

    // 2. Signatures. Nothing in the payload is looked at before this passes.
    let (payload, tally) = match tally_signatures(bundles, trust) {
        Ok(found) => found,
        Err(VerifyError::Signatures(e)) => {
            report.check("signatures", false, error_chain(&e));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    report.signers = tally.signers.iter().cloned().collect();
    let enough = tally.signers.len() >= trust.threshold();
    report.check("signatures", enough, tally.to_string());
    if !enough {
        return Ok(report);
    }
    let statement = match VerifiedStatement::parse(payload, tally) {
        Ok(s) => s,
        Err(VerifyError::Statement(e)) => {
            report.check("statement", false, error_chain(&e));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };

    // 3. Policy.
    let header = statement.header();
    report.name = Some(header.name.clone());
    report.version = Some(header.version);
    report.expires = Some(header.expires.clone());
    report.subject = Some(statement.subject());
    report.files_signed = header.files;
    report.outcome("expiry", statement.check_expiry(options.now));
    report.outcome("rollback", statement.check_rollback(trust));

    // 4. The image.
    let scanned = match scan(image, progress) {
        Ok(s) => s,
        Err(source) if source.is_integrity() => {
            report.check("image integrity", false, error_chain(&source));
            return Ok(report);
        }
        Err(source) => return Err(VerifyError::Image { image: image.to_string(), source: Box::new(source) }),
    };
    report.check("image integrity", true, "every blob matched its digest");
    report.outcome("subject", statement.check_subject(&scanned.identity, &scanned.files));

    // 5. The files.
    report.files_in_image = scanned.files.len();
    report.differences = statement.compare_files(&scanned.files).map_err(VerifyError::Statement)?;
    let n = report.differences.len();
    if n == 0 {
        report.check("files", true, format!("all {} files match", scanned.files.len()));
    } else {
        report.check("files", false, format!("{n} path(s) differ"));
    }

    if report.verified && options.record_version {
        accept(trust, [&statement.accepted()]).map_err(VerifyError::Trust)?;
    }
    Ok(report)
}

/// An error and its sources on one line (`outer: inner: innermost`), for reports and event logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::BundleSignature;
    use crate::manifest::{compare, FileType};

    fn entry(path: &str, sha: u8) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: FileType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: Some(1),
            sha256: Some(Sha256Digest([sha; 32])),
            code: None,
            link_target: None,
            dev_major: None,
            dev_minor: None,
            xattrs: Default::default(),
        }
    }

    fn statement_payload(files: Vec<FileEntry>) -> Arc<Payload> {
        let identity = ImageIdentity {
            kind: crate::source::SourceKind::Dir,
            default_name: "t".into(),
            manifest_digest: None,
            config_digest: None,
            layers: vec![],
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
        let statement = crate::statement::Statement::new(&identity, files, "t".into(), 1, at);
        Arc::new(Payload::from_bytes(&statement.to_bytes()).unwrap())
    }

    fn signed(key: &keys::SigningKey, payload: &Arc<Payload>) -> CheckedBundle {
        let message = crate::dsse::pae(IN_TOTO_PAYLOAD_TYPE, &payload.to_vec().unwrap());
        let id = key.public_key().key_id().to_string();
        CheckedBundle::new(payload.clone(), id.clone(), vec![BundleSignature { sig: key.sign(&message), keyid: id }])
    }

    fn trust(dir: &std::path::Path, keys: &[&keys::SigningKey], threshold: usize) -> TrustStore {
        let mut trust = TrustStore::init(dir, threshold).unwrap();
        for key in keys {
            trust.add_key(&key.public_key()).unwrap();
        }
        trust
    }

    #[test]
    fn streamed_merge_reports_what_the_in_memory_compare_reports() {
        let expected: Vec<FileEntry> =
            ["/a", "/b", "/c", "/d/e", "/f"].iter().enumerate().map(|(i, p)| entry(p, i as u8)).collect();
        let mut actual: Vec<FileEntry> =
            ["/0", "/b", "/c", "/d", "/d/e", "/g", "/h"].iter().enumerate().map(|(i, p)| entry(p, i as u8)).collect();
        actual[2].sha256 = expected[2].sha256;
        let payload = statement_payload(expected.clone());
        let key = keys::SigningKey::from_seed(&[1; 32]);
        let dir = tempfile::tempdir().unwrap();
        let statement = verify_signatures(&[signed(&key, &payload)], &trust(dir.path(), &[&key], 1)).unwrap();
        assert_eq!(statement.compare_files(&actual).unwrap(), compare(&expected, &actual));
        assert_eq!(statement.compare_files(&[]).unwrap(), compare(&expected, &[]));
        assert!(statement.compare_files(&expected).unwrap().is_empty());
    }

    #[test]
    fn bundles_of_different_statements_are_not_pooled() {
        let (a, b) = (keys::SigningKey::from_seed(&[1; 32]), keys::SigningKey::from_seed(&[2; 32]));
        let dir = tempfile::tempdir().unwrap();
        let trust = trust(dir.path(), &[&a, &b], 2);
        let one = statement_payload(vec![entry("/a", 1)]);
        let other = statement_payload(vec![entry("/a", 2)]);
        let result = verify_signatures(&[signed(&a, &one), signed(&b, &other)], &trust);
        assert!(matches!(result, Err(VerifyError::Signatures(SignatureError::DifferentStatements))));
        // The same statement read twice (two payload files) pools.
        let again = statement_payload(vec![entry("/a", 1)]);
        let statement = verify_signatures(&[signed(&a, &one), signed(&b, &again)], &trust).unwrap();
        assert_eq!(statement.signers().count(), 2);
    }

    #[test]
    fn accept_only_raises_the_recorded_version() {
        let key = keys::SigningKey::from_seed(&[1; 32]);
        let dir = tempfile::tempdir().unwrap();
        let mut trust = trust(dir.path(), &[&key], 1);
        let statement = verify_signatures(&[signed(&key, &statement_payload(vec![]))], &trust).unwrap();
        trust.record_version("t", 3).unwrap();
        accept(&mut trust, [&statement.accepted()]).unwrap();
        assert_eq!(trust.highest_version("t"), Some(3));
        assert!(matches!(statement.check_rollback(&trust), Err(PolicyError::Rollback { highest: 3, .. })));
    }
}
