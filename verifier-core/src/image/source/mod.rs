//! Image sources, named the way skopeo names them: `oci:DIR[:TAG]`, `docker-archive:FILE`,
//! `dir:PATH` and `docker://HOST/REPO[:TAG|@DIGEST]` (a registry), each behind [`ImageSource`]: the image's identity (the digests a signature binds
//! to), its layers (each with the blob digest, size and diff_id it must have) and a way to open a
//! layer's blob. [`open`] is the one place a reference becomes a source; a registry or a local
//! store is one more implementation and one more arm there. [`scan`] and the unpacker are generic
//! over the trait: a layer is only trusted once its stream ended with the right blob digest and
//! diff_id, and JSON documents are only parsed once their size and digest are checked.

mod dir;
mod docker_archive;
mod oci;
#[cfg(feature = "registry-client")]
pub(crate) mod registry;

use crate::digest::{DigestError, Sha256Digest};
use crate::image::apply::hash::HashApplier;
use crate::image::platform::Platform;
use crate::image::stream::{BlobSummary, LayerStream};
use crate::image::tar::TarReader;
use crate::image::tree::{Applier, FileTree, LayerError};
use crate::manifest::FileEntry;
use crate::progress::Progress;
use serde::Serialize;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ::registry::{Access as RegistryAccess, Credentials as RegistryCredentials, Reference as RegistryReference};
pub use oci_spec::image::ImageConfiguration;
/// For the store's pull (blobs kept without unpacking): a registry image's manifest, chosen for
/// the platform and checked, with the connected registry.
#[cfg(feature = "registry-client")]
pub use registry::resolve as resolve_registry;

/// Largest JSON document (index, manifest, config) read into memory.
pub(crate) const MAX_JSON: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("bad image reference {0:?}: expected oci:DIR[:TAG], docker-archive:FILE, dir:PATH or docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]")]
    BadReference(String),
    #[error("bad image reference")]
    BadRegistryReference(#[source] ::registry::ReferenceError),
    #[error("{0}: this build of imgsign has no registry support (verifier-core feature registry-client)")]
    NoRegistrySupport(String),
    #[cfg(feature = "registry-client")]
    #[error("registry image {reference}")]
    Registry {
        reference: String,
        #[source]
        source: ::registry::RegistryError,
    },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("{what}: invalid JSON")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: bad digest")]
    Digest {
        what: String,
        #[source]
        source: DigestError,
    },
    #[error("{what}: digest mismatch: descriptor says {expected}, content is {actual}")]
    DigestMismatch { what: String, expected: Sha256Digest, actual: Sha256Digest },
    #[error("{what}: size mismatch: descriptor says {expected} bytes, content is {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("layer {index} ({digest}): uncompressed digest {actual} does not match the config's diff_id {expected}")]
    DiffIdMismatch { index: usize, digest: String, expected: Sha256Digest, actual: Sha256Digest },
    #[error("layer {index} ({digest})")]
    Layer {
        index: usize,
        digest: String,
        #[source]
        source: LayerError,
    },
    #[error("layer {index} ({digest}): cannot decompress")]
    Decompress {
        index: usize,
        digest: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unsupported file type {kind}")]
    UnsupportedFile { path: PathBuf, kind: &'static str },
}

impl SourceError {
    /// True when the image's bytes contradict the digests that name them (tampering or damage),
    /// as opposed to a reference or file that cannot be read at all.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            SourceError::DigestMismatch { .. } | SourceError::SizeMismatch { .. } | SourceError::DiffIdMismatch { .. }
        ) || self.is_registry_integrity()
    }

    #[cfg(feature = "registry-client")]
    fn is_registry_integrity(&self) -> bool {
        matches!(self, SourceError::Registry { source, .. } if source.is_integrity())
    }

    #[cfg(not(feature = "registry-client"))]
    fn is_registry_integrity(&self) -> bool {
        false
    }
}

/// Where an image comes from. An OCI layout or a registry may hold an index of several
/// platforms: `platform` chooses among them (linux/amd64 unless [`ImageRef::with_platform`] says
/// otherwise). A registry reference carries how to reach the registry (TLS, credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Oci { dir: PathBuf, tag: Option<String>, platform: Platform },
    DockerArchive { file: PathBuf },
    Dir { path: PathBuf },
    Registry { reference: RegistryReference, platform: Platform, access: RegistryAccess },
}

impl ImageRef {
    /// The same reference, choosing `platform` where the source holds several (OCI indexes).
    pub fn with_platform(self, platform: Platform) -> Self {
        match self {
            ImageRef::Oci { dir, tag, .. } => ImageRef::Oci { dir, tag, platform },
            ImageRef::Registry { reference, access, .. } => ImageRef::Registry { reference, platform, access },
            other => other,
        }
    }

    /// The same reference, reaching a registry with `access` (no change to other sources).
    pub fn with_registry_access(self, access: RegistryAccess) -> Self {
        match self {
            ImageRef::Registry { reference, platform, .. } => ImageRef::Registry { reference, platform, access },
            other => other,
        }
    }
}

impl std::str::FromStr for ImageRef {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, SourceError> {
        let bad = || SourceError::BadReference(s.to_string());
        if let Some(rest) = s.strip_prefix("docker://") {
            let reference = rest.parse().map_err(SourceError::BadRegistryReference)?;
            return Ok(ImageRef::Registry {
                reference,
                platform: Platform::default(),
                access: RegistryAccess::default(),
            });
        }
        let (transport, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match transport {
            "oci" => {
                // The tag follows the last ':' unless that would leave a path ending in '/'.
                let (dir, tag) = match rest.rsplit_once(':') {
                    Some((dir, tag)) if !dir.is_empty() && !tag.is_empty() && !tag.contains('/') => {
                        (dir, Some(tag.to_string()))
                    }
                    _ => (rest, None),
                };
                Ok(ImageRef::Oci { dir: dir.into(), tag, platform: Platform::default() })
            }
            "docker-archive" => Ok(ImageRef::DockerArchive { file: rest.into() }),
            "dir" => Ok(ImageRef::Dir { path: rest.into() }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Oci { dir, tag: Some(tag), .. } => write!(f, "oci:{}:{tag}", dir.display()),
            ImageRef::Oci { dir, tag: None, .. } => write!(f, "oci:{}", dir.display()),
            ImageRef::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
            ImageRef::Dir { path } => write!(f, "dir:{}", path.display()),
            ImageRef::Registry { reference, .. } => write!(f, "docker://{reference}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Oci,
    DockerArchive,
    Dir,
    Registry,
}

/// Digests of one layer, as named by the image and as read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerDigests {
    /// The blob's digest (compressed, as stored).
    pub digest: Sha256Digest,
    /// The uncompressed tar's digest, as the config's `rootfs.diff_ids` names it.
    pub diff_id: Sha256Digest,
}

/// What identifies an image: the digests a signature is bound to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIdentity {
    pub kind: SourceKind,
    /// A name derived from the source, used when the signer gives none.
    pub default_name: String,
    /// The OCI image manifest digest (not known for docker-archive and dir sources).
    pub manifest_digest: Option<Sha256Digest>,
    /// The image config digest (the "image id"); not for dir sources.
    pub config_digest: Option<Sha256Digest>,
    pub layers: Vec<LayerDigests>,
}

/// An image read end to end: identity plus the flattened, sorted per-file manifest.
pub struct ScannedImage {
    pub identity: ImageIdentity,
    pub files: Vec<FileEntry>,
}

/// One layer as the image describes it: what its blob must be and what it must decompress to.
#[derive(Debug, Clone)]
pub struct LayerDescriptor {
    /// How the layer is named in messages (its descriptor digest, or its archive member).
    pub label: String,
    /// The blob's digest, when the image names it (a docker-archive `<id>/layer.tar` does not).
    pub digest: Option<Sha256Digest>,
    /// The blob's size, when known before reading it.
    pub size: Option<u64>,
    /// The digest of the uncompressed tar (the config's diff_id).
    pub diff_id: Sha256Digest,
}

/// What an image is made of.
pub enum ImageContent<'a> {
    /// Layer blobs, applied in order.
    Layers(&'a [LayerDescriptor]),
    /// A plain directory tree (`dir:`), read as it is.
    Directory(&'a Path),
}

/// An image, opened: identity, layers, blobs. Implementations check everything they parse
/// (size caps, digests, media types) before they return it; layer blobs are checked by the
/// caller as they stream (see [`read_layers`]).
pub trait ImageSource: Send + Sync {
    /// The digests a signature binds to (`layers` is filled in as layers are read and checked).
    fn identity(&self) -> &ImageIdentity;
    /// The image's layers, or its directory.
    fn content(&self) -> ImageContent<'_>;
    /// Opens the raw blob of one of [`ImageContent::Layers`] (compressed as stored).
    fn open_layer(&self, layer: &LayerDescriptor) -> Result<Box<dyn Read + Send>, SourceError>;
    /// The image config (entrypoint, cmd, env, working directory, user), parsed only after its
    /// blob was read under the size cap and matched the digest that names it: for an OCI layout,
    /// the config descriptor of the image manifest (itself digest-checked against the index, so
    /// the manifest digest a signature binds to binds the config too); for a docker archive, the
    /// config's own digest is the image's identity ([`ImageIdentity::config_digest`]). `None`
    /// for a `dir:` image, which has no config. A signed statement covers the config only through
    /// that binding: the per-file manifest says nothing of it.
    fn config(&self) -> Option<&ImageConfiguration> {
        None
    }
}

/// Opens the image a reference names.
pub fn open(image: &ImageRef) -> Result<Box<dyn ImageSource>, SourceError> {
    Ok(match image {
        ImageRef::Oci { dir, tag, platform } => Box::new(oci::OciLayout::open(dir, tag.as_deref(), platform)?),
        ImageRef::DockerArchive { file } => Box::new(docker_archive::DockerArchive::open(file)?),
        ImageRef::Dir { path } => Box::new(dir::DirSource::open(path)?),
        #[cfg(feature = "registry-client")]
        ImageRef::Registry { reference, platform, access } => {
            Box::new(registry::RegistrySource::open(reference, platform, access)?)
        }
        #[cfg(not(feature = "registry-client"))]
        ImageRef::Registry { .. } => return Err(SourceError::NoRegistrySupport(image.to_string())),
    })
}

/// Reads an image and computes its manifest.
pub fn scan(image: &ImageRef, progress: Arc<dyn Progress>) -> Result<ScannedImage, SourceError> {
    scan_source(open(image)?.as_ref(), progress)
}

/// Computes the manifest of an opened image (the hashing applier over its layers).
pub fn scan_source(source: &dyn ImageSource, progress: Arc<dyn Progress>) -> Result<ScannedImage, SourceError> {
    match source.content() {
        ImageContent::Directory(path) => dir::scan(path, source.identity().clone(), progress),
        ImageContent::Layers(_) => {
            let mut tree = FileTree::new();
            let identity = read_layers(source, &mut tree, &mut HashApplier::new(), progress)?;
            Ok(ScannedImage { identity, files: flatten(tree)? })
        }
    }
}

/// The sorted manifest of a tree every layer was applied to.
pub(crate) fn flatten<C: crate::image::tree::LeafContent>(tree: FileTree<C>) -> Result<Vec<FileEntry>, SourceError> {
    tree.into_manifest().map_err(|source| SourceError::Layer { index: 0, digest: "flattened tree".into(), source })
}

/// Streams every layer of `source` through the layer rules into `tree`, with `applier` doing
/// what it does with each change, and checks each blob's digest, size and diff_id. Returns the
/// identity with the layer digests as read.
pub fn read_layers<A: Applier>(
    source: &dyn ImageSource,
    tree: &mut FileTree<A::Content>,
    applier: &mut A,
    progress: Arc<dyn Progress>,
) -> Result<ImageIdentity, SourceError> {
    let mut identity = source.identity().clone();
    let ImageContent::Layers(layers) = source.content() else {
        return Err(SourceError::Layout { path: identity.default_name.into(), reason: "not a layered image".into() });
    };
    let total: u64 = layers.iter().filter_map(|l| l.size).sum();
    progress.begin("reading layers", Some(total).filter(|&t| t > 0));
    for (index, layer) in layers.iter().enumerate() {
        let label = layer.label.clone();
        let raw = source.open_layer(layer)?;
        let mut tar = TarReader::new(LayerStream::spawn(raw, progress.clone()));
        let applied = tree.apply_layer(index, &mut tar, applier);
        // The blob's digest decides whether what was just read can be trusted, so it is checked
        // first: damage shows up as a digest mismatch, not as whatever the damage broke.
        let summary =
            tar.into_inner().finish().map_err(|source| SourceError::Io { path: label.clone().into(), source })?;
        check_blob(index, layer, &summary)?;
        let diff_id = match summary.decoded {
            Ok((diff_id, _)) => diff_id,
            Err(source) => return Err(SourceError::Decompress { index, digest: label, source }),
        };
        if layer.diff_id != diff_id {
            return Err(SourceError::DiffIdMismatch { index, digest: label, expected: layer.diff_id, actual: diff_id });
        }
        applied.map_err(|source| SourceError::Layer { index, digest: label.clone(), source })?;
        identity.layers.push(LayerDigests { digest: summary.blob_digest, diff_id });
    }
    progress.end();
    Ok(identity)
}

fn check_blob(index: usize, layer: &LayerDescriptor, summary: &BlobSummary) -> Result<(), SourceError> {
    if let Some(size) = layer.size {
        if size != summary.blob_size {
            return Err(SourceError::SizeMismatch {
                what: format!("layer {index} ({})", layer.label),
                expected: size,
                actual: summary.blob_size,
            });
        }
    }
    if let Some(expected) = layer.digest {
        if expected != summary.blob_digest {
            return Err(SourceError::DigestMismatch {
                what: format!("layer {index} ({})", layer.label),
                expected,
                actual: summary.blob_digest,
            });
        }
    }
    Ok(())
}

/// Reads at most [`MAX_JSON`] bytes of a file.
pub(crate) fn read_small(path: &Path) -> Result<Vec<u8>, SourceError> {
    let file = std::fs::File::open(path).map_err(|source| SourceError::Io { path: path.to_path_buf(), source })?;
    read_small_from(path, file)
}

/// Reads at most [`MAX_JSON`] bytes from a reader; `path` names it in errors.
pub(crate) fn read_small_from(path: &Path, reader: impl Read) -> Result<Vec<u8>, SourceError> {
    let io_err = |source| SourceError::Io { path: path.to_path_buf(), source };
    let mut data = Vec::new();
    reader.take(MAX_JSON + 1).read_to_end(&mut data).map_err(io_err)?;
    if data.len() as u64 > MAX_JSON {
        return Err(SourceError::Layout { path: path.to_path_buf(), reason: format!("larger than {MAX_JSON} bytes") });
    }
    Ok(data)
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, SourceError> {
    serde_json::from_slice(bytes).map_err(|source| SourceError::Json { what: what.to_string(), source })
}

pub(crate) fn parse_digest(what: &str, s: &str) -> Result<Sha256Digest, SourceError> {
    Sha256Digest::parse_oci(s).map_err(|source| SourceError::Digest { what: what.to_string(), source })
}

/// The diff_ids of an image config (`rootfs.type` must be `layers`), each a sha256 digest.
pub(crate) fn diff_ids(
    config: &oci_spec::image::ImageConfiguration,
    what: &str,
) -> Result<Vec<Sha256Digest>, SourceError> {
    let rootfs = config.rootfs();
    if rootfs.typ() != "layers" {
        return Err(SourceError::Layout {
            path: what.into(),
            reason: format!("rootfs type {:?} is not \"layers\"", rootfs.typ()),
        });
    }
    rootfs.diff_ids().iter().map(|d| parse_digest(what, d)).collect()
}

pub(crate) fn basename(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    canonical.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            "oci:/x/y:latest".parse::<ImageRef>().unwrap(),
            ImageRef::Oci { dir: "/x/y".into(), tag: Some("latest".into()), platform: Platform::default() }
        );
        assert_eq!(
            "oci:/x/y".parse::<ImageRef>().unwrap(),
            ImageRef::Oci { dir: "/x/y".into(), tag: None, platform: Platform::default() }
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<ImageRef>().unwrap(),
            ImageRef::DockerArchive { file: "a.tar".into() }
        );
        assert_eq!("dir:/usr/bin".parse::<ImageRef>().unwrap(), ImageRef::Dir { path: "/usr/bin".into() });
        assert!("docker://x".parse::<ImageRef>().is_err());
        let ImageRef::Registry { reference, .. } = "docker://127.0.0.1:5000/a/b:t".parse::<ImageRef>().unwrap() else {
            panic!("not a registry reference")
        };
        assert_eq!(reference.to_string(), "127.0.0.1:5000/a/b:t");
        assert_eq!(
            "docker://127.0.0.1:5000/a/b:t".parse::<ImageRef>().unwrap().to_string(),
            "docker://127.0.0.1:5000/a/b:t"
        );
        assert!("oci:".parse::<ImageRef>().is_err());
        assert!("/plain/path".parse::<ImageRef>().is_err());
    }
}
