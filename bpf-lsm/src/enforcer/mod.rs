//! Loader for the enforcer (`src/bpf/enforcer.bpf.c`): content-addressed exec
//! control per cgroup scope.
//!
//! [`Enforcer::attach`] loads the embedded object and attaches two sleepable
//! BPF-LSM programs, on `bprm_check_security` (every exec) and `mmap_file`
//! (every mapping of a file with `PROT_EXEC`), and one that cannot sleep on
//! `file_mprotect`, which refuses, in a scope, making a file mapping that
//! was not executable executable (it was never checked, and cannot be
//! hashed there). For a task in a scope, each
//! hashes the file in the kernel (`bpf_ima_file_hash`, SHA-256 of the current
//! content) and looks the digest up in the scope's digest set.
//!
//! Against code patching (`src/bpf/enforcer/patch.h`, programs of their own
//! beside those): for a task in a scope, opening `/proc/PID/mem` for write
//! (its own included: what DDexec does with `sh` and `dd`), any
//! `PTRACE_MODE_ATTACH` access (ptrace attach and seize,
//! `process_vm_writev`/`readv`, `pidfd_getfd`, another task's
//! `/proc/PID/mem`), `PTRACE_TRACEME`, creating a `userfaultfd`, mapping a
//! file writable and executable at once, and `mprotect` giving write to an
//! executable file mapping (or asking write and exec) are refused in
//! [`Mode::Enforce`] and reported in [`Mode::Audit`]. Reads
//! (`PTRACE_MODE_READ`: `ps`, `/proc/PID/status`) and JITs (anonymous
//! memory) are untouched. Under [`Profile::Strict`] anonymous executable
//! memory (`mmap` with `PROT_EXEC` and no file, `mprotect` making anonymous
//! memory or the stack executable) and io_uring instances are refused too,
//! and an exec whose new stack is executable (`PT_GNU_STACK` asking for it)
//! is killed with `SIGKILL` by an fexit program on `setup_arg_pages`, since
//! the ELF loader makes that stack with no LSM hook and past the exec's
//! point of no return.
//!
//! Digest cache: the SHA-256 of a regular file on ext4, xfs, ramfs or
//! btrfs is kept per inode (`enf_inode_cache`, inode storage) and reused
//! while no writer exists and no open for write or size change happened
//! since (programs on `file_open` and `inode_setattr` bump a per-inode
//! generation; the argument is in the C file). It holds digests, not
//! verdicts, so set replacement needs no invalidation. Overlayfs, NFS, FUSE,
//! tmpfs (whose pages long-term pins such as io_uring fixed buffers write
//! with no writer open) and other filesystems are hashed at every decision.
//!
//! Which file is judged (`src/bpf/enforcer/fs.h`): on overlayfs a mapping
//! runs the real (lower or upper) file the overlay file opened, which after a
//! copy-up is no longer the file a read through the overlay shows. The hash
//! is taken through the overlay file while the programs watch the hashing
//! task's opens: if overlayfs opened another real file for the hash than the
//! one the mapping runs, the content is unknown (refused in enforce mode,
//! `hash_ret` `-ESTALE`). Exec and executable mappings of files on FUSE, NFS,
//! 9p, CIFS/SMB2 and ceph (judged on the real file's super block, so an
//! overlay over them counts) are refused in enforce scopes with
//! [`Reason::RemoteFs`] unless the scope has [`Scope::remote_fs`]: their
//! servers can serve one content to the hash and another to the page fault.
//! [`Enforcer::cache_hits`] and [`Enforcer::cache_fills`] count its use.
//! Unknown content is refused with `EPERM` in [`Mode::Enforce`] and allowed
//! but reported in [`Mode::Audit`]. Tasks under no scope are untouched (the
//! programs return before hashing).
//!
//! Sealed execution (`seal.h`): when a task in an enforce scope is allowed
//! to exec a file or map it executable, the inode is sealed (`enf_seals`,
//! inode storage, any regular file on any filesystem): while it stays in
//! memory, every open for write (and `O_TRUNC`) and every size change fails
//! with `ETXTBSY`, from any task, and is reported ([`Reason::Sealed`]). A
//! file with writers (open for write, or a writable shared mapping) is
//! refused ([`Reason::Writers`]), and so is an executable memfd or other
//! unlinked shmem file unless it is sealed with `F_SEAL_WRITE` or
//! `F_SEAL_FUTURE_WRITE` and has no writable shared mapping
//! ([`Reason::Memfd`]; hugetlbfs memfds always). Writing a new file and
//! renaming it over the path still works (a new inode). Audit scopes never
//! seal; they report what would have been refused. Not stopped: pages of a
//! tmpfs file or memfd pinned for writing before the seal (io_uring fixed
//! buffers) keep writing while it runs; the strict profile refuses
//! io_uring. The seals live as long as the programs: unpinning ends them.
//!
//! Scope model: a scope is a cgroup v2 subtree, named by the cgroup id of its
//! top directory (its inode number, see [`cgroup_id`]) in
//! [`Enforcer::set_scope`]. A task belongs to the scope of its nearest
//! ancestor cgroup, itself included, that was added (up to 32 levels deep:
//! levels 0, the root, to 31); the root cgroup as a scope covers the whole
//! node. A scope has a scope id, which names its digest set; several cgroups
//! may share one.
//!
//! Sticky scopes: a task stays bound to the scope it was in at its first
//! decision in a scope (or its parent's, inherited at fork; task storage
//! `enf_task_scope`). A task that leaves its scope's subtree (it writes its
//! pid to another cgroup's `cgroup.procs`, or is moved) is judged by that
//! scope as well as by the scope of its new cgroup: both must allow
//! ([`Reason::Escape`] when the old one refused). If that scope was removed
//! meanwhile, its last known entry still decides (fail closed: unknown
//! content stays refused in enforce mode). A task still inside its scope's
//! subtree is judged as before (removing a scope ends enforcement for it).
//! Not covered: a task already in a scope when the enforcer was loaded that
//! made no decision and no fork before leaving.
//!
//! Guard (`enforcer/guard.h`), for tasks in enforce scopes (escaped ones
//! included): `clone3(CLONE_INTO_CGROUP)` is refused (`task_alloc`), every
//! `bpf()` command is refused (but to the registered owner, see below), and
//! module, firmware, kexec and IMA policy loads are refused
//! (`kernel_read_file`, `kernel_load_data`). Removing or renaming the pins,
//! the pin directory, or unmounting its bpffs is refused to every process but
//! the registered owner, scoped or not. The owner is a tgid in the pinned
//! `enf_guard` map, with the pin directory's inode and device:
//! [`Enforcer::attach`], [`Enforcer::attach_pinned`], [`Enforcer::open_pinned`]
//! and [`Enforcer::unpin`] register the calling process (so a daemon taking
//! over, and `imgsign enforce --detach`, work). This stops the threat model's
//! attacker, who is inside a scope. It does not stop root outside every
//! scope: it can register itself through `bpf()` (and could unload any
//! program anyway). A daemon that dies leaves its tgid registered until the
//! next registration: a process that later gets that pid counts as the owner.
//!
//! Maps: `enf_scopes` (cgroup id -> scope id, mode, flags), `enf_sets` (scope
//! id -> set id, a generation), `enf_allowed` ((set id, digest) -> the privileges an exec of it may have, [`Privs`]),
//! `enf_events` (ring buffer of [`Event`]s), `enf_stats` (dropped events,
//! cache hits and fills), `enf_scope_stats` (per scope: decisions, drops,
//! event numbers; [`ScopeStats`]), `enf_guard` (the owner and the pins' place); not
//! pinned: `enf_inode_cache` and `enf_task_scope` (the programs keep them). Their key and value structs and every constant
//! shared with the C side come from `abi.h` through [`crate::abi`].
//! [`Enforcer::replace_digests`] swaps a scope's whole set atomically: it
//! fills a fresh set id, repoints `enf_sets` in one update, then deletes the
//! old pairs; the kernel side re-reads the set id when a lookup misses, so a
//! decision racing with the swap sees the old set or the new one, never an
//! empty or mixed one (the argument is in the C file).
//!
//! Events: denials and audit findings are always written; allowed decisions
//! only for scopes with [`Scope::report_allowed`]. A full ring buffer drops
//! the event ([`Enforcer::dropped_events`]) and never delays the exec.
//! [`Enforcer::poll_events`] reads them by polling.
//!
//! Pinning: [`Enforcer::attach_pinned`] pins the program links and the
//! seven maps above under a bpffs directory (`link_enf_bprm_check`,
//! `link_enf_mmap_file`, `link_enf_file_mprotect`, `link_enf_file_open`,
//! `link_enf_inode_setattr`, `link_enf_seal_file_open`,
//! `link_enf_seal_inode_setattr`, a `link_` per guard program, the
//! `link_enf_patch_*` links, and the map names; `enf_seals` is not pinned:
//! nothing in user space reads or writes it), so enforcement outlives the
//! loading process; [`Enforcer::open_pinned`] takes it over (set sizes and
//! the next set id are recounted from the maps) and [`Enforcer::unpin`] ends
//! it. [`Enforcer::attach`] pins nothing: the programs detach when the value
//! is dropped.
//!
//! Not yet here: replacing the pinned programs by a newer build without a
//! gap (today a pinned enforcer keeps its programs and map layouts until
//! unpinned) and caching the digest of overlay files on their real inode
//! (the programs cannot reach it as a typed pointer: see fs.h). (The cgroup path of
//! an event is resolved in user space, by `enforce`.)

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, Map, MapData, MapError, RingBuf};
use aya::pin::PinError;
use aya::programs::links::FdLink;
use aya::programs::{FExit, Lsm, ProgramError};
use aya::sys::SyscallError;
use aya::{Btf, BtfError, Ebpf, EbpfError, EbpfLoader};

use crate::abi::{self, EnfDigestKey, EnfEvent, EnfGuard, EnfPrivs, EnfScope};
use crate::{kernel, objects, Digest};

mod counters;
mod events;
mod privs;
mod sets;
pub use counters::ScopeStats;
pub use events::{Event, Hook, Reason, Verdict};
pub use privs::{Privs, PrivsError};

/// The hook that sees every exec.
pub const HOOK_BPRM_CHECK: &str = "bprm_check_security";
/// The hook that sees every file mapping.
pub const HOOK_MMAP_FILE: &str = "mmap_file";
/// The hook that sees every change of a mapping's protection.
pub const HOOK_FILE_MPROTECT: &str = "file_mprotect";

/// The hook where an exec's new credentials are known (privileges as signed).
pub const HOOK_CREDS: &str = "bprm_creds_from_file";

const PROGRAMS: [(&str, &str); 4] = [
    ("enf_bprm_check", HOOK_BPRM_CHECK),
    ("enf_mmap_file", HOOK_MMAP_FILE),
    ("enf_file_mprotect", HOOK_FILE_MPROTECT),
    ("enf_privs_creds", HOOK_CREDS),
];
/// The programs that invalidate the per-inode digest cache: attached before
/// [`PROGRAMS`] (which fill and use it) and detached after them. The
/// `inode_setattr` hook has two argument lists across kernels: one of the
/// two programs loads (see the C file).
const FILE_OPEN_PROGRAM: (&str, &str) = ("enf_file_open", "file_open");
/// The programs against code patching in a scope and of the strict profile
/// (`enforcer/patch.h`). They neither hash nor use the digest cache:
/// attached after [`PROGRAMS`], detached with them.
const PATCH_PROGRAMS: [(&str, &str); 6] = [
    ("enf_patch_file_open", "file_open"),
    ("enf_patch_ptrace_access", "ptrace_access_check"),
    ("enf_patch_ptrace_traceme", "ptrace_traceme"),
    ("enf_patch_anon_inode", "inode_init_security_anon"),
    ("enf_patch_mmap_file", HOOK_MMAP_FILE),
    ("enf_patch_file_mprotect", HOOK_FILE_MPROTECT),
];
/// The strict profile's executable-stack check: a tracing (fexit) program on
/// the kernel function that makes an exec's stack, which has no LSM hook.
const EXEC_STACK_PROGRAM: (&str, &str) = ("enf_patch_exec_stack", "setup_arg_pages");
const SETATTR_PROGRAMS: [&str; 2] = ["enf_inode_setattr3", "enf_inode_setattr2"];
/// Self-protection and escapes (`enforcer/guard.h`): the sticky scope at
/// fork and `clone3(CLONE_INTO_CGROUP)`, `bpf()`, the pins, kernel loads.
/// Attached after the owner is registered in `enf_guard`, and after the
/// cache invalidation programs.
const GUARD_PROGRAMS: [(&str, &str); 8] = [
    ("enf_task_alloc", "task_alloc"),
    ("enf_inode_unlink", "inode_unlink"),
    ("enf_inode_rmdir", "inode_rmdir"),
    ("enf_inode_rename", "inode_rename"),
    ("enf_sb_umount", "sb_umount"),
    ("enf_kernel_read_file", "kernel_read_file"),
    ("enf_kernel_load_data", "kernel_load_data"),
    ("enf_bpf", "bpf"),
];
const SETATTR_HOOK: &str = "inode_setattr";
/// Pin name (after `link_`) of whichever `inode_setattr` program loaded.
const SETATTR_PIN: &str = "enf_inode_setattr";
/// The seal guards (`seal.h`): refuse opens for write and size changes of
/// sealed inodes. Attached with the cache invalidation, before [`PROGRAMS`]
/// (which seal), detached after them; same two `inode_setattr` forms.
const SEAL_FILE_OPEN_PROGRAM: (&str, &str) = ("enf_seal_file_open", "file_open");
const SEAL_SETATTR_PROGRAMS: [&str; 2] = ["enf_seal_inode_setattr3", "enf_seal_inode_setattr2"];
const SEAL_SETATTR_PIN: &str = "enf_seal_inode_setattr";
const SCOPES_MAP: &str = "enf_scopes";
const SETS_MAP: &str = "enf_sets";
const ALLOWED_MAP: &str = "enf_allowed";
const EVENTS_MAP: &str = "enf_events";
const STATS_MAP: &str = "enf_stats";
const GUARD_MAP: &str = "enf_guard";
const SCOPE_STATS_MAP: &str = "enf_scope_stats";
/// Every pinned map, by the name it is pinned under. The digest cache
/// (`enf_inode_cache`) and the sticky scopes (`enf_task_scope`) are not
/// pinned: the programs keep them alive, no later loader needs them, and a
/// pinned cache could be written by whoever reaches the pin (a chosen digest
/// for any file).
const MAPS: [&str; 7] = [SCOPES_MAP, SETS_MAP, ALLOWED_MAP, EVENTS_MAP, STATS_MAP, GUARD_MAP, SCOPE_STATS_MAP];
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
    Missing { kind: &'static str, name: &'static str },
    #[error("program {program} is not of the program type its hook needs (LSM or fexit)")]
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
    #[error("cannot create the pin directory {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot pin {path} (is bpffs mounted there?)")]
    Pin {
        path: PathBuf,
        #[source]
        source: Box<PinError>,
    },
    #[error("no enforcer is pinned under {dir}")]
    NotPinned { dir: PathBuf },
    #[error("cannot open the pinned map {path}")]
    OpenPin {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("cannot remove the pin {path}")]
    Unpin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed event of {len} bytes from {EVENTS_MAP} (expected {})", size_of::<EnfEvent>())]
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
            Mode::Enforce => abi::ENF_MODE_ENFORCE,
            Mode::Audit => abi::ENF_MODE_AUDIT,
        }
    }

    fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            abi::ENF_MODE_ENFORCE => Some(Mode::Enforce),
            abi::ENF_MODE_AUDIT => Some(Mode::Audit),
            _ => None,
        }
    }
}

/// Which attacker a scope is hardened against (the README's threat model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Against (A), who runs listed programs with chosen arguments and files:
    /// no unsigned file becomes code, nothing patches code in memory.
    #[default]
    Default,
    /// Also against (B), who already has native code in a listed process: no
    /// anonymous executable memory (JITs break), no io_uring.
    Strict,
}

/// How one cgroup is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Names the digest set ([`Enforcer::replace_digests`]).
    pub id: u32,
    /// Enforce or audit.
    pub mode: Mode,
    /// Also report decisions that allowed known content.
    pub report_allowed: bool,
    /// The default profile, or strict.
    pub profile: Profile,
    /// Allow code from FUSE, NFS, 9p, CIFS and ceph, whose servers can serve
    /// one content to the hash and another to the page fault (off by default).
    pub remote_fs: bool,
}

impl Scope {
    /// A scope on digest set `id` in `mode`, default profile, reporting only
    /// denials and audit findings.
    pub fn new(id: u32, mode: Mode) -> Self {
        Scope { id, mode, report_allowed: false, profile: Profile::Default, remote_fs: false }
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.report_allowed {
            flags |= abi::ENF_FLAG_REPORT_ALLOWED;
        }
        if self.profile == Profile::Strict {
            flags |= abi::ENF_FLAG_STRICT;
        }
        if self.remote_fs {
            flags |= abi::ENF_FLAG_REMOTE_FS;
        }
        flags
    }

    fn from_raw(raw: &EnfScope) -> Self {
        Scope {
            id: raw.scope_id,
            mode: Mode::from_raw(raw.mode).unwrap_or(Mode::Enforce),
            report_allowed: raw.flags & abi::ENF_FLAG_REPORT_ALLOWED != 0,
            profile: if raw.flags & abi::ENF_FLAG_STRICT != 0 { Profile::Strict } else { Profile::Default },
            remote_fs: raw.flags & abi::ENF_FLAG_REMOTE_FS != 0,
        }
    }
}

/// A key of `enf_allowed`; `pad` is always zero, so keys compare equal in
/// the kernel's hash map.
fn digest_key(set_id: u32, digest: Digest) -> EnfDigestKey {
    EnfDigestKey { set_id, pad: 0, digest }
}

/// The enforcer's maps, and its programs when this value loaded them.
///
/// From [`Enforcer::attach`], the programs stay attached while the value
/// lives. From [`Enforcer::attach_pinned`] or [`Enforcer::open_pinned`], they
/// stay attached until [`Enforcer::unpin`], whatever happens to the process.
pub struct Enforcer {
    /// The loaded object (programs), if this value loaded it.
    _ebpf: Option<Ebpf>,
    scopes_map: Map,
    sets_map: Map,
    allowed_map: Map,
    stats_map: Map,
    /// `enf_scope_stats`; `None` for an enforcer pinned by a build without it.
    scope_stats_map: Option<Map>,
    events: RingBuf<MapData>,
    /// The next set id to hand out (set ids are never reused while loaded).
    next_set_id: u32,
    /// Number of digests per set id, as this value put them in the kernel.
    set_sizes: std::collections::HashMap<u32, usize>,
}

impl Enforcer {
    /// Loads the embedded object and attaches its programs, for as long as
    /// the returned value lives.
    pub fn attach() -> Result<Self, EnforcerError> {
        Self::load(None)
    }

    /// Like [`Enforcer::attach`], but pins the program links and the maps
    /// under `dir` (on bpffs, e.g. `/sys/fs/bpf/imgsign`), so enforcement
    /// outlives the process (a daemon killed with SIGKILL included). If `dir`
    /// already holds a pinned enforcer, opens it instead
    /// ([`Enforcer::open_pinned`]): what is in force stays in force.
    pub fn attach_pinned(dir: &Path) -> Result<Self, EnforcerError> {
        if Self::is_pinned(dir) {
            return Self::open_pinned(dir);
        }
        fs::create_dir_all(dir).map_err(|source| EnforcerError::PinDir { path: dir.into(), source })?;
        let result = Self::load(Some(dir));
        if result.is_err() {
            // Leave no half-pinned enforcer behind.
            let _ = Self::unpin(dir);
        }
        result
    }

    /// Whether `dir` holds the pinned links of an enforcer.
    pub fn is_pinned(dir: &Path) -> bool {
        PROGRAMS.iter().all(|(program, _)| dir.join(link_pin_name(program)).exists())
    }

    /// Opens the enforcer pinned under `dir` (by [`Enforcer::attach_pinned`],
    /// possibly in another process) to change its scopes and digest sets and
    /// read its events. Only one value should write to the maps at a time.
    pub fn open_pinned(dir: &Path) -> Result<Self, EnforcerError> {
        Self::open_pinned_as(dir, true)
    }

    /// Opens the enforcer pinned under `dir` to read it (`enforce --status`)
    /// without registering the caller as the owner (which would take the
    /// pins' protection away from the running daemon). The value can still
    /// write the maps; callers that only read should not.
    pub fn inspect_pinned(dir: &Path) -> Result<Self, EnforcerError> {
        Self::open_pinned_as(dir, false)
    }

    fn open_pinned_as(dir: &Path, owner: bool) -> Result<Self, EnforcerError> {
        if !Self::is_pinned(dir) {
            return Err(EnforcerError::NotPinned { dir: dir.into() });
        }
        let open = |name: &'static str| -> Result<Map, EnforcerError> {
            let path = dir.join(name);
            MapData::from_pin(&path)
                .and_then(Map::from_map_data)
                .map_err(|source| EnforcerError::OpenPin { path, source })
        };
        if owner {
            register_owner(open(GUARD_MAP)?, None)?;
        }
        let mut enforcer = Self::from_maps(
            None,
            open(SCOPES_MAP)?,
            open(SETS_MAP)?,
            open(ALLOWED_MAP)?,
            open(STATS_MAP)?,
            dir.join(SCOPE_STATS_MAP).exists().then(|| open(SCOPE_STATS_MAP)).transpose()?,
            open(EVENTS_MAP)?,
        )?;
        enforcer.recount()?;
        Ok(enforcer)
    }

    /// Removes the enforcer pinned under `dir`: the program links first (the
    /// programs detach once no process holds them), then the maps, then
    /// `dir` itself if it is left empty. Missing pins are not an error.
    pub fn unpin(dir: &Path) -> Result<(), EnforcerError> {
        // Only the registered owner may remove the pins: become it.
        let guard = dir.join(GUARD_MAP);
        if guard.exists() {
            let map = MapData::from_pin(&guard)
                .and_then(Map::from_map_data)
                .map_err(|source| EnforcerError::OpenPin { path: guard.clone(), source })?;
            register_owner(map, None)?;
        }
        // The programs that fill and use the digest cache go before the ones
        // that invalidate it, so no content change goes unseen meanwhile;
        // the self-protection programs go last.
        let links = PROGRAMS
            .iter()
            .chain(PATCH_PROGRAMS.iter())
            .chain([&EXEC_STACK_PROGRAM])
            .map(|(program, _)| link_pin_name(program))
            .chain([
                link_pin_name(SEAL_FILE_OPEN_PROGRAM.0),
                link_pin_name(SEAL_SETATTR_PIN),
                link_pin_name(FILE_OPEN_PROGRAM.0),
                link_pin_name(SETATTR_PIN),
            ])
            .chain(GUARD_PROGRAMS.iter().map(|(program, _)| link_pin_name(program)));
        for name in links.chain(MAPS.iter().map(|m| m.to_string())) {
            let path = dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(EnforcerError::Unpin { path, source }),
            }
        }
        let _ = fs::remove_dir(dir);
        Ok(())
    }

    fn load(pin_dir: Option<&Path>) -> Result<Self, EnforcerError> {
        let btf = Btf::from_sys_fs().map_err(EnforcerError::Btf)?;
        // The sticky scopes' task storage (enf_task_scope) is a map type aya
        // 0.14 does not wrap; only the programs use it.
        let mut ebpf =
            EbpfLoader::new().allow_unsupported_maps().load(objects::ENFORCER).map_err(EnforcerError::Object)?;
        // This process owns the enforcer (and, pinned, where the pins are)
        // before any program runs: enf_bpf would refuse it bpf() otherwise
        // if it sits in a scope.
        let pin = match pin_dir {
            Some(dir) => {
                let meta = fs::metadata(dir).map_err(|source| EnforcerError::PinDir { path: dir.into(), source })?;
                Some((meta.ino(), kernel_dev(meta.dev())))
            }
            None => None,
        };
        let guard = ebpf.take_map(GUARD_MAP).ok_or(EnforcerError::Missing { kind: "map", name: GUARD_MAP })?;
        let guard = register_owner(guard, Some(pin.unwrap_or((0, 0))))?;
        if let Some(dir) = pin_dir {
            // Maps first: once a link is pinned, its maps must be findable.
            for name in MAPS {
                let map = if name == GUARD_MAP {
                    &guard
                } else {
                    ebpf.map(name).ok_or(EnforcerError::Missing { kind: "map", name })?
                };
                let path = dir.join(name);
                map.pin(&path).map_err(|source| EnforcerError::Pin { path, source: Box::new(source) })?;
            }
        }
        // Cache invalidation first: nothing may fill the cache before every
        // content change is seen.
        attach_one(&mut ebpf, &btf, FILE_OPEN_PROGRAM.0, FILE_OPEN_PROGRAM.1, FILE_OPEN_PROGRAM.0, pin_dir)?;
        attach_either(&mut ebpf, &btf, SETATTR_PROGRAMS, SETATTR_HOOK, SETATTR_PIN, pin_dir)?;
        // The seal guards next: nothing may be sealed before they see writes.
        let (program, hook) = SEAL_FILE_OPEN_PROGRAM;
        attach_one(&mut ebpf, &btf, program, hook, program, pin_dir)?;
        attach_either(&mut ebpf, &btf, SEAL_SETATTR_PROGRAMS, SETATTR_HOOK, SEAL_SETATTR_PIN, pin_dir)?;
        for (program, hook) in GUARD_PROGRAMS {
            attach_one(&mut ebpf, &btf, program, hook, program, pin_dir)?;
        }
        for (program, hook) in PROGRAMS.into_iter().chain(PATCH_PROGRAMS) {
            attach_one(&mut ebpf, &btf, program, hook, program, pin_dir)?;
        }
        attach_fexit(&mut ebpf, &btf, EXEC_STACK_PROGRAM.0, EXEC_STACK_PROGRAM.1, pin_dir)?;
        drop(guard);
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(EnforcerError::Missing { kind: "map", name });
        let (scopes, sets, allowed, stats, events) =
            (take(SCOPES_MAP)?, take(SETS_MAP)?, take(ALLOWED_MAP)?, take(STATS_MAP)?, take(EVENTS_MAP)?);
        let scope_stats = take(SCOPE_STATS_MAP)?;
        Self::from_maps(Some(ebpf), scopes, sets, allowed, stats, Some(scope_stats), events)
    }

    fn from_maps(
        ebpf: Option<Ebpf>,
        scopes_map: Map,
        sets_map: Map,
        allowed_map: Map,
        stats_map: Map,
        scope_stats_map: Option<Map>,
        events: Map,
    ) -> Result<Self, EnforcerError> {
        let events = map_err(EVENTS_MAP, RingBuf::try_from(events))?;
        Ok(Self {
            _ebpf: ebpf,
            scopes_map,
            sets_map,
            allowed_map,
            stats_map,
            scope_stats_map,
            events,
            next_set_id: 1,
            set_sizes: Default::default(),
        })
    }

    /// Rebuilds the set sizes and the next set id from the maps (after
    /// opening pinned maps another process filled).
    fn recount(&mut self) -> Result<(), EnforcerError> {
        let mut sizes = std::collections::HashMap::new();
        let mut max_set = 0;
        {
            let allowed = self.allowed()?;
            for key in allowed.keys() {
                let key = map_err(ALLOWED_MAP, key)?;
                *sizes.entry(key.set_id).or_insert(0usize) += 1;
                max_set = max_set.max(key.set_id);
            }
        }
        let sets = self.sets()?;
        for entry in sets.iter() {
            let (_, set_id) = map_err(SETS_MAP, entry)?;
            max_set = max_set.max(set_id);
        }
        self.set_sizes = sizes;
        self.next_set_id = max_set.wrapping_add(1).max(1);
        Ok(())
    }

    /// The next event already in the ring buffer, without waiting.
    pub fn next_event(&mut self) -> Result<Option<Event>, EnforcerError> {
        match self.events.next() {
            Some(item) => Event::read(&item).map(Some),
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
        let stats: Array<&MapData, u64> = map_err(STATS_MAP, Array::try_from(&self.stats_map))?;
        map_err(STATS_MAP, stats.get(&abi::ENF_STAT_EVENTS_DROPPED, 0))
    }

    /// How many decisions took the file's digest from the per-inode cache
    /// instead of hashing (since the programs were loaded).
    pub fn cache_hits(&self) -> Result<u64, EnforcerError> {
        self.stat(abi::ENF_STAT_CACHE_HITS)
    }

    /// How many hashes were stored in the per-inode cache.
    pub fn cache_fills(&self) -> Result<u64, EnforcerError> {
        self.stat(abi::ENF_STAT_CACHE_FILLS)
    }

    fn stat(&self, slot: u32) -> Result<u64, EnforcerError> {
        let stats: Array<&MapData, u64> = map_err(STATS_MAP, Array::try_from(&self.stats_map))?;
        map_err(STATS_MAP, stats.get(&slot, 0))
    }

    fn scopes(&mut self) -> Result<HashMap<&mut MapData, u64, EnfScope>, EnforcerError> {
        map_err(SCOPES_MAP, HashMap::try_from(&mut self.scopes_map))
    }

    fn sets(&mut self) -> Result<HashMap<&mut MapData, u32, u32>, EnforcerError> {
        map_err(SETS_MAP, HashMap::try_from(&mut self.sets_map))
    }

    fn allowed(&mut self) -> Result<HashMap<&mut MapData, EnfDigestKey, EnfPrivs>, EnforcerError> {
        map_err(ALLOWED_MAP, HashMap::try_from(&mut self.allowed_map))
    }
}

/// Loads `program` on `hook`, attaches it and, with `pin_dir`, pins its link
/// as `link_<pin>` (the link then outlives the process).
fn attach_one(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    hook: &'static str,
    pin: &str,
    pin_dir: Option<&Path>,
) -> Result<(), EnforcerError> {
    let lsm: &mut Lsm = ebpf
        .program_mut(program)
        .ok_or(EnforcerError::Missing { kind: "program", name: program })?
        .try_into()
        .map_err(|source| EnforcerError::ProgramType { program, source: Box::new(source) })?;
    lsm.load(hook, btf).map_err(|source| EnforcerError::Load { program, hook, source: Box::new(source) })?;
    let link = lsm.attach().map_err(|source| EnforcerError::Attach {
        program,
        hook,
        lsm_state: kernel::describe_bpf_lsm_state(),
        source: Box::new(source),
    })?;
    if let Some(dir) = pin_dir {
        let link =
            lsm.take_link(link).map_err(|source| EnforcerError::Load { program, hook, source: Box::new(source) })?;
        let path = dir.join(link_pin_name(pin));
        FdLink::from(link).pin(&path).map_err(|source| EnforcerError::Pin { path, source: Box::new(source) })?;
    }
    Ok(())
}

/// Loads and attaches the fexit `program` on kernel function `function`
/// (pinning its link under `pin_dir`), as [`attach_one`] does for LSM programs.
fn attach_fexit(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    function: &'static str,
    pin_dir: Option<&Path>,
) -> Result<(), EnforcerError> {
    let fexit: &mut FExit = ebpf
        .program_mut(program)
        .ok_or(EnforcerError::Missing { kind: "program", name: program })?
        .try_into()
        .map_err(|source| EnforcerError::ProgramType { program, source: Box::new(source) })?;
    fexit.load(function, btf).map_err(|source| EnforcerError::Load {
        program,
        hook: function,
        source: Box::new(source),
    })?;
    let link = fexit.attach().map_err(|source| EnforcerError::Attach {
        program,
        hook: function,
        lsm_state: kernel::describe_bpf_lsm_state(),
        source: Box::new(source),
    })?;
    if let Some(dir) = pin_dir {
        let link = fexit.take_link(link).map_err(|source| EnforcerError::Load {
            program,
            hook: function,
            source: Box::new(source),
        })?;
        let path = dir.join(link_pin_name(program));
        FdLink::from(link).pin(&path).map_err(|source| EnforcerError::Pin { path, source: Box::new(source) })?;
    }
    Ok(())
}

/// Attaches the first of `programs` (two forms of one hook whose arguments
/// differ between kernels) that the verifier accepts, pinned as `link_<pin>`.
fn attach_either(
    ebpf: &mut Ebpf,
    btf: &Btf,
    programs: [&'static str; 2],
    hook: &'static str,
    pin: &str,
    pin_dir: Option<&Path>,
) -> Result<(), EnforcerError> {
    let mut first_error = None;
    for program in programs {
        match attach_one(ebpf, btf, program, hook, pin, pin_dir) {
            Ok(()) => return Ok(()),
            // The verifier refuses the form that does not match this
            // kernel's hook; the other one is tried next.
            Err(e @ EnforcerError::Load { .. }) => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first_error.expect("two programs were tried"))
}

impl Drop for Enforcer {
    /// Detaches the programs that use the digest cache before the ones that
    /// invalidate it (dropping the object alone would detach them in any
    /// order). Pinned links are not affected: they stay until unpinned.
    fn drop(&mut self) {
        if let Some(ebpf) = self._ebpf.as_mut() {
            for (program, _) in PROGRAMS {
                if let Some(lsm) = ebpf.program_mut(program).and_then(|p| <&mut Lsm>::try_from(p).ok()) {
                    let _ = lsm.unload();
                }
            }
        }
    }
}

/// Registers the calling process as the owner in the `enf_guard` map (one
/// update), and with `pin` also where the pins are: the pin directory's
/// inode number and its super block's device. Returns the map.
fn register_owner(mut map: Map, pin: Option<(u64, u32)>) -> Result<Map, EnforcerError> {
    {
        let mut array: Array<&mut MapData, EnfGuard> = map_err(GUARD_MAP, Array::try_from(&mut map))?;
        let mut config = map_err(GUARD_MAP, array.get(&0, 0))?;
        if let Some((pin_ino, pin_dev)) = pin {
            config.pin_ino = pin_ino;
            config.pin_dev = pin_dev;
        }
        config.owner_tgid = std::process::id();
        map_err(GUARD_MAP, array.set(0, config, 0))?;
    }
    Ok(map)
}

/// The kernel's `dev_t` (`major << 20 | minor`, as `super_block.s_dev`) of
/// a device number as `stat(2)` reports it (glibc's encoding).
fn kernel_dev(dev: u64) -> u32 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    ((major << 20) | (minor & 0xfffff)) as u32
}

/// The file name of the pinned link of `program`.
fn link_pin_name(program: &str) -> String {
    format!("link_{program}")
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

/// `BPF_NOEXIST`: insert only if the key is not there.
const BPF_NOEXIST: u64 = 1;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;

/// Whether a map call failed with `errno`.
fn is_errno(e: &MapError, errno: i32) -> bool {
    matches!(e, MapError::SyscallError(SyscallError { io_error, .. })
        if io_error.raw_os_error() == Some(errno))
}

/// Whether a map call failed because the key is not there (aya 0.14 says
/// `KeyNotFound` for lookups but a raw `ENOENT` for deletes).
fn is_absent(e: &MapError) -> bool {
    matches!(e, MapError::KeyNotFound) || is_errno(e, ENOENT)
}

fn ignore_absent(name: &'static str, result: Result<(), MapError>) -> Result<(), EnforcerError> {
    match result {
        Err(e) if is_absent(&e) => Ok(()),
        other => map_err(name, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_are_recognised_in_both_aya_shapes() {
        assert!(is_absent(&MapError::KeyNotFound));
        let enoent = MapError::SyscallError(SyscallError {
            call: "bpf_map_delete_elem",
            io_error: io::Error::from_raw_os_error(ENOENT),
        });
        assert!(is_absent(&enoent));
        let eexist = MapError::SyscallError(SyscallError {
            call: "bpf_map_update_elem",
            io_error: io::Error::from_raw_os_error(EEXIST),
        });
        assert!(!is_absent(&eexist) && is_errno(&eexist, EEXIST));
    }
}
