//! Killing a judged process, and only it: a pid can be reused between the scan and the kill.
//! The process is pinned with `pidfd_open` first; then its start time must still be the one
//! the scan recorded (so the pidfd names the judged process, not a newcomer with its pid), and
//! its cgroup must still be the scope's or below (it was not moved out meanwhile, to be spared
//! or to have another process killed in its place); only then does `pidfd_send_signal` send
//! SIGKILL, to exactly the pinned process.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// The process exited before it could be pinned (nothing left to kill).
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
    /// The pid now names another process than the one judged.
    #[error("pid {pid} names another process now (started at {now}, the judged one at {judged})")]
    Reused { pid: u32, judged: u64, now: u64 },
    /// The process is no longer in the scope's cgroup subtree.
    #[error("process {pid} is no longer in {scope} (now in {now})")]
    Moved { pid: u32, scope: PathBuf, now: String },
    /// A system call failed.
    #[error("cannot kill process {pid}: {what}")]
    Failed {
        pid: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Sends SIGKILL to process `pid` if it is still the process that started at `start_time` and
/// is still in the cgroup `scope` or below.
pub fn kill(pid: u32, start_time: u64, scope: &Path) -> Result<(), KillError> {
    let raw = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).ok_or(KillError::Gone { pid })?;
    let pidfd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Err(KillError::Gone { pid }),
        Err(e) => return Err(KillError::Failed { pid, what: "pidfd_open", source: e.into() }),
    };
    // The pidfd holds the process that had the pid at pidfd_open; /proc/PID names it too as long
    // as it lives (a pid is not reused before its process is reaped).
    let now = super::scan::start_time(pid).map_err(|_| KillError::Gone { pid })?;
    if now != start_time {
        return Err(KillError::Reused { pid, judged: start_time, now });
    }
    let cgroup = task_cgroup(pid).map_err(|source| KillError::Failed { pid, what: "reading its cgroup", source })?;
    if !in_scope(&cgroup, scope) {
        return Err(KillError::Moved { pid, scope: scope.to_path_buf(), now: cgroup.display().to_string() });
    }
    match rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Err(KillError::Gone { pid }),
        Err(e) => Err(KillError::Failed { pid, what: "pidfd_send_signal", source: e.into() }),
    }
}

/// The cgroup v2 directory of process `pid`, from its `0::` line and this process's cgroup2
/// mounts (the daemon runs in the initial cgroup namespace).
pub fn task_cgroup(pid: u32) -> io::Result<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let relative = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup v2 line in /proc/PID/cgroup"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    resolve(&crate::cgroup::parse_cgroup2_mounts(&mountinfo), Path::new(relative))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cgroup {relative} is under no cgroup2 mount")))
}

/// The directory of the cgroup at `relative` (from the hierarchy's root) under one of `mounts`
/// (mount point, the cgroup the mount shows as its root).
fn resolve(mounts: &[(PathBuf, PathBuf)], relative: &Path) -> Option<PathBuf> {
    mounts.iter().filter_map(|(point, root)| relative.strip_prefix(root).ok().map(|rest| point.join(rest))).next()
}

/// Whether the cgroup directory `cgroup` is `scope` or below it.
fn in_scope(cgroup: &Path, scope: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canonical(cgroup).starts_with(canonical(scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_cgroup_resolves_under_the_mount_that_shows_it() {
        let mounts = vec![
            (PathBuf::from("/sys/fs/cgroup/unified"), PathBuf::from("/")),
            (PathBuf::from("/mnt/pod"), PathBuf::from("/kubepods/pod1")),
        ];
        assert_eq!(resolve(&mounts, Path::new("/a/b")), Some(PathBuf::from("/sys/fs/cgroup/unified/a/b")));
        assert_eq!(resolve(&mounts[1..], Path::new("/kubepods/pod1/c")), Some(PathBuf::from("/mnt/pod/c")));
        assert_eq!(resolve(&mounts[1..], Path::new("/elsewhere")), None);
        assert!(in_scope(Path::new("/sys/fs/cgroup/unified/a/b"), Path::new("/sys/fs/cgroup/unified/a")));
        assert!(!in_scope(Path::new("/sys/fs/cgroup/unified/ab"), Path::new("/sys/fs/cgroup/unified/a")));
    }
}
