//! The kernel port: make a desired state the one in force, read decision events. It takes
//! nothing but [`DesiredState`] (per cgroup id, a mode and a digest set): no bundles, manifests
//! or names. The real implementation ([`crate::bpf::BpfKernel`]) drives the BPF-LSM programs of
//! `bpf-lsm`; tests use a recording one, so the daemon's logic runs on any host.

use crate::desired::DesiredState;
use crate::policy::Mode;
use serde::Serialize;
use std::time::Duration;
use verifier_core::digest::Sha256Digest;

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
    /// Makes `desired` the state in force: its scopes are added or have their digest set and
    /// mode replaced, each atomically (no moment where a scope has an empty or a mixed set);
    /// scopes not in it are removed. On error, what was in force before may still be.
    fn apply(&mut self, desired: &DesiredState) -> Result<(), KernelError>;

    /// Decision events that arrived, waiting at most `timeout` for the first.
    fn events(&mut self, timeout: Duration) -> Result<Vec<Event>, KernelError>;

    /// The counters of the scope whose cgroup id is `cgroup_id`, if the kernel keeps them.
    fn scope_counters(&self, _cgroup_id: u64) -> Option<ScopeCounters> {
        None
    }
}

/// One scope's counters in the kernel, since the programs were loaded: decisions by verdict,
/// events lost because the ring buffer was full, and events numbered so far (the number the
/// next event of the scope will carry, so a reader that sees numbers jump knows how many it
/// missed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeCounters {
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
    pub dropped: u64,
    pub events: u64,
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
    /// A value this build does not know (a newer kernel program).
    Unknown,
}

/// Which check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// `bprm_check_security`: an exec.
    Exec,
    /// `mmap_file` with PROT_EXEC.
    Mmap,
    /// `file_mprotect` adding PROT_EXEC (or write to an executable mapping).
    Mprotect,
    /// `file_open`: a write open of a sealed file, `/proc/PID/mem`.
    Open,
    /// `inode_setattr`: truncation of a sealed file.
    Truncate,
    /// ptrace attach or `PTRACE_TRACEME`.
    Ptrace,
    /// An anonymous inode: userfaultfd, io_uring.
    AnonInode,
    /// `bpf()`, or the enforcer's maps and programs.
    Bpf,
    /// A kernel module, firmware or kexec image.
    KernelLoad,
    /// A new task placed in another cgroup (`clone3`).
    Clone,
    /// The privileges an exec gains.
    Creds,
    /// A change to the enforcer's pins.
    Pin,
    /// A value this build does not know.
    Unknown,
}

/// Why a decision was made, beyond the digest lookup (the README's sealed-execution rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The digest was (or was not) in the scope's set.
    Digest,
    /// The file had writers when it was executed or mapped.
    Writers,
    /// A write or truncation of a file a scope has judged.
    Sealed,
    /// A memfd or shared memory not sealed against writes.
    Memfd,
    /// A writable and executable mapping.
    WriteExec,
    /// Code patching: `/proc/PID/mem`, ptrace, userfaultfd.
    Patch,
    /// Anonymous executable memory or io_uring under the strict profile.
    Strict,
    /// Code from FUSE, NFS, 9p, CIFS or ceph.
    RemoteFs,
    /// setuid/setgid or file capabilities not as signed.
    Privilege,
    /// Leaving the scope.
    Escape,
    /// The enforcer's own programs, maps or pins.
    SelfProtection,
    /// A kernel module, firmware or kexec image.
    KernelLoad,
    /// A file mapping made executable after it was mapped.
    Mprotect,
    /// A value this build does not know.
    Unknown,
}

/// One decision, with a fingerprint of the process that tells containers apart even when their
/// namespaced pids collide. Fields the kernel programs do not report yet are `None` and left out
/// of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub hook: Hook,
    pub verdict: Verdict,
    pub reason: Reason,
    /// The scope's mode at the time of the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// When the kernel decided, in nanoseconds since boot (`CLOCK_BOOTTIME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_time_ns: Option<u64>,
    /// The cgroup id of the scope that decided (the key of the scope in the kernel).
    pub scope_cgroup_id: u64,
    /// The scope's name, filled in by the daemon from its plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The task's own cgroup id (the scope's cgroup or a descendant).
    pub cgroup_id: u64,
    /// The task's cgroup directory, filled in by the daemon (absent if it is gone by then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub host_pid: u32,
    pub ns_pid: u32,
    /// Inode number of the task's pid namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// Inode number of the task's mount namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnt_ns: Option<u64>,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SHA-256 of the content, when the kernel computed it (lowercase hex in JSON).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "verifier_core::digest::bare_hex_opt::serialize"
    )]
    pub sha256: Option<Sha256Digest>,
    /// The event's number among its scope's events (from 0): a jump means events were lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_seq: Option<u64>,
    /// The scope's counters as this event left them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_counters: Option<ScopeCounters>,
}
