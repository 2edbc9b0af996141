//! `imgsign run --enforce`: the container's cgroup becomes a scope of the node's enforcement
//! daemon before the container's first instruction runs.
//!
//! The cgroup directory is made first (libcontainer later puts the container's init into it
//! before that init execs the entrypoint), then registered through the daemon's control socket
//! with the bundles `run` verified. The daemon verifies them again against the node's trust
//! store (only what the node trusts reaches the kernel) and replies once the kernel holds the
//! digests; only then does the container start. When it ends, the scope is removed (and if
//! imgsign dies first, the daemon forgets the scope once libcontainer's cleanup or the operator
//! removes the cgroup). Nothing runs unenforced: no daemon, a daemon that refuses the bundles,
//! or a node without the unified cgroup v2 hierarchy each stop the run with the reason.

use super::scope::{ModeArg, ProfileArg, ViolationArg};
use anyhow::Context as _;
use enforce::control::{self, AddScope, ContainerInfo, Request, DEFAULT_SOCKET};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the unified cgroup v2 hierarchy must be mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The daemon verifies every bundle before it replies: a large image takes a few seconds.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args)]
pub struct EnforceArgs {
    /// Make the container's cgroup an enforcement scope holding the image's signed digests
    /// before it starts: `--enforce` refuses anything else, `--enforce=audit` reports it. Needs
    /// `imgsign enforce` running on the node; without it, nothing runs.
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "enforce",
        value_name = "MODE"
    )]
    pub enforce: Option<ModeArg>,
    /// With --enforce: the daemon freezes or kills the container when the kernel reports a
    /// violation in it (then `imgsign snapshot` / `imgsign kill`).
    #[arg(long, value_enum, requires = "enforce")]
    pub on_violation: Option<ViolationArg>,
    /// With --enforce: `strict` also refuses anonymous executable memory and io_uring.
    #[arg(long, value_enum, default_value = "default")]
    pub enforce_profile: ProfileArg,
    /// The enforcement daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
}

/// Why a container could not be made a scope.
pub enum NotEnforced {
    /// The daemon refused the scope (its trust store does not accept the bundles, ...): exit 1.
    Refused(String),
    /// No daemon, no cgroup v2, a cgroup that cannot be made: the launch fails (exit 125).
    Failed(anyhow::Error),
}

/// A container's cgroup registered as a scope; removed from the daemon on drop.
pub struct Registered {
    socket: PathBuf,
    name: String,
    cgroup: PathBuf,
    removed: bool,
}

impl EnforceArgs {
    /// Makes the cgroup of container `container.id` and registers it as scope `container.id`
    /// holding `bundles`' digests; the daemon names the container in the scope's events. `None`
    /// without `--enforce`.
    pub fn register(&self, container: ContainerInfo, bundles: &[PathBuf]) -> Result<Option<Registered>, NotEnforced> {
        let id = container.id.clone();
        let id = id.as_str();
        let Some(mode) = self.enforce else { return Ok(None) };
        let root = Path::new(CGROUP_ROOT);
        match enforce::cgroup::fs_magic(root) {
            Ok(enforce::cgroup::CGROUP2_SUPER_MAGIC) => {}
            Ok(_) => {
                return Err(NotEnforced::Failed(anyhow::anyhow!(
                    "--enforce needs the unified cgroup v2 hierarchy at {CGROUP_ROOT}; this node mounts cgroup v1 \
                     controllers there, where libcontainer would place the container out of the enforcer's reach"
                )))
            }
            Err(e) => {
                return Err(NotEnforced::Failed(anyhow::Error::new(e).context(format!("cannot stat {CGROUP_ROOT}"))))
            }
        }
        let cgroup = root.join(launch::config::cgroup_path(id).trim_start_matches('/'));
        make_cgroup(&cgroup).map_err(NotEnforced::Failed)?;
        let mut registered =
            Registered { socket: self.control_socket.clone(), name: id.to_string(), cgroup, removed: true };
        let bundles = bundles.iter().map(|b| std::path::absolute(b).unwrap_or_else(|_| b.clone())).collect();
        let request = Request::Add(AddScope {
            name: id.to_string(),
            cgroup: registered.cgroup.clone(),
            mode: mode.into(),
            profile: self.enforce_profile.into(),
            remote_fs: false,
            on_violation: self.on_violation.map(Into::into),
            container: Some(container),
            bundles,
            image: None,
        });
        let reply = match control::call(&self.control_socket, &request, REGISTER_TIMEOUT) {
            Ok(reply) => reply,
            Err(e) => {
                return Err(NotEnforced::Failed(
                    anyhow::Error::new(e).context("--enforce: refusing to run the container unenforced"),
                ))
            }
        };
        if !reply.ok {
            let reason = reply.error.unwrap_or_else(|| "no reason given".into());
            return Err(NotEnforced::Refused(format!(
                "the enforcement daemon refused the container's scope: {reason}"
            )));
        }
        registered.removed = false;
        Ok(Some(registered))
    }
}

/// Controllers the container's limits need (`launch::spec`: pids, memory; devices are a BPF
/// program on cgroup v2). libcontainer enables them itself only on the way to a cgroup it
/// creates, so for the cgroup made here they are enabled first, on every level above it.
const CONTROLLERS: [&str; 2] = ["memory", "pids"];

/// Writes `bundles` (discovered, not read from files) as `dir/bundle-N.json` for the daemon.
pub fn write_bundles(bundles: &[verifier_core::bundle::CheckedBundle], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    bundles
        .iter()
        .enumerate()
        .map(|(i, bundle)| {
            let path = dir.join(format!("bundle-{i}.json"));
            bundle.write_file(&path).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Makes `dir` (and `/sys/fs/cgroup/imgsign`) with [`CONTROLLERS`] enabled for it; an existing
/// `dir` is refused: it would be another container's cgroup, or one left by a crash that its
/// owner should look at.
fn make_cgroup(dir: &Path) -> anyhow::Result<()> {
    let parent = dir.parent().context("a container cgroup has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create cgroup {}", parent.display()))?;
    for level in [Path::new(CGROUP_ROOT), parent] {
        let control = level.join("cgroup.subtree_control");
        let enabled =
            std::fs::read_to_string(&control).with_context(|| format!("cannot read {}", control.display()))?;
        for controller in CONTROLLERS {
            if !enabled.split_whitespace().any(|c| c == controller) {
                std::fs::write(&control, format!("+{controller}"))
                    .with_context(|| format!("cannot enable the {controller} controller in {}", control.display()))?;
            }
        }
    }
    std::fs::create_dir(dir).with_context(|| format!("cannot create cgroup {} for the container", dir.display()))
}

impl Registered {
    /// Removes the scope from the daemon, and the cgroup if libcontainer left it. A failure is
    /// a warning: the container has ended, and the daemon forgets scopes whose cgroup is gone.
    pub fn remove(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            // Registration failed: only the cgroup made for it is left.
            let _ = std::fs::remove_dir(&self.cgroup);
            return;
        }
        let _ = std::fs::remove_dir(&self.cgroup);
        let request = Request::Remove { name: self.name.clone() };
        match control::call(&self.socket, &request, REMOVE_TIMEOUT) {
            Ok(reply) if reply.ok => {}
            Ok(reply) => eprintln!(
                "imgsign: warning: the enforcement daemon did not remove scope {}: {}",
                self.name,
                reply.error.unwrap_or_default()
            ),
            Err(e) => eprintln!("imgsign: warning: scope {} not removed: {:#}", self.name, anyhow::Error::new(e)),
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.remove();
    }
}
