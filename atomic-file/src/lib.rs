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
//!
//! Neither commit writes through a symlink at the destination: `rename` replaces the link itself,
//! and the hard link refuses it. A failure of the final directory fsync is reported although the
//! file is then in place (it may not survive a crash).

use rand_core::{OsRng, RngCore};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors from writing a file atomically. Each names the destination; the OS error is the source.
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

/// How much of the destination's name the temporary name repeats: `.` + this + `.tmp-` and 16 hex
/// digits stay under NAME_MAX.
const MAX_NAME_IN_TEMP: usize = 200;

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
        // Keep the temporary name within NAME_MAX (255 bytes) however long the destination's is.
        let name = std::ffi::OsStr::from_bytes(&name.as_bytes()[..name.len().min(MAX_NAME_IN_TEMP)]);
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

    // Hostile cases: what is at the destination, or around it, is not what the caller expects.

    #[test]
    fn commit_new_refuses_a_symlink_to_an_existing_file_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("out.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut file = AtomicFile::create(&link, 0o600).unwrap();
        file.write_all(b"attacker-chosen destination").unwrap();
        let err = file.commit_new().unwrap_err();
        assert!(matches!(err, AtomicFileError::Exists { .. }), "{err:?}");
        assert!(err.to_string().contains(&link.display().to_string()), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(entries(dir.path()), vec!["out.key", "victim"], "no temporary file left");
    }

    #[test]
    fn commit_replaces_a_symlink_itself_never_writes_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("state.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        replace_file(&link, b"new state", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        let meta = fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_file(), "the link was replaced by a regular file");
        assert_eq!(fs::read(&link).unwrap(), b"new state");
    }

    #[test]
    fn commit_new_refuses_a_dangling_symlink_into_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("k.pub");
        std::os::unix::fs::symlink(dir.path().join("made-by-us/k.pub"), &link).unwrap();
        let err = write_new_file(&link, b"public", 0o644).unwrap_err();
        assert!(matches!(err, AtomicFileError::Exists { .. }), "{err:?}");
        assert!(!dir.path().join("made-by-us").exists());
        assert_eq!(entries(dir.path()), vec!["k.pub"]);
    }

    #[test]
    fn destination_directory_vanishing_before_commit_is_an_error_naming_the_file() {
        for new in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let sub = dir.path().join("sub");
            fs::create_dir(&sub).unwrap();
            let dest = sub.join("bundle.json");
            let mut file = AtomicFile::create(&dest, 0o644).unwrap();
            file.write_all(b"content").unwrap();
            fs::remove_dir_all(&sub).unwrap();
            let err = if new { file.commit_new() } else { file.commit() }.unwrap_err();
            assert!(matches!(err, AtomicFileError::Io { .. }), "commit_new {new}: {err:?}");
            assert!(err.to_string().contains(&dest.display().to_string()), "{err}");
            assert!(!sub.exists(), "commit_new {new}: nothing recreated");
        }
    }

    #[test]
    fn mode_is_exact_whatever_the_umask() {
        // The test process's umask (022 or stricter) would clear the group and other write bits.
        let dir = tempfile::tempdir().unwrap();
        for (name, mode) in [("shared", 0o666), ("exec", 0o775), ("private", 0o600)] {
            let p = dir.path().join(name);
            write_new_file(&p, b"x", mode).unwrap();
            assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o7777, mode, "{name}");
        }
    }

    #[test]
    fn a_destination_name_near_name_max_still_gets_a_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n".repeat(250));
        write_new_file(&p, b"long", 0o644).unwrap();
        replace_file(&p, b"longer", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"longer");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
