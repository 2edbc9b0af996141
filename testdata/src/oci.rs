//! Writes OCI image layouts from layer blobs given as bytes: `oci-layout`, `index.json`, the image
//! manifest, the config (with the diff_ids) and every blob under `blobs/sha256/`, each named by
//! its real digest, so that a reader gets as far as the layer content.

use crate::{io_err, oci_digest, FixtureError};
use serde_json::json;
use std::path::{Path, PathBuf};

pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One layer as stored: the blob, its media type and the config's diff_id for it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: &'static str,
    pub blob: Vec<u8>,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
}

impl Layer {
    /// An uncompressed tar layer.
    pub fn tar(tar: Vec<u8>) -> Self {
        Layer { media_type: LAYER_TAR, diff_id: oci_digest(&tar), blob: tar }
    }

    /// A gzip-compressed tar layer.
    pub fn gzip(tar: &[u8]) -> Self {
        Layer { media_type: LAYER_TAR_GZIP, diff_id: oci_digest(tar), blob: crate::gzip(tar) }
    }

    /// A layer with a blob and diff_id given as they are (for damaged blobs).
    pub fn raw(media_type: &'static str, blob: Vec<u8>, diff_id: String) -> Self {
        Layer { media_type, blob, diff_id }
    }

    pub fn digest(&self) -> String {
        oci_digest(&self.blob)
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub dir: PathBuf,
    pub tag: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

impl Written {
    /// `oci:DIR:TAG`.
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// Where a blob named by `digest` (`sha256:<hex>`) is stored.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }
}

pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// Writes an OCI layout at `dir` (created) holding one image, tagged `tag`, with `layers`.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Layer]) -> Result<Written, FixtureError> {
    write_layout_with_config(dir, tag, layers, json!({}))
}

/// [`write_layout`] with `process` as the image config's `config` object (Entrypoint, Cmd, Env,
/// WorkingDir, User, ...).
pub fn write_layout_with_config(
    dir: &Path,
    tag: &str,
    layers: &[Layer],
    process: serde_json::Value,
) -> Result<Written, FixtureError> {
    let image = write_image(dir, layers, ("linux", "amd64"), process)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.manifest_digest,
            "size": image.manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    write_layout_files(dir, &index)?;
    Ok(Written {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        manifest_digest: image.manifest_digest,
        config_digest: image.config_digest,
        layer_digests: image.layer_digests,
    })
}

/// One image of a multi-platform index: its platform as `OS/ARCH[/VARIANT]` and its layers.
pub struct PlatformImage<'a> {
    pub platform: &'a str,
    pub layers: &'a [Layer],
}

/// Writes an OCI layout at `dir` whose tag `tag` names an image index listing one manifest per
/// platform (each with its own config). Returns each platform's written image, in order.
pub fn write_platform_index(dir: &Path, tag: &str, images: &[PlatformImage<'_>]) -> Result<Vec<Written>, FixtureError> {
    let mut descriptors = Vec::new();
    let mut written = Vec::new();
    for image in images {
        let parts: Vec<&str> = image.platform.split('/').collect();
        let (os, arch) = (parts[0], parts[1]);
        let blobs = write_image(dir, image.layers, (os, arch), json!({}))?;
        let mut platform = json!({ "os": os, "architecture": arch });
        if let Some(variant) = parts.get(2) {
            platform["variant"] = json!(variant);
        }
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": blobs.manifest_digest,
            "size": blobs.manifest_size,
            "platform": platform,
        }));
        written.push(Written {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            manifest_digest: blobs.manifest_digest,
            config_digest: blobs.config_digest,
            layer_digests: blobs.layer_digests,
        });
    }
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    }))
    .expect("json");
    let nested_digest = write_blob(dir, &nested)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": nested_digest,
            "size": nested.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    write_layout_files(dir, &index)?;
    Ok(written)
}

/// Blobs of one image written under `dir`.
struct ImageBlobs {
    manifest_digest: String,
    manifest_size: usize,
    config_digest: String,
    layer_digests: Vec<String>,
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Result<String, FixtureError> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_err(format!("creating {}", blobs.display())))?;
    let digest = oci_digest(bytes);
    let path = blob_path(dir, &digest);
    std::fs::write(&path, bytes).map_err(io_err(format!("writing {}", path.display())))?;
    Ok(digest)
}

/// Writes the config, layers and manifest of one image.
fn write_image(
    dir: &Path,
    layers: &[Layer],
    (os, arch): (&str, &str),
    process: serde_json::Value,
) -> Result<ImageBlobs, FixtureError> {
    let config = json!({
        "architecture": arch,
        "os": os,
        "config": process,
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() },
        "history": [],
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = write_blob(dir, &config_bytes)?;
    let mut layer_digests = Vec::new();
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = write_blob(dir, &layer.blob)?;
        descriptors.push(json!({ "mediaType": layer.media_type, "digest": digest, "size": layer.blob.len() }));
        layer_digests.push(digest);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len() },
        "layers": descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let manifest_digest = write_blob(dir, &manifest_bytes)?;
    Ok(ImageBlobs { manifest_digest, manifest_size: manifest_bytes.len(), config_digest, layer_digests })
}

fn write_layout_files(dir: &Path, index: &serde_json::Value) -> Result<(), FixtureError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io_err(format!("writing {}", path.display())))
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write("index.json", &serde_json::to_vec(index).expect("json"))
}
