//! Lists a container's root file system without reading any content: one [`FileEntry`] per path
//! (no `sha256` yet), in path order, with the identity of every regular file ([`FileKey`]) so
//! that its content is hashed once, or taken from the hash cache. Symlinks are listed, never
//! followed; nothing outside the root is looked at. Files sharing an inode are recorded as a
//! file and hardlinks to it, as the signed manifest records them.

use crate::hashes::HashCache;
use base64::Engine as _;
use rustix::fd::{AsFd as _, OwnedFd};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use verifier_core::manifest::{canonicalize_hardlinks, FileEntry, FileType, SIGNED_XATTRS};

/// What identifies one version of a file's content without reading it: its inode, size, and
/// modification, change and birth times (ctime and btime cannot be set from user space). The
/// device is left out on purpose: an overlay reports a new device at every mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub btime: Option<(i64, u32)>,
}

/// One path of the root file system.
#[derive(Debug, Clone)]
pub struct Observed {
    pub entry: FileEntry,
    /// Where it is on the host.
    pub host_path: PathBuf,
    /// For regular files (and hardlinks): what its content is known by.
    pub key: Option<FileKey>,
    /// Its inode number, whatever its type (what an overlay's listing is checked by).
    pub ino: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("listing {path} failed: a worker thread panicked")]
    Worker { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
}

/// Lists `root` (which must be a directory), sorted by path bytes.
pub fn walk(root: &Path) -> Result<Vec<Observed>, WalkError> {
    walk_known(root, None)
}

/// [`walk`], taking a regular file's signed xattrs from `known` when its exact key is there
/// (every xattr change moves ctime, so an unchanged key has unchanged xattrs), instead of
/// asking the kernel for them path by path.
pub fn walk_known(root: &Path, known: Option<&HashCache>) -> Result<Vec<Observed>, WalkError> {
    list_tree(root, known, workers()).map(sorted)
}

/// How [`list`] listed a root file system.
#[derive(Debug)]
pub enum How {
    /// From this many layers of the overlay mounted there, checked against the mount.
    Layers(usize),
    /// Path by path through the mount, for this reason.
    Mount(crate::overlay::Fallback),
}

/// [`walk_known`], from an overlay's layers where `root` is one and the layers' composition
/// is shown to be what the mount lists (see [`crate::overlay`]); otherwise path by path.
pub fn list(root: &Path, known: Option<&HashCache>) -> Result<(Vec<Observed>, How), WalkError> {
    match crate::overlay::list(root, known) {
        Ok((observed, layers)) => Ok((sorted(observed), How::Layers(layers))),
        Err(fallback) => Ok((walk_known(root, known)?, How::Mount(fallback))),
    }
}

/// The entries of the tree at `root` (a directory; not listed itself), in no particular order,
/// with no hardlink recorded as such yet.
pub(crate) fn list_tree(root: &Path, known: Option<&HashCache>, threads: usize) -> Result<Vec<Observed>, WalkError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalkError::Io { path, source }
    };
    if !fs::symlink_metadata(root).map_err(io(root))?.is_dir() {
        return Err(WalkError::NotADirectory { path: root.to_path_buf() });
    }
    // Workers share a stack of directories still to list: most of the time is the kernel's,
    // per path, and it runs in parallel where there is more than one CPU. This thread is one
    // of them; on one CPU the only one (another thread would only add its start and switches).
    let pending: Pending =
        Mutex::new((vec![Todo { parent: None, host_path: root.to_path_buf(), prefix: String::new() }], 0usize));
    let wake = Condvar::new();
    let results: Vec<Result<Vec<Observed>, WalkError>> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads.max(1)).map(|_| scope.spawn(|| list_dirs(&pending, &wake, known))).collect();
        let mine = list_dirs(&pending, &wake, known);
        let failed = || Err(WalkError::Worker { path: root.to_path_buf() });
        std::iter::once(mine).chain(others.into_iter().map(|w| w.join().unwrap_or_else(|_| failed()))).collect()
    });
    let mut out = Vec::new();
    for result in results {
        out.extend(result?);
    }
    Ok(out)
}

/// Sorted by path bytes, files sharing an inode recorded as a file and hardlinks to it.
fn sorted(out: Vec<Observed>) -> Vec<Observed> {
    // An index is sorted, not the entries: moving a few hundred bytes per swap was a visible
    // share of the gate's time. Paths are distinct: no stable sort needed.
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_unstable_by(|&a, &b| out[a].entry.path.as_bytes().cmp(out[b].entry.path.as_bytes()));
    let mut slots: Vec<Option<Observed>> = out.into_iter().map(Some).collect();
    let mut out: Vec<Observed> = order.iter().filter_map(|&i| slots[i].take()).collect();
    let inodes: Vec<Option<u64>> =
        out.iter().map(|o| o.key.filter(|_| o.entry.kind == FileType::File).map(|k| k.ino)).collect();
    canonicalize_hardlinks(&mut out, &inodes);
    out
}

/// At most this many threads list directories at once.
const WORKERS: usize = 2;

/// How many threads list: [`WORKERS`], or fewer when this process may run on fewer CPUs.
pub(crate) fn workers() -> usize {
    let cpus = rustix::thread::sched_getaffinity(None).map_or(WORKERS, |set| set.count() as usize);
    cpus.clamp(1, WORKERS)
}

/// A directory still to list: opened relative to its parent's descriptor (the root by path),
/// so no directory of the walk is reached through a path walk, or a symlink, swapped in after
/// its parent was listed. Each parent stays open only while a child is still to be opened.
struct Todo {
    parent: Option<(Arc<OwnedFd>, CString)>,
    host_path: PathBuf,
    prefix: String,
}

type Pending = Mutex<(Vec<Todo>, usize)>;

/// One worker: takes a directory, lists it, puts its subdirectories back, until no directory
/// is left and no other worker is listing one (which could add more).
fn list_dirs(pending: &Pending, wake: &Condvar, known: Option<&HashCache>) -> Result<Vec<Observed>, WalkError> {
    let mut out = Vec::new();
    // getdents' buffer, kept across directories.
    let mut buf: Vec<u8> = Vec::with_capacity(DIRENT_BUFFER);
    loop {
        let todo = {
            let mut state = pending.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(next) = state.0.pop() {
                    state.1 += 1;
                    break next;
                }
                if state.1 == 0 {
                    wake.notify_all();
                    return Ok(out);
                }
                state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        let listed = list_one(todo, known, &mut buf);
        let mut state = pending.lock().unwrap_or_else(|e| e.into_inner());
        state.1 -= 1;
        match listed {
            Ok((entries, subdirs)) => {
                state.0.extend(subdirs);
                out.extend(entries);
                wake.notify_all();
            }
            Err(e) => {
                // Stop every worker: the walk has failed.
                state.0.clear();
                wake.notify_all();
                return Err(e);
            }
        }
    }
}

const DIRENT_BUFFER: usize = 32 * 1024;

/// The entries of one directory, and its subdirectories still to list. The directory is opened
/// once (never through a symlink) and each entry is looked at relative to it: no path walk per
/// entry, and no entry can be reached through a directory swapped in after the listing began.
fn list_one(todo: Todo, known: Option<&HashCache>, buf: &mut Vec<u8>) -> Result<(Vec<Observed>, Vec<Todo>), WalkError> {
    use rustix::fs::{Mode, OFlags};
    let Todo { parent, host_path: dir, prefix } = todo;
    let io = |source: std::io::Error| WalkError::Io { path: dir.clone(), source };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match &parent {
        None => rustix::fs::open(&dir, flags, Mode::empty()),
        Some((parent, name)) => rustix::fs::openat(parent, name.as_c_str(), flags, Mode::empty()),
    }
    .map_err(|e| io(e.into()))?;
    drop(parent);
    let fd = Arc::new(fd);
    let (mut out, mut subdirs) = (Vec::new(), Vec::new());
    let mut entries = rustix::fs::RawDir::new(fd.as_fd(), buf.spare_capacity_mut());
    while let Some(child) = entries.next() {
        let child = child.map_err(|e| io(e.into()))?;
        let raw = child.file_name();
        if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
            continue;
        }
        // A name that is not UTF-8 cannot be in a manifest: listed lossily, it stays an extra.
        let name = String::from_utf8_lossy(raw.to_bytes());
        let mut path = String::with_capacity(prefix.len() + 1 + name.len());
        path.push_str(&prefix);
        path.push('/');
        path.push_str(&name);
        let host_path = dir.join(std::ffi::OsStr::from_bytes(raw.to_bytes()));
        let observed = observe(&fd, raw, path, host_path, known)?;
        if observed.entry.kind == FileType::Dir {
            subdirs.push(Todo {
                parent: Some((fd.clone(), raw.to_owned())),
                host_path: observed.host_path.clone(),
                prefix: observed.entry.path.clone(),
            });
        }
        out.push(observed);
    }
    Ok((out, subdirs))
}

pub(crate) fn observe(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    path: String,
    host_path: PathBuf,
    known: Option<&HashCache>,
) -> Result<Observed, WalkError> {
    use rustix::fs::{AtFlags, FileType as Kind, StatxFlags};
    let io = |source: std::io::Error| WalkError::Io { path: host_path.clone(), source };
    let stx = rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS | StatxFlags::BTIME)
        .map_err(|e| io(e.into()))?;
    let mode = u32::from(stx.stx_mode);
    let mut entry = FileEntry {
        path,
        kind: FileType::File,
        mode: mode & 0o7777,
        uid: u64::from(stx.stx_uid),
        gid: u64::from(stx.stx_gid),
        size: None,
        sha256: None,
        code: None,
        link_target: None,
        dev_major: None,
        dev_minor: None,
        xattrs: BTreeMap::new(),
    };
    let mut key = None;
    match Kind::from_raw_mode(mode) {
        Kind::Directory => entry.kind = FileType::Dir,
        Kind::Symlink => {
            entry.kind = FileType::Symlink;
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| io(e.into()))?;
            entry.link_target = Some(String::from_utf8_lossy(target.as_bytes()).into_owned());
        }
        Kind::RegularFile => {
            entry.size = Some(stx.stx_size);
            let time = |t: rustix::fs::StatxTimestamp| (t.tv_sec, t.tv_nsec);
            let file_key = FileKey {
                ino: stx.stx_ino,
                size: stx.stx_size,
                mtime: time(stx.stx_mtime),
                ctime: time(stx.stx_ctime),
                btime: (stx.stx_mask & StatxFlags::BTIME.bits() != 0).then(|| time(stx.stx_btime)),
            };
            entry.xattrs = match known.and_then(|k| k.xattrs(&file_key)) {
                Some(xattrs) => xattrs.clone(),
                None => signed_xattrs(|name, buf| rustix::fs::lgetxattr(&host_path, name, buf)),
            };
            key = Some(file_key);
        }
        Kind::CharacterDevice | Kind::BlockDevice => {
            entry.kind =
                if Kind::from_raw_mode(mode) == Kind::CharacterDevice { FileType::Char } else { FileType::Block };
            entry.dev_major = Some(stx.stx_rdev_major);
            entry.dev_minor = Some(stx.stx_rdev_minor);
        }
        // FIFOs, and sockets (which no manifest lists: a socket where a FIFO was signed is as
        // harmless as the FIFO, and anywhere else it is an extra path).
        _ => entry.kind = FileType::Fifo,
    }
    Ok(Observed { entry, host_path, key, ino: stx.stx_ino })
}

/// The signed xattrs (names to base64 values) `get` reads: absent ones are left out.
pub(crate) fn signed_xattrs(get: impl Fn(&str, &mut [u8]) -> rustix::io::Result<usize>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in SIGNED_XATTRS {
        let mut buf = [0u8; 4096];
        if let Ok(n) = get(name, &mut buf) {
            out.insert(name.to_string(), base64::engine::general_purpose::STANDARD.encode(&buf[..n]));
        }
    }
    out
}

impl std::borrow::Borrow<FileEntry> for Observed {
    fn borrow(&self) -> &FileEntry {
        &self.entry
    }
}

impl std::borrow::BorrowMut<FileEntry> for Observed {
    fn borrow_mut(&mut self) -> &mut FileEntry {
        &mut self.entry
    }
}
