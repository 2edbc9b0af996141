//! Tests only: fills a pinned enforcer's hash maps with entries no task can reach, so that a
//! test can show, in a real kernel, what the enforcer and its daemon do when a map is full,
//! without making thousands of cgroups or images.
//!
//! The kernel refuses a new key of a hash map (`E2BIG`) when it holds `max_entries` elements
//! (a preallocated map has no free element left; `enf_scopes`, allocated on demand, counts
//! them), whatever the keys are: entries that no decision ever looks up fill a map exactly as
//! real scopes and digest sets do. Filler digests belong to set [`FILLER_SET_ID`], which no
//! scope points at (the daemon hands out set ids from 1 up); filler scopes are cgroup ids with
//! bit 63 set, which no cgroup has (a kernfs id is a 32-bit inode number and a generation
//! counted from 1), pointing at scope id [`FILLER_SCOPE_ID`], which has no set. The maps are
//! opened through their pins without registering the caller as the pins' owner, so the
//! daemon keeps its protection; the caller must be outside every enforce scope (`bpf()` is
//! refused in them).

use std::path::Path;

use aya::maps::{HashMap, IterableMap as _};

use super::{
    digest_key, insert_err, is_errno, map_err, pins, EnforcerError, Privs, ALLOWED_MAP, BPF_NOEXIST, E2BIG, EEXIST,
    SCOPES_MAP,
};
use crate::abi::{EnfDigestKey, EnfPrivs, EnfScope};

/// The set id of filler digests.
pub const FILLER_SET_ID: u32 = 0xf111_0000;
/// The scope id filler scopes point at.
pub const FILLER_SCOPE_ID: u32 = 0xf111_0000;

/// Which map to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filler {
    /// `enf_allowed`, the digests of every set.
    Digests,
    /// `enf_scopes`, one entry per cgroup that is a scope.
    Scopes,
}

/// The `i`th filler digest key.
fn digest(i: usize) -> EnfDigestKey {
    let mut digest = [0xf1; 32];
    digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
    digest_key(FILLER_SET_ID, digest)
}

/// The `i`th filler cgroup id.
fn cgroup(i: usize) -> u64 {
    (1 << 63) | i as u64
}

/// Inserts filler entries `0, 1, ...` into the map `which` of the enforcer pinned under `dir`
/// (those already there are kept) until the kernel refuses one because the map is full, or
/// `limit` are there; returns how many filler entries the map holds (`0..n`, what [`release`]
/// takes out). A second call on a full map inserts nothing and returns the same number.
pub fn occupy(dir: &Path, which: Filler, limit: usize) -> Result<usize, EnforcerError> {
    match which {
        Filler::Digests => {
            let mut data = pins::open_map(dir, ALLOWED_MAP)?;
            let mut map: HashMap<_, EnfDigestKey, EnfPrivs> = map_err(ALLOWED_MAP, HashMap::try_from(&mut data))?;
            for i in 0..limit {
                let key = digest(i);
                match map.insert(key, Privs::NONE.to_raw(&key), BPF_NOEXIST) {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, EEXIST) => {}
                    Err(e) if is_errno(&e, E2BIG) => return Ok(i),
                    Err(e) => return Err(insert_err(ALLOWED_MAP, map.map(), e)),
                }
            }
        }
        Filler::Scopes => {
            let mut data = pins::open_map(dir, SCOPES_MAP)?;
            let mut map: HashMap<_, u64, EnfScope> = map_err(SCOPES_MAP, HashMap::try_from(&mut data))?;
            let raw = EnfScope { scope_id: FILLER_SCOPE_ID, mode: super::Mode::Enforce.to_raw(), flags: 0, pad: 0 };
            for i in 0..limit {
                match map.insert(cgroup(i), raw, BPF_NOEXIST) {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, EEXIST) => {}
                    Err(e) if is_errno(&e, E2BIG) => return Ok(i),
                    Err(e) => return Err(insert_err(SCOPES_MAP, map.map(), e)),
                }
            }
        }
    }
    Ok(limit)
}

/// Removes the filler entries `0..n` of the map `which` that [`occupy`] inserted (those already
/// gone are skipped).
pub fn release(dir: &Path, which: Filler, n: usize) -> Result<(), EnforcerError> {
    let absent = |name, result| super::ignore_absent(name, result);
    match which {
        Filler::Digests => {
            let mut data = pins::open_map(dir, ALLOWED_MAP)?;
            let mut map: HashMap<_, EnfDigestKey, EnfPrivs> = map_err(ALLOWED_MAP, HashMap::try_from(&mut data))?;
            (0..n).try_for_each(|i| absent(ALLOWED_MAP, map.remove(&digest(i))))
        }
        Filler::Scopes => {
            let mut data = pins::open_map(dir, SCOPES_MAP)?;
            let mut map: HashMap<_, u64, EnfScope> = map_err(SCOPES_MAP, HashMap::try_from(&mut data))?;
            (0..n).try_for_each(|i| absent(SCOPES_MAP, map.remove(&cgroup(i))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_keys_are_distinct_and_unreachable() {
        assert_ne!(digest(0).digest, digest(1).digest);
        assert_eq!(digest(5).set_id, FILLER_SET_ID);
        assert!(cgroup(0) >> 63 == 1 && cgroup(1) != cgroup(0));
    }
}
