//! The gate in front of `create`: the bundle's spec is read, its root file system resolved
//! against the bundle, and `admission::admit` decides under the node's policy
//! (`/etc/imgsign/runtime.toml`, or `$IMGSIGN_RUNTIME_CONFIG`). The decision itself is the
//! `admission` crate's.
//!
//! When it runs: before anything is created ([`decide`]), or, when the spec has no hook that
//! runs before `start` ([`may_run_beside_create`]), in a process of its own ([`Pending`]) while
//! libcontainer creates the container, whose init then waits for `start`. Either way the
//! container's process never runs, and no engine hook sees the root file system, before the
//! verdict; a refusal deletes what libcontainer made. The second way takes the walk of a large
//! root file system off the start's critical path. What it gives up: libcontainer's own set-up
//! (namespaces, mounts into the root) runs on a root file system not yet judged, as it does
//! for any image (it resolves paths inside the root as an untrusted tree), and a root file
//! system crafted to stall that set-up stalls it before the refusal arrives.

use admission::{AdmitError, Admitted, GateSpec, Policy, PolicyError};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};
use verifier_core::verify::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot read the bundle's spec {path}")]
    Spec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error(transparent)]
    ReadSpec(#[from] admission::spec::SpecError),
    #[error("the bundle's spec {0} names no root file system (root.path)")]
    NoRoot(PathBuf),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("imgsign refused container {id}")]
    Refused {
        id: String,
        #[source]
        source: AdmitError,
    },
    /// The refusal as the gate's own process wrote it (its whole error chain).
    #[error("imgsign refused container {id}: {reason}")]
    RefusedBeside { id: String, reason: String },
    #[error("cannot run the gate's process")]
    Spawn(#[source] std::io::Error),
    #[error("the gate's process gave no verdict ({status}){stderr}")]
    NoVerdict { status: String, stderr: String },
    #[error("the gate's process judged {judged}, not the root file system {rootfs} this container starts")]
    OtherRoot { judged: PathBuf, rootfs: PathBuf },
}

/// A container the policy admits: its spec, its root, the policy and the matching manifest.
#[derive(Debug)]
pub struct Gated {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub policy: Policy,
    pub admitted: Admitted,
}

/// What the gate needs before it decides: the bundle's spec (the whole spec for `create`,
/// which hands it to libcontainer; the gate's view of it for the hook), its root, the node's
/// policy.
#[derive(Debug)]
pub struct Prepared<S = Spec> {
    pub spec: S,
    pub rootfs: PathBuf,
    pub policy: Policy,
}

/// Reads `bundle/config.json` and loads the node's policy.
pub fn prepare(bundle: &Path) -> Result<Prepared, GateError> {
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|source| GateError::Spec { path: config.clone(), source })?;
    let rootfs = rootfs_of(bundle, &config, spec.root().as_ref().map(|r| r.path()))?;
    let policy = Policy::load(&Policy::path())?;
    Ok(Prepared { spec, rootfs, policy })
}

/// [`prepare`] with only what the gate reads of the spec ([`GateSpec`], which skips the rest
/// of `config.json` instead of building it); `mark` hears where the time went (`spec`, then
/// `policy`).
pub fn prepare_view(bundle: &Path, mark: &mut dyn FnMut(&'static str)) -> Result<Prepared<GateSpec>, GateError> {
    let config = bundle.join("config.json");
    let spec = GateSpec::load(&config)?;
    let rootfs = rootfs_of(bundle, &config, spec.root.as_ref())?;
    mark("spec");
    let policy = Policy::load(&Policy::path())?;
    mark("policy");
    Ok(Prepared { spec, rootfs, policy })
}

/// The root file system `root.path` names, resolved against the bundle.
fn rootfs_of(bundle: &Path, config: &Path, root: Option<&PathBuf>) -> Result<PathBuf, GateError> {
    let root = root.ok_or_else(|| GateError::NoRoot(config.to_path_buf()))?;
    Ok(if root.is_absolute() { root.clone() } else { bundle.join(root) })
}

/// Asks admission about the prepared root file system.
pub fn decide(id: &str, prepared: Prepared) -> Result<Gated, GateError> {
    let Prepared { spec, rootfs, policy } = prepared;
    let admitted = admission::admit(&policy, &GateSpec::from(&spec), &rootfs)
        .map_err(|source| GateError::Refused { id: id.to_string(), source })?;
    Ok(Gated { spec, rootfs, policy, admitted })
}

/// Whether the gate may decide while libcontainer creates the container: only if the spec has
/// no hook that runs before `start` (prestart, createRuntime, createContainer), since an engine's
/// hook may read or run what is in the root file system.
pub fn may_run_beside_create(spec: &Spec) -> bool {
    spec.hooks().as_ref().is_none_or(|hooks| {
        [hooks.prestart(), hooks.create_runtime(), hooks.create_container()]
            .iter()
            .all(|h| h.as_ref().is_none_or(Vec::is_empty))
    })
}

/// The argument that makes `imgsign` the gate's process (a hidden command; see [`serve`]).
pub const WORKER_COMMAND: &str = "runtime-gate-worker";

/// What the gate's process writes on its stdout (one JSON document).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    Admitted { rootfs: PathBuf, admitted: Admitted },
    Refused { reason: String },
}

/// The gate deciding in a process of its own (this same executable, `/proc/self/exe`, so
/// never another build), started before libcontainer's create.
#[derive(Debug)]
pub struct Pending {
    child: std::process::Child,
}

impl Pending {
    /// Starts the gate's process on `id` and `bundle`.
    pub fn spawn(id: &str, bundle: &Path) -> Result<Pending, GateError> {
        use std::process::{Command, Stdio};
        // Spawning forks: under the crate's fork lock, as every fork here.
        let _forks = crate::fork::guard();
        let child = Command::new("/proc/self/exe")
            .arg(WORKER_COMMAND)
            .arg(id)
            .arg(bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(GateError::Spawn)?;
        Ok(Pending { child })
    }

    /// Waits for the verdict on `prepared` (the parent's own reading of the same bundle, which
    /// must name the root file system the process judged).
    pub fn wait(self, id: &str, prepared: Prepared) -> Result<Gated, GateError> {
        let output = self.child.wait_with_output().map_err(GateError::Spawn)?;
        let verdict: Verdict = serde_json::from_slice(&output.stdout).map_err(|_| {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            GateError::NoVerdict {
                status: output.status.to_string(),
                stderr: if stderr.is_empty() { stderr } else { format!(": {stderr}") },
            }
        })?;
        match verdict {
            Verdict::Refused { reason } => Err(GateError::RefusedBeside { id: id.to_string(), reason }),
            Verdict::Admitted { rootfs, .. } if rootfs != prepared.rootfs => {
                Err(GateError::OtherRoot { judged: rootfs, rootfs: prepared.rootfs })
            }
            Verdict::Admitted { admitted, .. } => {
                let Prepared { spec, rootfs, policy } = prepared;
                Ok(Gated { spec, rootfs, policy, admitted })
            }
        }
    }
}

/// The gate's process: decides on `id` and `bundle` and returns the verdict to print. It reads
/// only the gate's view of the spec: the parent has parsed the whole spec already. `mark`
/// hears where the time went ([`prepare_view`]'s and [`admission::admit_early`]'s phases).
pub fn serve(id: &str, bundle: &Path, mark: &mut dyn FnMut(&'static str)) -> Verdict {
    let decided = prepare_view(bundle, mark).and_then(|Prepared { spec, rootfs, policy }| {
        let admitted = admission::admit_marked(&policy, &spec, &rootfs, mark)
            .map_err(|source| GateError::Refused { id: id.to_string(), source })?;
        Ok((rootfs, admitted))
    });
    match decided {
        Ok((rootfs, admitted)) => Verdict::Admitted { rootfs, admitted },
        // The refusal's chain below "imgsign refused container ...", which the parent adds.
        Err(GateError::Refused { source, .. }) => Verdict::Refused { reason: error_chain(&source) },
        Err(other) => Verdict::Refused { reason: error_chain(&other) },
    }
}
