//! Files that are written whole or not at all. Every output of imgsign (keys, trust store state,
//! bundles, and later the image store) goes through here, so no reader ever sees a half-written
//! file and a failure never leaves one behind.
//!
//! [`AtomicFile`] is a streaming writer on a temporary name (`.NAME.tmp-XXXXXXXXXXXXXXXX`) in the
//! destination's directory, created with exactly the requested mode. [`AtomicFile::commit`]
//! fsyncs it, renames it over the destination and fsyncs the directory;
//! [`AtomicFile::commit_new`] hard-links it instead, which fails if anything (even a dangling
//! symlink) is at the destination, so an existing file is never overwritten. Dropping an
//! uncommitted file removes the temporary name. [`replace_file`] and [`write_new_file`] are the
//! one-shot forms.

use rand_core::{OsRng, RngCore};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AtomicFileError {
    /// An I/O step failed; `action` says which ("cannot write", "cannot replace", ...).
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// [`AtomicFile::commit_new`] found something at the destination.
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
}

impl AtomicFileError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        AtomicFileError::Io { action, path: path.to_path_buf(), source }
    }
}

/// A file being written under a temporary name next to its destination.
pub struct AtomicFile {
    dest: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Creates the temporary file next to `dest` with permission bits exactly `mode` (the umask
    /// does not apply).
    pub fn create(dest: &Path, mode: u32) -> Result<Self, AtomicFileError> {
        let name = dest.file_name().ok_or_else(|| {
            AtomicFileError::io("cannot write", dest, io::Error::new(io::ErrorKind::InvalidInput, "no file name"))
        })?;
        let dir = parent_dir(dest);
        let mut attempts = 0;
        loop {
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".tmp-{:016x}", OsRng.next_u64()));
            let temp = dir.join(temp_name);
            match OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp) {
                Ok(file) => {
                    let created = AtomicFile { dest: dest.to_path_buf(), temp, file: Some(file) };
                    // The process umask may have cleared bits from the creation mode; set it exactly.
                    created
                        .file()
                        .set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(|e| AtomicFileError::io("cannot write", dest, e))?;
                    return Ok(created);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
                Err(e) => return Err(AtomicFileError::io("cannot create a temporary file for", dest, e)),
            }
        }
    }

    /// Where the file will appear on commit.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    fn file(&self) -> &File {
        self.file.as_ref().expect("the file is only taken by commit, which consumes self")
    }

    fn sync(&mut self) -> Result<(), AtomicFileError> {
        self.file().sync_all().map_err(|e| AtomicFileError::io("cannot write", &self.dest, e))
    }

    /// Makes the content visible at the destination, replacing whatever was there: readers see
    /// the old or the new content, never a mix.
    pub fn commit(mut self) -> Result<(), AtomicFileError> {
        self.sync()?;
        fs::rename(&self.temp, &self.dest).map_err(|e| AtomicFileError::io("cannot replace", &self.dest, e))?;
        self.file = None; // the temporary name is gone: nothing left for Drop to remove
        sync_dir(&self.dest)
    }

    /// Makes the content visible at the destination, which must not exist. The hard link is the
    /// existence check, so there is no window between checking and creating.
    pub fn commit_new(mut self) -> Result<(), AtomicFileError> {
        self.sync()?;
        match fs::hard_link(&self.temp, &self.dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(AtomicFileError::Exists { path: self.dest.clone() })
            }
            Err(e) => return Err(AtomicFileError::io("cannot create", &self.dest, e)),
        }
        let dest = self.dest.clone();
        drop(self); // unlinks the temporary name; the destination keeps the data
        sync_dir(&dest)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `contents` to `path`, which must not exist, with permission bits `mode`.
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), AtomicFileError> {
    let mut file = AtomicFile::create(path, mode)?;
    file.write_all(contents).map_err(|e| AtomicFileError::io("cannot write", path, e))?;
    file.commit_new()
}

/// Atomically replaces (or creates) `path` with `contents` and permission bits `mode`.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), AtomicFileError> {
    let mut file = AtomicFile::create(path, mode)?;
    file.write_all(contents).map_err(|e| AtomicFileError::io("cannot write", path, e))?;
    file.commit()
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dest: &Path) -> Result<(), AtomicFileError> {
    File::open(parent_dir(dest))
        .and_then(|dir| dir.sync_all())
        .map_err(|e| AtomicFileError::io("cannot sync the directory of", dest, e))
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
        assert!(matches!(err, AtomicFileError::Exists { .. }), "{err:?}");
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
        assert!(matches!(err, AtomicFileError::Exists { .. }), "{err:?}");
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

    #[test]
    fn streaming_writer_leaves_nothing_when_dropped_and_replaces_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bundle.json");
        fs::write(&p, b"old").unwrap();
        let mut half = AtomicFile::create(&p, 0o644).unwrap();
        half.write_all(b"partial").unwrap();
        drop(half);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the temporary file is removed");
        let mut whole = AtomicFile::create(&p, 0o640).unwrap();
        whole.write_all(b"new ").unwrap();
        whole.write_all(b"content").unwrap();
        whole.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new content");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
