//! The store's lock: `flock` on `<root>/lock`. Mutations (ensure, remove, gc) hold it exclusively,
//! listing holds it shared; it is released when the guard drops (or the process dies).

use rustix::fs::{FlockOperation, Mode, OFlags};
use std::fs::File;
use std::io;
use std::path::Path;

/// A held lock.
pub struct LockGuard {
    _file: File,
}

/// How to take the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Exclusive, waiting for other holders.
    Wait,
    /// Exclusive, `Ok(None)` when another process holds it.
    Try,
    /// Shared, waiting.
    Shared,
}

/// Takes the lock file at `path` (created mode 0600 if missing).
pub fn lock(path: &Path, mode: LockMode) -> io::Result<Option<LockGuard>> {
    let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?;
    let op = match mode {
        LockMode::Wait => FlockOperation::LockExclusive,
        LockMode::Try => FlockOperation::NonBlockingLockExclusive,
        LockMode::Shared => FlockOperation::LockShared,
    };
    match rustix::fs::flock(&fd, op) {
        Ok(()) => Ok(Some(LockGuard { _file: File::from(fd) })),
        Err(rustix::io::Errno::WOULDBLOCK) if mode == LockMode::Try => Ok(None),
        Err(e) => Err(e.into()),
    }
}
