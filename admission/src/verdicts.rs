//! The verdict cache: the last admission under one statement key (the trust store and the
//! policy's bundle files, see [`crate::statements::key`]) and one container shape (its mount
//! destinations and id maps), with the digest of the listing it admitted. A later start whose
//! listing has the same digest is admitted without reading the statement again or matching
//! anything: nothing the match could look at has changed.
//!
//! What the listing digest covers is what the match decides on: every path the container will
//! see, with its type, mode, owner, size, link target and device numbers, and for a regular
//! file its [`FileKey`](crate::walk::FileKey) (inode, size, mtime, ctime, btime), the same
//! identity the hash cache trusts for content and xattrs (every change of either moves ctime,
//! which no caller can set). Paths a mount will hide count for nothing, and a mount's own
//! destination only when it is neither a file nor a directory (nor absent): exactly as the
//! match treats them. So an engine's mount points (new inodes at every start, made while the
//! gate lists) do not miss the cache, and any change the match would have seen does.
//!
//! The file is believed only where the hash cache is (a directory and file of this user that
//! nobody else can write), is written to a temporary name and renamed, and is not used past
//! the matched statement's expiry.

use crate::candidates::Candidate;
use crate::matcher::{IdMaps, Mounts, Weight};
use crate::walk::Observed;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use verifier_core::manifest::FileType;

const DIR: &str = "verdicts";

/// What is remembered of an admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// [`listing`] of what was admitted (hex).
    pub listing: String,
    /// How many statements the policy's bundles verified to (the early scope is registered
    /// only when there was one).
    pub candidates: usize,
    pub name: String,
    pub digest: String,
    pub bundles: Vec<PathBuf>,
    /// When the matched statement expires (seconds since the epoch).
    pub expires: u64,
}

impl Verdict {
    pub fn new(listing: String, candidates: usize, matched: &Candidate) -> Verdict {
        Verdict {
            listing,
            candidates,
            name: matched.name.clone(),
            digest: matched.digest.clone(),
            bundles: matched.bundles.clone(),
            expires: matched.expires_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }

    /// The matched statement as a candidate without its files (what an early scope needs).
    pub(crate) fn candidate(&self) -> Candidate {
        Candidate {
            name: self.name.clone(),
            digest: self.digest.clone(),
            bundles: self.bundles.clone(),
            files: Vec::new(),
            expires_at: UNIX_EPOCH + Duration::from_secs(self.expires),
        }
    }
}

/// Where the verdict for `statement_key` and this container shape is kept in `cache`.
pub fn place(cache: &Path, statement_key: &str, mounts: &Mounts, ids: &IdMaps) -> PathBuf {
    // Every list is counted before its items, so no two shapes write the same bytes.
    let mut hasher: Vec<u8> = Vec::new();
    field(&mut hasher, statement_key.as_bytes());
    let destinations: Vec<&str> = mounts.destinations().collect();
    hasher.update((destinations.len() as u64).to_le_bytes());
    for destination in destinations {
        field(&mut hasher, destination.as_bytes());
    }
    for maps in [&ids.uids, &ids.gids] {
        hasher.update((maps.len() as u64).to_le_bytes());
        for (inside, host, size) in maps {
            for n in [inside, host, size] {
                hasher.update(n.to_le_bytes());
            }
        }
    }
    cache.join(DIR).join(hex::encode(Sha256::digest(&hasher)))
}

/// The verdict kept at `place`, if it is trustworthy and its statement has not expired at `now`.
pub fn load(place: &Path, now: SystemTime) -> Option<Verdict> {
    let dir = place.parent()?;
    let cache = dir.parent()?;
    if ![cache, dir, place].iter().all(|p| crate::hashes::owned_and_private(p)) {
        return None;
    }
    let verdict: Verdict = serde_json::from_slice(&std::fs::read(place).ok()?).ok()?;
    (now <= UNIX_EPOCH + Duration::from_secs(verdict.expires)).then_some(verdict)
}

/// Keeps `verdict` at `place` (failures are ignored: the cache only saves time).
pub fn store(place: &Path, verdict: &Verdict) {
    let Some(dir) = place.parent() else { return };
    if crate::hashes::make_private_dir(dir).is_err() {
        return;
    }
    if let Ok(bytes) = serde_json::to_vec(verdict) {
        let _ = atomic_file::replace_file(place, &bytes, 0o600);
    }
}

/// The digest of what the match decides on in `observed` (sorted by path) under `mounts`.
pub fn listing(observed: &[Observed], mounts: &Mounts) -> String {
    // Written out whole, then hashed at once: many small updates cost more than the hashing.
    let mut hasher: Vec<u8> = Vec::with_capacity(observed.len() * 96);
    for o in observed {
        let e = &o.entry;
        let weight = mounts.weight(&e.path);
        // At a mount's destination the match takes a file or a directory, or nothing (the
        // runtime may not have made the mount point yet): only another type counts.
        let at_destination_fine = weight == Weight::Kind && matches!(e.kind, FileType::File | FileType::Dir);
        if weight == Weight::Nothing || at_destination_fine {
            continue;
        }
        field(&mut hasher, e.path.as_bytes());
        hasher.update([kind_byte(e.kind)]);
        if weight == Weight::Kind {
            continue;
        }
        hasher.update(e.mode.to_le_bytes());
        hasher.update(e.uid.to_le_bytes());
        hasher.update(e.gid.to_le_bytes());
        optional(&mut hasher, e.size.map(u64::to_le_bytes).as_ref().map(|b| &b[..]));
        optional(&mut hasher, e.link_target.as_deref().map(str::as_bytes));
        optional(&mut hasher, e.dev_major.map(u32::to_le_bytes).as_ref().map(|b| &b[..]));
        optional(&mut hasher, e.dev_minor.map(u32::to_le_bytes).as_ref().map(|b| &b[..]));
        match &o.key {
            None => hasher.update([0]),
            Some(k) => {
                hasher.update([1]);
                for n in [k.ino, k.size, k.mtime.0 as u64, u64::from(k.mtime.1), k.ctime.0 as u64, u64::from(k.ctime.1)]
                {
                    hasher.update(n.to_le_bytes());
                }
                let btime = k.btime.map(|(s, ns)| [(s as u64).to_le_bytes(), u64::from(ns).to_le_bytes()].concat());
                optional(&mut hasher, btime.as_deref());
            }
        }
        // The xattrs are not hashed: the key stands for them (setting one moves ctime).
    }
    hex::encode(Sha256::digest(&hasher))
}

/// What the listing and the place are made of, written out before they are hashed.
trait Sink {
    // (named as the hasher's method it stands for)
    fn update(&mut self, bytes: impl AsRef<[u8]>);
}

impl Sink for Vec<u8> {
    fn update(&mut self, bytes: impl AsRef<[u8]>) {
        self.extend_from_slice(bytes.as_ref());
    }
}

fn field(hasher: &mut impl Sink, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn optional(hasher: &mut impl Sink, bytes: Option<&[u8]>) {
    match bytes {
        None => hasher.update([0]),
        Some(bytes) => {
            hasher.update([1]);
            field(hasher, bytes);
        }
    }
}

fn kind_byte(kind: FileType) -> u8 {
    match kind {
        FileType::File => 1,
        FileType::Dir => 2,
        FileType::Symlink => 3,
        FileType::Hardlink => 4,
        FileType::Char => 5,
        FileType::Block => 6,
        FileType::Fifo => 7,
    }
}
