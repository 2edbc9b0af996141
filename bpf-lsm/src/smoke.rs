//! Loader for the kernel-lab smoke program (`src/bpf/smoke.bpf.c`).
//!
//! [`SmokeLsm::attach`] loads the object and attaches the sleepable
//! `bprm_check_security` program. User space then adds digests to the deny
//! set ([`SmokeLsm::deny`]); an exec of a file whose in-kernel SHA-256
//! (`bpf_ima_file_hash`) is in the set fails with `EPERM`. For every exec the
//! program records what it computed, per inode, readable with
//! [`SmokeLsm::seen`]. The programs stay attached while the value lives.

use aya::maps::{HashMap, MapData, MapError};
use aya::programs::{Lsm, ProgramError};
use aya::{Btf, BtfError, Ebpf, EbpfError, Pod};

use crate::{kernel, objects, Digest, SHA256_LEN};

/// The hook the smoke program attaches to.
pub const HOOK: &str = "bprm_check_security";
const PROGRAM: &str = "smoke_bprm_check";
const DENY_MAP: &str = "smoke_deny";
const SEEN_MAP: &str = "smoke_seen";
/// `enum hash_algo` value the kernel returns for SHA-256.
const HASH_ALGO_SHA256: i64 = 4;

/// Errors loading, attaching or talking to the smoke program.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("kernel BTF unavailable (/sys/kernel/btf/vmlinux)")]
    Btf(#[source] BtfError),
    #[error("cannot load the smoke BPF object")]
    Object(#[source] EbpfError),
    #[error("BPF object has no {kind} named {name}")]
    Missing { kind: &'static str, name: &'static str },
    #[error("program {PROGRAM} is not an LSM program")]
    ProgramType(#[source] ProgramError),
    #[error("cannot load {PROGRAM} on {HOOK}")]
    Load(#[source] ProgramError),
    #[error("cannot attach {PROGRAM}; {lsm_state}")]
    Attach {
        lsm_state: String,
        #[source]
        source: ProgramError,
    },
    #[error("BPF map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// What the program recorded for the last exec of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenExec {
    /// Return of `bpf_ima_file_hash`: 4 for SHA-256, negative errno on failure.
    pub algo: i64,
    /// The digest the kernel computed (meaningful when `algo` is SHA-256).
    pub digest: Digest,
    /// Whether the program refused the exec.
    pub denied: bool,
}

impl SeenExec {
    /// The SHA-256 digest, if the kernel computed one.
    pub fn sha256(&self) -> Option<Digest> {
        (self.algo == HASH_ALGO_SHA256).then_some(self.digest)
    }
}

/// Mirror of `struct smoke_seen` in `smoke.bpf.c`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawSeen {
    algo: i64,
    digest: [u8; SHA256_LEN],
    denied: u32,
    pad: u32,
}

// SAFETY: `RawSeen` is `repr(C)`, made only of integers and byte arrays with no
// padding between or after fields (8 + 32 + 4 + 4 = 48 bytes), so every bit
// pattern the kernel writes is a valid value, as `Pod` requires.
#[allow(unsafe_code)]
unsafe impl Pod for RawSeen {}

/// The loaded and attached smoke program and its maps.
pub struct SmokeLsm {
    ebpf: Ebpf,
}

impl SmokeLsm {
    /// Loads the embedded object and attaches the program to [`HOOK`].
    pub fn attach() -> Result<Self, SmokeError> {
        let btf = Btf::from_sys_fs().map_err(SmokeError::Btf)?;
        let mut ebpf = Ebpf::load(objects::SMOKE).map_err(SmokeError::Object)?;
        let program: &mut Lsm = ebpf
            .program_mut(PROGRAM)
            .ok_or(SmokeError::Missing { kind: "program", name: PROGRAM })?
            .try_into()
            .map_err(SmokeError::ProgramType)?;
        program.load(HOOK, &btf).map_err(SmokeError::Load)?;
        program
            .attach()
            .map_err(|source| SmokeError::Attach { lsm_state: kernel::describe_bpf_lsm_state(), source })?;
        Ok(Self { ebpf })
    }

    /// Adds `digest` to the deny set: execs of files with that SHA-256 fail.
    pub fn deny(&mut self, digest: Digest) -> Result<(), SmokeError> {
        let mut map = self.map_mut(DENY_MAP)?;
        map_err(DENY_MAP, map.insert(digest, 1u8, 0))
    }

    /// What the program recorded for the last exec of inode `ino`, if any.
    pub fn seen(&mut self, ino: u64) -> Result<Option<SeenExec>, SmokeError> {
        let map: HashMap<&mut MapData, u64, RawSeen> = map_err(SEEN_MAP, HashMap::try_from(self.map_raw(SEEN_MAP)?))?;
        match map.get(&ino, 0) {
            Ok(raw) => Ok(Some(SeenExec { algo: raw.algo, digest: raw.digest, denied: raw.denied != 0 })),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(SmokeError::Map { name: SEEN_MAP, source }),
        }
    }

    fn map_raw(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, SmokeError> {
        self.ebpf.map_mut(name).ok_or(SmokeError::Missing { kind: "map", name })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<HashMap<&mut MapData, Digest, u8>, SmokeError> {
        map_err(name, HashMap::try_from(self.map_raw(name)?))
    }
}

fn map_err<T>(name: &'static str, result: Result<T, MapError>) -> Result<T, SmokeError> {
    result.map_err(|source| SmokeError::Map { name, source })
}
