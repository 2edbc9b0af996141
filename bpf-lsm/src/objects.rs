//! The BPF objects compiled by `build.rs`, embedded in the library.
//!
//! Each object is aligned (aya parses it in place), built with CO-RE
//! relocations against the build machine's BTF.

/// `src/bpf/smoke.bpf.c`: the kernel-lab smoke program.
pub static SMOKE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/smoke.bpf.o"));

/// `src/bpf/enforcer.bpf.c`: the enforcer (scopes, digest sets, events).
pub static ENFORCER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer.bpf.o"));

/// The enforcer built a second time with one compile-time constant changed
/// (`ENF_SET_ATTEMPTS=2`): other programs of the same pinned layout, which the
/// upgrade tests pin as "the previous build" and replace. Nothing outside
/// tests loads it (the linker drops it from binaries that do not name it).
#[doc(hidden)]
pub static ENFORCER_VARIANT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer_variant.bpf.o"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_object_is_a_bpf_elf_with_the_sleepable_lsm_section() {
        assert_eq!(&SMOKE[..4], b"\x7fELF");
        // e_machine (offset 18, little-endian) is EM_BPF = 247.
        assert_eq!(u16::from_le_bytes([SMOKE[18], SMOKE[19]]), 247);
        let has = |needle: &[u8]| SMOKE.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"lsm.s/bprm_check_security"));
        assert!(has(b"smoke_deny") && has(b"smoke_seen"));
    }

    #[test]
    fn enforcer_object_has_its_hooks_and_its_maps() {
        assert_eq!(&ENFORCER[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([ENFORCER[18], ENFORCER[19]]), 247);
        let has = |needle: &[u8]| ENFORCER.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"lsm.s/bprm_check_security"));
        assert!(has(b"lsm.s/mmap_file"));
        assert!(has(b"lsm/file_mprotect"));
        assert!(has(b"lsm/file_open") && has(b"lsm/inode_setattr"));
        for map in [
            &b"enf_scopes"[..],
            b"enf_sets",
            b"enf_allowed",
            b"enf_events",
            b"enf_stats",
            b"enf_inode_cache",
            b"enf_identity",
        ] {
            assert!(has(map), "{}", String::from_utf8_lossy(map));
        }
    }

    #[test]
    fn the_variant_is_another_build_of_the_same_object() {
        assert_eq!(&ENFORCER_VARIANT[..4], b"\x7fELF");
        assert_ne!(ENFORCER, ENFORCER_VARIANT);
    }
}
