//! Loader for the enforcer (`src/bpf/enforcer.bpf.c`): content-addressed exec
//! control per cgroup scope.
//!
//! [`Enforcer::attach`] loads the embedded object and attaches two sleepable
//! BPF-LSM programs, on `bprm_check_security` (every exec) and `mmap_file`
//! (every mapping of a file with `PROT_EXEC`). For a task whose cgroup is a
//! scope ([`Enforcer::add_scope`]), each hashes the file in the kernel
//! (`bpf_ima_file_hash`, SHA-256 of the current content, no cache) and looks
//! the digest up in the digest set of the scope's id
//! ([`Enforcer::allow_digests`]). Unknown content is refused with `EPERM` in
//! [`Mode::Enforce`] and allowed but reported in [`Mode::Audit`]. Tasks in
//! cgroups that are not scopes are untouched (the programs return before
//! hashing).
//!
//! Scope model: a scope is one cgroup v2 directory, identified by its cgroup
//! id (the directory's inode number, see [`cgroup_id`]); only a task's own
//! cgroup counts, not its ancestors. Several cgroups may share a scope id
//! and so one digest set. Maps: `enf_scopes` (cgroup id -> scope id, mode,
//! flags), `enf_allowed` ((scope id, digest) -> 1), `enf_events` (ring
//! buffer of [`Event`]s), `enf_stats` (dropped-event counter).
//!
//! Events: denials and audit findings are always written; allowed decisions
//! only for scopes with [`Scope::report_allowed`]. A full ring buffer drops
//! the event ([`Enforcer::dropped_events`]) and never delays the exec.
//! [`Enforcer::poll_events`] reads them by polling.
//!
//! Not yet here: pinning programs and maps under bpffs (today the programs
//! detach when the [`Enforcer`] is dropped), atomic replacement of a scope's
//! digest set (today digests are added and revoked one by one, so a
//! replacement has a window where the set is a mix), `file_mprotect`,
//! memfd/anonymous-exec rules, a per-inode verdict cache, and the event
//! fields that need more kernel reads (namespace inodes, cgroup path, file
//! path).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData, MapError, RingBuf};
use aya::programs::{Lsm, ProgramError};
use aya::{Btf, BtfError, Ebpf, EbpfError, Pod};

use crate::{kernel, objects, Digest, SHA256_LEN};

/// The hook that sees every exec.
pub const HOOK_BPRM_CHECK: &str = "bprm_check_security";
/// The hook that sees every file mapping.
pub const HOOK_MMAP_FILE: &str = "mmap_file";

const PROGRAMS: [(&str, &str); 2] = [
    ("enf_bprm_check", HOOK_BPRM_CHECK),
    ("enf_mmap_file", HOOK_MMAP_FILE),
];
const SCOPES_MAP: &str = "enf_scopes";
const ALLOWED_MAP: &str = "enf_allowed";
const EVENTS_MAP: &str = "enf_events";
const STATS_MAP: &str = "enf_stats";
const STAT_EVENTS_DROPPED: u32 = 0;
/// `enum hash_algo` value the kernel returns for SHA-256.
const HASH_ALGO_SHA256: i32 = 4;
const FLAG_REPORT_ALLOWED: u8 = 0x1;
/// How long [`Enforcer::poll_events`] sleeps between looks at an empty buffer.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Errors loading, attaching or talking to the enforcer programs.
#[derive(Debug, thiserror::Error)]
pub enum EnforcerError {
    #[error("kernel BTF unavailable (/sys/kernel/btf/vmlinux)")]
    Btf(#[source] BtfError),
    #[error("cannot load the enforcer BPF object")]
    Object(#[source] EbpfError),
    #[error("BPF object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("program {program} is not an LSM program")]
    ProgramType {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot load {program} on {hook}")]
    Load {
        program: &'static str,
        hook: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot attach {program} to {hook}; {lsm_state}")]
    Attach {
        program: &'static str,
        hook: &'static str,
        lsm_state: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("BPF map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("malformed event of {len} bytes from {EVENTS_MAP} (expected {EVENT_LEN})")]
    Event { len: usize },
}

/// What a scope does with content that is not in its digest set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse it (`EPERM`).
    Enforce,
    /// Allow it and report it.
    Audit,
}

impl Mode {
    fn to_raw(self) -> u8 {
        match self {
            Mode::Enforce => 0,
            Mode::Audit => 1,
        }
    }

    fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Mode::Enforce),
            1 => Some(Mode::Audit),
            _ => None,
        }
    }
}

/// How one cgroup is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Names the digest set ([`Enforcer::allow_digests`]).
    pub id: u32,
    /// Enforce or audit.
    pub mode: Mode,
    /// Also report decisions that allowed known content.
    pub report_allowed: bool,
}

/// Which hook made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// An exec (`bprm_check_security`).
    BprmCheck,
    /// An executable file mapping (`mmap_file` with `PROT_EXEC`).
    MmapFile,
    /// A value this loader does not know.
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

/// One decision of the kernel programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// cgroup id of the task (its cgroup v2 directory's inode number).
    pub cgroup_id: u64,
    /// Process id (tgid) in the initial pid namespace.
    pub host_pid: u32,
    /// Process id in the task's own pid namespace.
    pub ns_pid: u32,
    /// The scope the cgroup belongs to.
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

/// Size of `struct enf_event` in `enforcer.bpf.c`.
pub const EVENT_LEN: usize = 80;

impl Event {
    /// Parses a `struct enf_event` as the kernel wrote it (native endian).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnforcerError> {
        if bytes.len() < EVENT_LEN {
            return Err(EnforcerError::Event { len: bytes.len() });
        }
        let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        let hash_ret = i32::from_ne_bytes(bytes[24..28].try_into().unwrap());
        let comm = &bytes[32..48];
        let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        let mut digest = [0u8; SHA256_LEN];
        digest.copy_from_slice(&bytes[48..48 + SHA256_LEN]);
        Ok(Event {
            cgroup_id: u64::from_ne_bytes(bytes[0..8].try_into().unwrap()),
            host_pid: u32_at(8),
            ns_pid: u32_at(12),
            scope_id: u32_at(16),
            hook: match bytes[20] {
                1 => Hook::BprmCheck,
                2 => Hook::MmapFile,
                other => Hook::Unknown(other),
            },
            verdict: match bytes[21] {
                0 => Verdict::Allow,
                1 => Verdict::Deny,
                2 => Verdict::Audit,
                other => Verdict::Unknown(other),
            },
            mode: Mode::from_raw(bytes[22]),
            hash_ret,
            comm: String::from_utf8_lossy(&comm[..comm_len]).into_owned(),
            digest: (hash_ret == HASH_ALGO_SHA256).then_some(digest),
        })
    }
}

/// Mirror of `struct enf_scope` in `enforcer.bpf.c`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawScope {
    scope_id: u32,
    mode: u8,
    flags: u8,
    pad: u16,
}

// SAFETY: `RawScope` is `repr(C)`, made only of integers with no padding
// between or after fields (4 + 1 + 1 + 2 = 8 bytes, alignment 4), so every bit
// pattern is a valid value, as `Pod` requires.
unsafe impl Pod for RawScope {}

/// Mirror of `struct enf_digest_key` in `enforcer.bpf.c`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawDigestKey {
    scope_id: u32,
    pad: u32,
    digest: Digest,
}

// SAFETY: `RawDigestKey` is `repr(C)`, made only of integers and a byte array
// with no padding between or after fields (4 + 4 + 32 = 40 bytes, alignment
// 4), so every bit pattern is a valid value, as `Pod` requires. `pad` is
// always written as zero, so keys compare equal in the kernel's hash map.
unsafe impl Pod for RawDigestKey {}

impl RawDigestKey {
    fn new(scope_id: u32, digest: Digest) -> Self {
        Self {
            scope_id,
            pad: 0,
            digest,
        }
    }
}

/// The loaded and attached enforcer programs and their maps.
///
/// The programs stay attached while the value lives.
pub struct Enforcer {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
}

impl Enforcer {
    /// Loads the embedded object and attaches both programs.
    pub fn attach() -> Result<Self, EnforcerError> {
        let btf = Btf::from_sys_fs().map_err(EnforcerError::Btf)?;
        let mut ebpf = Ebpf::load(objects::ENFORCER).map_err(EnforcerError::Object)?;
        for (program, hook) in PROGRAMS {
            let lsm: &mut Lsm = ebpf
                .program_mut(program)
                .ok_or(EnforcerError::Missing {
                    kind: "program",
                    name: program,
                })?
                .try_into()
                .map_err(|source| EnforcerError::ProgramType {
                    program,
                    source: Box::new(source),
                })?;
            lsm.load(hook, &btf).map_err(|source| EnforcerError::Load {
                program,
                hook,
                source: Box::new(source),
            })?;
            lsm.attach().map_err(|source| EnforcerError::Attach {
                program,
                hook,
                lsm_state: kernel::describe_bpf_lsm_state(),
                source: Box::new(source),
            })?;
        }
        let events = ebpf.take_map(EVENTS_MAP).ok_or(EnforcerError::Missing {
            kind: "map",
            name: EVENTS_MAP,
        })?;
        let events = map_err(EVENTS_MAP, RingBuf::try_from(events))?;
        Ok(Self { ebpf, events })
    }

    /// Makes the cgroup `cgroup_id` a scope with digest set `scope_id`,
    /// reporting denials and audit findings only.
    pub fn add_scope(
        &mut self,
        cgroup_id: u64,
        scope_id: u32,
        mode: Mode,
    ) -> Result<(), EnforcerError> {
        self.set_scope(
            cgroup_id,
            Scope {
                id: scope_id,
                mode,
                report_allowed: false,
            },
        )
    }

    /// Makes the cgroup `cgroup_id` a scope, or changes its settings.
    pub fn set_scope(&mut self, cgroup_id: u64, scope: Scope) -> Result<(), EnforcerError> {
        let raw = RawScope {
            scope_id: scope.id,
            mode: scope.mode.to_raw(),
            flags: if scope.report_allowed {
                FLAG_REPORT_ALLOWED
            } else {
                0
            },
            pad: 0,
        };
        let mut map = self.scopes()?;
        map_err(SCOPES_MAP, map.insert(cgroup_id, raw, 0))
    }

    /// Stops enforcing the cgroup `cgroup_id`: its tasks are untouched again.
    /// The digest set of its scope id stays (other cgroups may share it).
    /// Removing a cgroup that is not a scope is not an error.
    pub fn remove_scope(&mut self, cgroup_id: u64) -> Result<(), EnforcerError> {
        let mut map = self.scopes()?;
        match map.remove(&cgroup_id) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(EnforcerError::Map {
                name: SCOPES_MAP,
                source,
            }),
        }
    }

    /// Adds `digests` to the digest set of scope `scope_id`.
    pub fn allow_digests(
        &mut self,
        scope_id: u32,
        digests: &[Digest],
    ) -> Result<(), EnforcerError> {
        let mut map = self.allowed()?;
        for digest in digests {
            map_err(
                ALLOWED_MAP,
                map.insert(RawDigestKey::new(scope_id, *digest), 1u8, 0),
            )?;
        }
        Ok(())
    }

    /// Removes `digests` from the digest set of scope `scope_id`; digests not
    /// in the set are ignored.
    pub fn revoke_digests(
        &mut self,
        scope_id: u32,
        digests: &[Digest],
    ) -> Result<(), EnforcerError> {
        let mut map = self.allowed()?;
        for digest in digests {
            match map.remove(&RawDigestKey::new(scope_id, *digest)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(EnforcerError::Map {
                        name: ALLOWED_MAP,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// The next event already in the ring buffer, without waiting.
    pub fn next_event(&mut self) -> Result<Option<Event>, EnforcerError> {
        match self.events.next() {
            Some(item) => Event::parse(&item).map(Some),
            None => Ok(None),
        }
    }

    /// Every event in the ring buffer; if there is none, polls until one
    /// arrives or `timeout` passes (then returns an empty list).
    pub fn poll_events(&mut self, timeout: Duration) -> Result<Vec<Event>, EnforcerError> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            while let Some(event) = self.next_event()? {
                events.push(event);
            }
            if !events.is_empty() || Instant::now() >= deadline {
                return Ok(events);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// How many events the kernel dropped because the ring buffer was full.
    pub fn dropped_events(&self) -> Result<u64, EnforcerError> {
        let map = self.ebpf.map(STATS_MAP).ok_or(EnforcerError::Missing {
            kind: "map",
            name: STATS_MAP,
        })?;
        let stats: Array<&MapData, u64> = map_err(STATS_MAP, Array::try_from(map))?;
        map_err(STATS_MAP, stats.get(&STAT_EVENTS_DROPPED, 0))
    }

    fn map_raw(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, EnforcerError> {
        self.ebpf
            .map_mut(name)
            .ok_or(EnforcerError::Missing { kind: "map", name })
    }

    fn scopes(&mut self) -> Result<HashMap<&mut MapData, u64, RawScope>, EnforcerError> {
        map_err(SCOPES_MAP, HashMap::try_from(self.map_raw(SCOPES_MAP)?))
    }

    fn allowed(&mut self) -> Result<HashMap<&mut MapData, RawDigestKey, u8>, EnforcerError> {
        map_err(ALLOWED_MAP, HashMap::try_from(self.map_raw(ALLOWED_MAP)?))
    }
}

/// The cgroup id of the cgroup v2 directory `path` (e.g.
/// `/sys/fs/cgroup/imgsign/c1`): its inode number, which is what
/// `bpf_get_current_cgroup_id()` returns for tasks in it.
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

fn map_err<T>(name: &'static str, result: Result<T, MapError>) -> Result<T, EnforcerError> {
    result.map_err(|source| EnforcerError::Map { name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_event() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        b.extend_from_slice(&4242u32.to_ne_bytes());
        b.extend_from_slice(&7u32.to_ne_bytes());
        b.extend_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&[1, 1, 0, 0]); // hook, verdict, mode, pad
        b.extend_from_slice(&4i32.to_ne_bytes());
        b.extend_from_slice(&[0; 4]);
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"true");
        b.extend_from_slice(&comm);
        b.extend_from_slice(&[0xab; 32]);
        b
    }

    #[test]
    fn event_layout_matches_the_c_struct() {
        let bytes = raw_event();
        assert_eq!(bytes.len(), EVENT_LEN);
        let event = Event::parse(&bytes).unwrap();
        assert_eq!(
            event,
            Event {
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
            }
        );
    }

    #[test]
    fn event_without_sha256_has_no_digest() {
        let mut bytes = raw_event();
        bytes[24..28].copy_from_slice(&(-95i32).to_ne_bytes());
        bytes[20] = 2;
        bytes[21] = 2;
        bytes[22] = 1;
        let event = Event::parse(&bytes).unwrap();
        assert_eq!(event.digest, None);
        assert_eq!(event.hook, Hook::MmapFile);
        assert_eq!(event.verdict, Verdict::Audit);
        assert_eq!(event.mode, Some(Mode::Audit));
    }

    #[test]
    fn short_event_is_an_error() {
        assert!(matches!(
            Event::parse(&[0; 10]),
            Err(EnforcerError::Event { len: 10 })
        ));
    }

    #[test]
    fn raw_structs_have_the_c_sizes() {
        assert_eq!(std::mem::size_of::<RawScope>(), 8);
        assert_eq!(std::mem::size_of::<RawDigestKey>(), 40);
    }
}
