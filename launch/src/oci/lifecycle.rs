//! The operations on an existing container, each a libcontainer call on the state under
//! `<root>/<id>/`: start, state (runc's JSON), kill, pause, resume, delete (which also removes
//! the container's enforcement scope).

use super::record::Record;
use super::scope;
use super::{runtime_err, OciError, Runtime};
use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

/// Loads container `id` from `<root>/<id>/state.json`.
pub fn load(rt: &Runtime, id: &str) -> Result<Container, OciError> {
    // An id is one path component: no escaping the state root.
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(OciError::NotFound(id.to_string()));
    }
    let dir = rt.root.join(id);
    if !dir.join("state.json").is_file() {
        return Err(OciError::NotFound(id.to_string()));
    }
    // libcontainer rewrites state.json in place while a container starts: a reader can see it
    // empty for a moment, so a failed load is retried briefly.
    let mut attempts = 0;
    loop {
        match Container::load(dir.clone()) {
            Ok(container) => return Ok(container),
            Err(_) if attempts < 40 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => return Err(runtime_err("load", id)(e)),
        }
    }
}

/// Runs the user's process of a created container.
pub fn start(rt: &Runtime, id: &str) -> Result<(), OciError> {
    load(rt, id)?.start().map_err(runtime_err("start", id))
}

/// runc's `state` output (and what imgsign recorded, under `imgsign`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    /// The init's host pid; 0 once stopped.
    pub pid: i32,
    pub status: ContainerStatus,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339.
    pub created: serde_json::Value,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imgsign: Option<Record>,
}

pub fn state(rt: &Runtime, id: &str) -> Result<OciState, OciError> {
    let container = load(rt, id)?;
    let record = Record::load(&container.root);
    let status = container.status();
    let pid = match status {
        ContainerStatus::Stopped => 0,
        _ => container.pid().map(|p| p.as_raw()).unwrap_or(0),
    };
    Ok(OciState {
        oci_version: container.state.oci_version.clone(),
        id: container.id().to_string(),
        pid,
        status,
        bundle: container.bundle().clone(),
        rootfs: record.as_ref().map(|r| r.rootfs.clone()).unwrap_or_default(),
        created: serde_json::to_value(container.created()).unwrap_or_default(),
        owner: String::new(),
        annotations: container.state.annotations.clone(),
        imgsign: record,
    })
}

/// Parses a signal as runc takes it: a name (`TERM`, `SIGTERM`, any case) or a number.
pub fn parse_signal(text: &str) -> Result<libcontainer::signal::Signal, OciError> {
    let parsed = match text.parse::<i32>() {
        Ok(number) => libcontainer::signal::Signal::try_from(number).ok(),
        Err(_) => libcontainer::signal::Signal::try_from(text).ok(),
    };
    parsed.ok_or_else(|| OciError::Signal(text.to_string()))
}

/// Sends `signal` to the init, or with `all` to every process of the container.
pub fn kill(rt: &Runtime, id: &str, signal: &str, all: bool) -> Result<(), OciError> {
    let signal = parse_signal(signal)?;
    let mut container = load(rt, id)?;
    if container.status() == ContainerStatus::Stopped {
        return Err(OciError::NotRunning(id.to_string()));
    }
    match container.kill(signal, all) {
        Ok(()) => Ok(()),
        Err(_) if container.status() == ContainerStatus::Stopped => Err(OciError::NotRunning(id.to_string())),
        Err(e) => Err(runtime_err("signal", id)(e)),
    }
}

pub fn pause(rt: &Runtime, id: &str) -> Result<(), OciError> {
    load(rt, id)?.pause().map_err(runtime_err("pause", id))
}

pub fn resume(rt: &Runtime, id: &str) -> Result<(), OciError> {
    load(rt, id)?.resume().map_err(runtime_err("resume", id))
}

/// Deletes a stopped container (any container with `force`, killing it first) and removes its
/// scope. Returns warnings: a scope the daemon could not remove is the daemon's to forget
/// (its cgroup is gone). With `force`, a container that does not exist is not an error, and a
/// directory left by an aborted create is removed.
pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<Vec<String>, OciError> {
    let mut container = match load(rt, id) {
        Ok(container) => container,
        Err(OciError::NotFound(_)) if force => {
            let dir = rt.root.join(id);
            if !id.is_empty() && !id.contains('/') && id != "." && id != ".." && dir.is_dir() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let record = Record::load(&container.root);
    let mut warnings = Vec::new();
    match container.delete(force) {
        Ok(()) => {}
        // libcontainer stops at a failing poststop hook, with the cgroup already gone; the
        // runtime spec wants a warning and the rest of the lifecycle, as runc does.
        Err(libcontainer::error::LibcontainerError::Hook(e)) => {
            warnings.push(format!("a poststop hook of container {id} failed: {e}"));
            std::fs::remove_dir_all(&container.root).map_err(|source| OciError::Io {
                what: "cannot remove the state of",
                path: container.root.clone(),
                source,
            })?;
        }
        Err(e) => return Err(runtime_err("delete", id)(e)),
    }
    if let Some(scope) = record.and_then(|r| r.scope) {
        if let Err(e) = scope::remove(&scope) {
            warnings.push(e.to_string());
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number_as_runc_takes_them() {
        for (text, number) in [("KILL", 9), ("sigterm", 15), ("SIGUSR1", 10), ("9", 9), ("15", 15)] {
            let expected = libcontainer::signal::Signal::from(nix::sys::signal::Signal::try_from(number).unwrap());
            assert_eq!(format!("{:?}", parse_signal(text).unwrap()), format!("{expected:?}"), "{text}");
        }
        for bad in ["", "NOPE", "0", "99", "-9"] {
            assert!(matches!(parse_signal(bad), Err(OciError::Signal(_))), "{bad}");
        }
    }

    #[test]
    fn ids_that_are_not_one_path_component_do_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime { root: dir.path().join("root"), systemd_cgroup: false };
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        std::fs::write(dir.path().join("x/state.json"), "{}").unwrap();
        for id in ["", "..", ".", "../x", "a/b"] {
            assert!(matches!(load(&rt, id), Err(OciError::NotFound(_))), "{id:?}");
        }
        assert!(delete(&rt, "../x", true).unwrap().is_empty());
        assert!(dir.path().join("x/state.json").exists(), "delete --force escaped the state root");
    }
}
