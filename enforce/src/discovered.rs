//! Bundles discovered in a registry, for a scope that names a `docker://` image and no bundle
//! files (a policy `[[scope]]`, a control-socket `add`): the bundles attached to the manifest the
//! reference names now (OCI referrers, else the `sha256-<hex>` tag schema; verifier-core's
//! [`discover_bundles`]), of which only one statement's that the node's trust store accepts and
//! whose subject is that manifest are kept. The plan then verifies them exactly as bundle files
//! (signatures, threshold, revocation, expiry, rollback, cached per statement): discovery only
//! decides which bundles are read, never whether they are accepted.
//!
//! Owned by the plan ([`crate::plan`]); every failure (registry unreachable, nothing attached,
//! nothing trusted) is one scope's failure, so the daemon fails that scope closed and keeps the
//! others.

use crate::verified::{error_chain, BundleFile, Trust};
use std::collections::BTreeMap;
use std::path::PathBuf;
use verifier_core::bundle::CheckedBundle;
use verifier_core::digest::Sha256Digest;
use verifier_core::referrers::{discover_bundles, ReferrerError};
use verifier_core::source::ImageRef;
use verifier_core::verify::verify_signatures;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot discover the bundles attached to {image}")]
    Registry {
        image: String,
        #[source]
        source: Box<ReferrerError>,
    },
    #[error("no signed manifest is attached to {image} (manifest {subject}){}", set_aside(.rejected))]
    Nothing { image: String, subject: Sha256Digest, rejected: Vec<(String, String)> },
    #[error("none of the {count} bundle(s) attached to {image} (manifest {subject}) is accepted by the trust store: {reasons}")]
    Untrusted { image: String, subject: Sha256Digest, count: usize, reasons: String },
}

fn set_aside(rejected: &[(String, String)]) -> String {
    if rejected.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = rejected.iter().map(|(digest, reason)| format!("{digest}: {reason}")).collect();
    format!("; set aside: {}", listed.join("; "))
}

/// The bundles attached to registry image `image` that the trust store accepts (one statement's,
/// the highest version among those that qualify), each labelled with the image and the manifest
/// digest they are attached to.
pub fn discover(image: &ImageRef, trust: &Trust) -> Result<Vec<BundleFile>, DiscoveryError> {
    let found = discover_bundles(image)
        .map_err(|source| DiscoveryError::Registry { image: image.to_string(), source: Box::new(source) })?;
    let subject = found.subject;
    if found.bundles.is_empty() {
        return Err(DiscoveryError::Nothing { image: image.to_string(), subject, rejected: found.rejected });
    }
    let count = found.bundles.len();
    let mut groups: BTreeMap<Sha256Digest, Vec<CheckedBundle>> = BTreeMap::new();
    for bundle in found.bundles {
        groups.entry(bundle.payload().digest()).or_default().push(bundle);
    }
    let mut reasons = Vec::new();
    let mut best: Option<(u64, Vec<CheckedBundle>)> = None;
    for (statement, group) in groups {
        match verify_signatures(&group, trust.store()) {
            Err(e) => reasons.push(format!("statement {statement}: {}", error_chain(&e))),
            Ok(verified) if verified.subject() != subject => {
                reasons.push(format!("statement {statement} signs manifest {}, not {subject}", verified.subject()))
            }
            Ok(verified) => {
                let version = verified.header().version;
                if best.as_ref().is_none_or(|(v, _)| version > *v) {
                    best = Some((version, group));
                }
            }
        }
    }
    let Some((_, group)) = best else {
        return Err(DiscoveryError::Untrusted {
            image: image.to_string(),
            subject,
            count,
            reasons: reasons.join("; "),
        });
    };
    let of = group.len();
    Ok(group
        .into_iter()
        .enumerate()
        .map(|(i, bundle)| {
            let label = PathBuf::from(format!("{image} (bundle {} of {of} attached to {subject})", i + 1));
            BundleFile::from_bundle(label, bundle)
        })
        .collect())
}
