//! Decisions as the kernel programs report them through the ring buffer: the fixed C layout of
//! `struct enf_event` (see `enforcer.bpf.c`) parsed into [`Event`] and [`Decision`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{EnforcerError, Mode};
use crate::{Digest, SHA256_LEN};

/// What `bpf_ima_file_hash` returns for SHA-256 (`HASH_ALGO_SHA256`).
const HASH_ALGO_SHA256: i32 = 4;

/// Which hook made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// An exec (`bprm_check_security`).
    BprmCheck,
    /// An executable file mapping (`mmap_file` with `PROT_EXEC`).
    MmapFile,
    /// Any other hook: [`HOOK_FILE_MPROTECT_RAW`] (3) is `file_mprotect`
    /// making a file mapping executable (no digest: that hook cannot hash).
    Unknown(u8),
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

/// The core of one decision of the kernel programs (see [`Decision`] for
/// the rest of the process fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// cgroup id of the task (its cgroup v2 directory's inode number).
    pub cgroup_id: u64,
    /// Process id (tgid) in the initial pid namespace.
    pub host_pid: u32,
    /// Process id in the task's own pid namespace.
    pub ns_pid: u32,
    /// The scope id.
    pub scope_id: u32,
    /// The scope's mode at the time of the decision.
    pub mode: Option<Mode>,
    /// The hook.
    pub hook: Hook,
    /// The decision.
    pub verdict: Verdict,
    /// Return of `bpf_ima_file_hash`: 4 for SHA-256, negative errno on failure.
    pub hash_ret: i32,
    /// The task's command name (at exec time: the name before the exec).
    pub comm: String,
    /// The file's SHA-256, if the kernel computed one.
    pub digest: Option<Digest>,
}

/// One decision with everything the kernel reported: the [`Event`] and the
/// rest of the process fingerprint. (Kept apart from [`Event`] so code that
/// builds `Event` values keeps compiling; they may merge later.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The core fields.
    pub event: Event,
    /// Nanoseconds since boot (`CLOCK_BOOTTIME`).
    pub time_ns: u64,
    /// cgroup id of the scope that decided (the task's cgroup or an ancestor).
    pub scope_cgroup_id: u64,
    /// Inode number of the task's pid namespace (as in `/proc/PID/ns/pid`).
    pub pid_ns: u32,
    /// Inode number of the task's mount namespace (as in `/proc/PID/ns/mnt`).
    pub mnt_ns: u32,
    /// The file's path (`bpf_d_path`), if the kernel could resolve it
    /// (too long for 255 bytes: `None`).
    pub path: Option<PathBuf>,
}

/// Size of `struct enf_event` in `enforcer.bpf.c`.
pub const EVENT_LEN: usize = 360;
const PATH_OFFSET: usize = 104;

impl Event {
    /// Parses a `struct enf_event` as the kernel wrote it (native endian).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnforcerError> {
        Decision::parse(bytes).map(|d| d.event)
    }
}

impl Decision {
    /// Parses a `struct enf_event` as the kernel wrote it (native endian).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnforcerError> {
        if bytes.len() < EVENT_LEN {
            return Err(EnforcerError::Event { len: bytes.len() });
        }
        let u64_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        let i32_at = |at: usize| i32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        let hash_ret = i32_at(48);
        let path_len = i32_at(52);
        let comm = nul_terminated(&bytes[56..72]);
        let mut digest = [0u8; SHA256_LEN];
        digest.copy_from_slice(&bytes[72..72 + SHA256_LEN]);
        let path = (path_len > 0)
            .then(|| nul_terminated(&bytes[PATH_OFFSET..EVENT_LEN]))
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(OsStr::from_bytes(p)));
        let event = Event {
            cgroup_id: u64_at(8),
            host_pid: u32_at(24),
            ns_pid: u32_at(28),
            scope_id: u32_at(40),
            hook: match bytes[44] {
                1 => Hook::BprmCheck,
                2 => Hook::MmapFile,
                other => Hook::Unknown(other),
            },
            verdict: match bytes[45] {
                0 => Verdict::Allow,
                1 => Verdict::Deny,
                2 => Verdict::Audit,
                other => Verdict::Unknown(other),
            },
            mode: Mode::from_raw(bytes[46]),
            hash_ret,
            comm: String::from_utf8_lossy(comm).into_owned(),
            digest: (hash_ret == HASH_ALGO_SHA256).then_some(digest),
        };
        Ok(Decision {
            event,
            time_ns: u64_at(0),
            scope_cgroup_id: u64_at(16),
            pid_ns: u32_at(32),
            mnt_ns: u32_at(36),
            path,
        })
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

    fn raw_event() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&123_456_789u64.to_ne_bytes());
        b.extend_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        b.extend_from_slice(&0x11u64.to_ne_bytes());
        for v in [4242u32, 7, 0xf000_0001, 0xf000_0002, 9] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&[1, 1, 0, 0]); // hook, verdict, mode, pad
        b.extend_from_slice(&4i32.to_ne_bytes());
        b.extend_from_slice(&9i32.to_ne_bytes()); // "/bin/true" + NUL
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"true");
        b.extend_from_slice(&comm);
        b.extend_from_slice(&[0xab; 32]);
        assert_eq!(b.len(), PATH_OFFSET);
        let mut path = [0u8; 256];
        path[..9].copy_from_slice(b"/bin/true");
        b.extend_from_slice(&path);
        b
    }

    #[test]
    fn event_layout_matches_the_c_struct() {
        let bytes = raw_event();
        assert_eq!(bytes.len(), EVENT_LEN);
        let decision = Decision::parse(&bytes).unwrap();
        assert_eq!(
            decision,
            Decision {
                event: Event {
                    cgroup_id: 0x1122_3344_5566_7788,
                    host_pid: 4242,
                    ns_pid: 7,
                    scope_id: 9,
                    mode: Some(Mode::Enforce),
                    hook: Hook::BprmCheck,
                    verdict: Verdict::Deny,
                    hash_ret: 4,
                    comm: "true".into(),
                    digest: Some([0xab; 32]),
                },
                time_ns: 123_456_789,
                scope_cgroup_id: 0x11,
                pid_ns: 0xf000_0001,
                mnt_ns: 0xf000_0002,
                path: Some("/bin/true".into()),
            }
        );
        assert_eq!(Event::parse(&bytes).unwrap(), decision.event);
    }

    #[test]
    fn event_without_sha256_or_path_has_neither() {
        let mut bytes = raw_event();
        bytes[48..52].copy_from_slice(&(-95i32).to_ne_bytes());
        bytes[52..56].copy_from_slice(&(-36i32).to_ne_bytes()); // -ENAMETOOLONG
        bytes[44] = 2;
        bytes[45] = 2;
        bytes[46] = 1;
        let decision = Decision::parse(&bytes).unwrap();
        assert_eq!(decision.path, None);
        let event = decision.event;
        assert_eq!(event.digest, None);
        assert_eq!(event.hook, Hook::MmapFile);
        assert_eq!(event.verdict, Verdict::Audit);
        assert_eq!(event.mode, Some(Mode::Audit));
    }

    #[test]
    fn short_event_is_an_error() {
        assert!(matches!(Event::parse(&[0; 10]), Err(EnforcerError::Event { len: 10 })));
    }
}
