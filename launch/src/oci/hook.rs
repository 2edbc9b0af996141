//! `imgsign hook`: the runtime's gate and scope for containers started by a stock OCI runtime
//! (runc, crun) through OCI hooks, as podman and CRI-O configure them in `hooks.d`.
//!
//! At `createRuntime` the runtime has made the container's namespaces and cgroup and put its
//! init there, and the init has not yet run anything of the container's: the hook reads the
//! state (`id`, `pid`, `bundle`) from stdin, admits the root file system the bundle's spec
//! names exactly as `imgsign runtime create` does, and registers the init's real cgroup (from
//! `/proc/<pid>/cgroup`, not from the spec) as the container's scope. Any failure exits
//! non-zero, and the runtime then refuses the container. At `poststop` the scope is removed
//! (the daemon also forgets scopes whose cgroup has gone).

use super::gate;
use super::record::ScopeRecord;
use super::scope::{self, Attached, Paths};
use super::OciError;
use admission::{Admitted, Policy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The parts of the OCI state a hook receives on stdin that it uses.
#[derive(Debug, Clone, Deserialize)]
pub struct HookState {
    pub id: String,
    #[serde(default)]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    /// The config's annotations (runc and crun copy them into the state): the container's
    /// name where the engine puts one ([`scope::Naming`]).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("the OCI state on stdin is not valid")]
    State(#[source] serde_json::Error),
    #[error("the OCI state of container {0} has no pid: the hook must run at createRuntime (or later)")]
    NoPid(String),
}

/// The `createRuntime` hook: admits the container and makes its cgroup a scope.
pub fn create_runtime(state: &HookState) -> Result<(Admitted, Attached), OciError> {
    let gated = gate::check(&state.id, &state.bundle)?;
    let pid = state.pid.ok_or_else(|| HookError::NoPid(state.id.clone()))?;
    let naming = scope::Naming::from_annotations(|k| state.annotations.get(k).map(String::as_str));
    // The policy says where the unified hierarchy is (a hybrid node's /sys/fs/cgroup/unified,
    // where runc places the container too). `imgsign runtime create` keeps the default:
    // libcontainer does not join the unified hierarchy of a hybrid node.
    let paths = Paths { cgroup_root: gated.policy.cgroup_root.clone(), ..Paths::default() };
    let attached = scope::attach(&gated.policy, &state.id, pid, &gated.admitted, &naming, &paths)?;
    Ok((gated.admitted, attached))
}

/// The `poststop` hook: removes the container's scope (a scope that was never made, or a
/// daemon that is gone, is not an error: the daemon forgets scopes whose cgroup has gone).
pub fn poststop(state: &HookState) -> Result<(), OciError> {
    let policy = Policy::load(&Policy::path()).map_err(gate::GateError::Policy)?;
    let record = ScopeRecord { name: state.id.clone(), cgroup: PathBuf::new(), socket: policy.control_socket };
    scope::remove(&record)?;
    Ok(())
}

/// Parses the state a runtime writes to a hook's stdin.
pub fn parse_state(bytes: &[u8]) -> Result<HookState, HookError> {
    serde_json::from_slice(bytes).map_err(HookError::State)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_carries_the_configs_annotations() {
        let state = br#"{"ociVersion":"1.0.2","id":"c1","status":"created","pid":42,"bundle":"/b",
            "annotations":{"io.kubernetes.cri.container-name":"web","io.container.manager":"libpod"}}"#;
        let state = parse_state(state).unwrap();
        assert_eq!(state.pid, Some(42));
        let naming = scope::Naming::from_annotations(|k| state.annotations.get(k).map(String::as_str));
        assert_eq!(naming.name.as_deref(), Some("web"));
        let bare = parse_state(br#"{"id":"c1","bundle":"/b"}"#).unwrap();
        assert!(bare.annotations.is_empty(), "annotations are optional");
    }
}
