//! `create` and `run`: the gate, then libcontainer's create (the init waits for `start`), then
//! the scope, then the record. Any failure after libcontainer created the container deletes it
//! again, so a refused container leaves nothing behind: no state directory, no cgroup, no
//! process, no scope.

use super::gate;
use super::record::Record;
use super::scope::{self, Attached, Paths};
use super::{runtime_err, OciError, Runtime};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;

/// runc's `create` flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
}

/// A created container: its init's host pid, what was recorded, and what the log should warn.
#[derive(Debug, Clone)]
pub struct Created {
    pub pid: i32,
    pub record: Record,
    pub warnings: Vec<String>,
    /// Time spent waiting for the gate (spec, policy, admission; when it decided beside the
    /// create, only what was left after it) and in libcontainer's create.
    pub gate_time: std::time::Duration,
    pub create_time: std::time::Duration,
    /// Whether the gate decided in its own process while libcontainer created the container.
    pub gate_beside: bool,
}

/// Creates the container (admitted, scoped, its init waiting for `start`).
pub fn create(rt: &Runtime, opts: &CreateOptions) -> Result<Created, OciError> {
    build(rt, opts, true).map(|(_, created)| created)
}

/// Creates and starts the container. Detached: returns 0 once it runs (`on_created` sees it
/// first). Otherwise waits for it (forwarding SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 to
/// its init), deletes it and returns its exit code (128 + signal if killed).
pub fn run(
    rt: &Runtime,
    opts: &CreateOptions,
    detach: bool,
    on_created: impl FnOnce(&Created),
) -> Result<i32, OciError> {
    let (mut container, created) = build(rt, opts, detach)?;
    on_created(&created);
    if let Err(e) = container.start() {
        discard(&mut container, &created.record);
        return Err(runtime_err("start", &opts.id)(e));
    }
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding(created.pid);
    discard(&mut container, &created.record);
    code
}

fn build(rt: &Runtime, opts: &CreateOptions, detach: bool) -> Result<(Container, Created), OciError> {
    if rt.systemd_cgroup {
        return Err(OciError::Systemd);
    }
    let bundle = std::path::absolute(&opts.bundle).map_err(|source| OciError::Io {
        what: "cannot resolve the bundle",
        path: opts.bundle.clone(),
        source,
    })?;
    // Nothing exists yet: a refusal here leaves nothing to undo.
    let started = std::time::Instant::now();
    let prepared = gate::prepare(&bundle)?;
    let gate_beside = gate::may_run_beside_create(&prepared.spec);
    let gate = if gate_beside {
        Gate::Beside(gate::Pending::spawn(&opts.id, &bundle)?, prepared)
    } else {
        Gate::Decided(gate::decide(&opts.id, prepared)?)
    };
    let mut gate_time = started.elapsed();
    let id = opts.id.as_str();
    let built = (|| {
        // libcontainer's children run Rust code between fork and exec (`crate::fork`).
        let _forks = crate::fork::guard();
        ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(DefaultExecutor {})
            .with_pid_file(opts.pid_file.as_ref())
            .map_err(runtime_err("write the pid file of", id))?
            .with_console_socket(opts.console_socket.as_ref())
            .with_root_path(rt.root.clone())
            .map_err(runtime_err("use the state root for", id))?
            .with_preserved_fds(opts.preserve_fds)
            .validate_id()
            .map_err(runtime_err("accept the id of", id))?
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(detach)
            // pivot_root cannot leave a ramdisk root (diskless nodes, the kernel lab): moved
            // and chrooted instead there, as `imgsign run` does, whether or not asked.
            .with_no_pivot(opts.no_pivot || crate::host::root_is_ramdisk())
            .build()
            .map_err(runtime_err("create", id))
    })();
    let create_time = started.elapsed() - gate_time;
    // The gate's verdict, if it was deciding beside the create: a refusal deletes the
    // container, whose init has been waiting for `start`, and is the error even if the create
    // failed too (the root file system may be why).
    let gated = match gate {
        Gate::Decided(gated) => gated,
        Gate::Beside(pending, prepared) => {
            let waited = std::time::Instant::now();
            let verdict = pending.wait(id, prepared);
            gate_time += waited.elapsed();
            match verdict {
                Ok(gated) => gated,
                Err(refused) => {
                    if let Ok(mut container) = built {
                        let _ = container.delete(true);
                    }
                    return Err(refused.into());
                }
            }
        }
    };
    let mut container = built?;
    let Some(pid) = container.pid().map(Pid::as_raw) else {
        let _ = container.delete(true);
        return Err(OciError::NotRunning(id.to_string()));
    };
    let naming = scope::Naming::default();
    let attached = match scope::attach(&gated.policy, id, pid, &gated.admitted, &naming, &Paths::default()) {
        Ok(attached) => attached,
        Err(e) => {
            let _ = container.delete(true);
            return Err(e.into());
        }
    };
    let mut record = Record {
        rootfs: gated.rootfs,
        image: gated.admitted.name.clone(),
        digest: gated.admitted.digest.clone(),
        hashed: gated.admitted.hashed,
        cached: gated.admitted.cached,
        layers: gated.admitted.layers,
        walked_because: gated.admitted.walked_because.clone(),
        remembered: gated.admitted.remembered,
        scope: None,
        unenforced: None,
    };
    let mut warnings = Vec::new();
    match attached {
        Attached::Scoped(scope) => record.scope = Some(scope),
        Attached::Unenforced(reason) => {
            warnings.push(format!(
                "container {id} runs WITHOUT kernel enforcement (when_no_enforcer = \"run-unenforced\"): {reason}"
            ));
            record.unenforced = Some(reason);
        }
    }
    if let Err(source) = record.save(&container.root) {
        let path = Record::path(&container.root);
        discard(&mut container, &record);
        return Err(OciError::Io { what: "cannot write", path, source });
    }
    Ok((container, Created { pid, record, warnings, gate_time, create_time, gate_beside }))
}

/// The gate's decision, made before the create or being made beside it.
enum Gate {
    Decided(gate::Gated),
    Beside(gate::Pending, gate::Prepared),
}

/// Removes the scope and deletes the container; failures are left to the daemon (which forgets
/// scopes whose cgroup is gone) and to `delete --force`.
fn discard(container: &mut Container, record: &Record) {
    let _ = container.delete(true);
    if let Some(scope) = &record.scope {
        let _ = scope::remove(scope);
    }
}

/// Waits for `pid`, forwarding the usual termination signals to it.
fn wait_forwarding(pid: i32) -> Result<i32, OciError> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        set.add(signal);
    }
    let _ = set.thread_block();
    let _forwarder = crate::forward::Forwarder::start(pid, set);
    crate::forward::exit_code(pid).map_err(|source| OciError::Wait { pid, source })
}
