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
//!                          size, mtime and ctime are those already hashed   [hashes]
//! ```
//!
//! What is compared is always the verified file list, never what the image or the engine
//! claims; an annotation naming the image can only narrow the candidates to the ones the policy
//! maps that name to. Paths the engine mounts over (the spec's mount destinations) are judged
//! by what the container will see: the mount, not the file beneath.
//! The gate closes the gap until the container's first exec; what is written or swapped after
//! it is the kernel enforcer's part (`imgsign enforce`).

pub mod policy;

pub use policy::{EnforceMode, Policy, PolicyError, WhenNoEnforcer};

use std::path::{Path, PathBuf};

/// Why a container was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot read the container's root file system {path}")]
    Rootfs { path: PathBuf, source: std::io::Error },
    #[error("no signed manifest is usable: {reasons}")]
    NoTrustedManifest { reasons: String },
    #[error("the container's root file system {rootfs} does not match any signed manifest the node trusts; closest: {closest}")]
    Mismatch { rootfs: PathBuf, closest: String },
}

/// A root file system that matched a verified manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Admitted {
    /// The statement's image name, as signed.
    pub name: String,
    /// The signed image digest (`sha256:...`).
    pub digest: String,
    /// The bundle files of the statement that matched (for the enforcer's scope).
    pub bundles: Vec<PathBuf>,
    /// Entries compared, files whose content was hashed now, files whose hash came from the cache.
    pub entries: usize,
    pub hashed: usize,
    pub cached: usize,
}

/// Decides whether `rootfs`, about to be started with `spec`, may run under `policy`.
pub fn admit(policy: &Policy, spec: &oci_spec::runtime::Spec, rootfs: &Path) -> Result<Admitted, AdmitError> {
    let _ = (policy, spec, rootfs);
    unimplemented!("lead is writing this")
}
