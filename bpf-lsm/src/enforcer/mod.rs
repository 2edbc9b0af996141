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
//! io_uring. The seals live as long as their pinned map: unpinning ends
//! them; an upgrade keeps them (the new programs share the map).
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
//! event numbers; [`ScopeStats`]), `enf_guard` (the owner and the pins' place),
//! `enf_identity` (which layout and build are pinned); not pinned:
//! `enf_inode_cache` (each build's programs keep their own). Their key and value structs and every constant
//! shared with the C side come from `abi.h` through [`crate::abi`].
//! [`Enforcer::replace_digests`] swaps a scope's whole set atomically: it
//! fills a fresh set id, repoints `enf_sets` in one update, then deletes the
//! old pairs; the kernel side re-reads the set id when a lookup misses, so a
//! decision racing with the swap sees the old set or the new one, never an
//! empty or mixed one (the argument is in the C file).
//! A map that is full (`enf_scopes` and `enf_sets` hold 4096 entries,
//! `enf_allowed` 262144) refuses the change with [`EnforcerError::MapFull`],
//! naming the map, and leaves nothing of it behind (`sets.rs`); tests fill
//! the pinned maps with unreachable entries through `occupy.rs`.
//!
//! Events: denials and audit findings are always written; allowed decisions
//! only for scopes with [`Scope::report_allowed`]. A full ring buffer drops
//! the event ([`Enforcer::dropped_events`]) and never delays the exec.
//! [`Enforcer::poll_events`] reads them by polling.
//!
//! Pinning: [`Enforcer::attach_pinned`] pins the program links (`link_` and
//! the program's name; `link_enf_inode_setattr` and
//! `link_enf_seal_inode_setattr` for whichever form loaded) and the maps
//! above, the programs' state `enf_seals` and `enf_task_scope`, and the
//! identity `enf_identity` (layout and build) under a bpffs directory, so
//! enforcement outlives the loading process; [`Enforcer::open_pinned`] opens
//! it (set sizes and the next set id are recounted from the maps) and
//! [`Enforcer::unpin`] ends it. [`Enforcer::attach`] pins nothing: the
//! programs detach when the value is dropped.
//!
//! Upgrades (`takeover.rs`, with the step-by-step crash argument): on a
//! directory that already holds an enforcer, [`Enforcer::attach_pinned`]
//! reuses the same build, replaces another build of a layout it reads (its
//! own, or layout 1 of the builds before identities) by its own programs
//! without a gap (the new programs share the pinned maps, attach beside the
//! old ones, then take their pin names by rename), and refuses any other
//! layout, untouched ([`EnforcerError::UnknownLayout`]). Loading is
//! `load.rs`; the pin directory's reading and renaming, `pins.rs`.
//!
//! Not yet here: caching the digest of overlay files on their real inode
//! (the programs cannot reach it as a typed pointer: see fs.h). (The cgroup
//! path of an event is resolved in user space, by `enforce`.)

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, Map, MapData, MapError, RingBuf};
use aya::pin::PinError;
use aya::programs::ProgramError;
use aya::sys::SyscallError;
use aya::{BtfError, Ebpf, EbpfError};

use crate::abi::{self, EnfDigestKey, EnfEvent, EnfPrivs, EnfScope};
use crate::Digest;

mod counters;
mod events;
mod load;
#[doc(hidden)]
pub mod occupy;
mod pins;
mod privs;
mod sets;
pub mod takeover;
pub use counters::ScopeStats;
pub use events::{Event, Hook, Reason, Verdict};
pub use load::Build;
pub use pins::PinnedLinkInfo;
pub use privs::{Privs, PrivsError};
pub use takeover::{Identity, Takeover};

/// The hook that sees every exec.
pub const HOOK_BPRM_CHECK: &str = "bprm_check_security";
/// The hook that sees every file mapping.
pub const HOOK_MMAP_FILE: &str = "mmap_file";
/// The hook that sees every change of a mapping's protection.
pub const HOOK_FILE_MPROTECT: &str = "file_mprotect";

/// The hook where an exec's new credentials are known (privileges as signed).
pub const HOOK_CREDS: &str = "bprm_creds_from_file";

const SCOPES_MAP: &str = "enf_scopes";
const SETS_MAP: &str = "enf_sets";
const ALLOWED_MAP: &str = "enf_allowed";
const EVENTS_MAP: &str = "enf_events";
const STATS_MAP: &str = "enf_stats";
const GUARD_MAP: &str = "enf_guard";
const SCOPE_STATS_MAP: &str = "enf_scope_stats";
/// The pinned maps user space reads and writes, by the name they are pinned
/// under (`pins.rs` adds the program state shared across an upgrade and the
/// identity). The digest cache (`enf_inode_cache`) is not pinned: each build
/// starts its own, and a pinned cache could be written by whoever reaches
/// the pin (a chosen digest for any file).
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
    /// The kernel refused a new entry because the hash map holds as many as it was made for
    /// (`E2BIG`). Nothing of the refused change is left in the map.
    #[error("BPF map {name} is full: it holds its maximum of {max_entries} entries ({holds}), so the kernel refused a new one")]
    MapFull {
        name: &'static str,
        max_entries: u32,
        /// What one entry of the map is, for the operator.
        holds: &'static str,
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
    /// The pin directory holds a layout this build cannot read: nothing in it was changed, and
    /// the pinned enforcer keeps enforcing.
    #[error(
        "refusing to take over {dir}: it holds {found}; this build is {own} and reads layouts {known} \
         (the pinned enforcer is left as it is and keeps enforcing; a build that knows its layout \
         can take it over, or `imgsign enforce --detach` removes it)"
    )]
    UnknownLayout { dir: PathBuf, found: String, own: String, known: String },
    /// Listing the pin directory failed.
    #[error("cannot list the pin directory {dir}")]
    ReadPins {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Renaming a staged pin to its final name (or removing a staged one) failed.
    #[error("cannot rename the pin {from} to {to}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A pinned link, or the program or maps behind it, could not be read.
    #[error("cannot read the pinned link {path}: {what}")]
    Link { path: PathBuf, what: String },
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
    /// What [`Enforcer::attach_pinned`] did.
    takeover: Option<Takeover>,
}

impl Enforcer {
    /// Loads the embedded object and attaches its programs, for as long as
    /// the returned value lives.
    pub fn attach() -> Result<Self, EnforcerError> {
        load::load(Build::embedded(), None)
    }

    /// Like [`Enforcer::attach`], but pins the program links and the maps
    /// under `dir` (on bpffs, e.g. `/sys/fs/bpf/imgsign`), so enforcement
    /// outlives the process (a daemon killed with SIGKILL included). If `dir`
    /// already holds a pinned enforcer, takes it over without a gap
    /// ([`takeover`]): the same build is opened as it is ([`Takeover::Reuse`]),
    /// another build of a layout this one reads is replaced by this build's
    /// programs, sharing its maps ([`Takeover::Replace`]), and anything else
    /// is refused ([`EnforcerError::UnknownLayout`]) and left enforcing.
    pub fn attach_pinned(dir: &Path) -> Result<Self, EnforcerError> {
        Self::attach_pinned_build(dir, Build::embedded())
    }

    /// [`Enforcer::attach_pinned`] with the programs of `build`.
    pub fn attach_pinned_build(dir: &Path, build: Build) -> Result<Self, EnforcerError> {
        let own = build.identity();
        // An interrupted replacement is undone or finished first; only in a
        // layout this build knows (recover refuses the others untouched).
        pins::recover(dir, build)?;
        let survey = pins::survey(dir, build)?;
        let takeover = takeover::plan(&survey, &own);
        let mut enforcer = match &takeover {
            Takeover::Refuse { found } => {
                return Err(EnforcerError::UnknownLayout {
                    dir: dir.into(),
                    found: found.clone(),
                    own: own.to_string(),
                    known: takeover::readable_layouts(),
                })
            }
            Takeover::Reuse => {
                let enforcer = Self::open_pinned_as(dir, true)?;
                pins::remove_stale_links(dir)?;
                enforcer
            }
            Takeover::Fresh => {
                fs::create_dir_all(dir).map_err(|source| EnforcerError::PinDir { path: dir.into(), source })?;
                let result = load::load(build, Some(dir)).and_then(|e| pins::commit(dir).map(|()| e));
                if result.is_err() {
                    // Leave no half-pinned enforcer behind.
                    let _ = Self::unpin(dir);
                }
                result?
            }
            Takeover::Replace { adopt_state, .. } => {
                let enforcer = Self::stage(dir, build, *adopt_state)?;
                pins::commit(dir)?;
                enforcer
            }
        };
        enforcer.recount()?;
        enforcer.takeover = Some(takeover);
        Ok(enforcer)
    }

    /// Steps 1 to 5 of a replacement (`takeover.rs`): this build's programs attached beside
    /// the pinned ones, staged, not committed.
    fn stage(dir: &Path, build: Build, adopt_state: bool) -> Result<Self, EnforcerError> {
        pins::become_owner(dir)?;
        if adopt_state {
            pins::adopt_state(dir, build)?;
        }
        load::load(build, Some(dir)).inspect_err(|_| {
            // The old enforcer was never touched: drop what was staged.
            let _ = pins::abort(dir);
        })
    }

    /// Tests only: what a replacement by `build` leaves behind when it dies before its commit
    /// (both builds attached, this one's pins staged). The next [`Enforcer::attach_pinned`]
    /// recovers from it.
    #[doc(hidden)]
    pub fn stage_pinned_build(dir: &Path, build: Build) -> Result<Self, EnforcerError> {
        let survey = pins::survey(dir, build)?;
        match takeover::plan(&survey, &build.identity()) {
            Takeover::Replace { adopt_state, .. } => Self::stage(dir, build, adopt_state),
            other => Err(EnforcerError::Link { path: dir.into(), what: format!("nothing to stage: {other:?}") }),
        }
    }

    /// What [`Enforcer::attach_pinned`] did with the pin directory (`None`
    /// for values from [`Enforcer::attach`] and [`Enforcer::open_pinned`]).
    pub fn takeover(&self) -> Option<&Takeover> {
        self.takeover.as_ref()
    }

    /// Which layout and build are pinned under `dir`: `None` when it holds no
    /// identity (nothing pinned, or the legacy layout 1).
    pub fn pinned_identity(dir: &Path) -> Result<Option<Identity>, EnforcerError> {
        pins::read_identity(dir)
    }

    /// The links pinned under `dir`: pin name, link id and program id.
    pub fn pinned_links(dir: &Path) -> Result<Vec<PinnedLinkInfo>, EnforcerError> {
        pins::pinned_links(dir)
    }

    /// Whether `dir` holds the pinned links of an enforcer.
    pub fn is_pinned(dir: &Path) -> bool {
        load::deciding_links().all(|name| dir.join(name).exists())
    }

    /// Opens the enforcer pinned under `dir` (by [`Enforcer::attach_pinned`],
    /// possibly in another process) to change its scopes and digest sets and
    /// read its events. Only one value should write to the maps at a time.
    /// A layout this build cannot read is refused.
    pub fn open_pinned(dir: &Path) -> Result<Self, EnforcerError> {
        Self::check_readable(dir)?;
        Self::open_pinned_as(dir, true)
    }

    /// Opens the enforcer pinned under `dir` to read it (`enforce --status`)
    /// without registering the caller as the owner (which would take the
    /// pins' protection away from the running daemon). The value can still
    /// write the maps; callers that only read should not.
    pub fn inspect_pinned(dir: &Path) -> Result<Self, EnforcerError> {
        Self::check_readable(dir)?;
        Self::open_pinned_as(dir, false)
    }

    /// Refuses a pin directory whose maps this build cannot read.
    fn check_readable(dir: &Path) -> Result<(), EnforcerError> {
        let build = Build::embedded();
        let survey = pins::survey(dir, build)?;
        match takeover::plan(&survey, &build.identity()) {
            Takeover::Refuse { found } => Err(EnforcerError::UnknownLayout {
                dir: dir.into(),
                found,
                own: build.identity().to_string(),
                known: takeover::readable_layouts(),
            }),
            _ => Ok(()),
        }
    }

    fn open_pinned_as(dir: &Path, owner: bool) -> Result<Self, EnforcerError> {
        if !Self::is_pinned(dir) {
            return Err(EnforcerError::NotPinned { dir: dir.into() });
        }
        let open = |name: &'static str| pins::open_map(dir, name);
        if owner {
            load::register_owner(&mut open(GUARD_MAP)?, None)?;
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
    /// programs detach once no process holds them; staged and stale ones
    /// included), then the maps, then `dir` itself if it is left empty.
    /// Missing pins are not an error.
    pub fn unpin(dir: &Path) -> Result<(), EnforcerError> {
        pins::unpin(dir)
    }

    pub(super) fn from_maps(
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
            takeover: None,
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

/// The cgroup id of the cgroup v2 directory `path` (e.g.
/// `/sys/fs/cgroup/imgsign/c1`): its inode number, which is what
/// `bpf_get_current_cgroup_id()` returns for tasks in it.
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

fn map_err<T>(name: &'static str, result: Result<T, MapError>) -> Result<T, EnforcerError> {
    result.map_err(|source| EnforcerError::Map { name, source })
}

/// What one entry of a hash map user space fills is, for [`EnforcerError::MapFull`].
fn holds(name: &'static str) -> &'static str {
    match name {
        SCOPES_MAP => "one per cgroup that is a scope",
        SETS_MAP => "one per digest set",
        ALLOWED_MAP => "one per digest of every digest set",
        _ => "entries",
    }
}

/// The error of a failed insert into hash map `name` (`data`): [`EnforcerError::MapFull`] when
/// the kernel said the map is full (`E2BIG`), [`EnforcerError::Map`] otherwise.
fn insert_err(name: &'static str, data: &MapData, source: MapError) -> EnforcerError {
    if !is_errno(&source, E2BIG) {
        return EnforcerError::Map { name, source };
    }
    match data.info() {
        Ok(info) => EnforcerError::MapFull { name, max_entries: info.max_entries(), holds: holds(name) },
        Err(_) => EnforcerError::Map { name, source },
    }
}

/// `BPF_NOEXIST`: insert only if the key is not there.
const BPF_NOEXIST: u64 = 1;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
/// What the kernel answers an insert of a new key into a hash map that is full.
const E2BIG: i32 = 7;

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

    #[test]
    fn a_full_map_is_named_with_what_it_holds() {
        let full = EnforcerError::MapFull { name: ALLOWED_MAP, max_entries: 262144, holds: holds(ALLOWED_MAP) };
        assert_eq!(
            full.to_string(),
            "BPF map enf_allowed is full: it holds its maximum of 262144 entries (one per digest of every \
             digest set), so the kernel refused a new one"
        );
        assert_eq!(holds(SCOPES_MAP), "one per cgroup that is a scope");
    }
}
