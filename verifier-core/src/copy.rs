//! Copying an image, with the bundles attached to it, between a registry and an OCI layout on a
//! disk (`imgsign copy docker://HOST/REPO:TAG oci:DIR:TAG` and back), for nodes fed without a
//! network: `verify`, `run` and the store read the layout directly and discover its bundles, or
//! the layout is pushed to a registry near the node.
//!
//! Into a layout: the image manifest chosen for the platform is copied byte for byte (its digest, which the
//! signatures bind, is unchanged), with its config and layers. Every blob streams into a temporary
//! file beside its final name and is renamed into `blobs/sha256/` only once its size and digest
//! are the descriptor's; a blob already there is kept only if it hashes to its name. The bundles
//! attached to the manifest in the registry (OCI referrers) that parse as bundles are copied as
//! the same artifacts (empty config, the bundle layer, the manifest naming the image as its
//! subject) and listed in `index.json` with their `artifactType`, as the OCI image layout lists
//! referrers. `index.json` is replaced whole (the tag's old entry dropped), and only after every
//! blob it names is in place, so a failed copy leaves the layout as it was (plus, at most, its
//! `oci-layout` marker and blobs that are complete and correct).
//!
//! Between two registries: down into a temporary layout, then up (every blob checked on the way).
//!
//! Into a registry: the layout's image manifest (checked against the digest its index names)
//! is pushed byte for byte under the destination tag after its config and layers (streamed from
//! their files; the registry refuses a blob that does not hash to its name), then each bundle
//! the layout lists for it is attached as a referrer (see [`crate::referrers`]).

use crate::bundle::{CheckedBundle, BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES};
use crate::digest::Sha256Digest;
use crate::image::source::registry::{from_registry, resolve, to_registry};
use crate::referrers::MAX_REFERRERS;
use crate::source::{ImageRef, SourceError};
use atomic_file::{AtomicFile, AtomicFileError};
use registry::{Registry, RegistryError, Target};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const EMPTY: &[u8] = b"{}";

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot copy {src} to {dst}: copy goes from a registry image (docker://...) or an OCI layout (oci:DIR[:TAG]) to an OCI layout with a tag (oci:DIR:TAG) or a registry tag (docker://HOST/REPO:TAG)")]
    Unsupported { src: String, dst: String },
    #[error("resolving {image}")]
    Resolve {
        image: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("reading {image}")]
    Registry {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: digest mismatch: descriptor says {expected}, the registry sent {actual}")]
    DigestMismatch { what: String, expected: Sha256Digest, actual: Sha256Digest },
    #[error("{what}: size mismatch: descriptor says {expected} bytes, the registry sent {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what}: the transfer failed")]
    Transfer {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Write(#[from] AtomicFileError),
}

/// What a copy did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Copied {
    /// The image manifest digest (the same at the source and in the layout).
    pub manifest_digest: Sha256Digest,
    /// Blobs written, and blobs that were already in the layout (and hashed to their names).
    pub blobs_written: usize,
    pub blobs_present: usize,
    /// Bundles copied along (referrer manifest digests).
    pub bundles: Vec<String>,
    /// Referrers of the bundle type left behind: (digest, reason).
    pub skipped: Vec<(String, String)>,
}

/// Copies `src` to `dst`: a registry image into an OCI layout (created if missing), or an OCI
/// layout's image into a registry repository under a tag.
pub fn copy(src: &ImageRef, dst: &ImageRef) -> Result<Copied, CopyError> {
    match (src, dst) {
        (ImageRef::Registry { .. }, ImageRef::Oci { dir, tag: Some(tag), .. }) => into_layout(src, dir, tag),
        (ImageRef::Oci { dir, .. }, ImageRef::Registry { reference, access, .. })
            if matches!(reference.target(), Target::Tag(_)) =>
        {
            into_registry(src, dir, dst, reference, access)
        }
        // Registry to registry: through a temporary layout (removed after), so that every blob is
        // checked on the way down before it is offered to the destination.
        (ImageRef::Registry { platform, .. }, ImageRef::Registry { reference, access, .. })
            if matches!(reference.target(), Target::Tag(_)) =>
        {
            let staging = tempfile::Builder::new()
                .prefix("imgsign-copy-")
                .tempdir()
                .map_err(|source| CopyError::Io { path: std::env::temp_dir(), source })?;
            let dir = staging.path().join("layout");
            let via = ImageRef::Oci { dir: dir.clone(), tag: Some("copy".into()), platform: platform.clone() };
            let down = into_layout(src, &dir, "copy")?;
            let mut up = into_registry(&via, &dir, dst, reference, access)?;
            up.skipped.extend(down.skipped);
            Ok(up)
        }
        _ => Err(CopyError::Unsupported { src: src.to_string(), dst: dst.to_string() }),
    }
}

fn into_layout(src: &ImageRef, dir: &Path, tag: &str) -> Result<Copied, CopyError> {
    let ImageRef::Registry { reference, platform, access } = src else {
        unreachable!("copy dispatches registry sources here")
    };
    let image = src.to_string();
    let (registry, manifest) = resolve(reference, platform, access)
        .map_err(|source| CopyError::Resolve { image: image.clone(), source: Box::new(source) })?;
    let wrap = |source| CopyError::Registry { image: image.clone(), source: Box::new(source) };
    let subject = from_registry(&manifest.digest);
    let parsed = json_of(&format!("image manifest {subject}"), &manifest.bytes)?;
    let manifest_type = parsed["mediaType"]
        .as_str()
        .map(str::to_string)
        .or(manifest.media_type.clone())
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());

    let layout = Layout::create(dir)?;
    let mut copied = Copied {
        manifest_digest: subject,
        blobs_written: 0,
        blobs_present: 0,
        bundles: Vec::new(),
        skipped: Vec::new(),
    };
    let mut descriptors = vec![descriptor(&parsed["config"], "config")?];
    for layer in parsed["layers"].as_array().map(Vec::as_slice).unwrap_or_default() {
        descriptors.push(descriptor(layer, "layer")?);
    }
    for (digest, size) in descriptors {
        let written = layout.blob_from(&registry, digest, size)?;
        *if written { &mut copied.blobs_written } else { &mut copied.blobs_present } += 1;
    }
    layout.blob_bytes(subject, &manifest.bytes)?;

    let mut entries = vec![json!({
        "mediaType": manifest_type,
        "digest": subject.oci(),
        "size": manifest.bytes.len(),
        "annotations": {REF_NAME: tag},
    })];
    let referrers = registry.referrers(to_registry(&subject), BUNDLE_MEDIA_TYPE).map_err(wrap)?;
    for (i, referrer) in referrers.into_iter().enumerate() {
        let digest = from_registry(&referrer.digest);
        if i >= MAX_REFERRERS {
            copied.skipped.push((digest.oci(), format!("not examined: more than {MAX_REFERRERS} bundles")));
            continue;
        }
        let payload = registry.referrer_payload(&referrer, BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES as u64).map_err(wrap)?;
        if let Err(e) = CheckedBundle::parse(&payload) {
            copied.skipped.push((digest.oci(), format!("not a bundle: {e}")));
            continue;
        }
        let artifact = registry.manifest(&Target::Digest(referrer.digest), Some(referrer.size)).map_err(wrap)?;
        layout.blob_bytes(Sha256Digest::of(EMPTY), EMPTY)?;
        layout.blob_bytes(Sha256Digest::of(&payload), &payload)?;
        layout.blob_bytes(digest, &artifact.bytes)?;
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest.oci(),
            "size": artifact.bytes.len(),
            "artifactType": BUNDLE_MEDIA_TYPE,
        }));
        copied.bundles.push(digest.oci());
    }
    layout.update_index(tag, entries)?;
    Ok(copied)
}

fn into_registry(
    src: &ImageRef,
    dir: &Path,
    dst: &ImageRef,
    reference: &registry::Reference,
    access: &registry::Access,
) -> Result<Copied, CopyError> {
    let found = crate::referrers::layout_bundles(src, dir)
        .map_err(|e| CopyError::Invalid { what: src.to_string(), reason: crate::referrers::error_chain(&e) })?;
    let subject = found.subject;
    let layout = Layout { dir: dir.to_path_buf() };
    let manifest_bytes = layout.read_checked(subject, 4 << 20)?;
    let parsed = json_of(&format!("image manifest {subject}"), &manifest_bytes)?;
    let manifest_type =
        parsed["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json").to_string();
    let image = dst.to_string();
    let wrap = |source| CopyError::Registry { image: image.clone(), source: Box::new(source) };
    let mut registry = Registry::connect(reference, access).map_err(wrap)?;
    registry.enable_push().map_err(wrap)?;
    let mut copied = Copied {
        manifest_digest: subject,
        blobs_written: 0,
        blobs_present: 0,
        bundles: Vec::new(),
        skipped: found.rejected,
    };
    let mut descriptors = vec![descriptor(&parsed["config"], "config")?];
    for layer in parsed["layers"].as_array().map(Vec::as_slice).unwrap_or_default() {
        descriptors.push(descriptor(layer, "layer")?);
    }
    for (digest, size) in descriptors {
        let path = layout.blob_path(&digest);
        let file = std::fs::File::open(&path).map_err(|source| CopyError::Io { path: path.clone(), source })?;
        let pushed = registry.push_blob_from(to_registry(&digest), size, file).map_err(wrap)?;
        *if pushed { &mut copied.blobs_written } else { &mut copied.blobs_present } += 1;
    }
    registry.push_manifest(reference.target(), manifest_bytes, &manifest_type).map_err(wrap)?;
    for (bytes, _) in &found.bundles {
        let (digest, _) =
            registry.push_referrer(to_registry(&subject), BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE, bytes).map_err(wrap)?;
        copied.bundles.push(digest.to_string());
    }
    Ok(copied)
}

fn json_of(what: &str, bytes: &[u8]) -> Result<Value, CopyError> {
    serde_json::from_slice(bytes).map_err(|e| CopyError::Invalid { what: what.to_string(), reason: format!("{e}") })
}

fn descriptor(value: &Value, what: &str) -> Result<(Sha256Digest, u64), CopyError> {
    let digest = value["digest"].as_str().and_then(|d| Sha256Digest::parse_oci(d).ok());
    match (digest, value["size"].as_u64()) {
        (Some(digest), Some(size)) => Ok((digest, size)),
        _ => Err(CopyError::Invalid { what: format!("{what} descriptor"), reason: "no sha256 digest or size".into() }),
    }
}

/// An OCI image layout being written.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn create(dir: &Path) -> Result<Self, CopyError> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|source| CopyError::Io { path: blobs.clone(), source })?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            atomic_file::replace_file(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// A blob of at most `limit` bytes, read and checked against its name.
    fn read_checked(&self, digest: Sha256Digest, limit: u64) -> Result<Vec<u8>, CopyError> {
        let path = self.blob_path(&digest);
        let file = std::fs::File::open(&path).map_err(|source| CopyError::Io { path: path.clone(), source })?;
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).map_err(|source| CopyError::Io { path: path.clone(), source })?;
        let what = path.display().to_string();
        if bytes.len() as u64 > limit {
            return Err(CopyError::Invalid { what, reason: format!("larger than {limit} bytes") });
        }
        let actual = Sha256Digest::of(&bytes);
        if actual != digest {
            return Err(CopyError::Invalid { what, reason: format!("its content is {actual}, not {digest}") });
        }
        Ok(bytes)
    }

    /// True if the blob is there and hashes to its name (a damaged one is replaced).
    fn has(&self, digest: &Sha256Digest, size: u64) -> bool {
        let path = self.blob_path(digest);
        let Ok(file) = std::fs::File::open(&path) else { return false };
        let mut hasher = HashWriter::default();
        io::copy(&mut file.take(size + 1), &mut hasher).is_ok() && hasher.finish() == (*digest, size)
    }

    /// Streams the blob from the registry unless the layout has it; true if it was written.
    fn blob_from(&self, registry: &Registry, digest: Sha256Digest, size: u64) -> Result<bool, CopyError> {
        if self.has(&digest, size) {
            return Ok(false);
        }
        let what = format!("blob {digest}");
        let mut reader = registry
            .blob(to_registry(&digest), size)
            .map_err(|source| CopyError::Registry { image: what.clone(), source: Box::new(source) })?;
        let path = self.blob_path(&digest);
        let mut out = HashWriter { file: Some(AtomicFile::create(&path, 0o644)?), ..HashWriter::default() };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(CopyError::Transfer { what, source }),
            };
            out.write_all(&buf[..n]).map_err(|source| CopyError::Io { path: path.clone(), source })?;
        }
        let file = out.file.take();
        let (actual, read) = out.finish();
        if read != size {
            return Err(CopyError::SizeMismatch { what, expected: size, actual: read });
        }
        if actual != digest {
            return Err(CopyError::DigestMismatch { what, expected: digest, actual });
        }
        file.expect("the writer holds its file until finish").commit()?;
        Ok(true)
    }

    /// Writes bytes already checked against `digest` (unless the layout has them).
    fn blob_bytes(&self, digest: Sha256Digest, bytes: &[u8]) -> Result<(), CopyError> {
        if !self.has(&digest, bytes.len() as u64) {
            atomic_file::replace_file(&self.blob_path(&digest), bytes, 0o644)?;
        }
        Ok(())
    }

    /// Replaces `index.json`: its entries but the old one of `tag` and those listed again, then
    /// `entries`.
    fn update_index(&self, tag: &str, entries: Vec<Value>) -> Result<(), CopyError> {
        let path = self.dir.join("index.json");
        let mut index = match std::fs::read(&path) {
            Ok(bytes) => json_of(&path.display().to_string(), &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => json!({"schemaVersion": 2, "manifests": []}),
            Err(source) => return Err(CopyError::Io { path, source }),
        };
        let Some(listed) = index["manifests"].as_array_mut() else {
            return Err(CopyError::Invalid { what: path.display().to_string(), reason: "not an image index".into() });
        };
        listed.retain(|e| {
            e["annotations"][REF_NAME].as_str() != Some(tag) && !entries.iter().any(|n| n["digest"] == e["digest"])
        });
        listed.extend(entries);
        index["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
        let bytes = serde_json::to_vec(&index).expect("JSON of a Value");
        atomic_file::replace_file(&path, &bytes, 0o644)?;
        Ok(())
    }
}

/// Hashes and counts what is written, passing it on to a file when it has one.
#[derive(Default)]
struct HashWriter {
    file: Option<AtomicFile>,
    hasher: Sha256,
    written: u64,
}

impl HashWriter {
    fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.hasher.finalize().into()), self.written)
    }
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.file.as_mut() {
            Some(file) => file.write(buf)?,
            None => buf.len(),
        };
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}
