//! Kernel enforcement for imgsign: BPF-LSM programs written in C and their loader.
//!
//! The C sources live in `src/bpf/*.bpf.c` and are compiled by clang in
//! `build.rs`; [`objects`] embeds the resulting ELF objects. [`abi`] is the
//! enforcer's ABI (structs and constants shared with the C side), generated
//! from `src/bpf/abi.h`. [`kernel`] tells whether the running kernel has
//! BPF-LSM active. [`enforcer`] is the enforcer: sleepable programs on
//! `bprm_check_security` and `mmap_file` that hash the file in the kernel and
//! check the digest against the digest set of the calling task's cgroup
//! scope, in enforce or audit mode, reporting decisions through a ring
//! buffer, optionally pinned under bpffs. [`smoke`] is the kernel-lab smoke
//! program (deny an exec by SHA-256, read back the kernel's digest), kept as
//! the lab's own check.

pub mod abi;
pub mod enforcer;
pub mod kernel;
pub mod objects;
pub mod smoke;

/// Length of a SHA-256 digest, the only digest the programs use.
pub const SHA256_LEN: usize = abi::ENF_SHA256_LEN;

/// A SHA-256 digest in the kernel programs' byte form (callers with a typed digest convert at
/// their edge, as `enforce`'s BPF adapter does).
pub type Digest = [u8; SHA256_LEN];
