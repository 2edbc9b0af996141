//! The node façade: everything `imgsign enforce` does, as calls a Rust user could make, so the
//! CLI only parses arguments and prints. [`check`] verifies a policy without a kernel;
//! [`preflight`] says whether this kernel can enforce; [`Node::start`] checks the kernel, opens
//! (or takes over) the pinned programs, opens the event output, installs the signal handlers
//! (SIGHUP reload, SIGINT/SIGTERM stop) and applies the first plan; [`Node::run`] streams events
//! until stopped; [`status`] and [`detach`] read or unpin what is pinned.
//!
//! The policy is read once per start or reload: a [`PolicySource`] opened by the caller is what
//! every call here takes.

use crate::bpf::{self, BpfKernel, Status};
use crate::capability::{self, Missing};
use crate::daemon::{Daemon, DaemonError, Notices};
use crate::kernel::KernelError;
use crate::plan::{self, Plan, PlanError};
use crate::policy::{EventSink, Policy};
use crate::source::PolicySource;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The kernel cannot run the enforcer; each missing piece says what to change.
    #[error("this kernel cannot run the BPF-LSM enforcer: {}", list(.missing))]
    Unsupported { missing: Vec<Missing> },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("opening the event file {path}")]
    EventFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the SIGHUP/SIGTERM/SIGINT handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Daemon(DaemonError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

impl NodeError {
    /// Whether a bundle or an image did not verify (as opposed to input that could not be read,
    /// or a kernel that cannot enforce).
    pub fn is_verification_failure(&self) -> bool {
        match self {
            NodeError::Plan(e) => e.is_verification_failure(),
            _ => false,
        }
    }
}

impl From<DaemonError> for NodeError {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Plan(e) => NodeError::Plan(e),
            other => NodeError::Daemon(other),
        }
    }
}

fn list(missing: &[Missing]) -> String {
    missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Verifies every bundle of the policy as of `now` and returns the plan; nothing is loaded.
pub fn check(policy: &PolicySource, now: SystemTime) -> Result<Plan, NodeError> {
    Ok(plan::build(policy.policy(), now)?)
}

/// Whether this kernel can run the enforcer with programs pinned under `pin_dir`.
pub fn preflight(pin_dir: &Path) -> Result<(), NodeError> {
    let found = capability::check(pin_dir);
    if found.ok() {
        Ok(())
    } else {
        Err(NodeError::Unsupported { missing: found.missing })
    }
}

/// What is pinned under the policy's `pin_dir`, with the policy's names for its scopes.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub status: Status,
    /// cgroup id -> the policy's name of the scope on that cgroup (scopes in force that the
    /// policy does not name are absent).
    pub names: BTreeMap<u64, String>,
}

impl NodeStatus {
    pub fn name_of(&self, cgroup_id: u64) -> Option<&str> {
        self.names.get(&cgroup_id).map(String::as_str)
    }
}

/// Reads what is pinned under the policy's `pin_dir` (after [`preflight`]), changing nothing.
pub fn status(policy: &Policy) -> Result<NodeStatus, NodeError> {
    preflight(&policy.pin_dir)?;
    let status = bpf::status(&policy.pin_dir)?;
    let names = policy
        .scopes
        .iter()
        .filter_map(|s| crate::cgroup::cgroup_id(&s.cgroup).ok().map(|id| (id, s.name.clone())))
        .collect();
    Ok(NodeStatus { status, names })
}

/// Unpins the enforcer under the policy's `pin_dir` (after [`preflight`]); whether one was
/// pinned there. Enforcement ends once no process holds the programs.
pub fn detach(policy: &Policy) -> Result<bool, NodeError> {
    preflight(&policy.pin_dir)?;
    Ok(bpf::detach(&policy.pin_dir)?)
}

/// A running node enforcer: the daemon on the real kernel, with its signal flags.
pub struct Node {
    daemon: Daemon<BpfKernel>,
    /// Read once, at start (a reload does not move the pins).
    pin_dir: PathBuf,
    reload: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    signals: Vec<signal_hook::SigId>,
}

impl Node {
    /// Checks the kernel, opens or takes over the enforcer pinned under the policy's `pin_dir`,
    /// opens the event output (`stdout` is where `events = "-"` goes), installs the signal
    /// handlers and applies the first plan. `notices` hears warnings and failures.
    pub fn start(policy: PolicySource, stdout: Box<dyn Write + Send>, notices: Notices) -> Result<Node, NodeError> {
        let settings = policy.policy();
        preflight(&settings.pin_dir)?;
        let kernel = BpfKernel::open(&settings.pin_dir)?;
        let out: Box<dyn Write + Send> = match &settings.events {
            EventSink::Stdout => stdout,
            EventSink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| NodeError::EventFile { path: path.clone(), source })?,
            ),
        };
        let reload = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let mut signals = Vec::new();
        let mut register = |signal, flag: &Arc<AtomicBool>| -> Result<(), NodeError> {
            signals.push(signal_hook::flag::register(signal, flag.clone()).map_err(NodeError::Signals)?);
            Ok(())
        };
        register(signal_hook::consts::SIGHUP, &reload)?;
        register(signal_hook::consts::SIGTERM, &stop)?;
        register(signal_hook::consts::SIGINT, &stop)?;
        let pin_dir = settings.pin_dir.clone();
        // Bound before the first plan is applied, so a runtime that finds the socket can count
        // on the daemon answering once it is up.
        let control = match crate::control::ControlServer::bind(&settings.control) {
            Ok(server) => server,
            Err(e) => {
                for id in signals {
                    signal_hook::low_level::unregister(id);
                }
                return Err(e.into());
            }
        };
        match Daemon::start(policy, kernel, out, notices, SystemTime::now()) {
            Ok(mut daemon) => {
                daemon.serve_control(control);
                Ok(Node { daemon, pin_dir, reload, stop, signals })
            }
            Err(e) => {
                for id in signals {
                    signal_hook::low_level::unregister(id);
                }
                Err(e.into())
            }
        }
    }

    /// Streams events and reloads on SIGHUP until SIGTERM or SIGINT. The programs stay pinned
    /// and enforcing after it returns.
    pub fn run(&mut self) -> Result<(), NodeError> {
        Ok(self.daemon.run(&self.reload, &self.stop)?)
    }

    pub fn daemon(&self) -> &Daemon<BpfKernel> {
        &self.daemon
    }

    pub fn daemon_mut(&mut self) -> &mut Daemon<BpfKernel> {
        &mut self.daemon
    }

    /// Where the programs and maps are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for id in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
