//! `imgsign pull`: a registry image's blobs (manifest, config, layers) and the bundles attached
//! to it, into the store's layout ([`crate::blobs`]) without unpacking, so that `--offline`
//! verify and run find it there. Layers come down in parallel (one registry connection per
//! worker: the client is blocking, one runtime each); each blob is size- and digest-checked
//! before it is stored; the index names the image only once every blob is in place.
//!
//! A second pull of the same digest costs nothing: by digest, the layout's index answers without
//! the network; by tag, one manifest request tells whether the tag still names what is stored.

use crate::blobs::{name_of, BlobError, Layout};
use registry::{Digest, Registry, RegistryError, Target};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use verifier_core::bundle::{CheckedBundle, BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES};
use verifier_core::digest::Sha256Digest;
use verifier_core::referrers::MAX_REFERRERS;
use verifier_core::source::{resolve_registry, ImageRef, SourceError};

/// Parallel layer transfers unless told otherwise.
pub const DEFAULT_JOBS: usize = 4;
/// Largest config blob of a bundle artifact.
const MAX_ARTIFACT_CONFIG: u64 = 64 << 10;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}: pull reads a registry image (docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX])")]
    NotRegistry(String),
    #[error("resolving {image}")]
    Resolve {
        image: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("pulling {image}")]
    Registry {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("pulling {image}: {what}: {reason}")]
    Invalid { image: String, what: String, reason: String },
    #[error("pulling {image}")]
    Blob {
        image: String,
        #[source]
        source: Box<BlobError>,
    },
}

/// What a pull did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pulled {
    /// The image manifest digest.
    pub digest: Sha256Digest,
    /// The names the layout lists it under.
    pub names: Vec<String>,
    /// True when the store had it all: nothing was fetched.
    pub already_stored: bool,
    pub blobs_fetched: usize,
    pub blobs_present: usize,
    pub bytes_fetched: u64,
    /// Bundles attached in the registry, kept beside the image.
    pub bundles: usize,
}

/// Pulls registry image `image` into the layout of store root `root`, `jobs` layers at a time.
pub fn pull(root: &Path, image: &ImageRef, jobs: usize) -> Result<Pulled, PullError> {
    let ImageRef::Registry { reference, platform, access } = image else {
        return Err(PullError::NotRegistry(image.to_string()));
    };
    let name = name_of(image).expect("a registry image has a name");
    let text = image.to_string();
    let blob_err = |source| PullError::Blob { image: text.clone(), source: Box::new(source) };
    let reg_err = |source| PullError::Registry { image: text.clone(), source: Box::new(source) };
    let invalid = |what: &str, reason: String| PullError::Invalid { image: text.clone(), what: what.into(), reason };
    let layout = Layout::create(root).map_err(blob_err)?;

    // By digest and listed already: nothing to ask the registry.
    if let Target::Digest(d) = reference.target() {
        let digest = Sha256Digest(*d.bytes());
        if layout.lookup(&name).map_err(blob_err)? == Some(digest) && layout.blob_path(&digest).is_file() {
            return Ok(Pulled::nothing(digest, vec![name]));
        }
    }

    let (registry, manifest) = resolve_registry(reference, platform, access)
        .map_err(|source| PullError::Resolve { image: text.clone(), source: Box::new(source) })?;
    let digest = Sha256Digest(*manifest.digest.bytes());
    let mut names = vec![name];
    if matches!(reference.target(), Target::Tag(_)) {
        names.push(reference.with_digest(manifest.digest).to_string());
    }
    let parsed: Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| invalid(&format!("image manifest {digest}"), format!("not JSON: {e}")))?;
    let mut wanted =
        vec![descriptor(&parsed["config"]).ok_or_else(|| invalid("config", "no sha256 digest or size".into()))?];
    for layer in parsed["layers"].as_array().into_iter().flatten() {
        wanted.push(descriptor(layer).ok_or_else(|| invalid("layer", "no sha256 digest or size".into()))?);
    }
    let media_type = parsed["mediaType"]
        .as_str()
        .map(str::to_string)
        .or(manifest.media_type.clone())
        .unwrap_or_else(|| OCI_MANIFEST.to_string());

    // Unchanged since the last pull (by tag): the manifest request was all.
    let listed = names.iter().all(|n| layout.lookup(n).ok().flatten() == Some(digest));
    let present = wanted.iter().filter(|(d, s)| layout.has(d, *s)).count();
    if listed && present == wanted.len() && layout.has(&digest, manifest.bytes.len() as u64) {
        return Ok(Pulled::nothing(digest, names));
    }

    let mut missing: Vec<(Sha256Digest, u64)> = wanted.iter().filter(|(d, s)| !layout.has(d, *s)).copied().collect();
    // Smallest first in the vector: workers pop from its end, so the big layers start first.
    missing.sort_by_key(|(_, size)| *size);
    missing.dedup();
    let fetched = missing.len();
    let bytes_fetched = fetch_all(&registry, image, &layout, missing, jobs)?;
    layout
        .write_blob(&format!("image manifest {digest}"), &digest, manifest.bytes.len() as u64, &mut &manifest.bytes[..])
        .map_err(blob_err)?;

    let artifacts = attached_bundles(&registry, &layout, manifest.digest).map_err(|e| match e {
        Attached::Registry(e) => reg_err(e),
        Attached::Blob(e) => blob_err(e),
    })?;
    let bundles = artifacts.len();
    let entry = json!({"mediaType": media_type, "digest": digest.oci(), "size": manifest.bytes.len()});
    layout.record(&entry, &names, artifacts).map_err(blob_err)?;
    Ok(Pulled {
        digest,
        names,
        already_stored: false,
        blobs_fetched: fetched,
        blobs_present: wanted.len() - fetched,
        bytes_fetched,
        bundles,
    })
}

impl Pulled {
    fn nothing(digest: Sha256Digest, names: Vec<String>) -> Self {
        Pulled { digest, names, already_stored: true, blobs_fetched: 0, blobs_present: 0, bytes_fetched: 0, bundles: 0 }
    }
}

fn descriptor(v: &Value) -> Option<(Sha256Digest, u64)> {
    Some((Sha256Digest::parse_oci(v["digest"].as_str()?).ok()?, v["size"].as_u64()?))
}

/// Fetches `blobs` (the largest, at the end, first) with up to `jobs` workers, each on its own connection; the
/// first failure stops the others and is the error. Returns the bytes fetched.
fn fetch_all(
    first: &Registry,
    image: &ImageRef,
    layout: &Layout,
    blobs: Vec<(Sha256Digest, u64)>,
    jobs: usize,
) -> Result<u64, PullError> {
    let ImageRef::Registry { reference, access, .. } = image else { unreachable!("pull checked the image") };
    let text = image.to_string();
    let workers = jobs.clamp(1, 16).min(blobs.len());
    if workers <= 1 {
        return blobs
            .iter()
            .try_fold(0, |sum, blob| fetch(first, layout, blob).map(|n| sum + n))
            .map_err(|e| e.into_pull(&text));
    }
    let queue = Mutex::new(blobs);
    let failed = AtomicBool::new(false);
    let work = |registry: &Registry| -> Result<u64, Fetch> {
        let mut sum = 0;
        while !failed.load(Ordering::Relaxed) {
            let Some(blob) = queue.lock().expect("queue lock").pop() else { break };
            match fetch(registry, layout, &blob) {
                Ok(n) => sum += n,
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(sum)
    };
    let work = &work;
    let results: Vec<Result<u64, Fetch>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..workers)
            .map(|_| {
                scope.spawn(move || {
                    let own = Registry::connect(reference, access).map_err(Fetch::Registry)?;
                    work(&own)
                })
            })
            .collect();
        let mut results = vec![work(first)];
        results.extend(handles.into_iter().map(|h| h.join().expect("a pull worker panicked")));
        results
    });
    results.into_iter().try_fold(0, |sum, r| r.map(|n| sum + n)).map_err(|e| e.into_pull(&text))
}

enum Fetch {
    Registry(RegistryError),
    Blob(BlobError),
}

impl Fetch {
    fn into_pull(self, image: &str) -> PullError {
        match self {
            Fetch::Registry(e) => PullError::Registry { image: image.to_string(), source: Box::new(e) },
            Fetch::Blob(e) => PullError::Blob { image: image.to_string(), source: Box::new(e) },
        }
    }
}

fn fetch(registry: &Registry, layout: &Layout, (digest, size): &(Sha256Digest, u64)) -> Result<u64, Fetch> {
    let mut reader = registry.blob(Digest::from_bytes(digest.0), *size).map_err(Fetch::Registry)?;
    layout.write_blob(&format!("blob {digest}"), digest, *size, &mut reader).map_err(Fetch::Blob)
}

enum Attached {
    Registry(RegistryError),
    Blob(BlobError),
}

/// The bundles attached to `subject` (at most [`MAX_REFERRERS`]), each stored as its artifact
/// (manifest, config, bundle layer) when it is one; their index entries.
fn attached_bundles(registry: &Registry, layout: &Layout, subject: Digest) -> Result<Vec<Value>, Attached> {
    let mut entries = Vec::new();
    let referrers = registry.referrers(subject, BUNDLE_MEDIA_TYPE).map_err(Attached::Registry)?;
    for referrer in referrers.into_iter().take(MAX_REFERRERS) {
        let manifest =
            registry.manifest(&Target::Digest(referrer.digest), Some(referrer.size)).map_err(Attached::Registry)?;
        let Ok(parsed) = serde_json::from_slice::<Value>(&manifest.bytes) else { continue };
        if parsed["subject"]["digest"].as_str() != Some(subject.to_string().as_str()) {
            continue;
        }
        let payload = registry
            .referrer_payload(&referrer, BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES as u64)
            .map_err(Attached::Registry)?;
        // Not a bundle: left in the registry (verify reports such referrers when it reads them there).
        if CheckedBundle::parse(&payload).is_err() {
            continue;
        }
        let (Some((config, config_size)), Some((layer, layer_size))) =
            (descriptor(&parsed["config"]), descriptor(&parsed["layers"][0]))
        else {
            continue;
        };
        let config_bytes = registry
            .small_blob(Digest::from_bytes(config.0), config_size, MAX_ARTIFACT_CONFIG)
            .map_err(Attached::Registry)?;
        let what = format!("referrer {}", referrer.digest);
        for (digest, bytes) in [(config, &config_bytes), (layer, &payload)] {
            let size = if digest == layer { layer_size } else { config_size };
            layout.write_blob(&what, &digest, size, &mut &bytes[..]).map_err(Attached::Blob)?;
        }
        let artifact = Sha256Digest(*referrer.digest.bytes());
        layout.write_blob(&what, &artifact, referrer.size, &mut &manifest.bytes[..]).map_err(Attached::Blob)?;
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": artifact.oci(),
            "size": referrer.size,
            "artifactType": BUNDLE_MEDIA_TYPE,
        }));
    }
    Ok(entries)
}
