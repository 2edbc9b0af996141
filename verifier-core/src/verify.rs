//! Verification, in the order that keeps untrusted data away from work: signatures against the
//! trust store (distinct keys, revocation, threshold) first; then the signed statement's expiry,
//! rollback and subject; then the image itself is read and every file compared.
//! [`verify_statement`] runs the first two steps alone, for callers that act on the signed
//! manifest without an image at hand.

use crate::bundle::Bundle;
use crate::digest::Sha256Digest;
use crate::dsse::DsseError;
use crate::manifest::{compare, Difference};
use crate::progress::Progress;
use crate::source::{scan, ImageIdentity, ImageRef, SourceError};
use crate::statement::{file_list_digest, Statement};
use keys::{KeyId, TrustError, TrustStore};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no bundle given")]
    NoBundles,
    #[error("reading image {image}")]
    Source {
        image: String,
        #[source]
        source: SourceError,
    },
    #[error("recording the accepted version in the trust store")]
    Trust(#[source] TrustError),
    /// A check failed; the report says which (see [`VerifyReport::failures`]).
    #[error("verification failed: {}", failed_checks(.0))]
    Rejected(Box<VerifyReport>),
}

fn failed_checks(report: &VerifyReport) -> String {
    let failed: Vec<String> = report.failures().map(|c| format!("{}: {}", c.name, c.detail)).collect();
    failed.join("; ")
}

pub struct VerifyOptions {
    pub now: SystemTime,
    /// Remember the accepted version (rollback protection). Off for dry runs.
    pub record_version: bool,
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
    pub subject: Option<String>,
    /// Distinct trusted, unrevoked keys whose signatures verified.
    pub signers: Vec<String>,
    pub threshold: usize,
    pub checks: Vec<Check>,
    pub differences: Vec<Difference>,
    pub files_signed: usize,
    pub files_in_image: usize,
}

impl VerifyReport {
    /// An empty, passing report on `image` (empty when no image is read).
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

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

/// Verifies `image` against one or more bundles that must carry the same statement.
pub fn verify(
    image: &ImageRef,
    bundles: &[Bundle],
    trust: &mut TrustStore,
    options: &VerifyOptions,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport::new(image.to_string(), trust.threshold());
    let Some(statement) = check_signed(bundles, trust, options.now, &mut report)? else {
        return Ok(report);
    };
    let predicate = &statement.predicate;

    // 3. The image.
    let scanned = match scan(image, progress) {
        Ok(s) => s,
        Err(source) if source.is_integrity() => {
            report.check("image integrity", false, error_chain(&source));
            return Ok(report);
        }
        Err(source) => return Err(VerifyError::Source { image: image.to_string(), source }),
    };
    report.check("image integrity", true, "every blob matched its digest");
    let (bound, how) = binding(&statement, &scanned.identity, &scanned.files);
    report.check("subject", bound, how);
    report.files_in_image = scanned.files.len();
    report.differences = compare(&predicate.files, &scanned.files);
    let n = report.differences.len();
    report.check(
        "files",
        n == 0,
        if n == 0 { format!("all {} files match", scanned.files.len()) } else { format!("{n} path(s) differ") },
    );

    if report.verified && options.record_version {
        trust.record_version(&predicate.name, predicate.version).map_err(VerifyError::Trust)?;
    }
    Ok(report)
}

/// Verifies the bundles' signatures (distinct trusted keys, revocation, threshold) and the signed
/// statement's expiry and rollback against `trust`, without reading any image, and returns the
/// statement. For callers that act on the signed manifest itself (the enforcer hands its digests
/// to the kernel). Nothing is recorded in the trust store. Any failed check is
/// [`VerifyError::Rejected`], carrying the report.
pub fn verify_statement(
    bundles: &[Bundle],
    trust: &TrustStore,
    now: SystemTime,
) -> Result<(Statement, VerifyReport), VerifyError> {
    let mut report = VerifyReport::new(String::new(), trust.threshold());
    match check_signed(bundles, trust, now, &mut report)? {
        Some(statement) if report.verified => Ok((statement, report)),
        _ => Err(VerifyError::Rejected(Box::new(report))),
    }
}

/// Steps 1 and 2 of verification, recorded in `report`: signatures, then the signed statement's
/// expiry and rollback. Returns the statement once the signatures met the threshold and it
/// parsed (expiry or rollback may still have failed: `report.verified` tells).
fn check_signed(
    bundles: &[Bundle],
    trust: &TrustStore,
    now: SystemTime,
    report: &mut VerifyReport,
) -> Result<Option<Statement>, VerifyError> {
    let first = bundles.first().ok_or(VerifyError::NoBundles)?;

    // 1. Signatures. Nothing in the payload is looked at before this passes.
    let envelope = &first.dsse_envelope;
    if bundles
        .iter()
        .any(|b| b.dsse_envelope.payload != envelope.payload || b.dsse_envelope.payload_type != envelope.payload_type)
    {
        report.check("signatures", false, "the bundles carry different statements");
        return Ok(None);
    }
    let (signers, notes) = match count_signers(bundles, trust) {
        Ok(found) => found,
        Err(e) => {
            report.check("signatures", false, format!("malformed envelope: {e}"));
            return Ok(None);
        }
    };
    report.signers = signers.iter().map(ToString::to_string).collect();
    let enough = signers.len() >= trust.threshold();
    let mut detail = format!("{} distinct trusted key(s) signed; threshold is {}", signers.len(), trust.threshold());
    for note in notes {
        detail.push_str("; ");
        detail.push_str(&note);
    }
    report.check("signatures", enough, detail);
    if !enough {
        return Ok(None);
    }

    // 2. The signed statement.
    let payload = envelope.payload_bytes().expect("decoded while counting signers");
    let statement = match Statement::parse(&payload) {
        Ok(s) => s,
        Err(e) => {
            report.check("statement", false, e.to_string());
            return Ok(None);
        }
    };
    let predicate = &statement.predicate;
    report.name = Some(predicate.name.clone());
    report.version = Some(predicate.version);
    report.expires = Some(predicate.expires.clone());
    report.subject = statement.subject_digests().next().map(|d| d.oci());
    report.files_signed = predicate.files.len();

    let expires = statement.expires_at().expect("checked by parse");
    let expired = now > expires;
    report.check(
        "expiry",
        !expired,
        if expired {
            format!("expired at {}", predicate.expires)
        } else {
            format!("valid until {}", predicate.expires)
        },
    );

    match trust.highest_version(&predicate.name) {
        Some(highest) if predicate.version < highest => {
            report.check(
                "rollback",
                false,
                format!(
                    "version {} is older than version {highest} already accepted for {:?}",
                    predicate.version, predicate.name
                ),
            );
        }
        highest => {
            report.check(
                "rollback",
                true,
                format!(
                    "version {} (highest accepted so far: {})",
                    predicate.version,
                    highest.map_or("none".into(), |h| h.to_string())
                ),
            );
        }
    }
    Ok(Some(statement))
}

/// Distinct trusted, unrevoked keys that produced a valid signature, plus notes on signatures
/// that did not count. The key id in a signature is only a hint: every trusted key is tried.
fn count_signers(bundles: &[Bundle], trust: &TrustStore) -> Result<(BTreeSet<KeyId>, Vec<String>), DsseError> {
    let mut signers = BTreeSet::new();
    let mut notes = Vec::new();
    for bundle in bundles {
        let envelope = &bundle.dsse_envelope;
        let message = envelope.signed_message()?;
        for index in 0..envelope.signatures.len() {
            let signature = envelope.signature_bytes(index)?;
            let key = trust.trusted_keys().iter().find(|k| k.verify(&message, &signature));
            match key {
                Some(key) if trust.is_revoked(&key.key_id()) => {
                    notes.push(format!("signature by revoked key {} ignored", key.key_id()))
                }
                Some(key) => {
                    if !signers.insert(key.key_id()) {
                        notes.push(format!("repeated signature by key {} counted once", key.key_id()));
                    }
                }
                None => notes.push(format!(
                    "signature {index} (key hint {:?}) matches no trusted key",
                    envelope.signatures[index].keyid
                )),
            }
        }
    }
    Ok((signers, notes))
}

/// Whether the statement's subject is this image: by OCI manifest digest, or by config digest
/// (which pins every layer through its diff_ids, so a docker-archive copy verifies too), or for
/// a `dir:` tree by the digest of its file list.
fn binding(statement: &Statement, identity: &ImageIdentity, files: &[crate::manifest::FileEntry]) -> (bool, String) {
    let subjects: Vec<Sha256Digest> = statement.subject_digests().collect();
    if let Some(manifest) = identity.manifest_digest {
        if subjects.contains(&manifest) {
            return (true, format!("subject is the image manifest {manifest}"));
        }
    }
    if let Some(config) = identity.config_digest {
        if statement.predicate.source.config_digest.as_deref() == Some(config.oci().as_str()) {
            return (true, format!("signed config digest {config} matches the image's"));
        }
    }
    if identity.manifest_digest.is_none() && identity.config_digest.is_none() {
        let listed = file_list_digest(files);
        if subjects.contains(&listed) {
            return (true, format!("subject is the file list digest {listed}"));
        }
    }
    let have = identity.manifest_digest.or(identity.config_digest).map_or("(none)".into(), |d| d.oci());
    let signed = subjects.first().map_or("(none)".into(), |d| d.oci());
    (false, format!("signed subject {signed} is not this image ({have})"))
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
