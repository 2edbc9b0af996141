//! Pure comparison of a signed file list with the listing of a root file system, as the
//! container will see it: what the engine mounts over is judged by the mount, not by the file
//! beneath. No I/O here; content digests are compared by [`content_differences`] once the
//! caller has them.
//!
//! The rules for a path P, given the spec's mount destinations:
//! - P strictly below a destination D: hidden by the mount, never judged. The listing never
//!   follows symlinks, so P below D in the listing means D is a real directory in the root file
//!   system, the mount lands on it, and P is hidden.
//! - P equal to a destination: missing is fine (the runtime creates it), and a regular file or
//!   directory there is fine whatever it holds (the mount hides it). A symlink there must be the
//!   signed one, since the runtime follows it to choose where the mount lands.
//! - P an ancestor of a destination and not signed: fine if it is a directory (the runtime
//!   created it on an earlier start).
//! - anything else: as signed (type, mode, owner, size, link target, device, privilege
//!   xattrs), or the difference is reported.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use verifier_core::digest::Sha256Digest;
use verifier_core::manifest::{Difference, FieldDifference, FileEntry, FileType};

/// Symlinks engines add to a root file system whose image lacks them: podman makes
/// `/etc/mtab -> /proc/mounts` (Debian's images have none). Only this exact link, where the
/// signed manifest has nothing, is let through: a symlink to procfs runs nothing.
pub const ENGINE_SYMLINKS: &[(&str, &str)] = &[("/etc/mtab", "/proc/mounts")];

/// The spec's mount destinations, normalised (absolute, no `.`, no trailing `/`). A destination
/// with `..` is left out: it gets no tolerance, which is the safe side.
#[derive(Debug, Default, Clone)]
pub struct Mounts {
    destinations: BTreeSet<String>,
}

/// How much of a path the match decides on: nothing (a mount hides it), its type only (a
/// mount's destination: a file or directory there is fine), or everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Nothing,
    Kind,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cover {
    Hidden,
    Destination,
    Ancestor,
    Visible,
}

impl Mounts {
    pub fn new<'a>(destinations: impl IntoIterator<Item = &'a str>) -> Self {
        let destinations = destinations.into_iter().filter_map(normalise).filter(|d| d != "/").collect();
        Mounts { destinations }
    }

    /// The normalised destinations, sorted.
    pub fn destinations(&self) -> impl Iterator<Item = &str> {
        self.destinations.iter().map(String::as_str)
    }

    /// How much of what is at `path` the match decides on (see [`metadata_differences`]).
    pub fn weight(&self, path: &str) -> Weight {
        match self.cover(path) {
            Cover::Hidden => Weight::Nothing,
            Cover::Destination => Weight::Kind,
            Cover::Ancestor | Cover::Visible => Weight::All,
        }
    }

    fn cover(&self, path: &str) -> Cover {
        // A container has a handful of mounts: one pass over them beats a lookup per ancestor.
        if self.destinations.len() <= 64 {
            let (mut hidden, mut ancestor) = (false, false);
            for d in &self.destinations {
                if d.len() == path.len() {
                    if d == path {
                        return Cover::Destination;
                    }
                } else if d.len() < path.len() {
                    hidden |= path.as_bytes()[d.len()] == b'/' && path.starts_with(d.as_str());
                } else {
                    ancestor |= d.as_bytes()[path.len()] == b'/' && d.starts_with(path);
                }
            }
            return if hidden {
                Cover::Hidden
            } else if ancestor {
                Cover::Ancestor
            } else {
                Cover::Visible
            };
        }
        if self.destinations.contains(path) {
            return Cover::Destination;
        }
        let mut at = path;
        while let Some(cut) = at.rfind('/') {
            at = &at[..cut];
            if !at.is_empty() && self.destinations.contains(at) {
                return Cover::Hidden;
            }
        }
        // A destination below `path` sorts after it, among those starting with it (a few).
        let below = self
            .destinations
            .range::<str, _>((std::ops::Bound::Excluded(path), std::ops::Bound::Unbounded))
            .take_while(|d| d.starts_with(path))
            .any(|d| d.as_bytes().get(path.len()) == Some(&b'/'));
        if below {
            Cover::Ancestor
        } else {
            Cover::Visible
        }
    }
}

fn normalise(destination: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in destination.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// A user namespace's uid or gid mappings (container id, host id, size): a root file system
/// chowned for the namespace holds the mapped owners.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uids: Vec<(u64, u64, u64)>,
    pub gids: Vec<(u64, u64, u64)>,
}

fn maps_to(maps: &[(u64, u64, u64)], signed: u64, seen: u64) -> bool {
    signed == seen
        || maps
            .iter()
            .any(|&(inside, host, size)| signed >= inside && signed - inside < size && host + (signed - inside) == seen)
}

/// Metadata differences between the signed list `expected` and the listing `observed` (both
/// sorted by path bytes; `observed` without content digests), after the mount rules.
pub fn metadata_differences<O: Borrow<FileEntry>>(
    expected: &[FileEntry],
    observed: &[O],
    mounts: &Mounts,
    ids: &IdMaps,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < observed.len() {
        let order = match (expected.get(i), observed.get(j)) {
            (Some(e), Some(o)) => e.path.as_bytes().cmp(o.borrow().path.as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let e = &expected[i];
                if matches!(mounts.cover(&e.path), Cover::Visible | Cover::Ancestor) {
                    out.push(Difference::Missing { path: e.path.clone() });
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let o: &FileEntry = observed[j].borrow();
                let fine = match mounts.cover(&o.path) {
                    Cover::Hidden => true,
                    Cover::Destination => matches!(o.kind, FileType::File | FileType::Dir),
                    Cover::Ancestor => o.kind == FileType::Dir,
                    Cover::Visible => false,
                };
                let engine_made = o.kind == FileType::Symlink
                    && ENGINE_SYMLINKS.iter().any(|(p, t)| o.path == *p && o.link_target.as_deref() == Some(*t));
                if !fine && !engine_made {
                    out.push(Difference::Extra { path: o.path.clone() });
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (e, o): (&FileEntry, &FileEntry) = (&expected[i], observed[j].borrow());
                let fine = match mounts.cover(&e.path) {
                    Cover::Hidden => true,
                    Cover::Destination => matches!(o.kind, FileType::File | FileType::Dir),
                    Cover::Ancestor | Cover::Visible => false,
                };
                if !fine {
                    let fields = field_differences(e, o, ids);
                    if !fields.is_empty() {
                        out.push(Difference::Changed { path: e.path.clone(), fields });
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The fields of `o` that differ from the signed `e`, content digest aside.
fn field_differences(e: &FileEntry, o: &FileEntry, ids: &IdMaps) -> Vec<FieldDifference> {
    let same = e.kind == o.kind
        && e.mode == o.mode
        && maps_to(&ids.uids, e.uid, o.uid)
        && maps_to(&ids.gids, e.gid, o.gid)
        && e.size == o.size
        && e.link_target == o.link_target
        && e.dev_major == o.dev_major
        && e.dev_minor == o.dev_minor
        && e.xattrs == o.xattrs;
    if same {
        return Vec::new();
    }
    let mut o = o.clone();
    o.sha256 = e.sha256;
    // The code mark is not compared here on purpose: it is the signer's statement about the
    // content, whose digest is compared byte for byte, and it only decides which signed digests
    // the kernel enforcer loads (the walk reads no content to recompute it).
    o.code = e.code;
    if maps_to(&ids.uids, e.uid, o.uid) {
        o.uid = e.uid;
    }
    if maps_to(&ids.gids, e.gid, o.gid) {
        o.gid = e.gid;
    }
    e.field_differences(&o)
}

/// The signed files and hardlinks the container will see, whose content must be checked (a
/// hardlink is checked on its own: its target may be a path the engine mounts over).
pub fn files_to_hash<'a>(expected: &'a [FileEntry], mounts: &'a Mounts) -> impl Iterator<Item = &'a FileEntry> + 'a {
    expected.iter().filter(move |e| {
        matches!(e.kind, FileType::File | FileType::Hardlink)
            && matches!(mounts.cover(&e.path), Cover::Visible | Cover::Ancestor)
    })
}

/// A content difference for a signed file whose digest is `seen`.
pub fn content_difference(expected: &FileEntry, seen: Sha256Digest) -> Option<Difference> {
    // A signed file without a signed digest matches nothing.
    (expected.sha256 != Some(seen)).then(|| Difference::Changed {
        path: expected.path.clone(),
        fields: vec![FieldDifference {
            field: "sha256",
            expected: expected.sha256.map_or_else(|| "-".into(), |d| d.hex()),
            actual: seen.hex(),
        }],
    })
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
