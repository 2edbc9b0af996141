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
    #[error("{0}: bundles are pushed to registry images (docker://HOST/REPO) and discovered there or in OCI layouts (oci:DIR:TAG)")]
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

/// Every bundle attached to the manifest `image` names (for its platform): in a registry, its
/// OCI referrers; in an OCI layout, the artifacts `index.json` lists with the bundle
/// `artifactType` whose subject is that manifest (as `imgsign copy` writes them).
pub fn discover_bundles(image: &ImageRef) -> Result<Discovered, ReferrerError> {
    if let ImageRef::Oci { dir, .. } = image {
        return discover_in_layout(image, dir);
    }
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

fn discover_in_layout(image: &ImageRef, dir: &std::path::Path) -> Result<Discovered, ReferrerError> {
    let found = layout_bundles(image, dir)?;
    Ok(Discovered {
        subject: found.subject,
        bundles: found.bundles.into_iter().map(|(_, bundle)| bundle).collect(),
        rejected: found.rejected,
    })
}

/// The bundles of a layout image with the bytes they were stored as.
pub(crate) struct LayoutBundles {
    pub subject: Sha256Digest,
    pub bundles: Vec<(Vec<u8>, CheckedBundle)>,
    pub rejected: Vec<(String, String)>,
}

/// What [`discover_bundles`] finds in an OCI layout, with each bundle's stored bytes.
pub(crate) fn layout_bundles(image: &ImageRef, dir: &std::path::Path) -> Result<LayoutBundles, ReferrerError> {
    let resolve_err = |source| ReferrerError::Resolve { image: image.to_string(), source: Box::new(source) };
    let source = crate::source::open(image).map_err(resolve_err)?;
    let Some(subject) = source.identity().manifest_digest else {
        return Err(ReferrerError::NotRegistry(image.to_string()));
    };
    let index_path = dir.join("index.json");
    let index: serde_json::Value = crate::image::source::parse_json(
        &index_path.display().to_string(),
        &crate::image::source::read_small(&index_path).map_err(resolve_err)?,
    )
    .map_err(resolve_err)?;
    let mut found = LayoutBundles { subject, bundles: Vec::new(), rejected: Vec::new() };
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let artifacts = entries.iter().filter(|e| e["artifactType"] == BUNDLE_MEDIA_TYPE);
    for (i, entry) in artifacts.enumerate() {
        let name = entry["digest"].as_str().unwrap_or("(no digest)").to_string();
        if i >= MAX_REFERRERS {
            found.rejected.push((name, format!("not examined: more than {MAX_REFERRERS} bundles")));
            continue;
        }
        match layout_bundle(dir, entry, subject) {
            Ok(Some(bundle)) => found.bundles.push(bundle),
            Ok(None) => {}
            Err(reason) => found.rejected.push((name, reason)),
        }
    }
    Ok(found)
}

/// The bundle of one artifact entry of a layout's index: `None` if its subject is another
/// manifest; an error (as text) if it is damaged or not a bundle.
fn layout_bundle(
    dir: &std::path::Path,
    entry: &serde_json::Value,
    subject: Sha256Digest,
) -> Result<Option<(Vec<u8>, CheckedBundle)>, String> {
    let descriptor = |v: &serde_json::Value| -> Result<(Sha256Digest, u64), String> {
        let digest = v["digest"].as_str().and_then(|d| Sha256Digest::parse_oci(d).ok());
        digest.zip(v["size"].as_u64()).ok_or_else(|| "descriptor without sha256 digest or size".to_string())
    };
    let read = |(digest, size): (Sha256Digest, u64), limit: u64| -> Result<Vec<u8>, String> {
        if size > limit {
            return Err(format!("blob {digest} is larger than {limit} bytes"));
        }
        let path = dir.join("blobs/sha256").join(digest.hex());
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(
                std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?,
                size + 1,
            ),
            &mut bytes,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes.len() as u64 != size || Sha256Digest::of(&bytes) != digest {
            return Err(format!("blob {digest} does not match its descriptor (size or digest)"));
        }
        Ok(bytes)
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(descriptor(entry)?, 4 << 20)?).map_err(|e| format!("artifact manifest: {e}"))?;
    if manifest["subject"]["digest"].as_str() != Some(subject.oci().as_str()) {
        return Ok(None);
    }
    let layer = &manifest["layers"][0];
    if layer["mediaType"] != BUNDLE_MEDIA_TYPE {
        return Err("its first layer is not a bundle".into());
    }
    let bytes = read(descriptor(layer)?, MAX_BUNDLE_BYTES as u64)?;
    let bundle = CheckedBundle::parse(&bytes).map_err(|e| error_text(&e))?;
    Ok(Some((bytes, bundle)))
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
    error_chain(e)
}

/// An error and its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}
