//! The hash cache: the SHA-256 of file contents already read, and the file's signed xattrs
//! (`security.capability`) read with it, by [`FileKey`] (inode, size, mtime, ctime, btime), so
//! that a second start of the same root file system reads no content and asks for no xattr.
//! ctime and btime are set by the kernel, never by a caller, and every change of content or
//! xattrs moves ctime, so a file cannot be changed and keep its key. Both are read through one
//! open descriptor and the key is checked again after them (see [`hash_file`]).
//! The cache is believed only when its directory and file belong to this user and nobody else
//! can write them; otherwise everything is hashed again. A binary file of fixed-layout records
//! ([`encode`]), because it is read at every start; written to a temporary name and renamed.

use crate::walk::{FileKey, Observed};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use verifier_core::digest::Sha256Digest;

/// The cache file in the cache directory.
pub const FILE: &str = "hashes.v2";
const MAGIC: &[u8] = b"imgsign-hash-cache-2\n";
/// Beyond this many entries, only those used by the last admission are kept.
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} changed while it was being read")]
    Changed { path: PathBuf },
    #[error("cannot write the hash cache {path}")]
    Write { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
}

/// What was read of one version of a file: its content digest and its signed xattrs (names to
/// base64 values, as a manifest records them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub digest: Sha256Digest,
    pub xattrs: BTreeMap<String, String>,
}

/// The cache's maps. Keys are inode numbers, sizes and kernel-set times of this host's files:
/// a multiply-rotate hash does (SipHash was a visible share of the gate's time), and a key
/// crafted to collide could only slow the gate down.
type KeyMap = HashMap<FileKey, Known, std::hash::BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64); // the bits, as a hash input
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64); // usize is 64 bits on the targets this runs on
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct HashCache {
    dir: PathBuf,
    /// What the cache file holds, what was hashed now, and the keys used now.
    known: KeyMap,
    fresh: KeyMap,
    used: Vec<FileKey>,
    /// Files read now, and files whose digest came from the cache.
    pub hashed: usize,
    pub cached: usize,
}

impl HashCache {
    /// Opens the cache in `dir` (made, mode 0700, if missing). An unsafe, unreadable or
    /// malformed cache is an empty one.
    pub fn open(dir: &Path) -> Self {
        let mut cache = HashCache {
            dir: dir.to_path_buf(),
            known: KeyMap::default(),
            fresh: KeyMap::default(),
            used: Vec::new(),
            hashed: 0,
            cached: 0,
        };
        let _ = make_private_dir(dir);
        if !owned_and_private(dir) || !owned_and_private(&dir.join(FILE)) {
            return cache;
        }
        if let Ok(bytes) = std::fs::read(dir.join(FILE)) {
            cache.known = decode(&bytes).unwrap_or_default();
        }
        cache
    }

    /// The signed xattrs recorded with `key`, if this version of the file was read before.
    pub fn xattrs(&self, key: &FileKey) -> Option<&BTreeMap<String, String>> {
        self.known.get(key).map(|k| &k.xattrs)
    }

    /// The content digest of the regular file `observed` lists.
    pub fn digest(&mut self, observed: &Observed) -> Result<Sha256Digest, HashError> {
        let Some(key) = observed.key else {
            return Err(HashError::Changed { path: observed.host_path.clone() });
        };
        if let Some(known) = self.fresh.get(&key).or_else(|| self.known.get(&key)) {
            self.cached += 1;
            self.used.push(key);
            return Ok(known.digest);
        }
        let known = hash_file(&observed.host_path, key)?;
        // The walk read the xattrs before the content: if they differ now, the file changed
        // in between (and its ctime with it, which hash_file checked): never cache a mix.
        if known.xattrs != observed.entry.xattrs {
            return Err(HashError::Changed { path: observed.host_path.clone() });
        }
        self.hashed += 1;
        let digest = known.digest;
        self.used.push(key);
        self.fresh.insert(key, known);
        Ok(digest)
    }

    /// Writes what is known back (the entries used now first; older ones while under the cap).
    /// Nothing is written when nothing was hashed.
    pub fn save(&self) -> Result<(), HashError> {
        if self.hashed == 0 {
            return Ok(());
        }
        let mut entries: Vec<(&FileKey, &Known)> = self.fresh.iter().collect();
        let old = self.known.iter().filter(|(k, _)| !self.fresh.contains_key(*k));
        if self.fresh.len() + self.known.len() <= MAX_ENTRIES {
            entries.extend(old);
        } else {
            let used: std::collections::HashSet<&FileKey> = self.used.iter().collect();
            entries.extend(old.filter(|(k, _)| used.contains(k)));
        }
        // The text cache of earlier builds is not read any more.
        let _ = std::fs::remove_file(self.dir.join("hashes"));
        let path = self.dir.join(FILE);
        atomic_file::replace_file(&path, &encode(entries), 0o600)
            .map_err(|e| HashError::Write { path, source: Box::new(e) })
    }
}

/// The cache file's bytes: the magic line, then per entry the key (inode, size, mtime, ctime,
/// btime: little-endian, a btime flag byte), the digest, and the xattrs (a count, then each
/// name and value with its length).
pub fn encode<'a>(entries: impl IntoIterator<Item = (&'a FileKey, &'a Known)>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (key, known) in entries {
        out.extend_from_slice(&key.ino.to_le_bytes());
        out.extend_from_slice(&key.size.to_le_bytes());
        for (s, n) in [key.mtime, key.ctime, key.btime.unwrap_or_default()] {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.push(u8::from(key.btime.is_some()));
        out.extend_from_slice(&known.digest.0);
        let xattrs: Vec<_> =
            known.xattrs.iter().filter(|(n, v)| n.len() <= 255 && v.len() <= usize::from(u16::MAX)).collect();
        out.push(u8::try_from(xattrs.len()).unwrap_or(0));
        for (name, value) in xattrs.into_iter().take(255) {
            out.push(name.len() as u8); // at most 255, filtered above
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes()); // at most u16::MAX
            out.extend_from_slice(value.as_bytes());
        }
    }
    out
}

/// The entries of a cache file, or `None` if it is not one (a record cut short or malformed
/// is no cache at all).
fn decode(bytes: &[u8]) -> Option<KeyMap> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let mut out = KeyMap::default();
    while let Some(head) = take(8) {
        let ino = u64::from_le_bytes(head.try_into().ok()?);
        let size = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let mut time = || -> Option<(i64, u32)> {
            Some((i64::from_le_bytes(take(8)?.try_into().ok()?), u32::from_le_bytes(take(4)?.try_into().ok()?)))
        };
        let (mtime, ctime, btime) = (time()?, time()?, time()?);
        let btime = match take(1)?[0] {
            0 => None,
            1 => Some(btime),
            _ => return None,
        };
        let digest = Sha256Digest(take(32)?.try_into().ok()?);
        let mut xattrs = BTreeMap::new();
        for _ in 0..take(1)?[0] {
            let len = usize::from(take(1)?[0]);
            let name = std::str::from_utf8(take(len)?).ok()?.to_string();
            let len = usize::from(u16::from_le_bytes(take(2)?.try_into().ok()?));
            let value = std::str::from_utf8(take(len)?).ok()?.to_string();
            xattrs.insert(name, value);
        }
        out.insert(FileKey { ino, size, mtime, ctime, btime }, Known { digest, xattrs });
    }
    rest.is_empty().then_some(out)
}

/// True if `path` exists, belongs to this process's effective user and is not writable by
/// group or others.
/// Makes `dir` and its missing parents, mode 0700 (whatever the umask).
pub(crate) fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

pub(crate) fn owned_and_private(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.uid() == rustix::process::geteuid().as_raw() && m.permissions().mode() & 0o022 == 0)
        .unwrap_or(false)
}

/// Hashes `path`, opened without following a symlink, reads its signed xattrs through the
/// same descriptor, and checks it is still the file that was listed (same key) after both.
fn hash_file(path: &Path, listed: FileKey) -> Result<Known, HashError> {
    let read_err = |source: std::io::Error| HashError::Read { path: path.to_path_buf(), source };
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| read_err(e.into()))?;
    let mut file = File::from(fd);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let xattrs = crate::walk::signed_xattrs(|name, buf| rustix::fs::fgetxattr(file.as_fd(), name, buf));
    let after = file.metadata().map_err(read_err)?;
    let same = after.ino() == listed.ino
        && after.len() == listed.size
        && (after.ctime(), after.ctime_nsec() as u32) == listed.ctime
        && (after.mtime(), after.mtime_nsec() as u32) == listed.mtime;
    if !same {
        return Err(HashError::Changed { path: path.to_path_buf() });
    }
    Ok(Known { digest: Sha256Digest(hasher.finalize().into()), xattrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey { ino, size: 7, mtime: (1, 2), ctime: (-3, 4), btime: ino.is_multiple_of(2).then_some((5, 6)) }
    }

    #[test]
    fn entries_survive_the_format_and_a_damaged_file_gives_no_made_up_entry() {
        let with_cap =
            Known { digest: Sha256Digest([9; 32]), xattrs: [("security.capability".into(), "AQID".into())].into() };
        let plain = Known { digest: Sha256Digest([1; 32]), xattrs: BTreeMap::new() };
        let bytes = encode([(&key(1), &with_cap), (&key(2), &plain)]);
        let decoded = decode(&bytes).expect("a cache file");
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[&key(1)], with_cap);
        assert_eq!(decoded[&key(2)], plain);
        // Truncated anywhere: a whole record is kept or nothing is; never a record made up.
        for cut in MAGIC.len()..bytes.len() {
            if let Some(partial) = decode(&bytes[..cut]) {
                assert!(partial.iter().all(|(k, v)| decoded.get(k) == Some(v)), "cut at {cut}");
                assert!(partial.len() < 2);
            }
        }
        assert!(decode(&[bytes.as_slice(), b"x"].concat()).is_none());
        assert!(decode(b"imgsign-hash-cache-1\n").is_none());
    }
}
