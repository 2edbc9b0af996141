//! `docker-archive:` files as written by `docker save` and `skopeo copy`: an outer tar holding
//! `manifest.json`, the image config and one tar per layer. There is no registry manifest in such
//! an archive, so the image is identified by its config digest (the image id), which is checked
//! against the config's file name, and each layer by the config's diff_ids.

use super::{
    diff_ids, parse_json, read_small_from, ImageContent, ImageIdentity, ImageSource, LayerDescriptor, SourceError,
    SourceKind,
};
use crate::digest::Sha256Digest;
use crate::image::tar::{EntryKind, TarReader};
use oci_spec::image::ImageConfiguration;
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Where a member's content lies in the archive.
#[derive(Clone, Copy)]
struct Member {
    offset: u64,
    size: u64,
}

/// A docker archive, its members indexed.
pub(super) struct DockerArchive {
    file: PathBuf,
    identity: ImageIdentity,
    layers: Vec<LayerDescriptor>,
    /// Where each layer's member lies, by layer label (its member name).
    members: HashMap<String, Member>,
    config: ImageConfiguration,
}

impl ImageSource for DockerArchive {
    fn identity(&self) -> &ImageIdentity {
        &self.identity
    }

    fn content(&self) -> ImageContent<'_> {
        ImageContent::Layers(&self.layers)
    }

    fn open_layer(&self, layer: &LayerDescriptor) -> Result<Box<dyn Read + Send>, SourceError> {
        let member = self.members.get(&layer.label).copied().ok_or_else(|| SourceError::Layout {
            path: self.file.clone(),
            reason: format!("archive has no member {:?}", layer.label),
        })?;
        open_member(&self.file, member)
    }

    fn config(&self) -> Option<&ImageConfiguration> {
        Some(&self.config)
    }
}

impl DockerArchive {
    pub(super) fn open(file: &Path) -> Result<Self, SourceError> {
        let (identity, layers, members, config) = open(file)?;
        Ok(Self { file: file.to_path_buf(), identity, layers, members, config })
    }
}

type Opened = (ImageIdentity, Vec<LayerDescriptor>, HashMap<String, Member>, ImageConfiguration);

fn open(file: &Path) -> Result<Opened, SourceError> {
    let members = index_members(file)?;
    let get = |name: &str| -> Result<Member, SourceError> {
        members.get(name.trim_start_matches("./")).copied().ok_or_else(|| SourceError::Layout {
            path: file.to_path_buf(),
            reason: format!("archive has no member {name:?}"),
        })
    };
    let manifest_bytes = read_member(file, get("manifest.json")?)?;
    let manifests: Vec<ArchiveManifest> = parse_json(&format!("{}: manifest.json", file.display()), &manifest_bytes)?;
    let manifest = match manifests.as_slice() {
        [only] => only,
        _ => {
            return Err(SourceError::Layout {
                path: file.to_path_buf(),
                reason: format!("manifest.json lists {} images; exactly one is supported", manifests.len()),
            });
        }
    };
    let config_bytes = read_member(file, get(&manifest.config)?)?;
    // The config's digest is computed from the bytes read (and is the identity a signature
    // binds to), so the config parsed below is the one a verified image names.
    let config_digest = Sha256Digest::of(&config_bytes);
    if let Some(named) = digest_in_name(&manifest.config) {
        if named != config_digest {
            return Err(SourceError::DigestMismatch {
                what: format!("{}: config {}", file.display(), manifest.config),
                expected: named,
                actual: config_digest,
            });
        }
    }
    let config: ImageConfiguration =
        parse_json(&format!("{}: config {}", file.display(), manifest.config), &config_bytes)?;
    let diff_ids = diff_ids(&config, &format!("{}: config", file.display()))?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(SourceError::Layout {
            path: file.to_path_buf(),
            reason: format!(
                "manifest.json lists {} layers but the config has {} diff_ids",
                manifest.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    let mut layer_members = HashMap::new();
    for (name, diff_id) in manifest.layers.iter().zip(diff_ids) {
        let member = get(name)?;
        layer_members.insert(name.clone(), member);
        layers.push(LayerDescriptor {
            label: name.clone(),
            digest: digest_in_name(name),
            size: Some(member.size),
            diff_id,
        });
    }
    let default_name = manifest
        .repo_tags
        .as_ref()
        .and_then(|tags| tags.first())
        .map(|t| t.rsplit_once(':').map_or(t.as_str(), |(repo, _)| repo).to_string())
        .unwrap_or_else(|| {
            let base = super::basename(file);
            base.strip_suffix(".tar").map(str::to_string).unwrap_or(base)
        });
    let identity = ImageIdentity {
        kind: SourceKind::DockerArchive,
        default_name,
        manifest_digest: None,
        config_digest: Some(config_digest),
        layers: Vec::new(),
    };
    Ok((identity, layers, layer_members, config))
}

/// Lists the regular-file members of the archive and where their content starts.
fn index_members(file: &Path) -> Result<HashMap<String, Member>, SourceError> {
    let io_err = |source| SourceError::Io { path: file.to_path_buf(), source };
    let handle = File::open(file).map_err(io_err)?;
    let mut tar = TarReader::new(BufReader::new(handle));
    let mut members = HashMap::new();
    let layout = |reason: String| SourceError::Layout { path: file.to_path_buf(), reason };
    while let Some(entry) = tar.next_entry().map_err(|e| layout(format!("not a readable docker archive: {e}")))? {
        if entry.kind == EntryKind::File {
            let name = String::from_utf8_lossy(&entry.path).trim_start_matches("./").to_string();
            members.insert(name, Member { offset: tar.offset(), size: entry.size });
        }
    }
    Ok(members)
}

fn open_member(file: &Path, member: Member) -> Result<Box<dyn Read + Send>, SourceError> {
    let io_err = |source| SourceError::Io { path: file.to_path_buf(), source };
    let mut handle = File::open(file).map_err(io_err)?;
    handle.seek(SeekFrom::Start(member.offset)).map_err(io_err)?;
    Ok(Box::new(handle.take(member.size)))
}

fn read_member(file: &Path, member: Member) -> Result<Vec<u8>, SourceError> {
    read_small_from(&PathBuf::from(file), open_member(file, member)?)
}

/// The digest a member's name claims: `<hex>.json`, `blobs/sha256/<hex>` or `<hex>/layer.tar`
/// (the last is a layer id, not a content digest, so it is not used).
fn digest_in_name(name: &str) -> Option<Sha256Digest> {
    let name = name.trim_start_matches("./");
    let candidate = name.strip_prefix("blobs/sha256/").or_else(|| name.strip_suffix(".json"))?;
    Sha256Digest::parse_hex(candidate).ok()
}
