//! The engine of `imgsign runtime`: the OCI runtime command line (runc's contract, as podman,
//! containerd's shim and the kubelet drive it) on youki's libcontainer, with imgsign's gate and
//! scope around `create`.
//!
//! ```text
//! create  bundle/config.json --gate (admission::admit: the rootfs against the signed manifests
//!         the node's policy trusts; a refusal creates nothing, or, when the spec has no hook
//!         before `start`, decided in a process of its own beside libcontainer's create and a
//!         refusal deletes what it made: see `gate`)
//!         -> libcontainer create (init waits for `start`)
//!         -> scope: the init's unified cgroup registered with the enforcement daemon, or the
//!            policy's `when_no_enforcer` decides -> record (<root>/<id>/imgsign-runtime.json)
//! start, state, kill, pause, resume, ps, exec   libcontainer on <root>/<id>/state.json
//! delete  the scope removed, then libcontainer deletes the container (its dir, cgroup)
//! ```
//!
//! Owned here: what each operation does and returns; the command line (`imgsign runtime`)
//! parses flags, prints, and writes the engine's log. libcontainer owns the container state
//! directory `<root>/<id>/`; this module adds only its record file there, which goes with it.

pub mod create;
pub mod exec;
pub mod gate;
pub mod hook;
pub mod info;
pub mod lifecycle;
pub mod record;
pub mod scope;

pub use create::{create, run, CreateOptions, Created};
pub use exec::{exec, ExecOptions};
pub use gate::GateError;
pub use lifecycle::{delete, kill, load, pause, resume, start, state, OciState};
pub use scope::ScopeError;

use std::path::PathBuf;

/// Where containers' state lives when `--root` is not given.
pub const DEFAULT_ROOT: &str = "/run/imgsign-runtime";

/// The runtime's global options, as the engine needs them.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The state root: `<root>/<id>/` per container.
    pub root: PathBuf,
    /// `--systemd-cgroup`: refused at create (libcontainer is built here without systemd).
    pub systemd_cgroup: bool,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime { root: PathBuf::from(DEFAULT_ROOT), systemd_cgroup: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    Hook(#[from] hook::HookError),
    #[error(
        "systemd cgroups are not supported by imgsign runtime (its libcontainer is built for cgroupfs only): \
         configure the engine for cgroupfs (podman --cgroup-manager cgroupfs; containerd SystemdCgroup = false)"
    )]
    Systemd,
    // runc's words: engines recognise "does not exist".
    #[error("container {0} does not exist")]
    NotFound(String),
    // runc's words: containerd's shim and podman recognise "container not running".
    #[error("container not running ({0})")]
    NotRunning(String),
    #[error("invalid signal {0:?}")]
    Signal(String),
    #[error("the container runtime (libcontainer) failed to {what} container {id}")]
    Runtime {
        what: &'static str,
        id: String,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    #[error("cannot read the cgroup of container {id}")]
    Cgroup {
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for process {pid}")]
    Wait {
        pid: i32,
        #[source]
        source: nix::Error,
    },
}

pub(crate) fn runtime_err<'a>(
    what: &'static str,
    id: &'a str,
) -> impl FnOnce(libcontainer::error::LibcontainerError) -> OciError + 'a {
    move |source| OciError::Runtime { what, id: id.to_string(), source: Box::new(source) }
}
