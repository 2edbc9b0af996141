//! The gate in front of `create`: the bundle's spec is read, its root file system resolved
//! against the bundle, and `admission::admit` decides under the node's policy
//! (`/etc/imgsign/runtime.toml`, or `$IMGSIGN_RUNTIME_CONFIG`). Nothing is created before this
//! returns `Ok`; the decision itself is the `admission` crate's.

use admission::{AdmitError, Admitted, Policy, PolicyError};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot read the bundle's spec {path}")]
    Spec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("the bundle's spec {0} names no root file system (root.path)")]
    NoRoot(PathBuf),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("imgsign refused container {id}")]
    Refused {
        id: String,
        #[source]
        source: AdmitError,
    },
}

/// A container the policy admits: its spec, its root, the policy and the matching manifest.
#[derive(Debug)]
pub struct Gated {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub policy: Policy,
    pub admitted: Admitted,
}

/// Reads `bundle/config.json`, loads the node's policy and asks admission about the rootfs.
pub fn check(id: &str, bundle: &Path) -> Result<Gated, GateError> {
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|source| GateError::Spec { path: config.clone(), source })?;
    let root = spec.root().as_ref().ok_or_else(|| GateError::NoRoot(config.clone()))?.path();
    let rootfs = if root.is_absolute() { root.clone() } else { bundle.join(root) };
    let policy = Policy::load(&Policy::path())?;
    let admitted = admission::admit(&policy, &spec, &rootfs)
        .map_err(|source| GateError::Refused { id: id.to_string(), source })?;
    Ok(Gated { spec, rootfs, policy, admitted })
}
