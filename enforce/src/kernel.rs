//! The kernel side as the daemon sees it: apply a plan, read decision events. The real
//! implementation loads and drives the BPF-LSM programs of `bpf-lsm`; tests use a recording one,
//! so the daemon's logic runs on any host.

use crate::policy::Mode;
use crate::Plan;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel side cannot be used here (see [`crate::capability`]) or is not built in.
    #[error("kernel enforcement is not available: {0}")]
    Unavailable(String),
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The kernel programs, as the daemon drives them.
pub trait Kernel {
    /// Makes `plan` the one in force: scopes in the plan are added or have their digest set and
    /// mode replaced, each atomically (no moment where a scope has an empty or a mixed set);
    /// scopes not in the plan are removed. On error, what was in force before may still be.
    fn apply(&mut self, plan: &Plan) -> Result<(), KernelError>;

    /// Decision events that arrived, waiting at most `timeout` for the first.
    fn events(&mut self, timeout: Duration) -> Result<Vec<Event>, KernelError>;
}

/// What the kernel decided about one exec or executable mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// In the scope's set.
    Allowed,
    /// Not in the set, refused (enforce mode).
    Denied,
    /// Not in the set, let through and reported (audit mode).
    Audited,
}

/// Which check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// `bprm_check_security`: an exec.
    Exec,
    /// `mmap_file` with PROT_EXEC.
    Mmap,
    /// `file_mprotect` adding PROT_EXEC.
    Mprotect,
}

/// One decision, with a fingerprint of the process that tells containers apart even when their
/// namespaced pids collide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Nanoseconds since boot (the kernel's clock).
    pub time_ns: u64,
    pub hook: Hook,
    pub verdict: Verdict,
    pub mode: Mode,
    /// The cgroup id of the scope that decided (the key of the scope in the kernel).
    pub scope_cgroup_id: u64,
    /// The scope's name, filled in by the daemon from its plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The task's own cgroup id (a descendant of the scope's cgroup, or the same).
    pub cgroup_id: u64,
    pub host_pid: u32,
    pub ns_pid: u32,
    pub pid_ns: u64,
    pub mnt_ns: u64,
    pub comm: String,
    pub path: String,
    /// Lowercase hex SHA-256 of the content, when the kernel computed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}
