//! Privileges as signed, on the user-space side: what one signed entry's privileges are
//! ([`Privs::of_entry`]: its setuid/setgid bits and its `security.capability`), and what the
//! kernel is given per digest ([`Privs`] merged over every entry with that digest, written into
//! `enf_allowed` as an [`EnfPrivs`]). The kernel side, and why capabilities are judged by their
//! effect, is `src/bpf/enforcer/privs.h`.
//!
//! An exec may have the privileges of one signed entry with its digest, or fewer; never a mix of
//! two entries' privileges. So the value keeps, as a bit per shape (a setuid bit and a setgid
//! bit: four shapes), every shape that is a subset of some entry's shape, plus the union of the
//! entries' capabilities.

use crate::abi::{self, EnfDigestKey, EnfPrivs};

/// Magic of `security.capability` (`struct vfs_cap_data`), by revision.
const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_1: u32 = 0x0100_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

/// A `security.capability` value that is not one the kernel would read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivsError {
    /// The value is shorter than its revision's layout (or than the magic).
    #[error("security.capability is {len} bytes, too short for revision {revision}")]
    Short { len: usize, revision: u32 },
    /// The revision is none of 1, 2, 3.
    #[error("security.capability has unknown revision {revision:#x}")]
    Revision { revision: u32 },
}

/// The privileges one or more signed entries give a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Privs {
    /// Bit `1 << s` for every allowed shape `s` (`ENF_PRIV_SETUID | ENF_PRIV_SETGID` bits).
    shapes: u8,
    /// Capabilities an exec may gain (bit n = capability n).
    caps: u64,
}

impl Privs {
    /// No privilege: an exec that changes no id and gains no capability.
    pub const NONE: Privs = Privs { shapes: 1, caps: 0 };

    /// The privileges of one entry: its mode's setuid/setgid bits and its `security.capability`
    /// value (raw bytes), if any.
    pub fn of_entry(mode: u32, capability: Option<&[u8]>) -> Result<Privs, PrivsError> {
        let mut shape = 0u8;
        if mode & S_ISUID != 0 {
            shape |= abi::ENF_PRIV_SETUID;
        }
        if mode & S_ISGID != 0 {
            shape |= abi::ENF_PRIV_SETGID;
        }
        let caps = match capability {
            Some(raw) => capability_set(raw)?,
            None => 0,
        };
        Ok(Privs { shapes: subsets(shape), caps })
    }

    /// Privileges that allow what `self` or `other` allows.
    #[must_use]
    pub fn merge(self, other: Privs) -> Privs {
        Privs { shapes: self.shapes | other.shapes, caps: self.caps | other.caps }
    }

    /// Whether anything beyond [`Privs::NONE`] is allowed.
    pub fn is_privileged(&self) -> bool {
        *self != Privs::NONE
    }

    /// Whether an exec of shape `shape` gaining `caps` is allowed.
    pub fn allows(&self, shape: u8, caps: u64) -> bool {
        self.shapes & (1 << shape) != 0 && caps & !self.caps == 0
    }

    /// The `enf_allowed` value for `key`.
    pub(crate) fn to_raw(self, key: &EnfDigestKey) -> EnfPrivs {
        EnfPrivs { caps: self.caps, check: check_word(key), shapes: self.shapes, pad: [0; 3] }
    }

    pub(crate) fn from_raw(raw: &EnfPrivs) -> Privs {
        Privs { shapes: raw.shapes, caps: raw.caps }
    }
}

/// Every shape that is a subset of `shape` (`shape` is two bits), as a bit per shape.
fn subsets(shape: u8) -> u8 {
    (0u8..4).filter(|s| s & !shape == 0).fold(0, |bits, s| bits | (1 << s))
}

/// The check word the kernel expects in the value of `key` (`privs_check_word` in maps.h).
pub(crate) fn check_word(key: &EnfDigestKey) -> u32 {
    let first = u32::from_ne_bytes([key.digest[0], key.digest[1], key.digest[2], key.digest[3]]);
    first ^ key.set_id ^ abi::ENF_PRIVS_CHECK_SALT
}

/// The capabilities a `security.capability` value can give: permitted | inheritable (the
/// inheritable set counts where the task's own inheritable set meets it).
fn capability_set(raw: &[u8]) -> Result<u64, PrivsError> {
    let word = |at: usize| raw.get(at..at + 4).map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    let magic = word(0).ok_or(PrivsError::Short { len: raw.len(), revision: 0 })? as u32;
    let revision = magic & VFS_CAP_REVISION_MASK;
    let (pairs, size) = match revision {
        VFS_CAP_REVISION_1 => (1, 12),
        VFS_CAP_REVISION_2 => (2, 20),
        VFS_CAP_REVISION_3 => (2, 24),
        _ => return Err(PrivsError::Revision { revision: revision >> 24 }),
    };
    if raw.len() < size {
        return Err(PrivsError::Short { len: raw.len(), revision: revision >> 24 });
    }
    let mut caps = 0u64;
    for pair in 0..pairs {
        let permitted = word(4 + pair * 8).unwrap_or(0);
        let inheritable = word(8 + pair * 8).unwrap_or(0);
        caps |= (permitted | inheritable) << (32 * pair);
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETUID: u8 = abi::ENF_PRIV_SETUID;
    const SETGID: u8 = abi::ENF_PRIV_SETGID;

    fn rev2(permitted: u64, inheritable: u64) -> Vec<u8> {
        let mut v = (VFS_CAP_REVISION_2 | 1).to_le_bytes().to_vec();
        for half in 0..2 {
            v.extend_from_slice(&((permitted >> (32 * half)) as u32).to_le_bytes());
            v.extend_from_slice(&((inheritable >> (32 * half)) as u32).to_le_bytes());
        }
        v
    }

    #[test]
    fn an_unprivileged_entry_allows_only_the_plain_shape() {
        let p = Privs::of_entry(0o755, None).unwrap();
        assert_eq!(p, Privs::NONE);
        assert!(p.allows(0, 0));
        assert!(!p.allows(SETUID, 0) && !p.allows(SETGID, 0) && !p.allows(0, 1));
    }

    #[test]
    fn fewer_privileges_than_signed_are_allowed_a_mix_is_not() {
        let suid = Privs::of_entry(0o4755, None).unwrap();
        let sgid = Privs::of_entry(0o2755, None).unwrap();
        let both = suid.merge(sgid);
        assert!(both.allows(0, 0) && both.allows(SETUID, 0) && both.allows(SETGID, 0));
        assert!(!both.allows(SETUID | SETGID, 0), "no signed entry is setuid and setgid");
        assert!(Privs::of_entry(0o6755, None).unwrap().allows(SETUID | SETGID, 0));
    }

    #[test]
    fn capabilities_are_read_from_every_revision() {
        let net_raw = 1u64 << 13;
        let p = Privs::of_entry(0o755, Some(&rev2(net_raw, 0))).unwrap();
        assert!(p.allows(0, net_raw) && !p.allows(0, net_raw | 1));
        let mut v3 = rev2(1 << 40, 1 << 1);
        v3[3] = 3;
        v3.extend_from_slice(&1000u32.to_le_bytes());
        assert!(Privs::of_entry(0, Some(&v3)).unwrap().allows(0, (1 << 40) | 2));
        let mut v1 = (VFS_CAP_REVISION_1).to_le_bytes().to_vec();
        v1.extend_from_slice(&4u32.to_le_bytes());
        v1.extend_from_slice(&0u32.to_le_bytes());
        assert!(Privs::of_entry(0, Some(&v1)).unwrap().allows(0, 4));
    }

    #[test]
    fn a_malformed_capability_is_an_error() {
        assert_eq!(Privs::of_entry(0, Some(&[1, 0])), Err(PrivsError::Short { len: 2, revision: 0 }));
        assert_eq!(Privs::of_entry(0, Some(&rev2(1, 0)[..12])), Err(PrivsError::Short { len: 12, revision: 2 }));
        assert_eq!(Privs::of_entry(0, Some(&[0, 0, 0, 9])), Err(PrivsError::Revision { revision: 9 }));
    }

    #[test]
    fn the_check_word_mixes_set_and_digest() {
        let mut key = EnfDigestKey { set_id: 7, pad: 0, digest: [0; 32] };
        let a = check_word(&key);
        key.set_id = 8;
        assert_ne!(a, check_word(&key));
        key.digest[0] = 1;
        let raw = Privs::NONE.to_raw(&key);
        assert_eq!(raw.check, check_word(&key));
        assert_eq!(Privs::from_raw(&raw), Privs::NONE);
    }
}
