//! Careful file writes: [`write_new_file`] creates a file that must not exist yet (private keys,
//! public keys) and [`replace_file`] atomically replaces one (trust store state). Both write a
//! temporary file in the destination directory with the final mode, fsync it, move it into place
//! and fsync the directory, and remove the temporary file on any failure. Nothing here ever leaves
//! a half-written destination behind.

use crate::key::KeyError;
use rand_core::{OsRng, RngCore};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn io_err(action: &'static str, path: &Path, source: io::Error) -> KeyError {
    KeyError::Io { action, path: path.to_path_buf(), source }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file next to the destination, removed on drop unless disarmed.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates `.NAME.tmp-XXXX` next to `dest` with exactly `mode`, writes `contents` and fsyncs it.
fn write_temp(dest: &Path, contents: &[u8], mode: u32) -> Result<TempFile, KeyError> {
    let name = dest.file_name().ok_or_else(|| {
        io_err("cannot write", dest, io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))
    })?;
    let dir = parent_dir(dest);
    let mut attempts = 0;
    let (file, tmp) = loop {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{:016x}", OsRng.next_u64()));
        let tmp_path = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp_path) {
            Ok(f) => break (f, TempFile { path: tmp_path, armed: true }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(io_err("cannot create a temporary file for", dest, e)),
        }
    };
    write_and_sync(file, &tmp.path, contents, mode).map_err(|e| io_err("cannot write", dest, e))?;
    Ok(tmp)
}

fn write_and_sync(mut file: File, _path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    // The process umask may have cleared bits from the creation mode; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `contents` to `path`, which must not exist, with permission bits `mode` (for example
/// `0o600`).
///
/// The data goes to a temporary file in the same directory, which is fsynced and then hard-linked
/// to `path`; the link fails if anything (even a dangling symlink) exists at `path`, so an existing
/// file is never overwritten, and a reader never sees a partial file. The temporary file is removed
/// whatever happens.
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    // No early existence check: the hard link below is the check, so there is no window between
    // checking and creating, and the failure path (temporary file removed) is the one tested.
    let tmp = write_temp(path, contents, mode)?;
    match fs::hard_link(&tmp.path, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyError::Exists { path: path.to_path_buf() })
        }
        Err(e) => return Err(io_err("cannot create", path, e)),
    }
    drop(tmp); // unlinks the temporary name; `path` keeps the data
    sync_dir(parent_dir(path)).map_err(|e| io_err("cannot sync the directory of", path, e))
}

/// Atomically replaces (or creates) `path` with `contents` and permission bits `mode`: write a
/// temporary file in the same directory, fsync, rename over `path`, fsync the directory. Readers
/// see either the old or the new contents, never a mix.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut tmp = write_temp(path, contents, mode)?;
    fs::rename(&tmp.path, path).map_err(|e| io_err("cannot replace", path, e))?;
    tmp.armed = false;
    sync_dir(parent_dir(path)).map_err(|e| io_err("cannot sync the directory of", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn write_new_file_sets_mode_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.key");
        write_new_file(&p, b"secret", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o600);
        let q = dir.path().join("a.pub");
        write_new_file(&q, b"public", 0o644).unwrap();
        assert_eq!(fs::metadata(&q).unwrap().permissions().mode() & 0o7777, 0o644);
        assert_eq!(entries(dir.path()), vec!["a.key", "a.pub"]);
    }

    #[test]
    fn write_new_file_never_overwrites_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, b"original").unwrap();
        let err = write_new_file(&p, b"new", 0o600).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err:?}");
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"original");
        assert_eq!(entries(dir.path()), vec!["x"]);
    }

    #[test]
    fn write_new_file_refuses_dangling_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_new_file(&link, b"data", 0o600).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err:?}");
        assert!(!target.exists(), "must not write through a symlink");
        assert_eq!(entries(dir.path()), vec!["link"]);
    }

    #[test]
    fn write_new_file_missing_dir_names_path_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("f");
        let err = write_new_file(&p, b"data", 0o600).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn replace_file_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        replace_file(&p, b"one", 0o644).unwrap();
        replace_file(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(entries(dir.path()), vec!["state.json"]);
    }
}
