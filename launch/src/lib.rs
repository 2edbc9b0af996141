//! The launch engine: a verified, read-only root file system becomes a hardened container.
//!
//! ```text
//! LaunchConfig (lower dir, command, flags)
//!   -> Container::prepare   <state_root>/<id>/{upper,work,merged,secrets,config.json,imgsign.json};
//!                           the calling thread gets a private mount namespace; overlay (or a
//!                           read-only bind with `read_only`) and the secrets tmpfs are mounted there
//!   -> Container::start     youki's libcontainer creates the namespaces, cgroup, mounts, seccomp
//!                           and capabilities from the generated spec (`spec::build`) and execs
//!   -> Container::wait / wait_forwarding   the init's exit code (128 + signal if killed)
//!   -> Container::cleanup   libcontainer deletes the container and its cgroup; every mount is
//!                           detached; the directory removed (also on drop, so on every error path)
//! ```
//!
//! The lower directory is never written: `imgsign run` hands over the store's verified
//! `rootfs/` of the image.
//! `state::list` reads what `imgsign ps` prints. Everything that mounts goes through the
//! [`host::Host`] seam ([`host::RecordingHost`] in tests). Every fork this crate makes takes
//! one lock (`fork.rs` says why: a fork while another thread holds std's environment lock
//! deadlocks libcontainer's child).
//!
//! [`oci`] is the same engine behind the OCI runtime command line (`imgsign runtime`): runc's
//! operations on bundles an engine (podman, containerd) prepared, with imgsign's gate and
//! enforcement scope around `create`.

pub mod config;
pub mod container;
pub mod control;
pub mod fork;
mod forward;
pub mod host;
pub mod oci;
pub mod seccomp;
pub mod snapshot;
pub mod spec;
pub mod state;

pub use config::{IdRange, LaunchConfig, Net, ProcessUser, Secret, Volume};
pub use container::{Container, LaunchError, Layout};
pub use nix::sys::signal::Signal;
pub use oci_spec::runtime::Capability;
pub use state::ContainerRecord;
