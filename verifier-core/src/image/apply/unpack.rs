//! The unpacking applier: writes the flattened image into a new directory while hashing each
//! file, mirroring every change the layer rules make (whiteouts, opaque directories and
//! replacements become removals on disk). All writes go through [`InRoot`], so nothing lands
//! outside the destination even if the rules let something through. Owners, modes (setuid,
//! setgid and sticky included, set after the owner), symlinks, hardlinks and `security.capability`
//! are written; device nodes and fifos are recorded in the manifest but only created when
//! [`UnpackOptions::create_devices`] says so. Directory metadata is set once every layer is
//! applied, so a read-only directory does not stop its own layer from filling it.
//!
//! The returned manifest is the one the hashing applier computes for the same image. A caller
//! that must not let unexpected content land (verify-on-write) passes a [`UnpackOptions::check`]
//! that sees each node as it is written and may refuse it; on any error everything written is
//! removed.
//!
//! A content store (the local image store of `imgsign run`) passes a [`ContentSink`]: regular
//! files' bytes then go to a file the sink gives (or are only hashed, when the sink says it
//! already holds them), the check sees them before the sink keeps them, and the tree gets a
//! hardlink to what the sink kept. What the sink does with content (naming, deduplication,
//! bookkeeping) is its own policy; the layer rules and the in-root writes stay here.

use crate::image::inroot::{set_metadata, InRoot, Owner, SpecialKind};
use crate::image::source::{self, ImageContent, ImageIdentity, ImageSource, SourceError};
use crate::image::tar::TarReader;
use crate::image::tree::{Applier, ApplyError, FileTree, Hashed, Meta};
use crate::manifest::{FileEntry, FileType};
use crate::progress::Progress;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const WRITE_BUFFER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot unpack into {path}")]
    Destination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: a dir: image is not made of layers and is not unpacked")]
    NotLayered { path: PathBuf },
    #[error("cannot set the metadata of directory {path:?}")]
    DirectoryMetadata {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// A node as it was written, for [`UnpackOptions::check`]. Hardlinks name the tar's target; the
/// final manifest puts hardlink groups in canonical order.
#[derive(Debug)]
pub struct Written<'a> {
    /// Relative image path (`usr/bin/env`).
    pub path: &'a [u8],
    pub kind: FileType,
    /// Metadata; `None` for a hardlink (it is its target's).
    pub meta: Option<&'a Meta>,
    /// Digest and size of a regular file's content.
    pub content: Option<Hashed>,
    pub link_target: Option<&'a [u8]>,
}

/// Refuses a written node with a reason; the unpack stops and removes what it wrote.
pub type WriteCheck<'a> = dyn FnMut(&Written<'_>) -> Result<(), String> + 'a;

/// What a [`ContentSink`] wants done with the next regular file's bytes.
pub enum ContentPlan {
    /// Write them into this (new, empty) file; the unpacker sets its owner, mode and xattrs.
    Write(std::fs::File),
    /// Only hash them: the sink expects to hold them already.
    HashOnly,
}

/// What the tree gets at a regular file's path once the sink has placed its content.
pub enum Placed {
    /// A hardlink to this file (outside the root, owned by the sink), with the content and the
    /// metadata the entry asked for.
    Link(PathBuf),
    /// An empty file: the content was only hashed and is not what the sink expected (a lower
    /// layer's version, to be replaced; the manifest still records its digest, so a caller that
    /// compares the final manifest sees any that stays).
    Empty,
}

/// Where regular files' bytes go when a content store keeps them (see the module comment).
/// Paths are relative image paths; errors name nothing (the unpacker adds the path).
pub trait ContentSink {
    /// Before the content of `path` is read: write it somewhere, or only hash it.
    fn plan(&mut self, path: &[u8], meta: &Meta) -> io::Result<ContentPlan>;
    /// After it was read and hashed as `content` and the check accepted it: keep it (`written`
    /// is the file [`ContentPlan::Write`] gave, metadata set; `None` when only hashed) and say
    /// what the tree links to.
    fn place(
        &mut self,
        path: &[u8],
        meta: &Meta,
        content: Hashed,
        written: Option<std::fs::File>,
    ) -> io::Result<Placed>;
}

/// How to unpack. The default creates no device nodes or fifos, checks nothing and writes
/// regular files in place.
#[derive(Default)]
pub struct UnpackOptions<'a> {
    /// Create device nodes and fifos (otherwise they are only in the manifest).
    pub create_devices: bool,
    /// Called after each node is written (for a regular file with a `content` sink, before the
    /// sink keeps it); an `Err` aborts the unpack.
    pub check: Option<Box<WriteCheck<'a>>>,
    /// Where regular files' bytes go; `None` writes them into the tree itself.
    pub content: Option<Box<dyn ContentSink + 'a>>,
}

/// A flattened image on disk.
#[derive(Debug)]
pub struct UnpackedImage {
    pub identity: ImageIdentity,
    /// The manifest of what was written, as [`crate::source::scan`] computes it.
    pub files: Vec<FileEntry>,
    /// The directory holding the tree.
    pub root: PathBuf,
}

/// Unpacks the image `image` names into `dest`, which must not exist yet (its parent must).
/// `dest` itself is created mode 0700 and left so: while the tree is written, and until the
/// caller decides, no other user can reach the setuid files inside it.
pub fn unpack(
    image: &crate::image::source::ImageRef,
    dest: &Path,
    options: UnpackOptions<'_>,
    progress: Arc<dyn Progress>,
) -> Result<UnpackedImage, UnpackError> {
    unpack_source(source::open(image)?.as_ref(), dest, options, progress)
}

/// Unpacks an opened image into `dest` (which must not exist yet). On error, `dest` is removed.
pub fn unpack_source(
    image: &dyn ImageSource,
    dest: &Path,
    options: UnpackOptions<'_>,
    progress: Arc<dyn Progress>,
) -> Result<UnpackedImage, UnpackError> {
    if let ImageContent::Directory(path) = image.content() {
        return Err(UnpackError::NotLayered { path: path.to_path_buf() });
    }
    let dest_err = |source| UnpackError::Destination { path: dest.to_path_buf(), source };
    std::fs::DirBuilder::new().mode(0o700).create(dest).map_err(dest_err)?;
    let result = InRoot::open(dest).map_err(dest_err).and_then(|root| write_tree(image, root, options, progress));
    match result {
        Ok((identity, files)) => Ok(UnpackedImage { identity, files, root: dest.to_path_buf() }),
        Err(e) => {
            // remove_dir_all never follows symlinks inside the tree.
            let _ = std::fs::remove_dir_all(dest);
            Err(e)
        }
    }
}

use std::os::unix::fs::DirBuilderExt as _;

fn write_tree(
    image: &dyn ImageSource,
    root: InRoot,
    options: UnpackOptions<'_>,
    progress: Arc<dyn Progress>,
) -> Result<(ImageIdentity, Vec<FileEntry>), UnpackError> {
    let mut applier = UnpackApplier::new(root, options);
    let mut tree = FileTree::new();
    let identity = source::read_layers(image, &mut tree, &mut applier, progress)?;
    applier.finish(&tree)?;
    Ok((identity, source::flatten(tree)?))
}

/// Writes every change of the tree under a root directory.
pub struct UnpackApplier<'a> {
    root: InRoot,
    buffer: Vec<u8>,
    options: UnpackOptions<'a>,
}

fn io_at(path: &[u8]) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io { path: path.to_vec(), source }
}

fn owner(meta: &Meta) -> Owner {
    Owner { uid: meta.uid, gid: meta.gid }
}

impl<'a> UnpackApplier<'a> {
    /// Writes below `root` (which should be empty).
    pub fn new(root: InRoot, options: UnpackOptions<'a>) -> Self {
        Self { root, buffer: vec![0; WRITE_BUFFER], options }
    }

    fn check(&mut self, written: Written<'_>) -> Result<(), ApplyError> {
        match &mut self.options.check {
            Some(check) => check(&written).map_err(ApplyError::Refused),
            None => Ok(()),
        }
    }

    /// A regular file through the content sink: written to the sink's file (or only hashed),
    /// checked, kept by the sink, then linked into the tree.
    fn file_into_sink<R: Read>(
        &mut self,
        path: &[u8],
        meta: &Meta,
        tar: &mut TarReader<R>,
    ) -> Result<Hashed, ApplyError> {
        let sink = self.options.content.as_mut().expect("called with a sink");
        let mut written = match sink.plan(path, meta).map_err(io_at(path))? {
            ContentPlan::Write(file) => Some(file),
            ContentPlan::HashOnly => None,
        };
        let content = crate::image::apply::hash::hash_content(tar, &mut self.buffer, |chunk| match &mut written {
            Some(file) => file.write_all(chunk).map_err(io_at(path)),
            None => Ok(()),
        })?;
        if let Some(file) = &written {
            set_metadata(file, owner(meta), meta.mode, &meta.xattrs).map_err(io_at(path))?;
        }
        self.check(Written {
            path,
            kind: FileType::File,
            meta: Some(meta),
            content: Some(content),
            link_target: None,
        })?;
        let sink = self.options.content.as_mut().expect("called with a sink");
        match sink.place(path, meta, content, written).map_err(io_at(path))? {
            Placed::Link(object) => self.root.link_from(path, &object).map_err(io_at(path))?,
            Placed::Empty => drop(self.root.create_file(path).map_err(io_at(path))?),
        }
        Ok(content)
    }

    /// Sets every directory's final metadata (the root's own is the caller's).
    pub fn finish(&mut self, tree: &FileTree<Hashed>) -> Result<(), UnpackError> {
        for dir in tree.directories() {
            let fail = |source| UnpackError::DirectoryMetadata {
                path: String::from_utf8_lossy(dir.path).into_owned(),
                source,
            };
            let fd = self.root.open_dir(dir.path).map_err(fail)?;
            set_metadata(&fd, owner(dir.meta), dir.meta.mode, &dir.meta.xattrs).map_err(fail)?;
        }
        Ok(())
    }
}

impl Applier for UnpackApplier<'_> {
    type Content = Hashed;

    fn file<R: Read>(&mut self, path: &[u8], meta: &Meta, tar: &mut TarReader<R>) -> Result<Hashed, ApplyError> {
        if self.options.content.is_some() {
            return self.file_into_sink(path, meta, tar);
        }
        let mut file = self.root.create_file(path).map_err(io_at(path))?;
        let content = crate::image::apply::hash::hash_content(tar, &mut self.buffer, |chunk| {
            file.write_all(chunk).map_err(io_at(path))
        })?;
        set_metadata(&file, owner(meta), meta.mode, &meta.xattrs).map_err(io_at(path))?;
        self.check(Written {
            path,
            kind: FileType::File,
            meta: Some(meta),
            content: Some(content),
            link_target: None,
        })?;
        Ok(content)
    }

    fn directory(&mut self, path: &[u8], meta: &Meta) -> Result<(), ApplyError> {
        self.root.mkdir(path).map_err(io_at(path))?;
        self.check(Written { path, kind: FileType::Dir, meta: Some(meta), content: None, link_target: None })
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &Meta) -> Result<(), ApplyError> {
        self.root.symlink(path, target).map_err(io_at(path))?;
        self.root.chown_nofollow(path, owner(meta)).map_err(io_at(path))?;
        self.check(Written {
            path,
            kind: FileType::Symlink,
            meta: Some(meta),
            content: None,
            link_target: Some(target),
        })
    }

    fn hardlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), ApplyError> {
        self.root.hardlink(path, target).map_err(io_at(path))?;
        self.check(Written { path, kind: FileType::Hardlink, meta: None, content: None, link_target: Some(target) })
    }

    fn special(&mut self, path: &[u8], kind: FileType, dev: Option<(u32, u32)>, meta: &Meta) -> Result<(), ApplyError> {
        if self.options.create_devices {
            let special = match kind {
                FileType::Char => SpecialKind::Char,
                FileType::Block => SpecialKind::Block,
                _ => SpecialKind::Fifo,
            };
            self.root.mknod(path, special, dev.unwrap_or((0, 0)), meta.mode, owner(meta)).map_err(io_at(path))?;
        }
        self.check(Written { path, kind, meta: Some(meta), content: None, link_target: None })
    }

    fn remove(&mut self, path: &[u8], kind: FileType) -> Result<(), ApplyError> {
        if matches!(kind, FileType::Char | FileType::Block | FileType::Fifo) && !self.options.create_devices {
            return Ok(()); // never written
        }
        self.root.remove(path, kind == FileType::Dir).map_err(io_at(path))
    }
}
