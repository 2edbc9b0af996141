//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/...`) as written by umoci, skopeo
//! and buildah, read with `oci-spec`'s types. Index, manifest and config are checked against
//! their size and digest before they are parsed (and parsed only up to a size cap); media types
//! are checked; only sha256 digests are accepted. Layers are checked as they stream.

use super::{
    diff_ids, parse_digest, parse_json, read_small, ImageContent, ImageIdentity, ImageSource, LayerDescriptor,
    SourceError, SourceKind,
};
use crate::digest::Sha256Digest;
use crate::image::platform::Platform;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use std::io::Read;
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(super) const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
pub(super) const MANIFEST_TYPES: &[&str] =
    &["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// An OCI layout with one image (one platform of it) chosen.
pub(super) struct OciLayout {
    dir: PathBuf,
    identity: ImageIdentity,
    layers: Vec<LayerDescriptor>,
    config: ImageConfiguration,
}

impl ImageSource for OciLayout {
    fn identity(&self) -> &ImageIdentity {
        &self.identity
    }

    fn content(&self) -> ImageContent<'_> {
        ImageContent::Layers(&self.layers)
    }

    fn open_layer(&self, layer: &LayerDescriptor) -> Result<Box<dyn Read + Send>, SourceError> {
        let digest = layer.digest.ok_or_else(|| SourceError::Layout {
            path: self.dir.clone(),
            reason: format!("layer {} has no digest", layer.label),
        })?;
        let path = blob_path(&self.dir, &digest);
        let file = std::fs::File::open(&path).map_err(|source| SourceError::Io { path: path.clone(), source })?;
        Ok(Box::new(file))
    }

    fn config(&self) -> Option<&ImageConfiguration> {
        Some(&self.config)
    }
}

impl OciLayout {
    pub(super) fn open(dir: &Path, tag: Option<&str>, platform: &Platform) -> Result<Self, SourceError> {
        let layout_file = dir.join("oci-layout");
        if !layout_file.is_file() {
            return Err(SourceError::Layout {
                path: dir.to_path_buf(),
                reason: "not an OCI image layout (no oci-layout file)".into(),
            });
        }
        let index_path = dir.join("index.json");
        let index: ImageIndex = parse_json(&index_path.display().to_string(), &read_small(&index_path)?)?;
        let mut chosen = choose(index.manifests(), tag, &index_path)?.clone();
        // Follow one level of image index to the manifest of the platform asked for.
        if INDEX_TYPES.contains(&chosen.media_type().to_string().as_str()) {
            let digest = parse_digest("index.json", chosen.digest().as_ref())?;
            let nested: ImageIndex =
                parse_json("nested image index", &read_blob(dir, &digest, chosen.size(), "image index")?)?;
            chosen = choose_platform(nested.manifests(), platform, &index_path)?.clone();
        }
        let media_type = chosen.media_type().to_string();
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(SourceError::Layout {
                path: index_path,
                reason: format!("unsupported manifest media type {media_type:?}"),
            });
        }
        let manifest_digest = parse_digest("image index", chosen.digest().as_ref())?;
        let manifest_bytes = read_blob(dir, &manifest_digest, chosen.size(), "image manifest")?;
        let manifest: ImageManifest = parse_json(&format!("image manifest {manifest_digest}"), &manifest_bytes)?;
        let config_digest = parse_digest("image manifest config", manifest.config().digest().as_ref())?;
        // The manifest's bytes matched `manifest_digest` (what a signature binds to) and name the
        // config by digest and size: the config is checked against them before it is parsed.
        let config_bytes = read_blob(dir, &config_digest, manifest.config().size(), "image config")?;
        let config: ImageConfiguration = parse_json(&format!("image config {config_digest}"), &config_bytes)?;
        let layers = manifest_layers(
            &manifest,
            &config,
            &format!("image config {config_digest}"),
            &blob_path(dir, &manifest_digest),
        )?;
        let identity = ImageIdentity {
            kind: SourceKind::Oci,
            default_name: super::basename(dir),
            manifest_digest: Some(manifest_digest),
            config_digest: Some(config_digest),
            layers: Vec::new(),
        };
        Ok(Self { dir: dir.to_path_buf(), identity, layers, config })
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

fn choose<'a>(
    manifests: &'a [Descriptor],
    tag: Option<&str>,
    index_path: &Path,
) -> Result<&'a Descriptor, SourceError> {
    let tags = || manifests.iter().filter_map(ref_name).collect::<Vec<_>>().join(", ");
    match tag {
        Some(tag) => manifests.iter().find(|m| ref_name(m) == Some(tag)).ok_or_else(|| SourceError::Layout {
            path: index_path.to_path_buf(),
            reason: format!("no image tagged {tag:?} (tags: {})", tags()),
        }),
        // Without a tag: the one image, referrers (artifacts, e.g. bundles) aside.
        None => match manifests.iter().filter(|m| m.artifact_type().is_none()).collect::<Vec<_>>().as_slice() {
            [only] => Ok(*only),
            [] => Err(SourceError::Layout { path: index_path.to_path_buf(), reason: "index lists no images".into() }),
            _ => Err(SourceError::Layout {
                path: index_path.to_path_buf(),
                reason: format!("index lists {} images; name one with oci:DIR:TAG (tags: {})", manifests.len(), tags()),
            }),
        },
    }
}

/// The first manifest of an image index that serves `platform`; the error lists what there is.
pub(super) fn choose_platform<'a>(
    manifests: &'a [Descriptor],
    platform: &Platform,
    index_path: &Path,
) -> Result<&'a Descriptor, SourceError> {
    let of = |d: &Descriptor| {
        d.platform().as_ref().map(|p| (p.os().to_string(), p.architecture().to_string(), p.variant().clone()))
    };
    manifests
        .iter()
        .find(|d| of(d).is_some_and(|(os, arch, variant)| platform.matches(&os, &arch, variant.as_deref())))
        .ok_or_else(|| {
            let available: Vec<String> = manifests
                .iter()
                .filter_map(of)
                .map(|(os, arch, variant)| match variant {
                    Some(v) => format!("{os}/{arch}/{v}"),
                    None => format!("{os}/{arch}"),
                })
                .collect();
            SourceError::Layout {
                path: index_path.to_path_buf(),
                reason: format!(
                    "image index has no {platform} manifest (available: {})",
                    if available.is_empty() { "none with a platform".to_string() } else { available.join(", ") }
                ),
            }
        })
}

/// The layers of a checked image manifest, each with the diff_id its checked config gives;
/// `what_config` and `manifest_path` name the two in errors.
pub(super) fn manifest_layers(
    manifest: &ImageManifest,
    config: &ImageConfiguration,
    what_config: &str,
    manifest_path: &Path,
) -> Result<Vec<LayerDescriptor>, SourceError> {
    let diff_ids = diff_ids(config, what_config)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(SourceError::Layout {
            path: manifest_path.to_path_buf(),
            reason: format!(
                "manifest lists {} layers but the config has {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let media_type = layer.media_type().to_string();
        if !LAYER_TYPES.contains(&media_type.as_str()) {
            return Err(SourceError::Layout {
                path: manifest_path.to_path_buf(),
                reason: format!("layer {} has unsupported media type {media_type:?}", layer.digest()),
            });
        }
        let digest = parse_digest("layer descriptor", layer.digest().as_ref())?;
        layers.push(LayerDescriptor { label: digest.oci(), digest: Some(digest), size: Some(layer.size()), diff_id });
    }
    Ok(layers)
}

fn blob_path(dir: &Path, digest: &Sha256Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Reads a small blob and checks its size and digest before anyone parses it.
fn read_blob(dir: &Path, digest: &Sha256Digest, size: u64, what: &str) -> Result<Vec<u8>, SourceError> {
    let path = blob_path(dir, digest);
    let bytes = read_small(&path)?;
    let what = format!("{what} {}", path.display());
    if bytes.len() as u64 != size {
        return Err(SourceError::SizeMismatch { what, expected: size, actual: bytes.len() as u64 });
    }
    let actual = Sha256Digest::of(&bytes);
    if actual != *digest {
        return Err(SourceError::DigestMismatch { what, expected: *digest, actual });
    }
    Ok(bytes)
}
