//! The BPF objects compiled by `build.rs`, embedded in the library.
//!
//! Each object is aligned (aya parses it in place), built with CO-RE
//! relocations against the build machine's BTF.

/// `src/bpf/smoke.bpf.c`: the kernel-lab smoke program.
pub static SMOKE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/smoke.bpf.o"));
