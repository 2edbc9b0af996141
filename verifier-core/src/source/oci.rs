//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/...`) as written by umoci, skopeo
//! and buildah. Index, manifest and config are checked against their digests before they are
//! parsed; layers are checked as they stream.

use super::{parse_digest, parse_json, read_small, ImageConfig, ImageIdentity, LayerBlob, SourceError, SourceKind};
use crate::digest::Sha256Digest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const MANIFEST_TYPES: &[&str] =
    &["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

pub(super) fn open(dir: &Path, tag: Option<&str>) -> Result<(ImageIdentity, Vec<LayerBlob>), SourceError> {
    let layout_file = dir.join("oci-layout");
    if !layout_file.is_file() {
        return Err(SourceError::Layout {
            path: dir.to_path_buf(),
            reason: "not an OCI image layout (no oci-layout file)".into(),
        });
    }
    let index_path = dir.join("index.json");
    let index: Index = parse_json(&index_path.display().to_string(), &read_small(&index_path)?)?;
    let chosen = choose(&index.manifests, tag, &index_path)?;
    let mut descriptor_digest = parse_digest("index.json", &chosen.digest)?;
    let mut media_type = chosen.media_type.clone();
    let mut size = chosen.size;
    // Follow one level of image index to the linux/amd64 manifest.
    if INDEX_TYPES.contains(&media_type.as_str()) {
        let nested: Index =
            parse_json("nested image index", &read_blob(dir, &descriptor_digest, size, "image index")?)?;
        let platform = nested
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
            .ok_or_else(|| SourceError::Layout {
                path: index_path.clone(),
                reason: "image index has no linux/amd64 manifest".into(),
            })?;
        descriptor_digest = parse_digest("image index", &platform.digest)?;
        media_type = platform.media_type.clone();
        size = platform.size;
    }
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(SourceError::Layout {
            path: index_path,
            reason: format!("unsupported manifest media type {media_type:?}"),
        });
    }
    let manifest_bytes = read_blob(dir, &descriptor_digest, size, "image manifest")?;
    let manifest: Manifest = parse_json(&format!("image manifest {descriptor_digest}"), &manifest_bytes)?;
    let config_digest = parse_digest("image manifest config", &manifest.config.digest)?;
    let config_bytes = read_blob(dir, &config_digest, manifest.config.size, "image config")?;
    let config: ImageConfig = parse_json(&format!("image config {config_digest}"), &config_bytes)?;
    let diff_ids = config.diff_ids(&format!("image config {config_digest}"))?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(SourceError::Layout {
            path: blob_path(dir, &descriptor_digest),
            reason: format!(
                "manifest lists {} layers but the config has {} diff_ids",
                manifest.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
        if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
            return Err(SourceError::Layout {
                path: blob_path(dir, &descriptor_digest),
                reason: format!("layer {} has unsupported media type {:?}", layer.digest, layer.media_type),
            });
        }
        let digest = parse_digest("layer descriptor", &layer.digest)?;
        let path = blob_path(dir, &digest);
        layers.push(LayerBlob {
            label: digest.oci(),
            open: Some(Box::new(move || {
                let file =
                    std::fs::File::open(&path).map_err(|source| SourceError::Io { path: path.clone(), source })?;
                Ok(Box::new(file) as Box<dyn std::io::Read + Send>)
            })),
            size: Some(layer.size),
            expected_digest: Some(digest),
            expected_diff_id: diff_id,
        });
    }
    let identity = ImageIdentity {
        kind: SourceKind::Oci,
        default_name: super::basename(dir),
        manifest_digest: Some(descriptor_digest),
        config_digest: Some(config_digest),
        layers: Vec::new(),
    };
    Ok((identity, layers))
}

fn choose<'a>(
    manifests: &'a [Descriptor],
    tag: Option<&str>,
    index_path: &Path,
) -> Result<&'a Descriptor, SourceError> {
    let tags = || manifests.iter().filter_map(|m| m.annotations.get(REF_NAME).cloned()).collect::<Vec<_>>().join(", ");
    match tag {
        Some(tag) => manifests
            .iter()
            .find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .ok_or_else(|| SourceError::Layout {
                path: index_path.to_path_buf(),
                reason: format!("no image tagged {tag:?} (tags: {})", tags()),
            }),
        None => match manifests {
            [only] => Ok(only),
            [] => Err(SourceError::Layout { path: index_path.to_path_buf(), reason: "index lists no images".into() }),
            _ => Err(SourceError::Layout {
                path: index_path.to_path_buf(),
                reason: format!("index lists {} images; name one with oci:DIR:TAG (tags: {})", manifests.len(), tags()),
            }),
        },
    }
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
