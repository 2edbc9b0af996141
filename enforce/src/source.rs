//! Scope sources: where the scopes a node enforces come from. Each source says which scopes it
//! wants ([`ScopeSpec`]: a cgroup, a mode, the bundles whose files may run there); the plan
//! ([`crate::plan`]) verifies them all together and turns them into the desired state. The
//! policy file is the first source ([`PolicySource`]); a control socket handing out container
//! scopes is meant to be a second one, added beside it without changing it.

use crate::policy::{self, Mode, Policy, PolicyError, Profile, Violation};
use std::path::{Path, PathBuf};
use verifier_core::source::ImageRef;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A source other than the policy file could not say what it wants.
    #[error("scope source {source_name}")]
    Other {
        source_name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One scope as a source asks for it, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSpec {
    /// Unique across every source: events and reports name the scope by it.
    pub name: String,
    /// A cgroup v2 directory: the scope is the tasks in its subtree.
    pub cgroup: PathBuf,
    pub mode: Mode,
    /// Code from remote file systems (FUSE, NFS, 9p, CIFS, ceph) is judged by digest instead of
    /// refused.
    pub remote_fs: bool,
    /// The default profile, or strict.
    pub profile: Profile,
    /// What the daemon does to the cgroup on a violation, if anything.
    pub on_violation: Option<Violation>,
    /// The container the cgroup is (from the control socket), named in its events.
    pub container: Option<crate::control::ContainerInfo>,
    /// Bundles carrying the same statement pool their signatures; different statements add
    /// their files to the scope's set.
    pub bundles: Vec<PathBuf>,
    /// Also compare this image's files with the (single) statement's manifest.
    pub image: Option<ImageRef>,
}

/// Somewhere scopes come from.
pub trait ScopeSource {
    /// Names the source in errors and records (e.g. `policy /etc/imgsign/policy.toml`).
    fn describe(&self) -> String;

    /// Reads the source's backing store again (on SIGHUP). On error the source keeps what it
    /// had, and the node keeps its plan.
    fn refresh(&mut self) -> Result<(), SourceError>;

    /// The scopes the source wants in force now.
    fn scopes(&self) -> Vec<ScopeSpec>;
}

/// The policy file as a scope source. It is also where the node's settings come from (trust
/// store, event output, pin directory): [`PolicySource::policy`] is the policy last read.
pub struct PolicySource {
    policy: Policy,
}

impl PolicySource {
    /// Reads the policy at `path` (once: later reads happen only on [`ScopeSource::refresh`]).
    pub fn open(path: &Path) -> Result<Self, PolicyError> {
        Ok(PolicySource { policy: policy::load(path)? })
    }

    /// A source over an already loaded policy.
    pub fn from_policy(policy: Policy) -> Self {
        PolicySource { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl ScopeSource for PolicySource {
    fn describe(&self) -> String {
        format!("policy {}", self.policy.path.display())
    }

    fn refresh(&mut self) -> Result<(), SourceError> {
        self.policy = policy::load(&self.policy.path)?;
        Ok(())
    }

    fn scopes(&self) -> Vec<ScopeSpec> {
        self.policy.scopes.clone()
    }
}
