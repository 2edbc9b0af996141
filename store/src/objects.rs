//! Content-addressed objects: each regular file's bytes are kept once, as one inode that every
//! image's rootfs hardlinks to.
//!
//! Hardlinks share an inode, so they share its metadata too: an object is keyed by its content
//! AND the metadata a hardlink would share (mode with setuid/setgid/sticky, uid, gid, the signed
//! xattrs). The name is `<content sha256 hex>-<metadata sha256 hex>` under
//! `objects/sha256/<first 2 hex of content>/`: the first half can be checked against the bytes
//! (an fsck needs no index), the second keeps a setuid copy apart from a plain one. The metadata
//! digest is SHA-256 over a fixed encoding (see [`metadata_digest`]).
//!
//! [`ObjectSink`] is the store's side of verifier-core's [`ContentSink`]: content the signed
//! manifest says a path holds, when an object for it exists already, is only hashed (not
//! written); other content goes to an unnamed `O_TMPFILE` in `objects/tmp` and is linked into
//! place under its key once hashed and checked. Objects of an unpack that fails stay until
//! [`crate::Store::gc`] (their link count is 1). Every object an image uses is sealed with
//! fs-verity where the file system has it ([`crate::verity`]), its digest kept for the record.

use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest as _, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use verifier_core::image::tree::{Hashed, Meta};
use verifier_core::image::{ContentPlan, ContentSink, Placed};
use verifier_core::manifest::{FileEntry, FileType};

/// SHA-256 over the metadata a hardlink shares, in a fixed encoding: a domain tag, the mode's
/// low 12 bits (u32 big-endian), uid and gid (u64 big-endian), then each signed xattr in name
/// order as name, NUL, value length (u64 big-endian), value.
pub fn metadata_digest(mode: u32, uid: u64, gid: u64, xattrs: &BTreeMap<String, Vec<u8>>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"imgsign-object-metadata-v1\0");
    h.update((mode & 0o7777).to_be_bytes());
    h.update(uid.to_be_bytes());
    h.update(gid.to_be_bytes());
    for (name, value) in xattrs {
        if verifier_core::manifest::SIGNED_XATTRS.contains(&name.as_str()) {
            h.update(name.as_bytes());
            h.update([0]);
            h.update((value.len() as u64).to_be_bytes());
            h.update(value);
        }
    }
    h.finalize().into()
}

/// The object name for `content` with `meta`.
pub fn object_key(content: &[u8; 32], meta: &Meta) -> String {
    format!("{}-{}", hex::encode(content), hex::encode(metadata_digest(meta.mode, meta.uid, meta.gid, &meta.xattrs)))
}

/// Where the object `key` lives below the store's `objects/sha256`.
pub fn object_path(objects: &Path, key: &str) -> PathBuf {
    objects.join(&key[..2]).join(key)
}

/// What one unpack did with content.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentStats {
    /// Regular files placed in the tree (hardlinks of the tar not counted).
    pub files: u64,
    /// New objects and their bytes.
    pub objects_written: u64,
    pub bytes_written: u64,
    /// Files whose content was already an object (only hashed, or found once hashed), and their bytes.
    pub objects_reused: u64,
    pub bytes_reused: u64,
    /// Bytes written to a temporary file and dropped because the object turned up meanwhile
    /// (content the signed manifest did not predict for that path, e.g. a lower layer's version).
    pub bytes_discarded: u64,
    /// Distinct objects of the image sealed with fs-verity (0 on a file system without it).
    #[serde(default)]
    pub verity_objects: u64,
}

/// State the sink and the verify-on-write check share during one unpack.
#[derive(Default)]
pub struct Shared {
    pub stats: ContentStats,
    /// Paths that got an empty placeholder (content only hashed and not the expected one).
    pub placeholders: HashSet<Vec<u8>>,
    /// A hardlink asked for a placeholder's content: the unpack must be redone writing every
    /// file (see [`ObjectSink::new`]'s `predict`).
    pub placeholder_linked: bool,
    /// The fs-verity digest of each object the image uses, by object key.
    pub verity: BTreeMap<String, [u8; 32]>,
    /// The store's file system has no fs-verity: no more attempts.
    pub verity_unsupported: bool,
}

impl Shared {
    /// Seals `object` (key `key`) with fs-verity unless done already or unsupported.
    fn seal(&mut self, key: String, object: &Path) -> io::Result<()> {
        if self.verity_unsupported || self.verity.contains_key(&key) {
            return Ok(());
        }
        match crate::verity::seal(object)? {
            Some(digest) => {
                self.verity.insert(key, digest);
                self.stats.verity_objects += 1;
            }
            None => self.verity_unsupported = true,
        }
        Ok(())
    }
}

/// The signed manifest by relative path (`usr/bin/env`), for lookups while unpacking.
pub type Expected = HashMap<Vec<u8>, FileEntry>;

/// Turns the signed manifest into [`Expected`].
pub fn expected_by_path(files: Vec<FileEntry>) -> Expected {
    files.into_iter().map(|e| (e.path.trim_start_matches('/').as_bytes().to_vec(), e)).collect()
}

/// The store's [`ContentSink`].
pub struct ObjectSink {
    objects: PathBuf,
    tmp: PathBuf,
    expected: Rc<Expected>,
    shared: Rc<RefCell<Shared>>,
    /// The object `plan` chose to only hash against, with its content digest.
    pending: Option<([u8; 32], PathBuf)>,
    predict: bool,
}

impl ObjectSink {
    /// `objects` is the store's `objects/sha256`, `tmp` its `objects/tmp`. With `predict`,
    /// content the signed manifest gives a path is only hashed when its object exists (a lower
    /// layer's different version then becomes an empty placeholder, see [`Placed::Empty`]);
    /// without, every file is written to a temporary file first (the fallback when a hardlink
    /// turns out to need a placeholder's bytes).
    pub fn new(
        objects: PathBuf,
        tmp: PathBuf,
        expected: Rc<Expected>,
        shared: Rc<RefCell<Shared>>,
        predict: bool,
    ) -> Self {
        Self { objects, tmp, expected, shared, pending: None, predict }
    }

    /// The content digest the signed manifest gives `path`, for a file or hardlink.
    fn expected_content(&self, path: &[u8]) -> Option<[u8; 32]> {
        let entry = self.expected.get(path)?;
        matches!(entry.kind, FileType::File | FileType::Hardlink).then_some(())?;
        entry.sha256.map(|d| d.0)
    }

    /// Gives the unnamed temporary file a name: links it as `dest` (`EEXIST` when taken).
    fn link_tmpfile(file: &File, dest: &Path) -> io::Result<()> {
        let dir = dest.parent().expect("object paths have a parent");
        let name = dest.file_name().expect("object paths have a name");
        let dir_fd = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        match rustix::fs::linkat(file, "", &dir_fd, name, AtFlags::EMPTY_PATH) {
            Ok(()) => Ok(()),
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link works without it.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::PERM) => {
                let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
                rustix::fs::linkat(rustix::fs::CWD, proc.as_str(), &dir_fd, name, AtFlags::SYMLINK_FOLLOW)
                    .map_err(Into::into)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl ContentSink for ObjectSink {
    fn plan(&mut self, path: &[u8], meta: &Meta) -> io::Result<ContentPlan> {
        self.pending = None;
        if let Some(content) = self.expected_content(path).filter(|_| self.predict) {
            let object = object_path(&self.objects, &object_key(&content, meta));
            if std::fs::symlink_metadata(&object).is_ok_and(|m| m.is_file()) {
                self.pending = Some((content, object));
                return Ok(ContentPlan::HashOnly);
            }
        }
        let file = rustix::fs::open(
            &self.tmp,
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(ContentPlan::Write(File::from(file)))
    }

    fn place(&mut self, path: &[u8], meta: &Meta, content: Hashed, written: Option<File>) -> io::Result<Placed> {
        let mut shared = self.shared.borrow_mut();
        shared.stats.files += 1;
        let key = object_key(&content.sha256, meta);
        let Some(file) = written else {
            return match self.pending.take() {
                Some((expected, object)) if expected == content.sha256 => {
                    shared.stats.objects_reused += 1;
                    shared.stats.bytes_reused += content.size;
                    shared.seal(key, &object)?;
                    Ok(Placed::Link(object))
                }
                _ => {
                    shared.placeholders.insert(path.to_vec());
                    Ok(Placed::Empty)
                }
            };
        };
        let object = object_path(&self.objects, &key);
        if let Some(dir) = object.parent() {
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        match Self::link_tmpfile(&file, &object) {
            Ok(()) => {
                shared.stats.objects_written += 1;
                shared.stats.bytes_written += content.size;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                shared.stats.objects_reused += 1;
                shared.stats.bytes_reused += content.size;
                shared.stats.bytes_discarded += content.size;
            }
            Err(e) => return Err(e),
        }
        // fs-verity needs the object's only writer closed.
        drop(file);
        shared.seal(key, &object)?;
        Ok(Placed::Link(object))
    }
}
