//! Kernel enforcement for imgsign: BPF-LSM programs written in C and their loader.
//!
//! The C sources live in `src/bpf/*.bpf.c` and are compiled by clang in
//! `build.rs`; [`objects`] embeds the resulting ELF objects. [`kernel`] tells
//! whether the running kernel has BPF-LSM active. [`smoke`] is the kernel-lab
//! smoke program (deny an exec by SHA-256, read back the kernel's digest); it
//! is the seed the enforcer (digest sets per scope, mmap hooks, events,
//! pinning) grows from, not the enforcer itself.

pub mod kernel;
pub mod objects;
pub mod smoke;

/// Length of a SHA-256 digest, the only digest the programs use.
pub const SHA256_LEN: usize = 32;

/// A SHA-256 digest as the kernel programs see it.
pub type Digest = [u8; SHA256_LEN];
