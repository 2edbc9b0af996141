//! `dir:` sources: a plain directory tree (for example a host's own binaries), walked in path
//! order. Files are opened with `O_NOFOLLOW` and checked to be the inode that was listed, so a
//! path swapped for a symlink during the walk is caught. Files sharing an inode are recorded as
//! a file (the first path) and hardlinks to it, the way a tar layer records them. A file's code
//! mark is taken from the bytes as they are hashed.

use super::{ImageContent, ImageIdentity, ImageSource, LayerDescriptor, ScannedImage, SourceError, SourceKind};
use crate::code::{CodeKind, CodeSniffer};
use crate::digest::Sha256Digest;
use crate::manifest::{FileEntry, FileType, SIGNED_XATTRS};
use crate::progress::Progress;
use base64::Engine as _;
use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory tree as an image: no layers, no digests but the per-file ones.
pub(super) struct DirSource {
    path: PathBuf,
    identity: ImageIdentity,
}

impl DirSource {
    pub(super) fn open(path: &Path) -> Result<Self, SourceError> {
        let identity = ImageIdentity {
            kind: SourceKind::Dir,
            default_name: super::basename(path),
            manifest_digest: None,
            config_digest: None,
            layers: Vec::new(),
        };
        Ok(Self { path: path.to_path_buf(), identity })
    }
}

impl ImageSource for DirSource {
    fn identity(&self) -> &ImageIdentity {
        &self.identity
    }

    fn content(&self) -> ImageContent<'_> {
        ImageContent::Directory(&self.path)
    }

    fn open_layer(&self, layer: &LayerDescriptor) -> Result<Box<dyn Read + Send>, SourceError> {
        Err(SourceError::Layout {
            path: self.path.clone(),
            reason: format!("a dir: source has no layer {}", layer.label),
        })
    }
}

pub(super) fn scan(
    root: &Path,
    identity: ImageIdentity,
    progress: Arc<dyn Progress>,
) -> Result<ScannedImage, SourceError> {
    let meta = fs::symlink_metadata(root).map_err(|source| SourceError::Io { path: root.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(SourceError::Layout { path: root.to_path_buf(), reason: "not a directory".into() });
    }
    progress.begin("hashing files", None);
    let mut walker = Walker { files: Vec::new(), digests: HashMap::new(), buffer: vec![0; 256 * 1024], progress };
    walker.walk(root, "")?;
    walker.progress.end();
    let mut listed = walker.files;
    listed.sort_by(|a, b| a.0.path.as_bytes().cmp(b.0.path.as_bytes()));
    let inodes: Vec<Option<(u64, u64)>> = listed.iter().map(|(_, inode)| *inode).collect();
    let mut files: Vec<FileEntry> = listed.into_iter().map(|(entry, _)| entry).collect();
    crate::manifest::canonicalize_hardlinks(&mut files, &inodes);
    Ok(ScannedImage { identity, files })
}

/// What a file's content hashed to.
#[derive(Clone, Copy)]
struct Content {
    sha256: Sha256Digest,
    size: u64,
    code: Option<CodeKind>,
}

struct Walker {
    /// Entries with the (device, inode) of multiply-linked files.
    files: Vec<(FileEntry, Option<(u64, u64)>)>,
    /// Content of multiply-linked inodes already hashed.
    digests: HashMap<(u64, u64), Content>,
    buffer: Vec<u8>,
    progress: Arc<dyn Progress>,
}

impl Walker {
    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<(), SourceError> {
        fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SourceError + '_ {
            move |source| SourceError::Io { path: path.to_path_buf(), source }
        }
        let mut children: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|e| e.map(|e| (e.file_name().as_bytes().to_vec(), e.path())))
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        children.sort();
        for (name, path) in children {
            let name = String::from_utf8(name)
                .map_err(|_| SourceError::Layout { path: path.clone(), reason: "file name is not UTF-8".into() })?;
            let image_path = format!("{prefix}/{name}");
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let entry = self.entry(&path, &image_path, &meta)?;
            let is_dir = entry.kind == FileType::Dir;
            let linked = (entry.kind == FileType::File && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
            self.files.push((entry, linked));
            if is_dir {
                self.walk(&path, &image_path)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, image_path: &str, meta: &Metadata) -> Result<FileEntry, SourceError> {
        let ft = meta.file_type();
        let mut entry = FileEntry {
            path: image_path.to_string(),
            kind: FileType::File,
            mode: meta.mode() & 0o7777,
            uid: meta.uid() as u64,
            gid: meta.gid() as u64,
            size: None,
            sha256: None,
            code: None,
            link_target: None,
            dev_major: None,
            dev_minor: None,
            xattrs: privilege_xattrs(path),
        };
        if ft.is_dir() {
            entry.kind = FileType::Dir;
        } else if ft.is_symlink() {
            entry.kind = FileType::Symlink;
            let target = fs::read_link(path).map_err(|source| SourceError::Io { path: path.to_path_buf(), source })?;
            entry.link_target = Some(String::from_utf8(target.as_os_str().as_bytes().to_vec()).map_err(|_| {
                SourceError::Layout { path: path.to_path_buf(), reason: "symlink target is not UTF-8".into() }
            })?);
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            let content = match self.digests.get(&key) {
                Some(known) => *known,
                None => {
                    let hashed = self.hash(path, meta)?;
                    if meta.nlink() > 1 {
                        self.digests.insert(key, hashed);
                    }
                    hashed
                }
            };
            entry.size = Some(content.size);
            entry.sha256 = Some(content.sha256);
            entry.code = content.code;
        } else if ft.is_char_device() || ft.is_block_device() {
            entry.kind = if ft.is_char_device() { FileType::Char } else { FileType::Block };
            let rdev = meta.rdev();
            entry.dev_major = Some(rustix::fs::major(rdev));
            entry.dev_minor = Some(rustix::fs::minor(rdev));
        } else if ft.is_fifo() {
            entry.kind = FileType::Fifo;
        } else {
            return Err(SourceError::UnsupportedFile { path: path.to_path_buf(), kind: "socket" });
        }
        Ok(entry)
    }

    fn hash(&mut self, path: &Path, listed: &Metadata) -> Result<Content, SourceError> {
        let io_err = |source: std::io::Error| SourceError::Io { path: path.to_path_buf(), source };
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err(e.into()))?;
        let mut file = File::from(fd);
        let opened = file.metadata().map_err(io_err)?;
        if opened.ino() != listed.ino() || opened.dev() != listed.dev() {
            return Err(SourceError::Layout {
                path: path.to_path_buf(),
                reason: "file was replaced while it was being read".into(),
            });
        }
        let mut hasher = Sha256::new();
        let mut code = CodeSniffer::new();
        let mut size = 0u64;
        loop {
            let n = file.read(&mut self.buffer).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&self.buffer[..n]);
            code.update(&self.buffer[..n]);
            size += n as u64;
            self.progress.advance(n as u64);
        }
        Ok(Content { sha256: Sha256Digest(hasher.finalize().into()), size, code: code.finish() })
    }
}

fn privilege_xattrs(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in SIGNED_XATTRS {
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = rustix::fs::lgetxattr(path, *name, &mut buf) {
            out.insert(name.to_string(), base64::engine::general_purpose::STANDARD.encode(&buf[..n]));
        }
    }
    out
}
