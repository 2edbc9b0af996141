//! Signed manifests next to their images in registries: a bundle is pushed as an OCI 1.1
//! referrer of the image manifest it signs (artifact type and layer media type
//! `application/vnd.dev.sigstore.bundle.v0.3+json`, subject = that manifest), discoverable
//! through the referrers API or the `sha256-<hex>` tag schema (see the `registry` crate).
//!
//! Pushing first resolves the reference again and refuses when it no longer names the manifest
//! the bundle signs (a tag moved between signing and pushing). Discovery returns every bundle
//! attached to the image's manifest that parses as a bundle (the others are listed as
//! rejected, with the reason); [`choose`] then picks the bundles of one statement that the
//! trust store accepts, so that several signers' separate bundles do not have to agree.

use crate::bundle::{BundleError, CheckedBundle, BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES};
use crate::digest::Sha256Digest;
use crate::image::source::registry::{from_registry, resolve, to_registry};
use crate::source::{ImageRef, SourceError};
use crate::verify::verify_signatures;
use keys::TrustStore;
use registry::{Discoverable, RegistryError};
use std::collections::BTreeMap;

/// Bundles fetched per image at most: a registry (or whoever may push to it) listing more gets
/// the rest reported as not examined rather than fetched.
pub const MAX_REFERRERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ReferrerError {
    #[error("{0} is not a registry image: bundles are pushed to and discovered in docker://HOST/REPO images only")]
    NotRegistry(String),
    #[error("resolving {image}")]
    Resolve {
        image: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("{action} {image}")]
    Registry {
        action: &'static str,
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error(
        "{image} now names manifest {actual}, but the bundle signs {expected}: the tag moved since signing; sign again"
    )]
    SubjectMoved { image: String, expected: Sha256Digest, actual: Sha256Digest },
}

/// A bundle pushed: the referrer manifest's digest and how it is discoverable.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: String,
    pub via: Discoverable,
}

/// What discovery found for an image.
pub struct Discovered {
    /// The image manifest digest the bundles are attached to.
    pub subject: Sha256Digest,
    pub bundles: Vec<CheckedBundle>,
    /// Referrers of the bundle artifact type that are not bundles: (digest, reason).
    pub rejected: Vec<(String, String)>,
}

/// Attaches each bundle to `image` (which must be a registry image still naming `subject`).
pub fn push_bundles(
    image: &ImageRef,
    subject: Sha256Digest,
    bundles: &[CheckedBundle],
) -> Result<Vec<Pushed>, ReferrerError> {
    let ImageRef::Registry { reference, platform, access } = image else {
        return Err(ReferrerError::NotRegistry(image.to_string()));
    };
    let (mut registry, manifest) = resolve(reference, platform, access)
        .map_err(|source| ReferrerError::Resolve { image: image.to_string(), source: Box::new(source) })?;
    let actual = from_registry(&manifest.digest);
    if actual != subject {
        return Err(ReferrerError::SubjectMoved { image: image.to_string(), expected: subject, actual });
    }
    let wrap = |source| ReferrerError::Registry {
        action: "pushing bundles to",
        image: image.to_string(),
        source: Box::new(source),
    };
    registry.enable_push().map_err(wrap)?;
    bundles
        .iter()
        .map(|bundle| {
            let (digest, via) = registry
                .push_referrer(to_registry(&subject), BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE, &bundle.to_json())
                .map_err(wrap)?;
            Ok(Pushed { digest: digest.to_string(), via })
        })
        .collect()
}

/// Every bundle attached to the manifest `image` names (for its platform).
pub fn discover_bundles(image: &ImageRef) -> Result<Discovered, ReferrerError> {
    let ImageRef::Registry { reference, platform, access } = image else {
        return Err(ReferrerError::NotRegistry(image.to_string()));
    };
    let (registry, manifest) = resolve(reference, platform, access)
        .map_err(|source| ReferrerError::Resolve { image: image.to_string(), source: Box::new(source) })?;
    let wrap = |source| ReferrerError::Registry {
        action: "discovering bundles of",
        image: image.to_string(),
        source: Box::new(source),
    };
    let referrers = registry.referrers(manifest.digest, BUNDLE_MEDIA_TYPE).map_err(wrap)?;
    let mut found = Discovered { subject: from_registry(&manifest.digest), bundles: Vec::new(), rejected: Vec::new() };
    for (i, referrer) in referrers.into_iter().enumerate() {
        if i >= MAX_REFERRERS {
            found
                .rejected
                .push((referrer.digest.to_string(), format!("not examined: more than {MAX_REFERRERS} bundles")));
            continue;
        }
        // A referrer that cannot be fetched intact is an error (the registry is lying or
        // broken); one that is intact but not a bundle is only set aside.
        let bytes = registry.referrer_payload(&referrer, BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES as u64).map_err(wrap)?;
        match CheckedBundle::parse(&bytes) {
            Ok(bundle) => found.bundles.push(bundle),
            Err(e) => found.rejected.push((referrer.digest.to_string(), error_text(&e))),
        }
    }
    Ok(found)
}

/// The bundles of one statement whose signatures the trust store accepts and whose subject is
/// `subject`, preferring the highest version; `None` when no statement qualifies.
pub fn choose(bundles: &[CheckedBundle], subject: Sha256Digest, trust: &TrustStore) -> Option<Vec<CheckedBundle>> {
    let mut groups: BTreeMap<Sha256Digest, Vec<CheckedBundle>> = BTreeMap::new();
    for bundle in bundles {
        groups.entry(bundle.payload().digest()).or_default().push(bundle.clone());
    }
    groups
        .into_values()
        .filter_map(|group| {
            let verified = verify_signatures(&group, trust).ok()?;
            (verified.subject() == subject).then(|| (verified.header().version, group))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, group)| group)
}

fn error_text(e: &BundleError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}
