//! File system operations confined to one root directory, for writing untrusted trees.
//!
//! Every path is resolved from the root's file descriptor by `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`: `..`, absolute symlinks and `/proc` magic links all stay inside the
//! root, whatever the tree already holds. Only the parent directory is resolved that way; the
//! final component is handled by the `*at` call itself and never followed (`O_CREAT|O_EXCL`,
//! `O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, and calls that never follow: mkdirat, symlinkat,
//! unlinkat, mknodat, linkat without `AT_SYMLINK_FOLLOW`). This is the last line of defence: the
//! layer rules already refuse every name that could leave the root, and this module keeps a
//! mistake there from writing outside it.

use rustix::fs::{AtFlags, Dev, Gid, Mode, OFlags, ResolveFlags, Uid, XattrFlags};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Kinds of special files [`InRoot::mknod`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Char,
    Block,
    Fifo,
}

/// The owner to give a node (image uids and gids, checked to fit a `uid_t` when set).
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// A directory that every operation stays inside.
pub struct InRoot {
    root: OwnedFd,
}

fn io_err(e: rustix::io::Errno) -> io::Error {
    e.into()
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

fn ids(owner: Owner) -> io::Result<(Uid, Gid)> {
    let uid = u32::try_from(owner.uid).ok().filter(|&u| u != u32::MAX);
    let gid = u32::try_from(owner.gid).ok().filter(|&g| g != u32::MAX);
    match (uid, gid) {
        (Some(u), Some(g)) => Ok((Uid::from_raw(u), Gid::from_raw(g))),
        _ => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("owner {}:{} out of range", owner.uid, owner.gid)))
        }
    }
}

impl InRoot {
    /// Opens `dir` (which must be a directory, not a symlink to one) as the root.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let root =
            rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(io_err)?;
        Ok(Self { root })
    }

    /// Resolves a relative path inside the root.
    fn resolve(&self, path: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        rustix::fs::openat2(&self.root, path, flags | OFlags::CLOEXEC, mode, RESOLVE).map_err(io_err)
    }

    /// The parent directory of `path` (resolved inside the root; it must be a directory itself,
    /// not a symlink) and the final component.
    fn parent<'p>(&self, path: &'p [u8]) -> io::Result<(OwnedFd, &'p [u8])> {
        let (parent, name) = split(path);
        if name.is_empty() || name == b"." || name == b".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "path has no final name"));
        }
        let dir = self.resolve(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW, Mode::empty())?;
        Ok((dir, name))
    }

    /// Creates a new regular file (nothing may be at `path`, not even a symlink), mode 0600
    /// until [`set_metadata`] gives it its own.
    pub fn create_file(&self, path: &[u8]) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        Ok(File::from(self.resolve(path, flags, Mode::from_raw_mode(0o600))?))
    }

    /// Reads at most `max` bytes of the regular file at `path`, every component (symlinks
    /// included) resolved inside the root; `None` when nothing is there.
    pub fn read_file(&self, path: &[u8], max: u64) -> io::Result<Option<Vec<u8>>> {
        use std::io::Read as _;
        let file = match self.resolve(path, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        let mut data = Vec::new();
        file.take(max + 1).read_to_end(&mut data)?;
        if data.len() as u64 > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
        }
        Ok(Some(data))
    }

    /// Creates a directory, mode 0700 until its metadata is set.
    pub fn mkdir(&self, path: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)).map_err(io_err)
    }

    /// Opens an existing directory (not through a symlink) to set its metadata.
    pub fn open_dir(&self, path: &[u8]) -> io::Result<File> {
        let path: &[u8] = if path.is_empty() { b"." } else { path };
        Ok(File::from(self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW, Mode::empty())?))
    }

    /// Creates a symlink; its target is stored as given and never resolved here.
    pub fn symlink(&self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        rustix::fs::symlinkat(target, &dir, name).map_err(io_err)
    }

    /// Makes `path` another name of `target` (a root-relative path; a symlink there is linked
    /// itself, never followed).
    pub fn hardlink(&self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let (target_dir, target_name) = self.parent(target)?;
        let (dir, name) = self.parent(path)?;
        rustix::fs::linkat(&target_dir, target_name, &dir, name, AtFlags::empty()).map_err(io_err)
    }

    /// Makes `path` another name of `source`, a file outside the root that the caller owns (a
    /// content store's object); `source` itself is linked, never followed.
    pub fn link_from(&self, path: &[u8], source: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        rustix::fs::linkat(rustix::fs::CWD, source, &dir, name, AtFlags::empty()).map_err(io_err)
    }

    /// Creates a device node or fifo, with `mode` and owner.
    pub fn mknod(&self, path: &[u8], kind: SpecialKind, dev: (u32, u32), mode: u32, owner: Owner) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let (file_type, dev): (rustix::fs::FileType, Dev) = match kind {
            SpecialKind::Char => (rustix::fs::FileType::CharacterDevice, rustix::fs::makedev(dev.0, dev.1)),
            SpecialKind::Block => (rustix::fs::FileType::BlockDevice, rustix::fs::makedev(dev.0, dev.1)),
            SpecialKind::Fifo => (rustix::fs::FileType::Fifo, 0),
        };
        rustix::fs::mknodat(&dir, name, file_type, Mode::from_raw_mode(0o600), dev).map_err(io_err)?;
        let (uid, gid) = ids(owner)?;
        rustix::fs::chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)?;
        // chmod has no portable no-follow form for non-symlinks; `name` is the node mknodat just
        // made in a directory only this writer changes, so it is not a symlink.
        rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(mode & 0o7777), AtFlags::empty()).map_err(io_err)
    }

    /// Sets the owner of `path` itself (a symlink is not followed).
    pub fn chown_nofollow(&self, path: &[u8], owner: Owner) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let (uid, gid) = ids(owner)?;
        rustix::fs::chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)
    }

    /// Removes `path` itself (an empty directory when `dir`).
    pub fn remove(&self, path: &[u8], dir: bool) -> io::Result<()> {
        let (parent, name) = self.parent(path)?;
        let flags = if dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        rustix::fs::unlinkat(&parent, name, flags).map_err(io_err)
    }
}

/// Sets owner, then mode (chown clears setuid/setgid, so the mode comes after), then the
/// privilege xattrs (chown also drops `security.capability`) on an open file or directory.
pub fn set_metadata(fd: impl AsFd, owner: Owner, mode: u32, xattrs: &BTreeMap<String, Vec<u8>>) -> io::Result<()> {
    let (uid, gid) = ids(owner)?;
    rustix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(io_err)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777)).map_err(io_err)?;
    for (name, value) in xattrs {
        rustix::fs::fsetxattr(&fd, name.as_str(), value, XattrFlags::empty()).map_err(io_err)?;
    }
    Ok(())
}
