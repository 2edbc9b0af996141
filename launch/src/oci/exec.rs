//! `exec`: a process joins a running container (its namespaces and cgroup, hence its
//! enforcement scope) through libcontainer's tenant builder. The root file system was admitted
//! at create; what the process runs is the kernel enforcer's to judge.

use super::lifecycle::load;
use super::{runtime_err, OciError, Runtime};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::wait::{waitpid, WaitStatus};
use std::path::PathBuf;

/// runc's `exec` flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub id: String,
    /// A process.json (podman and containerd pass one); otherwise `command` and the flags.
    pub process: Option<PathBuf>,
    pub command: Vec<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
    pub sub_cgroup: Option<String>,
}

/// Runs the process; detached returns 0 once it runs, otherwise its exit code.
pub fn exec(rt: &Runtime, opts: &ExecOptions) -> Result<i32, OciError> {
    let id = opts.id.as_str();
    // A clear "does not exist" before libcontainer's own error.
    load(rt, id)?;
    let pid = {
        let _forks = crate::fork::guard();
        ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(DefaultExecutor {})
            .with_root_path(rt.root.clone())
            .map_err(runtime_err("use the state root for", id))?
            .with_console_socket(opts.console_socket.as_ref())
            .with_pid_file(opts.pid_file.as_ref())
            .map_err(runtime_err("write the pid file of", id))?
            .with_preserved_fds(opts.preserve_fds)
            .validate_id()
            .map_err(runtime_err("accept the id of", id))?
            .as_tenant()
            .with_detach(opts.detach)
            .with_cwd(opts.cwd.as_ref())
            .with_env(opts.env.iter().cloned().collect())
            .with_process(opts.process.as_ref())
            .with_no_new_privs(opts.no_new_privs)
            .with_capabilities(opts.caps.clone())
            .with_container_args(opts.command.clone())
            .with_user(opts.user.map(|(uid, _)| uid))
            .with_group(opts.user.and_then(|(_, gid)| gid))
            .with_additional_gids(opts.additional_gids.clone())
            .with_ignore_paused(opts.ignore_paused)
            .with_sub_cgroup(opts.sub_cgroup.clone())
            .build()
            .map_err(runtime_err("exec in", id))?
    };
    if opts.detach {
        return Ok(0);
    }
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(source) => return Err(OciError::Wait { pid: pid.as_raw(), source }),
        }
    }
}
