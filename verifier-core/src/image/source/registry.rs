//! Images in OCI distribution registries (`docker://HOST[:PORT]/REPO:TAG`,
//! `docker://HOST[:PORT]/REPO@sha256:...`), over the `registry` crate's blocking client.
//!
//! Opening reads the manifest (following an index to the platform asked for) and the config,
//! each under a size cap and checked against the digest and size that name it before it is
//! parsed: an index entry names its manifest, the manifest names its config, so the manifest
//! digest a signature binds to binds them all. Layers are not stored: [`ImageSource::open_layer`]
//! streams the blob, capped at its descriptor's size, and the caller ([`super::read_layers`])
//! checks its digest, size and diff_id as it reads.

use super::oci::{choose_platform, manifest_layers, INDEX_TYPES, MANIFEST_TYPES};
use super::{
    parse_digest, parse_json, ImageContent, ImageIdentity, ImageSource, LayerDescriptor, SourceError, SourceKind,
    MAX_JSON,
};
use crate::digest::Sha256Digest;
use crate::image::platform::Platform;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use registry::{Access, Digest, Manifest, Reference, Registry, RegistryError, Target};
use std::io::Read;
use std::path::PathBuf;

/// One image of a registry repository, its manifest and config read and checked.
pub(super) struct RegistrySource {
    registry: Registry,
    identity: ImageIdentity,
    layers: Vec<LayerDescriptor>,
    config: ImageConfiguration,
}

impl ImageSource for RegistrySource {
    fn identity(&self) -> &ImageIdentity {
        &self.identity
    }

    fn content(&self) -> ImageContent<'_> {
        ImageContent::Layers(&self.layers)
    }

    fn open_layer(&self, layer: &LayerDescriptor) -> Result<Box<dyn Read + Send>, SourceError> {
        let (Some(digest), Some(size)) = (layer.digest, layer.size) else {
            return Err(SourceError::Layout {
                path: self.registry.reference().to_string().into(),
                reason: format!("layer {} has no digest or size", layer.label),
            });
        };
        let reader = self.registry.blob(to_registry(&digest), size).map_err(|e| self.error(e))?;
        Ok(Box::new(reader))
    }

    fn config(&self) -> Option<&ImageConfiguration> {
        Some(&self.config)
    }
}

impl RegistrySource {
    pub(super) fn open(reference: &Reference, platform: &Platform, access: &Access) -> Result<Self, SourceError> {
        let wrap = |source| SourceError::Registry { reference: reference.to_string(), source };
        let label: PathBuf = format!("docker://{reference}").into();
        let (registry, manifest) = resolve(reference, platform, access)?;
        let manifest_digest = from_registry(&manifest.digest);
        let parsed: ImageManifest = parse_json(&format!("image manifest {manifest_digest}"), &manifest.bytes)?;
        let config_digest = parse_digest("image manifest config", parsed.config().digest().as_ref())?;
        let config_bytes =
            registry.small_blob(to_registry(&config_digest), parsed.config().size(), MAX_JSON).map_err(wrap)?;
        let config: ImageConfiguration = parse_json(&format!("image config {config_digest}"), &config_bytes)?;
        let layers = manifest_layers(&parsed, &config, &format!("image config {config_digest}"), &label)?;
        let identity = ImageIdentity {
            kind: SourceKind::Registry,
            default_name: format!("{}/{}", reference.host(), reference.repository()),
            manifest_digest: Some(manifest_digest),
            config_digest: Some(config_digest),
            layers: Vec::new(),
        };
        Ok(Self { registry, identity, layers, config })
    }

    fn error(&self, source: RegistryError) -> SourceError {
        SourceError::Registry { reference: self.registry.reference().to_string(), source }
    }
}

/// Connects to the registry and reads the image manifest `reference` names for `platform`
/// (following an index), checked against the digest and size that name it, media type included.
pub fn resolve(
    reference: &Reference,
    platform: &Platform,
    access: &Access,
) -> Result<(Registry, Manifest), SourceError> {
    let wrap = |source| SourceError::Registry { reference: reference.to_string(), source };
    let registry = Registry::connect(reference, access).map_err(wrap)?;
    let label: PathBuf = format!("docker://{reference}").into();
    let top = registry.manifest(reference.target(), None).map_err(wrap)?;
    let mut manifest = top.clone();
    if INDEX_TYPES.contains(&media_type(&top.bytes, top.media_type.as_deref())?.as_str()) {
        let index: ImageIndex = parse_json(&format!("image index {}", top.digest), &top.bytes)?;
        let chosen = choose_platform(index.manifests(), platform, &label)?;
        let digest = parse_digest("image index entry", chosen.digest().as_ref())?;
        manifest = registry.manifest(&Target::Digest(to_registry(&digest)), Some(chosen.size())).map_err(wrap)?;
    }
    let kind = media_type(&manifest.bytes, manifest.media_type.as_deref())?;
    if !MANIFEST_TYPES.contains(&kind.as_str()) {
        return Err(SourceError::Layout { path: label, reason: format!("unsupported manifest media type {kind:?}") });
    }
    Ok((registry, manifest))
}

/// The media type a manifest declares (its `mediaType`), else the one the registry sent.
fn media_type(bytes: &[u8], content_type: Option<&str>) -> Result<String, SourceError> {
    #[derive(serde::Deserialize)]
    struct Declared {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let declared: Declared = parse_json("manifest", bytes)?;
    Ok(declared
        .media_type
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
        .unwrap_or_default())
}

pub(crate) fn to_registry(digest: &Sha256Digest) -> Digest {
    Digest::from_bytes(digest.0)
}

pub(crate) fn from_registry(digest: &Digest) -> Sha256Digest {
    Sha256Digest(*digest.bytes())
}
