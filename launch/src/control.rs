//! Acting on a running container from another process (`imgsign kill`, `freeze`, `thaw`): the
//! container is loaded from libcontainer's state under `<state_root>/<id>/runtime/` and
//! libcontainer signals every task of its cgroup, or freezes/thaws the cgroup (freezer). The
//! `imgsign run` that launched it notices the end and cleans up.

use crate::config::{check_id, ConfigError};
use crate::container::Layout;
use crate::state::{ContainerRecord, StateError};
use libcontainer::container::Container as Runtime;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no container {id} under {state_root}")]
    NotFound { id: String, state_root: PathBuf },
    #[error("the container runtime (libcontainer) failed to {what} container {id}")]
    Runtime {
        what: &'static str,
        id: String,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

fn load(state_root: &Path, id: &str) -> Result<(Runtime, PathBuf), ControlError> {
    check_id(id)?;
    let dir = state_root.join(id);
    let runtime_dir = Layout::new(&dir).runtime.join(id);
    if !runtime_dir.join("state.json").is_file() {
        return Err(ControlError::NotFound { id: id.to_string(), state_root: state_root.to_path_buf() });
    }
    // libcontainer rewrites state.json in place (not by rename) while a container starts: a
    // reader can see it empty for a moment, so a failed load is retried briefly.
    let mut attempts = 0;
    loop {
        match Runtime::load(runtime_dir.clone()) {
            Ok(runtime) => return Ok((runtime, dir)),
            Err(_) if attempts < 40 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(source) => {
                return Err(ControlError::Runtime { what: "load", id: id.to_string(), source: Box::new(source) })
            }
        }
    }
}

fn set_status(dir: &Path, status: &str) -> Result<(), ControlError> {
    if let Ok(bytes) = std::fs::read(dir.join(crate::state::STATE_FILE)) {
        if let Ok(mut record) = serde_json::from_slice::<ContainerRecord>(&bytes) {
            record.status = status.to_string();
            record.save(dir)?;
        }
    }
    Ok(())
}

/// Sends `signal` to every task of container `id`.
pub fn kill(state_root: &Path, id: &str, signal: Signal) -> Result<(), ControlError> {
    let (mut runtime, _) = load(state_root, id)?;
    runtime.kill(signal, true).map_err(|source| ControlError::Runtime {
        what: "signal",
        id: id.to_string(),
        source: Box::new(source),
    })
}

/// Stops every task of container `id` (cgroup freezer); [`thaw`] resumes them.
pub fn freeze(state_root: &Path, id: &str) -> Result<(), ControlError> {
    let (mut runtime, dir) = load(state_root, id)?;
    runtime.pause().map_err(|source| ControlError::Runtime {
        what: "freeze",
        id: id.to_string(),
        source: Box::new(source),
    })?;
    set_status(&dir, "frozen")
}

/// Resumes a frozen container.
pub fn thaw(state_root: &Path, id: &str) -> Result<(), ControlError> {
    let (mut runtime, dir) = load(state_root, id)?;
    runtime.resume().map_err(|source| ControlError::Runtime {
        what: "thaw",
        id: id.to_string(),
        source: Box::new(source),
    })?;
    set_status(&dir, "running")
}
