//! The engine's record of a container (`<state_root>/<id>/imgsign.json`) and the listing
//! `imgsign ps` prints. libcontainer keeps its own state under `<id>/runtime/`; this file holds
//! what it does not know: the image and its signed digest.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the record inside the container directory.
pub const STATE_FILE: &str = "imgsign.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state root {path}")]
    ReadRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a container is and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub id: String,
    pub image: String,
    pub digest: String,
    /// Host pid of the container's init, once started.
    pub pid: Option<i32>,
    /// `created`, `running`, `frozen` or `stopped` (a recorded `running` whose pid is gone reads `stopped`).
    pub status: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// The container's cgroup path (relative to each hierarchy's root).
    pub cgroup: String,
    /// The enforcement scope its cgroup is (`imgsign run --enforce`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl ContainerRecord {
    /// Writes the record into `dir` (temporary name, then rename).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(".imgsign.json.tmp");
        let write_err = |source| StateError::Write { path: path.clone(), source };
        let json = serde_json::to_vec_pretty(self).map_err(|e| write_err(std::io::Error::other(e)))?;
        std::fs::write(&tmp, json).map_err(write_err)?;
        std::fs::rename(&tmp, &path).map_err(write_err)
    }
}

/// Every container under `state_root` (unreadable or foreign entries are skipped), sorted by
/// id. A missing root is an empty list.
pub fn list(state_root: &Path) -> Result<Vec<ContainerRecord>, StateError> {
    let entries = match std::fs::read_dir(state_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StateError::ReadRoot { path: state_root.to_path_buf(), source }),
    };
    let mut records: Vec<ContainerRecord> = entries
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join(STATE_FILE)).ok())
        .filter_map(|bytes| serde_json::from_slice::<ContainerRecord>(&bytes).ok())
        .map(|mut record| {
            if record.status == "running"
                && !record.pid.is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
            {
                record.status = "stopped".to_string();
            }
            record
        })
        .collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records)
}

/// The record of container `id`, if there is one.
pub fn find(state_root: &Path, id: &str) -> Result<Option<ContainerRecord>, StateError> {
    Ok(list(state_root)?.into_iter().find(|r| r.id == id))
}
