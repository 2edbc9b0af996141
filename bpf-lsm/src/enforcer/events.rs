//! Decisions as the kernel programs report them through the ring buffer: a `struct enf_event`
//! ([`EnfEvent`], from `abi.h`) read as plain data, then turned into an [`Event`] with typed
//! fields (hook, verdict, mode, digest only when the kernel computed one, path only when it
//! resolved one).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{EnforcerError, Mode, ScopeStats};
use crate::abi::{self, EnfEvent};
use crate::Digest;

/// Which hook made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// An exec (`bprm_check_security`).
    BprmCheck,
    /// An executable file mapping (`mmap_file` with `PROT_EXEC`).
    MmapFile,
    /// A file mapping made executable (`file_mprotect` adding `PROT_EXEC`); never hashed, that
    /// hook cannot sleep.
    FileMprotect,
    /// An open (`file_open`): a write open of a sealed file, `/proc/PID/mem`.
    FileOpen,
    /// A size change (`inode_setattr`) of a sealed file.
    InodeSetattr,
    /// `ptrace` attach or `PTRACE_TRACEME`.
    Ptrace,
    /// An anonymous inode (`userfaultfd`, `io_uring`).
    AnonInode,
    /// `bpf()`, or the enforcer's own maps and programs.
    Bpf,
    /// A kernel module, firmware or kexec image.
    KernelLoad,
    /// A new task (`clone3` into another cgroup).
    TaskAlloc,
    /// The privileges an exec gains (`bprm_creds_from_file`).
    Creds,
    /// A change to the enforcer's pins on bpffs.
    Pin,
    /// A value this loader does not know (a newer kernel program).
    Unknown(u8),
}

impl Hook {
    fn from_raw(raw: u8) -> Self {
        match raw {
            abi::ENF_HOOK_BPRM_CHECK => Hook::BprmCheck,
            abi::ENF_HOOK_MMAP_FILE => Hook::MmapFile,
            abi::ENF_HOOK_FILE_MPROTECT => Hook::FileMprotect,
            abi::ENF_HOOK_FILE_OPEN => Hook::FileOpen,
            abi::ENF_HOOK_INODE_SETATTR => Hook::InodeSetattr,
            abi::ENF_HOOK_PTRACE => Hook::Ptrace,
            abi::ENF_HOOK_ANON_INODE => Hook::AnonInode,
            abi::ENF_HOOK_BPF => Hook::Bpf,
            abi::ENF_HOOK_KERNEL_LOAD => Hook::KernelLoad,
            abi::ENF_HOOK_TASK_ALLOC => Hook::TaskAlloc,
            abi::ENF_HOOK_CREDS => Hook::Creds,
            abi::ENF_HOOK_PIN => Hook::Pin,
            other => Hook::Unknown(other),
        }
    }
}

/// Why the kernel decided as it did, beyond the digest lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The digest was (or was not) in the scope's set.
    Digest,
    /// The file had writers when it was executed or mapped.
    Writers,
    /// A write or truncation of a file a scope has judged (sealed).
    Sealed,
    /// A memfd or shared memory not sealed against writes.
    Memfd,
    /// A writable and executable file mapping, or write added to an executable one.
    WriteExec,
    /// Code patching: `/proc/PID/mem`, ptrace, userfaultfd.
    Patch,
    /// Anonymous executable memory or io_uring under the strict profile.
    Strict,
    /// Code from FUSE, NFS, 9p, CIFS or ceph.
    RemoteFs,
    /// setuid/setgid bits or file capabilities that no signed entry with that digest has.
    Privilege,
    /// Leaving the scope (a migration out of it, `clone3` into another cgroup).
    Escape,
    /// The enforcer's own programs, maps or pins; `bpf()` from a scope.
    SelfProtection,
    /// A kernel module, firmware or kexec image loaded from a scope.
    KernelLoad,
    /// A file mapping made executable after it was mapped.
    Mprotect,
    /// A value this loader does not know.
    Unknown(u8),
}

impl Reason {
    fn from_raw(raw: u8) -> Self {
        match raw {
            abi::ENF_REASON_DIGEST => Reason::Digest,
            abi::ENF_REASON_WRITERS => Reason::Writers,
            abi::ENF_REASON_SEALED => Reason::Sealed,
            abi::ENF_REASON_MEMFD => Reason::Memfd,
            abi::ENF_REASON_WRITE_EXEC => Reason::WriteExec,
            abi::ENF_REASON_PATCH => Reason::Patch,
            abi::ENF_REASON_STRICT => Reason::Strict,
            abi::ENF_REASON_REMOTE_FS => Reason::RemoteFs,
            abi::ENF_REASON_PRIVILEGE => Reason::Privilege,
            abi::ENF_REASON_ESCAPE => Reason::Escape,
            abi::ENF_REASON_SELF => Reason::SelfProtection,
            abi::ENF_REASON_KERNEL_LOAD => Reason::KernelLoad,
            abi::ENF_REASON_MPROTECT => Reason::Mprotect,
            other => Reason::Unknown(other),
        }
    }
}

/// What the kernel decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Known content, allowed.
    Allow,
    /// Unknown content in an enforcing scope, refused.
    Deny,
    /// Unknown content in an auditing scope, allowed.
    Audit,
    /// A value this loader does not know.
    Unknown(u8),
}

impl Verdict {
    fn from_raw(raw: u8) -> Self {
        match raw {
            abi::ENF_VERDICT_ALLOW => Verdict::Allow,
            abi::ENF_VERDICT_DENY => Verdict::Deny,
            abi::ENF_VERDICT_AUDIT => Verdict::Audit,
            other => Verdict::Unknown(other),
        }
    }
}

/// One decision of the kernel programs, with the process's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds since boot (`CLOCK_BOOTTIME`).
    pub time_ns: u64,
    /// cgroup id of the task (its cgroup v2 directory's inode number).
    pub cgroup_id: u64,
    /// cgroup id of the scope that decided (the task's cgroup or an ancestor).
    pub scope_cgroup_id: u64,
    /// Process id (tgid) in the initial pid namespace.
    pub host_pid: u32,
    /// Process id in the task's own pid namespace.
    pub ns_pid: u32,
    /// Inode number of the task's pid namespace (as in `/proc/PID/ns/pid`).
    pub pid_ns: u32,
    /// Inode number of the task's mount namespace (as in `/proc/PID/ns/mnt`).
    pub mnt_ns: u32,
    /// The scope id.
    pub scope_id: u32,
    /// The scope's mode at the time of the decision.
    pub mode: Option<Mode>,
    pub hook: Hook,
    pub verdict: Verdict,
    /// Why: a digest lookup, or one of the sealed-execution rules.
    pub reason: Reason,
    /// Return of `bpf_ima_file_hash`: 4 for SHA-256, negative errno on failure.
    pub hash_ret: i32,
    /// The task's command name (at exec time: the name before the exec).
    pub comm: String,
    /// The file's SHA-256, if the kernel computed one.
    pub digest: Option<Digest>,
    /// The file's path (`bpf_d_path`), if the kernel could resolve it (too long for
    /// `ENF_PATH_LEN` bytes: `None`).
    pub path: Option<PathBuf>,
    /// This event's number among its scope's events, from 0: a jump means events were lost.
    /// `None` from programs that predate the counters (a pinned enforcer of an older build).
    pub scope_seq: Option<u64>,
    /// The scope's counters as this event left them (`events` is `scope_seq + 1`; the
    /// verdict counters may be a decision ahead or behind, read without a lock).
    pub scope_stats: Option<ScopeStats>,
}

impl Event {
    /// Reads one ring-buffer record (a `struct enf_event`, native endian). A record that ends
    /// where the counters begin was written by programs that predate them (still pinned after an
    /// upgrade of the daemon): read without them.
    pub fn read(bytes: &[u8]) -> Result<Self, EnforcerError> {
        let legacy = std::mem::offset_of!(EnfEvent, scope_seq);
        if bytes.len() >= size_of::<EnfEvent>() {
            let raw = EnfEvent::read(bytes).ok_or(EnforcerError::Event { len: bytes.len() })?;
            return Ok(Self::from(&raw));
        }
        if bytes.len() < legacy {
            return Err(EnforcerError::Event { len: bytes.len() });
        }
        let mut padded = vec![0u8; size_of::<EnfEvent>()];
        padded[..bytes.len()].copy_from_slice(bytes);
        let raw = EnfEvent::read(&padded).ok_or(EnforcerError::Event { len: bytes.len() })?;
        Ok(Event { scope_seq: None, scope_stats: None, ..Self::from(&raw) })
    }
}

impl From<&EnfEvent> for Event {
    fn from(raw: &EnfEvent) -> Self {
        let path = (raw.path_len > 0)
            .then(|| nul_terminated(&raw.path))
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(OsStr::from_bytes(p)));
        Event {
            time_ns: raw.time_ns,
            cgroup_id: raw.cgroup_id,
            scope_cgroup_id: raw.scope_cgroup_id,
            host_pid: raw.host_tgid,
            ns_pid: raw.ns_tgid,
            pid_ns: raw.pid_ns,
            mnt_ns: raw.mnt_ns,
            scope_id: raw.scope_id,
            mode: Mode::from_raw(raw.mode),
            hook: Hook::from_raw(raw.hook),
            verdict: Verdict::from_raw(raw.verdict),
            reason: Reason::from_raw(raw.reason),
            hash_ret: raw.hash_ret,
            comm: String::from_utf8_lossy(nul_terminated(&raw.comm)).into_owned(),
            digest: (raw.hash_ret == abi::ENF_HASH_ALGO_SHA256).then_some(raw.digest),
            path,
            scope_seq: Some(raw.scope_seq),
            scope_stats: Some(ScopeStats {
                allowed: raw.scope_allowed,
                denied: raw.scope_denied,
                audited: raw.scope_audited,
                dropped: raw.scope_dropped,
                events: raw.scope_seq.wrapping_add(1),
            }),
        }
    }
}

/// The bytes of `field` before its first NUL (all of it if there is none).
fn nul_terminated(field: &[u8]) -> &[u8] {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of an event laid out by hand in the C order, so the test checks the generated
    /// struct against the header's field list rather than against itself.
    fn raw_event() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&123_456_789u64.to_ne_bytes());
        b.extend_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        b.extend_from_slice(&0x11u64.to_ne_bytes());
        for v in [4242u32, 7, 0xf000_0001, 0xf000_0002, 9] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&[1, 1, 0, 5]); // hook, verdict, mode, reason
        b.extend_from_slice(&4i32.to_ne_bytes());
        b.extend_from_slice(&9i32.to_ne_bytes()); // "/bin/true" + NUL
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"true");
        b.extend_from_slice(&comm);
        b.extend_from_slice(&[0xab; 32]);
        assert_eq!(b.len(), std::mem::offset_of!(EnfEvent, path));
        let mut path = [0u8; 256];
        path[..9].copy_from_slice(b"/bin/true");
        b.extend_from_slice(&path);
        for v in [41u64, 30, 2, 0, 9] {
            b.extend_from_slice(&v.to_ne_bytes()); // scope seq, allowed, denied, audited, dropped
        }
        b
    }

    #[test]
    fn event_layout_matches_the_c_struct() {
        let bytes = raw_event();
        assert_eq!(bytes.len(), size_of::<EnfEvent>());
        assert_eq!(
            Event::read(&bytes).unwrap(),
            Event {
                time_ns: 123_456_789,
                cgroup_id: 0x1122_3344_5566_7788,
                scope_cgroup_id: 0x11,
                host_pid: 4242,
                ns_pid: 7,
                pid_ns: 0xf000_0001,
                mnt_ns: 0xf000_0002,
                scope_id: 9,
                mode: Some(Mode::Enforce),
                hook: Hook::BprmCheck,
                verdict: Verdict::Deny,
                reason: Reason::Patch,
                hash_ret: 4,
                comm: "true".into(),
                digest: Some([0xab; 32]),
                path: Some("/bin/true".into()),
                scope_seq: Some(41),
                scope_stats: Some(ScopeStats { allowed: 30, denied: 2, audited: 0, dropped: 9, events: 42 }),
            }
        );
    }

    #[test]
    fn event_without_sha256_or_path_has_neither() {
        let mut bytes = raw_event();
        bytes[48..52].copy_from_slice(&(-95i32).to_ne_bytes());
        bytes[52..56].copy_from_slice(&(-36i32).to_ne_bytes()); // -ENAMETOOLONG
        bytes[44] = 2;
        bytes[45] = 2;
        bytes[46] = 1;
        let event = Event::read(&bytes).unwrap();
        assert_eq!(event.path, None);
        assert_eq!(event.digest, None);
        assert_eq!(event.hook, Hook::MmapFile);
        assert_eq!(event.verdict, Verdict::Audit);
        assert_eq!(event.mode, Some(Mode::Audit));
        bytes[44] = 3;
        assert_eq!(Event::read(&bytes).unwrap().hook, Hook::FileMprotect);
        bytes[44] = 12;
        assert_eq!(Event::read(&bytes).unwrap().hook, Hook::Pin);
        bytes[44] = 200;
        assert_eq!(Event::read(&bytes).unwrap().hook, Hook::Unknown(200));
        bytes[47] = 200;
        assert_eq!(Event::read(&bytes).unwrap().reason, Reason::Unknown(200));
    }

    #[test]
    fn an_event_of_programs_without_counters_reads_without_them() {
        let bytes = raw_event();
        let legacy = &bytes[..std::mem::offset_of!(EnfEvent, scope_seq)];
        let event = Event::read(legacy).unwrap();
        assert_eq!((event.scope_seq, event.scope_stats), (None, None));
        assert_eq!(event.path.as_deref(), Some(std::path::Path::new("/bin/true")));
        assert!(Event::read(&bytes[..legacy.len() - 1]).is_err());
    }

    #[test]
    fn short_event_is_an_error() {
        assert!(matches!(Event::read(&[0; 10]), Err(EnforcerError::Event { len: 10 })));
    }
}
