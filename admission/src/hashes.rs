//! The hash cache: the SHA-256 of file contents already read, by [`FileKey`] (inode, size,
//! mtime, ctime, btime), so a second start of the same root file system reads no content.
//! ctime and btime are set by the kernel, never by a caller, so a file cannot be changed and
//! keep its key. The cache is believed only when its directory and file belong to this user
//! and nobody else can write them; otherwise everything is hashed again. One line per file
//! (`KEY HEX`), written to a temporary name and renamed.

use crate::walk::{FileKey, Observed};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use verifier_core::digest::Sha256Digest;

const FILE: &str = "hashes";
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

pub struct HashCache {
    dir: PathBuf,
    known: HashMap<String, Sha256Digest>,
    used: HashMap<String, Sha256Digest>,
    /// Files read now, and files whose digest came from the cache.
    pub hashed: usize,
    pub cached: usize,
}

impl HashCache {
    /// Opens the cache in `dir` (made, mode 0700, if missing). An unsafe or unreadable cache
    /// is an empty one.
    pub fn open(dir: &Path) -> Self {
        let mut cache =
            HashCache { dir: dir.to_path_buf(), known: HashMap::new(), used: HashMap::new(), hashed: 0, cached: 0 };
        let _ = make_private_dir(dir);
        if !owned_and_private(dir) || !owned_and_private(&dir.join(FILE)) {
            return cache;
        }
        if let Ok(text) = std::fs::read_to_string(dir.join(FILE)) {
            for line in text.lines() {
                let Some((key, hex)) = line.split_once(' ') else { continue };
                let Ok(digest) = Sha256Digest::parse_hex(hex) else { continue };
                cache.known.insert(key.to_string(), digest);
            }
        }
        cache
    }

    /// The content digest of the regular file `observed` lists.
    pub fn digest(&mut self, observed: &Observed) -> Result<Sha256Digest, HashError> {
        let Some(key) = observed.key else {
            return Err(HashError::Changed { path: observed.host_path.clone() });
        };
        let text = key.text();
        if let Some(digest) = self.used.get(&text).or_else(|| self.known.get(&text)).copied() {
            self.cached += 1;
            self.used.insert(text, digest);
            return Ok(digest);
        }
        let digest = hash_file(&observed.host_path, key)?;
        self.hashed += 1;
        self.used.insert(text, digest);
        Ok(digest)
    }

    /// Writes what is known back (the entries used now first; older ones while under the cap).
    /// Nothing is written when nothing was hashed.
    pub fn save(&self) -> Result<(), HashError> {
        if self.hashed == 0 {
            return Ok(());
        }
        let mut out = String::new();
        let mut push = |key: &str, digest: &Sha256Digest| {
            out.push_str(key);
            out.push(' ');
            out.push_str(&digest.hex());
            out.push('\n');
        };
        for (key, digest) in &self.used {
            push(key, digest);
        }
        if self.used.len() + self.known.len() <= MAX_ENTRIES {
            for (key, digest) in self.known.iter().filter(|(k, _)| !self.used.contains_key(*k)) {
                push(key, digest);
            }
        }
        let path = self.dir.join(FILE);
        atomic_file::replace_file(&path, out.as_bytes(), 0o600)
            .map_err(|e| HashError::Write { path, source: Box::new(e) })
    }
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

/// Hashes `path`, opened without following a symlink, and checks it is still the file that
/// was listed (same key) after it was read.
fn hash_file(path: &Path, listed: FileKey) -> Result<Sha256Digest, HashError> {
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
    let after = file.metadata().map_err(read_err)?;
    let same = after.ino() == listed.ino
        && after.len() == listed.size
        && (after.ctime(), after.ctime_nsec() as u32) == listed.ctime
        && (after.mtime(), after.mtime_nsec() as u32) == listed.mtime;
    if !same {
        return Err(HashError::Changed { path: path.to_path_buf() });
    }
    Ok(Sha256Digest(hasher.finalize().into()))
}
