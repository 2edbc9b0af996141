//! The gate of `imgsign runtime`: before a container's process exists, its root file system
//! (the engine's overlay `merged` directory, or the bundle's `rootfs`) is compared with the
//! verified file lists of the signed manifests the node's [`policy`] trusts, and the container
//! starts only if one matches.
//!
//! ```text
//! Policy (runtime.toml) -> bundles verified against the trust store (signatures, threshold,
//!                          revocation, expiry, rollback)      [candidates]
//! rootfs --walk--> observed entries (no content read)        [walk]
//! candidates x observed --metadata--> the candidate(s) that fit, else the closest one's
//!                          differences as the refusal       [matcher]
//! fitting candidate --content--> every file's SHA-256, from the hash cache when its inode,
//!                          size, mtime, ctime and btime are those already hashed (the walk
//!                          takes such a file's signed xattrs from there too)   [hashes]
//! ```
//!
//! What is compared is always the verified file list, never what the image or the engine
//! claims; an annotation naming the image can only narrow the candidates to the ones the policy
//! maps that name to. Paths the engine mounts over (the spec's mount destinations) are judged
//! by what the container will see: the mount, not the file beneath.
//! The gate closes the gap until the container's first exec; what is written or swapped after
//! it is the kernel enforcer's part (`imgsign enforce`).

pub mod candidates;
pub mod hashes;
pub mod matcher;
pub mod overlay;
pub mod policy;
pub mod spec;
pub mod statements;
pub mod verdicts;
pub mod walk;

pub use policy::{EnforceMode, Policy, PolicyError, WhenNoEnforcer};
pub use spec::GateSpec;

use candidates::{Candidate, CandidateError};
use matcher::Mounts;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use verifier_core::manifest::Difference;

/// Why a container was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Candidates(#[from] CandidateError),
    #[error("cannot list the container's root file system")]
    Walk(#[from] walk::WalkError),
    #[error("cannot check the container's root file system")]
    Hash(#[from] hashes::HashError),
    #[error("no signed manifest in the runtime policy verifies: {reasons}")]
    NoTrustedManifest { reasons: String },
    #[error(
        "the container's root file system {rootfs} matches no signed manifest the node trusts; closest: {closest}"
    )]
    Mismatch { rootfs: PathBuf, closest: String },
}

/// A root file system that matched a verified manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Admitted {
    /// The statement's image name, as signed.
    pub name: String,
    /// The signed image digest (`sha256:...`).
    pub digest: String,
    /// The bundle files of the statement that matched (for the enforcer's scope).
    pub bundles: Vec<PathBuf>,
    /// Paths listed, files whose content was read now, files whose digest came from the cache.
    pub entries: usize,
    pub hashed: usize,
    pub cached: usize,
    /// The overlay layers the listing came from (checked against the mount; see [`overlay`]),
    /// or 0 when the root file system was listed through the mount, path by path.
    #[serde(default)]
    pub layers: usize,
    /// Why the root file system was listed through the mount (`None` when from its layers).
    #[serde(default)]
    pub walked_because: Option<String>,
    /// Admitted by the verdict cache: the listing is the one admitted last under the same
    /// statements and mounts ([`verdicts`]); nothing was matched (`hashed`, `cached` zero).
    #[serde(default)]
    pub remembered: bool,
}

/// Decides whether `rootfs`, about to be started with `spec`, may run under `policy`.
pub fn admit(policy: &Policy, spec: &GateSpec, rootfs: &Path) -> Result<Admitted, AdmitError> {
    admit_inner(policy, spec, rootfs, None::<fn(&Admitted)>, &mut |_| {}).0
}

/// [`admit`], with `mark` hearing where the time went (the phases of [`admit_early`]).
pub fn admit_marked(
    policy: &Policy,
    spec: &GateSpec,
    rootfs: &Path,
    mark: &mut dyn FnMut(&'static str),
) -> Result<Admitted, AdmitError> {
    admit_inner(policy, spec, rootfs, None::<fn(&Admitted)>, mark).0
}

/// [`admit`], and `early` run beside the walk's verdict on what the admission will be if it
/// admits, when that is known before: the policy's verified candidates are one image (one
/// statement), so only its bundles can match. `early` gets that image with no counts
/// (`entries`, `hashed`, `cached` zero) and its result comes back with the verdict (`None`:
/// there was more than one candidate, or none, and `early` did not run). The verdict is the
/// same as [`admit`]'s: what `early` did must be undone by the caller when it refuses.
/// `mark` hears where the time went, as each phase ends: `statement-key` (the policy's bundle
/// files and the statement cache's key of them and the trust store), `verify` (the bundles
/// verified, or their verdict read from the statement cache), `walk` (waiting for the listing that ran
/// beside), `match` (metadata and content against the candidates), `early` (waiting for
/// `early` after the verdict).
pub fn admit_early<T: Send>(
    policy: &Policy,
    spec: &GateSpec,
    rootfs: &Path,
    early: impl FnOnce(&Admitted) -> T + Send,
    mark: &mut dyn FnMut(&'static str),
) -> (Result<Admitted, AdmitError>, Option<T>) {
    admit_inner(policy, spec, rootfs, Some(early), mark)
}

fn admit_inner<T: Send, F: FnOnce(&Admitted) -> T + Send>(
    policy: &Policy,
    spec: &GateSpec,
    rootfs: &Path,
    early: Option<F>,
    mark: &mut dyn FnMut(&'static str),
) -> (Result<Admitted, AdmitError>, Option<T>) {
    // The walk (mostly the kernel's time, per path) runs while the bundles are verified or
    // their verdict read from the cache; it reads nothing but metadata, so starting it before
    // the policy is known to trust anything costs nothing but the time.
    // The hash cache is read first, by the walk, which takes the xattrs of files it knows
    // from it.
    std::thread::scope(|scope| {
        let walking = scope.spawn(|| {
            let cache = hashes::HashCache::open(&policy.cache);
            walk::list(rootfs, Some(&cache)).map(|(observed, how)| (observed, how, cache))
        });
        let mut early = early;
        let mut running = None;
        let verdict = admit_walked(
            policy,
            spec,
            rootfs,
            || walking.join().unwrap_or_else(|_| Err(walk::WalkError::Worker { path: rootfs.to_path_buf() })),
            |candidates| {
                if let ([only], Some(early)) = (candidates, early.take()) {
                    let preview = Admitted {
                        name: only.name.clone(),
                        digest: only.digest.clone(),
                        bundles: only.bundles.clone(),
                        entries: 0,
                        hashed: 0,
                        cached: 0,
                        layers: 0,
                        walked_because: None,
                        remembered: false,
                    };
                    running = Some(scope.spawn(move || early(&preview)));
                }
            },
            mark,
        );
        let early = running.map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        mark("early");
        (verdict, early)
    })
}

/// [`admit`], given the walk of `rootfs` to wait for; `verified` hears the candidates once
/// they are known (before the walk is waited for).
fn admit_walked<V: FnOnce(&[Candidate])>(
    policy: &Policy,
    spec: &GateSpec,
    rootfs: &Path,
    walked: impl FnOnce() -> Result<(Vec<walk::Observed>, walk::How, hashes::HashCache), walk::WalkError>,
    verified: V,
    mark: &mut dyn FnMut(&'static str),
) -> Result<Admitted, AdmitError> {
    let files = candidates::bundle_files(policy, |key| spec.annotations.get(key).cloned())?;
    let now = SystemTime::now();
    let key = statements::key(&policy.trust, &files);
    mark("statement-key");
    let mounts = Mounts::new(spec.mount_destinations.iter().map(String::as_str));
    let ids = &spec.id_maps;
    // The last admission under the same statements and mounts: when the listing turns out to
    // be the one it admitted, nothing is read or matched again.
    let verdict_at = key.as_deref().map(|key| verdicts::place(&policy.cache, key, &mounts, ids));
    let remembered = verdict_at.as_deref().and_then(|at| verdicts::load(at, now));
    let mut verified = Some(verified);
    let verify = |verified: &mut Option<V>| -> Result<(Vec<Candidate>, Vec<String>), AdmitError> {
        let (candidates, refused) = match key.as_deref().and_then(|key| statements::load(&policy.cache, key, now)) {
            Some(cached) => cached,
            None => {
                let verified = candidates::verify(&files, &policy.trust, now)?;
                if let Some(key) = &key {
                    statements::store(&policy.cache, key, &verified.0, &verified.1);
                }
                verified
            }
        };
        if candidates.is_empty() {
            let reasons = if refused.is_empty() {
                "the policy's bundle directories are empty".into()
            } else {
                refused.join("; ")
            };
            return Err(AdmitError::NoTrustedManifest { reasons });
        }
        if let Some(verified) = verified.take() {
            verified(&candidates);
        }
        Ok((candidates, refused))
    };
    let mut statements = None;
    match &remembered {
        // The early scope needs only the image's name, digest and bundles.
        Some(verdict) if verdict.candidates == 1 => {
            if let Some(verified) = verified.take() {
                verified(&[verdict.candidate()]);
            }
        }
        Some(_) => {}
        None => statements = Some(verify(&mut verified)?),
    }
    mark("verify");
    let walked = walked();
    mark("walk");
    let (observed, how, mut cache) = walked?;
    let (layers, walked_because) = match how {
        walk::How::Layers(n) => (n, None),
        walk::How::Mount(reason) => (0, Some(error_chain(&reason))),
    };
    let listing = verdict_at.is_some().then(|| verdicts::listing(&observed, &mounts));
    if let (Some(verdict), Some(listing)) = (&remembered, &listing) {
        if verdict.listing == *listing {
            mark("match");
            return Ok(Admitted {
                name: verdict.name.clone(),
                digest: verdict.digest.clone(),
                bundles: verdict.bundles.clone(),
                entries: observed.len(),
                hashed: 0,
                cached: 0,
                layers,
                walked_because,
                remembered: true,
            });
        }
    }
    let (candidates, refused) = match statements {
        Some(statements) => statements,
        None => verify(&mut verified)?,
    };
    // Sorted by path bytes (the walk's order): looked up by binary search.
    let seen_at = |path: &str| {
        observed.binary_search_by(|o| o.entry.path.as_bytes().cmp(path.as_bytes())).ok().map(|i| &observed[i])
    };
    let mut closest: Option<(&Candidate, Vec<Difference>)> = None;
    for candidate in &candidates {
        let mut differences = matcher::metadata_differences(&candidate.files, &observed, &mounts, ids);
        if differences.is_empty() {
            for expected in matcher::files_to_hash(&candidate.files, &mounts) {
                let Some(seen) = seen_at(&expected.path) else {
                    differences.push(Difference::Missing { path: expected.path.clone() });
                    continue;
                };
                differences.extend(matcher::content_difference(expected, cache.digest(seen)?));
            }
            if differences.is_empty() {
                // The caches are an optimisation: failing to write them refuses nothing.
                let _ = cache.save();
                if let (Some(at), Some(listing)) = (&verdict_at, listing) {
                    verdicts::store(at, &verdicts::Verdict::new(listing, candidates.len(), candidate));
                }
                mark("match");
                return Ok(Admitted {
                    name: candidate.name.clone(),
                    digest: candidate.digest.clone(),
                    bundles: candidate.bundles.clone(),
                    entries: observed.len(),
                    hashed: cache.hashed,
                    cached: cache.cached,
                    layers,
                    walked_because,
                    remembered: false,
                });
            }
        }
        if closest.as_ref().is_none_or(|(_, best)| differences.len() < best.len()) {
            closest = Some((candidate, differences));
        }
    }
    let _ = cache.save();
    mark("match");
    let (candidate, differences) = closest.expect("at least one candidate");
    let mut closest = format!(
        "image {} ({}, bundle {}): {}",
        candidate.name,
        candidate.digest,
        candidate.bundles[0].display(),
        describe(&differences)
    );
    if !refused.is_empty() {
        closest.push_str(&format!("; not verified: {}", refused.join("; ")));
    }
    Err(AdmitError::Mismatch { rootfs: rootfs.to_path_buf(), closest })
}

/// `error` and its sources, joined by ": ".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The first differences, one phrase each (`/usr/bin/env: sha256 signed 3f2a..., found 9b1c...`).
fn describe(differences: &[Difference]) -> String {
    const SHOWN: usize = 5;
    let short = |v: &str| if v.len() > 16 { format!("{}...", &v[..12]) } else { v.to_string() };
    let mut parts: Vec<String> = differences
        .iter()
        .take(SHOWN)
        .map(|d| match d {
            Difference::Missing { path } => format!("{path}: missing"),
            Difference::Extra { path } => format!("{path}: not in the signed manifest"),
            Difference::Changed { path, fields } => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{} signed {}, found {}", f.field, short(&f.expected), short(&f.actual)))
                    .collect();
                format!("{path}: {}", fields.join(", "))
            }
        })
        .collect();
    if differences.len() > SHOWN {
        parts.push(format!("and {} more", differences.len() - SHOWN));
    }
    format!("{} difference(s): {}", differences.len(), parts.join("; "))
}
