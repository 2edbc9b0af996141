//! The user-space half of `imgsign enforce`, the node enforcer.
//!
//! The path of a policy to the kernel, one way: scope sources ([`source`]; the policy file,
//! [`policy`], is the first) say which scopes they want (a cgroup, a mode, the signed manifests
//! whose files may run there); [`plan`] verifies them all against the trust store (through
//! [`verified`], the one module that calls verifier-core's verification, cached per statement),
//! resolves each cgroup to its id ([`cgroup`]) and yields a [`plan::Plan`]; its
//! [`desired::DesiredState`] (per cgroup id, a mode and a digest set, nothing else) is all the
//! kernel port ([`kernel::Kernel`]) is given; [`bpf`] adapts that port to `bpf-lsm`'s enforcer.
//! Nothing unverified ever reaches the kernel: one bad bundle refuses the whole plan.
//! The one addition to the signed sets is the node's own runtime helpers ([`helpers`]: host
//! programs of the container runtime, by the digest of their current content, listed in the
//! policy and empty by default).
//!
//! [`daemon`] is the loop (apply, reload keeping the old plan on failure, event streaming), tested
//! with a recording kernel; [`node`] is the façade the CLI calls (preflight with [`capability`],
//! open or take over the pinned programs, signals, status, detach). Nothing here prints:
//! warnings and failures are values ([`daemon::Notice`]) the caller shows.

#![forbid(unsafe_code)]

pub mod bpf;
pub mod capability;
pub mod cgroup;
pub mod control;
pub mod daemon;
pub mod desired;
pub mod discovered;
pub mod helpers;
pub mod kernel;
pub mod node;
pub mod plan;
pub mod policy;
pub mod running;
pub mod source;
pub mod timing;
pub mod verified;

pub use desired::{DesiredScope, DesiredState};
pub use plan::Plan;
pub use policy::{Mode, Policy, Profile, Violation};
