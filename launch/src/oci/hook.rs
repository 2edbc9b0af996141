//! `imgsign hook`: the runtime's gate and scope for containers started by a stock OCI runtime
//! (runc, crun) through OCI hooks, as podman and CRI-O configure them in `hooks.d`.
//!
//! At `createRuntime` the runtime has made the container's namespaces and cgroup and put its
//! init there, and the init has not yet run anything of the container's: the hook reads the
//! state (`id`, `pid`, `bundle`) from stdin, admits the root file system the bundle's spec
//! names exactly as `imgsign runtime create` does, and registers the init's real cgroup (from
//! `/proc/<pid>/cgroup`, not from the spec) as the container's scope (beside the gate when the
//! policy leaves one image to match, see [`create_runtime`]). Any failure exits non-zero, and
//! the runtime then refuses the container. At `poststop` the scope is removed
//! (the daemon also forgets scopes whose cgroup has gone).

use super::gate;
use super::record::ScopeRecord;
use super::scope::{self, Attached, Paths};
use super::OciError;
use admission::{Admitted, Policy};
use enforce::timing::Phases;
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

/// The `createRuntime` hook: admits the container and makes its cgroup a scope; `phases`
/// hears where the time went (`spec`, `policy`: reading them; the gate's phases, see
/// [`admission::admit_early`], with the scope registered beside them; `attach`: the scope when
/// it had to wait for the gate).
///
/// When the policy's verified candidates are one image, the scope holding its bundles is
/// registered while the root file system is still being judged ([`admission::admit_early`]):
/// a scope only restricts what may run in a cgroup whose init has run nothing of its own yet,
/// and a refusal removes it again and fails the hook. Either way the hook returns only after
/// the daemon answered (the kernel holds the scope) and the gate admitted the root.
pub fn create_runtime(state: &HookState, phases: &mut Phases) -> Result<(Admitted, Attached), OciError> {
    let gate::Prepared { spec, rootfs, policy } = gate::prepare_view(&state.bundle, &mut |p| phases.mark(p))?;
    let pid = state.pid.ok_or_else(|| HookError::NoPid(state.id.clone()))?;
    let naming = scope::Naming::from_annotations(|k| state.annotations.get(k).map(String::as_str));
    // The policy says where the unified hierarchy is (a hybrid node's /sys/fs/cgroup/unified,
    // where runc places the container too). `imgsign runtime create` keeps the default:
    // libcontainer does not join the unified hierarchy of a hybrid node.
    let paths = Paths { cgroup_root: policy.cgroup_root.clone(), ..Paths::default() };
    let attach = |admitted: &Admitted| scope::attach(&policy, &state.id, pid, admitted, &naming, &paths);
    let (verdict, early) =
        admission::admit_early(&policy, &spec, &rootfs, |preview| (preview.clone(), attach(preview)), &mut |phase| {
            phases.mark(phase)
        });
    let admitted = match verdict {
        Ok(admitted) => {
            // Zero-length marks, for the timing record: how the gate listed and decided.
            phases.mark(if admitted.layers > 0 { "listed-from-layers" } else { "listed-through-mount" });
            if admitted.remembered {
                phases.mark("verdict-remembered");
            }
            admitted
        }
        Err(source) => {
            if let Some((_, Ok(Attached::Scoped(record)))) = &early {
                // Best effort: the runtime now refuses the container, and the daemon forgets
                // the scope of a cgroup that is gone in any case.
                let _ = scope::remove(record);
            }
            return Err(gate::GateError::Refused { id: state.id.clone(), source }.into());
        }
    };
    let attached = match early {
        Some((preview, attached)) if same_image(&preview, &admitted) => attached?,
        Some((_, attached)) => {
            // Not the image registered beside the gate (one candidate admits only itself, so
            // this is not expected): the scope is made again for the image admitted.
            if let Ok(Attached::Scoped(record)) = &attached {
                scope::remove(record)?;
            }
            attach(&admitted)?
        }
        None => attach(&admitted)?,
    };
    phases.mark("attach");
    Ok((admitted, attached))
}

/// Whether two admissions name the same image and bundles (the counts aside).
fn same_image(a: &Admitted, b: &Admitted) -> bool {
    (&a.name, &a.digest, &a.bundles) == (&b.name, &b.digest, &b.bundles)
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
