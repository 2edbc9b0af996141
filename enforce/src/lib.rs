//! The user-space half of `imgsign enforce`, the node enforcer.
//!
//! A policy file ([`policy`]) names a trust store and scopes: each scope is a cgroup (a container,
//! or a subtree / the whole node), a mode (enforce or audit) and the signed manifests whose files
//! may run there. [`plan::build`] verifies every bundle against the trust store (signatures,
//! threshold, revocation, expiry, rollback), optionally checks the image itself, resolves each
//! cgroup to its id ([`cgroup`]) and yields a [`plan::Plan`]: per scope, the cgroup id, the mode
//! and the set of allowed SHA-256 digests. Nothing unverified ever reaches the kernel: one bad
//! bundle refuses the whole plan.
//!
//! The kernel side is behind the [`kernel::Kernel`] trait, so the [`daemon`] logic (apply, reload
//! on SIGHUP keeping the old plan on failure, event streaming) runs on any host with a recording
//! implementation. [`capability`] tells whether the running kernel can do BPF-LSM at all.

pub mod bpf;
pub mod capability;
pub mod cgroup;
pub mod daemon;
pub mod kernel;
pub mod plan;
pub mod policy;

pub use plan::Plan;
pub use policy::{Mode, Policy};
