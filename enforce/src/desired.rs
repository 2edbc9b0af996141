//! The desired state: all the kernel is ever given. Per scope, keyed by the cgroup id the kernel
//! programs see, a mode, a profile, whether code from remote file systems is judged, and a digest
//! set; no names, bundles, manifests or versions (those stay in
//! the verified [`crate::plan::Plan`] that produced it). A digest set is behind an `Arc`, so
//! scopes that allow the same content (containers of one image, later) can share one set.

use crate::policy::{Mode, Profile};
use std::collections::BTreeMap;
use std::sync::Arc;
use verifier_core::digest::Sha256Digest;

/// The privileges an exec of a digest may have: those of a signed entry with that digest, or
/// fewer (setuid/setgid bits, file capabilities; see bpf-lsm's `privs.rs`).
pub use bpf_lsm::enforcer::Privs;

/// The SHA-256 digests a scope allows to run, each with the privileges its signed entries give.
pub type DigestSet = BTreeMap<Sha256Digest, Privs>;

/// What one cgroup subtree is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredScope {
    pub mode: Mode,
    /// Code from FUSE, NFS, 9p, CIFS and ceph is judged by digest instead of refused.
    pub remote_fs: bool,
    pub profile: Profile,
    pub digests: Arc<DigestSet>,
}

/// Every scope the kernel should enforce, by cgroup id; a cgroup not here is not a scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub scopes: BTreeMap<u64, DesiredScope>,
}

impl DesiredState {
    /// The scope of cgroup `cgroup_id`, if it is one.
    pub fn scope(&self, cgroup_id: u64) -> Option<&DesiredScope> {
        self.scopes.get(&cgroup_id)
    }
}
