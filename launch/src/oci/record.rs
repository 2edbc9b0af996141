//! What the runtime remembers of a container beyond libcontainer's `state.json`: the root it
//! admitted, the signed image it matched, and the enforcement scope its cgroup became (or why
//! it runs unenforced). Kept as `<root>/<id>/imgsign-runtime.json`, inside libcontainer's
//! container directory, so it is removed with the container.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const RECORD_FILE: &str = "imgsign-runtime.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub rootfs: PathBuf,
    /// The signed image name and digest that matched.
    pub image: String,
    pub digest: String,
    /// Files hashed by the gate now and taken from its cache.
    pub hashed: usize,
    pub cached: usize,
    /// The overlay layers the gate listed the root from (0: it walked the mount itself, for
    /// `walkedBecause`).
    #[serde(default)]
    pub layers: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walked_because: Option<String>,
    /// Admitted by the gate's verdict cache (the listing admitted last time; nothing matched).
    #[serde(default)]
    pub remembered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeRecord>,
    /// Why the container runs without a scope (`when_no_enforcer = "run-unenforced"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unenforced: Option<String>,
}

/// A scope registered with the enforcement daemon: removed when the container is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeRecord {
    pub name: String,
    pub cgroup: PathBuf,
    pub socket: PathBuf,
}

impl Record {
    pub fn path(container_dir: &Path) -> PathBuf {
        container_dir.join(RECORD_FILE)
    }

    /// Writes the record (temporary name, then rename).
    pub fn save(&self, container_dir: &Path) -> std::io::Result<()> {
        let tmp = container_dir.join(".imgsign-runtime.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, Self::path(container_dir))
    }

    /// The record, if the container has one that can be read.
    pub fn load(container_dir: &Path) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(Self::path(container_dir)).ok()?).ok()
    }
}
