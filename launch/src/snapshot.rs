//! Forensics of a running (or frozen) container: [`snapshot`] saves, into a new directory,
//! its writable layer, its process list and its record, without stopping it.
//!
//! `DEST/` holds `upper.tar` (GNU tar of `<id>/upper/`: numeric owners, modes, xattrs including
//! overlay's `trusted.*` whiteout/opaque marks, ACLs; symlinks are archived as links, never
//! followed), `processes.json` ([`ProcessInfo`] per task of the container's cgroup: host and
//! container pid, command line, exe path and the SHA-256 of `/proc/PID/exe`, state),
//! `imgsign.json` (the record), `events.json` (the container's recent enforcement events, which
//! the caller brings: [`Events`]; `imgsign snapshot` asks the enforcement daemon for those of the
//! container's scope) and `snapshot.json` ([`SnapshotSummary`]). It is written under a
//! temporary name beside DEST and renamed with `RENAME_NOREPLACE`: an existing DEST is refused,
//! and a failure leaves nothing. A running container's files may change while they are read
//! (tar says so, the summary keeps its warning): freeze it first for a consistent layer.

use crate::config::{check_id, ConfigError};
use crate::container::Layout;
use crate::state::{ContainerRecord, STATE_FILE};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no container {id} under {state_root}")]
    NotFound { id: String, state_root: PathBuf },
    #[error("{0} exists already (a snapshot is written into a new directory)")]
    Exists(PathBuf),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tar of {path} failed: {stderr}")]
    Tar { path: PathBuf, stderr: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io { what, path: path.to_path_buf(), source }
}

/// One task of the container, as `/proc` showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    /// Pid in the host's pid namespace.
    pub host_pid: i32,
    /// Pid in the container's pid namespace (the innermost of `NSpid`).
    pub pid: Option<i32>,
    pub ppid: Option<i32>,
    /// `Name:` of /proc/PID/status.
    pub name: String,
    pub cmdline: Vec<String>,
    /// Target of /proc/PID/exe (a path in the container's mount namespace).
    pub exe: Option<String>,
    /// SHA-256 (hex) of the bytes of /proc/PID/exe.
    pub exe_sha256: Option<String>,
    /// `State:` of /proc/PID/status (`S (sleeping)`, ...).
    pub state: String,
    /// Real, effective uid (host view).
    pub uid: Option<String>,
}

/// What a snapshot holds, written as `snapshot.json` and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSummary {
    pub id: String,
    pub dest: PathBuf,
    pub status: String,
    /// Seconds since the epoch.
    pub taken: u64,
    pub processes: usize,
    /// Entries of `upper.tar` (0 without a writable layer).
    pub upper_entries: usize,
    /// tar's warnings (files changed while read), if any.
    pub upper_warning: Option<String>,
    pub events: usize,
    /// Why `events.json` is empty, when the events could not be had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_note: Option<String>,
}

/// The container's enforcement events, as the caller could get them.
#[derive(Debug, Clone, PartialEq)]
pub enum Events {
    /// Event records, oldest first.
    Recorded(Vec<serde_json::Value>),
    /// Why there are none (the container is not enforced, the daemon cannot be reached, ...).
    Unavailable(String),
}

/// Saves container `id`'s writable layer, processes, record and `events` into `dest` (a new
/// directory).
pub fn snapshot(state_root: &Path, id: &str, dest: &Path, events: &Events) -> Result<SnapshotSummary, SnapshotError> {
    check_id(id)?;
    let layout = Layout::new(&state_root.join(id));
    let record_path = layout.dir.join(STATE_FILE);
    let record_bytes = match std::fs::read(&record_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SnapshotError::NotFound { id: id.to_string(), state_root: state_root.to_path_buf() })
        }
        Err(e) => return Err(io("cannot read", &record_path)(e)),
    };
    let record: ContainerRecord =
        serde_json::from_slice(&record_bytes).map_err(|e| io("cannot parse", &record_path)(e.into()))?;
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(SnapshotError::Exists(dest.to_path_buf()));
    }
    let name = dest.file_name().ok_or_else(|| io("no file name in", dest)(std::io::ErrorKind::InvalidInput.into()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(io("cannot create", &tmp))?;
    let result = write_into(&tmp, dest, &layout, &record, &record_bytes, events).and_then(|summary| {
        nix::fcntl::renameat2(None, &tmp, None, dest, nix::fcntl::RenameFlags::RENAME_NOREPLACE).map_err(|e| {
            if e == nix::errno::Errno::EEXIST {
                SnapshotError::Exists(dest.to_path_buf())
            } else {
                io("cannot rename into", dest)(e.into())
            }
        })?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_into(
    tmp: &Path,
    dest: &Path,
    layout: &Layout,
    record: &ContainerRecord,
    record_bytes: &[u8],
    events: &Events,
) -> Result<SnapshotSummary, SnapshotError> {
    let write = |file: &str, bytes: &[u8]| {
        let path = tmp.join(file);
        std::fs::write(&path, bytes).map_err(io("cannot write", &path))
    };
    // Processes first: the closest to the moment asked for.
    let processes: Vec<ProcessInfo> = container_pids(record).into_iter().filter_map(process_info).collect();
    write("processes.json", &json(&processes))?;
    let (upper_entries, upper_warning) =
        if layout.upper.is_dir() { tar_upper(&layout.upper, &tmp.join("upper.tar"))? } else { (0, None) };
    write(STATE_FILE, record_bytes)?;
    let (recorded, events_note) = match events {
        Events::Recorded(list) => (list.as_slice(), None),
        Events::Unavailable(why) => (&[][..], Some(why.clone())),
    };
    write("events.json", &json(&recorded))?;
    let summary = SnapshotSummary {
        id: record.id.clone(),
        dest: dest.to_path_buf(),
        status: if processes.is_empty() { "stopped".into() } else { record.status.clone() },
        taken: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        processes: processes.len(),
        upper_entries,
        upper_warning,
        events: recorded.len(),
        events_note,
    };
    write("snapshot.json", &json(&summary))?;
    Ok(summary)
}

/// Pretty JSON of the snapshot's files (serializing these types cannot fail).
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).unwrap_or_default();
    v.push(b'\n');
    v
}

/// GNU tar of `upper` into `out`: numeric owners, xattrs (all namespaces), ACLs; links are
/// archived as links. Exit status 1 ("file changed as we read it") is a warning.
fn tar_upper(upper: &Path, out: &Path) -> Result<(usize, Option<String>), SnapshotError> {
    let forks = crate::fork::guard();
    let child = std::process::Command::new("tar")
        .arg("--create")
        .arg("--file")
        .arg(out)
        .arg("--directory")
        .arg(upper)
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--verbose", "."])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(io("cannot run tar for", upper))?;
    drop(forks);
    let output = child.wait_with_output().map_err(io("cannot run tar for", upper))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    match output.status.code() {
        Some(0) => {}
        Some(1) => {}
        _ => return Err(SnapshotError::Tar { path: upper.to_path_buf(), stderr }),
    }
    let entries = output.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    Ok((entries, (!stderr.is_empty()).then_some(stderr)))
}

/// The tasks of the container's cgroup (any hierarchy that has it: v2 or a v1 controller),
/// else its recorded init.
fn container_pids(record: &ContainerRecord) -> Vec<i32> {
    let relative = record.cgroup.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![root.join(relative)];
    for name in ["pids", "freezer", "memory", "unified", "systemd"] {
        candidates.push(root.join(name).join(relative));
    }
    for dir in candidates {
        let mut pids = Vec::new();
        collect_procs(&dir, &mut pids, 0);
        if !pids.is_empty() {
            pids.sort_unstable();
            pids.dedup();
            return pids;
        }
    }
    record.pid.into_iter().filter(|pid| Path::new("/proc").join(pid.to_string()).exists()).collect()
}

/// `cgroup.procs` of `dir` and of its children (libcontainer may nest), a few levels deep.
fn collect_procs(dir: &Path, pids: &mut Vec<i32>, depth: u32) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if depth < 4 {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&entry.path(), pids, depth + 1);
            }
        }
    }
}

/// `/proc/PID` of one task (`None` if it went away meanwhile).
pub fn process_info(host_pid: i32) -> Option<ProcessInfo> {
    let dir = PathBuf::from(format!("/proc/{host_pid}"));
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()));
    let cmdline = std::fs::read(dir.join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
        })
        .unwrap_or_default();
    let exe = std::fs::read_link(dir.join("exe")).ok().map(|p| p.to_string_lossy().into_owned());
    let exe_sha256 = std::fs::File::open(dir.join("exe")).ok().and_then(|mut f| {
        let mut hasher = Sha256::new();
        std::io::copy(&mut f, &mut hasher).ok()?;
        Some(hex::encode(hasher.finalize()))
    });
    Some(ProcessInfo {
        host_pid,
        pid: field("NSpid:").and_then(|v| v.split_whitespace().last().and_then(|p| p.parse().ok())),
        ppid: field("PPid:").and_then(|v| v.parse().ok()),
        name: field("Name:").unwrap_or_default(),
        cmdline,
        exe,
        exe_sha256,
        state: field("State:").unwrap_or_default(),
        uid: field("Uid:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_in(state_root: &Path, id: &str) -> PathBuf {
        let dir = state_root.join(id);
        std::fs::create_dir_all(dir.join("upper/etc")).unwrap();
        std::fs::write(dir.join("upper/etc/changed"), "x").unwrap();
        let record = ContainerRecord {
            id: id.into(),
            image: "img".into(),
            digest: "sha256:00".into(),
            pid: Some(std::process::id() as i32),
            status: "running".into(),
            created: 0,
            cgroup: format!("/imgsign-test-none/{id}"),
            scope: None,
        };
        record.save(&dir).unwrap();
        dir
    }

    fn none() -> Events {
        Events::Unavailable("not enforced".into())
    }

    #[test]
    fn snapshot_writes_a_new_directory_and_refuses_an_existing_one() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        record_in(&state, "c1");
        let dest = tmp.path().join("snap");
        let events = Events::Recorded(vec![serde_json::json!({"record": "event", "verdict": "denied"})]);
        let summary = snapshot(&state, "c1", &dest, &events).unwrap();
        // No cgroup here: the recorded init (this test process) is the process list.
        assert_eq!(summary.processes, 1);
        assert!(summary.upper_entries >= 3, "{summary:?}");
        let procs: Vec<ProcessInfo> =
            serde_json::from_slice(&std::fs::read(dest.join("processes.json")).unwrap()).unwrap();
        assert_eq!(procs[0].host_pid, std::process::id() as i32);
        assert_eq!(procs[0].exe_sha256.as_ref().map(String::len), Some(64));
        let events: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(dest.join("events.json")).unwrap()).unwrap();
        assert_eq!((events.len(), summary.events, summary.events_note.as_deref()), (1, 1, None));
        assert_eq!(events[0]["verdict"], "denied");
        assert!(dest.join(STATE_FILE).is_file() && dest.join("upper.tar").is_file());
        // An existing DEST (even empty) is refused, and nothing is left beside it.
        assert!(matches!(snapshot(&state, "c1", &dest, &none()), Err(SnapshotError::Exists(_))));
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(snapshot(&state, "c1", &empty, &none()), Err(SnapshotError::Exists(_))));
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3); // state, snap, empty
        assert!(matches!(
            snapshot(&state, "nope", &tmp.path().join("x"), &none()),
            Err(SnapshotError::NotFound { .. })
        ));
        assert!(matches!(snapshot(&state, "../c1", &tmp.path().join("x"), &none()), Err(SnapshotError::Config(_))));
    }
}
