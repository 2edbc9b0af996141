//! fs-verity on stored objects, where the store's file system has it (ext4 or f2fs made with
//! the `verity` feature, btrfs; Linux 5.4+ built with `CONFIG_FS_VERITY`).
//!
//! An object with verity enabled is read-only for everyone, root included: its content can only
//! change by replacing the file, which the store never does, and the kernel checks every page
//! read from disk against the Merkle tree whose root is the fs-verity digest. So a stored image
//! cannot be edited in place by a process that can write to the store's files, and a disk that
//! returns other bytes than were written gives I/O errors instead of code. The ioctls come from
//! `composefs-ioctls`, which keeps its `unsafe` to itself (this crate forbids it).
//!
//! [`seal`] enables verity on an object (its writer closed) and returns its fs-verity SHA-256
//! digest; `None` when the file system cannot, which the store then stops asking.

use composefs_ioctls::fsverity::{fs_ioc_enable_verity, fs_ioc_measure_verity, EnableVerityError, MeasureVerityError};
use std::io;
use std::path::Path;

/// `FS_VERITY_HASH_ALG_SHA256`.
const SHA256: u8 = 1;
/// The Merkle tree block size: the page size on x86-64, the only one every kernel accepts.
const BLOCK_SIZE: u32 = 4096;

/// Enables fs-verity on the file at `path` (already enabled is fine) and measures it. `None`
/// when its file system does not support fs-verity; any other failure is an error.
pub fn seal(path: &Path) -> io::Result<Option<[u8; 32]>> {
    let file = std::fs::File::open(path)?;
    match fs_ioc_enable_verity(&file, SHA256, BLOCK_SIZE) {
        Ok(()) | Err(EnableVerityError::AlreadyEnabled) => {}
        Err(EnableVerityError::FilesystemNotSupported) => return Ok(None),
        Err(EnableVerityError::FileOpenedForWrite) => {
            return Err(io::Error::other(format!(
                "cannot enable fs-verity on {}: the file is open for writing",
                path.display()
            )))
        }
        Err(e) => return Err(io::Error::other(format!("cannot enable fs-verity on {}: {e}", path.display()))),
    }
    measure(path)
}

/// The fs-verity SHA-256 digest of the file at `path`; `None` when verity is not enabled on it
/// or its file system has none.
pub fn measure(path: &Path) -> io::Result<Option<[u8; 32]>> {
    let file = std::fs::File::open(path)?;
    match fs_ioc_measure_verity::<32>(&file, SHA256) {
        Ok(digest) => Ok(Some(digest)),
        Err(MeasureVerityError::VerityMissing | MeasureVerityError::FilesystemNotSupported) => Ok(None),
        Err(e) => Err(io::Error::other(format!("cannot measure fs-verity of {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_system_without_verity_is_not_an_error() {
        // tmpfs never has fs-verity.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = dir.path().join("object");
        std::fs::write(&path, b"content").unwrap();
        assert_eq!(seal(&path).unwrap(), None);
        assert_eq!(measure(&path).unwrap(), None);
        // The file is still writable: nothing was enabled.
        std::fs::write(&path, b"changed").unwrap();
    }
}
