//! The I/O half of [`super::check`]: which processes a cgroup subtree holds (`cgroup.procs` of
//! the cgroup and every descendant), what code each runs, and the SHA-256 of that code.
//!
//! A file of code is always read through the task's own reference to it: `/proc/PID/exe` for
//! the executable, `/proc/PID/map_files/START-END` for a mapping. Both open the inode the task
//! has, whatever its path names now (renamed over, deleted, replaced in a bind mount): reading
//! the path `/proc/PID/maps` prints would hash whatever file is there now. Hashes are cached by
//! (device, inode) for one check ([`Hashes`]), so a hundred processes of one binary cost one
//! hash.

use super::{Code, Content, Task};
use crate::desired::Privs;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use verifier_core::digest::{HashingReader, Sha256Digest};

/// How deep below the scope's cgroup processes are looked for.
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A cgroup's process list could not be read (not a cgroup v2 directory, or gone).
    #[error("cannot list the processes of cgroup {path}")]
    Procs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Freezing the cgroup for the last round failed.
    #[error("cannot freeze cgroup {path} (to judge processes that keep forking)")]
    Freeze {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Every process (tgid) in the cgroup `dir` and its descendants, in order.
pub fn pids(dir: &Path) -> Result<Vec<u32>, ScanError> {
    let mut pids = Vec::new();
    let mut level = vec![dir.to_path_buf()];
    for depth in 0..=MAX_DEPTH {
        let mut next = Vec::new();
        for cgroup in level {
            let procs = cgroup.join("cgroup.procs");
            match std::fs::read_to_string(&procs) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
                // A descendant removed meanwhile has no process left to judge.
                Err(e) if depth > 0 && e.kind() == ErrorKind::NotFound => continue,
                Err(source) => return Err(ScanError::Procs { path: cgroup, source }),
            }
            if let Ok(entries) = std::fs::read_dir(&cgroup) {
                next.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
            }
        }
        level = next;
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Digests of files already hashed in this check, by (device, inode).
#[derive(Default)]
pub struct Hashes(HashMap<(u64, u64), Sha256Digest>);

impl Hashes {
    /// The digest of `file`, whose (device, inode) is `key`.
    fn of(&mut self, file: File, key: (u64, u64)) -> io::Result<Sha256Digest> {
        if let Some(digest) = self.0.get(&key) {
            return Ok(*digest);
        }
        let mut reader = HashingReader::new(file);
        io::copy(&mut reader, &mut io::sink())?;
        let digest = reader.finish().0;
        self.0.insert(key, digest);
        Ok(digest)
    }
}

/// The process `pid` with its code, or `None` when it is gone (it exited since the listing).
pub fn task(pid: u32, hashes: &mut Hashes) -> Option<Task> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let start_time = start_time(pid).ok()?;
    let comm = std::fs::read_to_string(proc.join("comm")).ok()?.trim_end().to_string();
    let exe_path = match std::fs::read_link(proc.join("exe")) {
        Ok(p) => p.to_string_lossy().into_owned(),
        // A kernel thread or a zombie: no executable, no mappings.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Some(Task { pid, start_time, comm, exe: None, mappings: Vec::new() });
        }
        Err(_) => return None,
    };
    let maps = std::fs::read_to_string(proc.join("maps")).ok()?;
    let mut seen = Vec::new();
    let content = read_code(&proc.join("exe"), &exe_path, true, hashes, &mut seen).unwrap_or(Content::Memory);
    let exe = Code { path: exe_path, range: None, content };
    let mut mappings = Vec::new();
    for mapping in executable_file_mappings(&maps) {
        let content =
            match read_code(&proc.join("map_files").join(&mapping.range), &mapping.path, false, hashes, &mut seen) {
                Some(content) => content,
                // The executable's own mapping, or one file mapped twice: judged once.
                None => continue,
            };
        mappings.push(Code { path: mapping.path, range: Some(mapping.range), content });
    }
    // Gone while being read: nothing left to judge (and its pid is not ours to kill).
    if self::start_time(pid).ok() != Some(start_time) {
        return None;
    }
    Some(Task { pid, start_time, comm, exe: Some(exe), mappings })
}

/// Opens `link` (a `/proc` magic link to the inode the task runs) and hashes it (memory, as
/// `shown` names it, is not hashed: no one signed it); `None` when the task's code already named
/// that inode (`seen`).
fn read_code(link: &Path, shown: &str, exe: bool, hashes: &mut Hashes, seen: &mut Vec<(u64, u64)>) -> Option<Content> {
    let file = match File::open(link) {
        Ok(file) => file,
        Err(e) => return Some(Content::Unreadable(format!("cannot open {}: {e}", link.display()))),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return Some(Content::Unreadable(format!("cannot stat {}: {e}", link.display()))),
    };
    let key = (meta.dev(), meta.ino());
    if seen.contains(&key) {
        return None;
    }
    seen.push(key);
    if is_memory(shown) {
        return Some(Content::Memory);
    }
    let privs = if exe { file_privs(&file, meta.mode()) } else { Privs::NONE };
    Some(match hashes.of(file, key) {
        Ok(sha256) => Content::File { sha256, privs },
        Err(e) => Content::Unreadable(format!("cannot read {}: {e}", link.display())),
    })
}

/// The privileges the executable file carries (setuid/setgid bits, `security.capability`).
fn file_privs(file: &File, mode: u32) -> Privs {
    let mut buf = [0u8; 64];
    let capability = rustix::fs::fgetxattr(file, "security.capability", &mut buf[..]).ok();
    // An unreadable capability value counts as the bits alone; a malformed one as the kernel
    // would refuse it (no capability gained).
    Privs::of_entry(mode, capability.map(|n| &buf[..n])).or_else(|_| Privs::of_entry(mode, None)).unwrap_or(Privs::NONE)
}

/// Memory rather than a file: memfds and System V or POSIX shared memory.
fn is_memory(path: &str) -> bool {
    path.starts_with("/memfd:") || path.starts_with("/SYSV") || path.starts_with("/dev/shm/")
}

/// One line of `/proc/PID/maps` that maps a file executable.
#[derive(Debug, PartialEq, Eq)]
pub struct Mapping {
    /// `start-end` in hexadecimal without leading zeros: the name of its `map_files` entry.
    pub range: String,
    pub path: String,
}

/// The executable file mappings in `/proc/PID/maps` text: permissions with `x`, a non-zero
/// inode and a path (anonymous memory, `[vdso]` and `[vsyscall]` are left out).
pub fn executable_file_mappings(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let (range, perms, _offset, _dev, inode) =
                (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            let path = fields.next().unwrap_or("").trim_start();
            let (start, end) = range.split_once('-')?;
            let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
            // map_files names entries without the leading zeros maps prints.
            (perms.as_bytes().get(2) == Some(&b'x') && inode != "0" && path.starts_with('/'))
                .then(|| Mapping { range: format!("{start:x}-{end:x}"), path: path.to_string() })
        })
        .collect()
}

/// The start time of process `pid` (`/proc/PID/stat` field 22, clock ticks since boot).
pub fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "malformed /proc/PID/stat"))
}

/// Field 22 of a `/proc/PID/stat` line; the command (field 2) may hold spaces and parentheses,
/// so fields are counted after its last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A cgroup frozen for the last round of a check, thawed when dropped (unless it was frozen
/// already: someone else's freeze is left alone).
pub struct Freeze {
    path: Option<PathBuf>,
}

impl Freeze {
    pub fn start(cgroup: &Path) -> Result<Freeze, ScanError> {
        let err = |source| ScanError::Freeze { path: cgroup.to_path_buf(), source };
        let file = cgroup.join("cgroup.freeze");
        if std::fs::read_to_string(&file).map_err(err)?.trim() == "1" {
            return Ok(Freeze { path: None });
        }
        std::fs::write(&file, "1").map_err(err)?;
        // Frozen once cgroup.events says so (the tasks have left the kernel's fork paths).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let events = std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap_or_default();
            if events.lines().any(|l| l == "frozen 1") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(Freeze { path: Some(file) })
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        if let Some(file) = &self.path {
            let _ = std::fs::write(file, "0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_give_executable_file_mappings_only() {
        let maps = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 1311 /usr/bin/sleep
55d0c0a02000-55d0c0a06000 r-xp 00002000 08:01 1311 /usr/bin/sleep
7f1e2a000000-7f1e2a100000 r-xp 00000000 08:01 2222 /tmp/a dir/lib with space.so
7f1e2b000000-7f1e2b001000 r-xs 00000000 00:01 3333 /memfd:payload (deleted)
7f1e2c000000-7f1e2c001000 rwxp 00000000 00:00 0 
00401000-00585000 r-xp 00001000 08:01 4444 /bin/static
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
        let found = executable_file_mappings(maps);
        assert_eq!(
            found,
            [
                Mapping { range: "55d0c0a02000-55d0c0a06000".into(), path: "/usr/bin/sleep".into() },
                Mapping { range: "7f1e2a000000-7f1e2a100000".into(), path: "/tmp/a dir/lib with space.so".into() },
                Mapping { range: "7f1e2b000000-7f1e2b001000".into(), path: "/memfd:payload (deleted)".into() },
                Mapping { range: "401000-585000".into(), path: "/bin/static".into() },
            ]
        );
        assert!(is_memory(&found[2].path) && !is_memory(&found[1].path));
    }

    #[test]
    fn start_time_is_counted_after_the_command() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        assert!(start_time(std::process::id()).unwrap() > 0);
    }
}
