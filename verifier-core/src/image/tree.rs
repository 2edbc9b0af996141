//! The OCI layer rules, once: applies layer tar streams in order (whiteouts, opaque directories,
//! hardlinks, implicit parents, later layers overriding earlier ones) into the flattened tree a
//! runtime would see. What happens to a file's bytes and to each change of the tree is the
//! [`Applier`]'s business: the hashing applier only hashes, the unpacking applier mirrors every
//! change on disk. The tree is generic in the content its files carry (as composefs-rs's tree is
//! generic in its leaf content), so both appliers share every rule below.
//!
//! Where runtimes could disagree about the result, the layer is refused instead: an entry below a
//! path that is not a directory (an unpacker that follows the symlink writes somewhere else than
//! the manifest says), the same path twice in one layer, `..`, absolute or non-UTF-8 names.

use crate::image::tar::{EntryHeader, EntryKind, TarError, TarReader};
use crate::manifest::{CodeKind, FileEntry, FileType};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("entry {path:?} at byte {offset}: absolute path")]
    AbsolutePath { path: String, offset: u64 },
    #[error("entry {path:?} at byte {offset}: path contains '..'")]
    DotDot { path: String, offset: u64 },
    #[error("entry {path:?} at byte {offset}: bare whiteout '.wh.' names nothing")]
    BareWhiteout { path: String, offset: u64 },
    #[error("entry {path:?} at byte {offset}: unsupported special whiteout")]
    UnsupportedWhiteout { path: String, offset: u64 },
    #[error("entry {path:?} at byte {offset}: duplicate entry for one path within a layer")]
    Duplicate { path: String, offset: u64 },
    #[error("entry {path:?} at byte {offset}: parent {parent:?} is a {kind}, not a directory")]
    ParentNotDirectory { path: String, offset: u64, parent: String, kind: &'static str },
    #[error("entry {path:?} at byte {offset}: hardlink target {target:?} is not a regular file present in the image")]
    BadHardlink { path: String, offset: u64, target: String },
    #[error("entry {path:?} at byte {offset}: name or link target is not valid UTF-8")]
    NonUtf8 { path: String, offset: u64 },
    #[error("entry {path:?} at byte {offset}: cannot write {target:?}")]
    Write {
        path: String,
        offset: u64,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("entry {path:?} at byte {offset}: refused by the write check: {reason}")]
    Refused { path: String, offset: u64, reason: String },
}

/// Why an applier could not do what the rules asked.
#[derive(Debug)]
pub enum ApplyError {
    /// Reading the entry's content failed.
    Tar(TarError),
    /// A file system operation on `path` (a relative image path) failed.
    Io { path: Vec<u8>, source: io::Error },
    /// The caller's check refused what was written.
    Refused(String),
}

/// Metadata of an entry as the rules settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Raw values of the signed xattrs (see [`crate::manifest::SIGNED_XATTRS`]).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    fn of(header: &EntryHeader) -> Self {
        let xattrs = header
            .xattrs
            .iter()
            .filter(|(k, _)| crate::manifest::SIGNED_XATTRS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Meta { mode: header.mode, uid: header.uid, gid: header.gid, xattrs }
    }

    /// A directory the runtime creates because an entry needs it (0755, root).
    fn implicit_dir() -> Self {
        Meta { mode: 0o755, uid: 0, gid: 0, xattrs: BTreeMap::new() }
    }
}

/// What a file node's content turned into; the manifest needs its digest, size and code mark.
pub trait LeafContent: Clone {
    fn sha256(&self) -> [u8; 32];
    fn size(&self) -> u64;
    fn code(&self) -> Option<CodeKind>;
}

/// Content hashed on the way: SHA-256, size, and whether it starts as code does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub sha256: [u8; 32],
    pub size: u64,
    pub code: Option<CodeKind>,
}

impl LeafContent for Hashed {
    fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn code(&self) -> Option<CodeKind> {
        self.code
    }
}

/// What is done with each change the rules make. Paths are relative image paths (`usr/bin/env`,
/// normalised, never empty, never with `..`); the rules have already checked that every parent
/// exists as a directory and that the path is free (anything there was removed first).
pub trait Applier {
    type Content: LeafContent;
    /// A regular file: read its content from `tar` to the end.
    fn file<R: Read>(&mut self, path: &[u8], meta: &Meta, tar: &mut TarReader<R>) -> Result<Self::Content, ApplyError>;
    /// A directory where there was none (explicit, or an implicit parent).
    fn directory(&mut self, path: &[u8], meta: &Meta) -> Result<(), ApplyError>;
    /// A symbolic link (the target as stored).
    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &Meta) -> Result<(), ApplyError>;
    /// A hardlink to `target`, a regular file already in the tree.
    fn hardlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), ApplyError>;
    /// A device node or fifo.
    fn special(&mut self, path: &[u8], kind: FileType, dev: Option<(u32, u32)>, meta: &Meta) -> Result<(), ApplyError>;
    /// Removes `path` (of `kind`); a directory is only removed once everything below it is gone.
    fn remove(&mut self, path: &[u8], kind: FileType) -> Result<(), ApplyError>;
}

/// A node of the flattened tree.
#[derive(Debug, Clone)]
struct Node<C> {
    kind: FileType,
    meta: Meta,
    content: Option<C>,
    link_target: Option<Vec<u8>>,
    dev: Option<(u32, u32)>,
    /// Index of the layer that last wrote this node: whiteouts only hide lower layers.
    layer: usize,
    /// Identity of the inode behind a file or hardlink; paths sharing one are a hardlink group.
    inode: Option<u64>,
}

/// Counts of what one layer held.
#[derive(Debug, Default, Clone, Copy)]
pub struct LayerStats {
    pub entries: u64,
    pub content_bytes: u64,
    pub whiteouts: u64,
}

/// A directory of the flattened tree with its final metadata (for appliers that set directory
/// metadata once every layer is applied).
pub struct DirectoryMeta<'a> {
    pub path: &'a [u8],
    pub meta: &'a Meta,
}

/// The flattened file tree, keyed by normalised relative path bytes (`usr/bin/env`), generic in
/// what its files' content became.
pub struct FileTree<C> {
    nodes: BTreeMap<Vec<u8>, Node<C>>,
    next_inode: u64,
}

impl<C> Default for FileTree<C> {
    fn default() -> Self {
        Self { nodes: BTreeMap::new(), next_inode: 0 }
    }
}

/// Attaches the entry's name and offset to an applier's error.
fn entry_error(header: &EntryHeader) -> impl Fn(ApplyError) -> LayerError + '_ {
    move |e| match e {
        ApplyError::Tar(t) => LayerError::Tar(t),
        ApplyError::Io { path, source } => LayerError::Write {
            path: header.path_lossy(),
            offset: header.offset,
            target: String::from_utf8_lossy(&path).into_owned(),
            source,
        },
        ApplyError::Refused(reason) => LayerError::Refused { path: header.path_lossy(), offset: header.offset, reason },
    }
}

impl<C: LeafContent> FileTree<C> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Applies one layer on top of the tree, telling `applier` about every change.
    pub fn apply_layer<R: Read, A: Applier<Content = C>>(
        &mut self,
        layer: usize,
        tar: &mut TarReader<R>,
        applier: &mut A,
    ) -> Result<LayerStats, LayerError> {
        let mut stats = LayerStats::default();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        while let Some(header) = tar.next_entry()? {
            stats.entries += 1;
            let path = normalize(&header.path, &header)?;
            let utf8 = std::str::from_utf8(&path).is_ok()
                && header.link_target.as_deref().is_none_or(|t| std::str::from_utf8(t).is_ok());
            if !utf8 {
                return Err(LayerError::NonUtf8 { path: header.path_lossy(), offset: header.offset });
            }
            if !seen.insert(path.clone()) {
                return Err(LayerError::Duplicate { path: header.path_lossy(), offset: header.offset });
            }
            let (parent, base) = split_parent(&path);
            if base.starts_with(WHITEOUT_PREFIX) {
                stats.whiteouts += 1;
                self.apply_whiteout(layer, &header, parent, base, applier)?;
                continue;
            }
            if path.is_empty() {
                continue; // the root directory itself: its metadata is the runtime's
            }
            self.ensure_parents(layer, &header, parent, applier)?;
            let fail = entry_error(&header);
            let kind = match header.kind {
                EntryKind::File => FileType::File,
                EntryKind::HardLink => FileType::Hardlink,
                EntryKind::Symlink => FileType::Symlink,
                EntryKind::Directory => FileType::Dir,
                EntryKind::CharDevice => FileType::Char,
                EntryKind::BlockDevice => FileType::Block,
                EntryKind::Fifo => FileType::Fifo,
            };
            // A hardlink's target is checked before anything on the path is removed.
            let link = match kind {
                FileType::Hardlink => Some(self.hardlink_target(&header, &path)?),
                _ => None,
            };
            self.make_room(&path, kind, applier).map_err(&fail)?;
            let node = match kind {
                FileType::File => {
                    let meta = Meta::of(&header);
                    let content = applier.file(&path, &meta, tar).map_err(&fail)?;
                    stats.content_bytes += content.size();
                    self.next_inode += 1;
                    Node {
                        kind,
                        meta,
                        content: Some(content),
                        link_target: None,
                        dev: None,
                        layer,
                        inode: Some(self.next_inode),
                    }
                }
                FileType::Hardlink => {
                    let target = link.expect("hardlink target resolved above");
                    applier.hardlink(&path, &target).map_err(&fail)?;
                    // A hardlink shares the target's inode: its metadata and content are the target's.
                    let target_node = &self.nodes[&target];
                    Node {
                        kind,
                        meta: target_node.meta.clone(),
                        content: target_node.content.clone(),
                        link_target: Some([b"/".as_slice(), &target].concat()),
                        dev: None,
                        layer,
                        inode: target_node.inode,
                    }
                }
                FileType::Dir => {
                    let meta = Meta::of(&header);
                    if !self.nodes.get(&path).is_some_and(|n| n.kind == FileType::Dir) {
                        applier.directory(&path, &meta).map_err(&fail)?;
                    }
                    Node { kind, meta, content: None, link_target: None, dev: None, layer, inode: None }
                }
                FileType::Symlink => {
                    let meta = Meta::of(&header);
                    let target = header.link_target.clone().unwrap_or_default();
                    applier.symlink(&path, &target, &meta).map_err(&fail)?;
                    Node { kind, meta, content: None, link_target: Some(target), dev: None, layer, inode: None }
                }
                FileType::Char | FileType::Block | FileType::Fifo => {
                    let meta = Meta::of(&header);
                    let dev = (kind != FileType::Fifo).then_some((header.dev_major, header.dev_minor));
                    applier.special(&path, kind, dev, &meta).map_err(&fail)?;
                    Node { kind, meta, content: None, link_target: None, dev, layer, inode: None }
                }
            };
            self.nodes.insert(path, node);
        }
        Ok(stats)
    }

    /// Frees `path` for a new node of `kind`: a non-directory replacing anything, or anything
    /// replacing a non-directory, removes what was there (with its subtree). Directory over
    /// directory keeps the children and takes the new metadata.
    fn make_room<A: Applier<Content = C>>(
        &mut self,
        path: &[u8],
        kind: FileType,
        applier: &mut A,
    ) -> Result<(), ApplyError> {
        let Some(old) = self.nodes.get(path).map(|n| n.kind) else { return Ok(()) };
        if old == FileType::Dir && kind == FileType::Dir {
            return Ok(());
        }
        if old == FileType::Dir {
            self.remove_children(path, usize::MAX, applier)?;
        }
        applier.remove(path, old)?;
        self.nodes.remove(path);
        Ok(())
    }

    /// The normalised target of a hardlink entry at `path`: a regular file in the tree that
    /// putting the link in place does not remove (not the path itself, nor below it).
    fn hardlink_target(&self, header: &EntryHeader, path: &[u8]) -> Result<Vec<u8>, LayerError> {
        let raw_target = header.link_target.as_deref().unwrap_or_default();
        let bad = || LayerError::BadHardlink {
            path: header.path_lossy(),
            offset: header.offset,
            target: String::from_utf8_lossy(raw_target).into_owned(),
        };
        let target = normalize(raw_target, header).map_err(|_| bad())?;
        if target == path || target.starts_with(&join(path, b"")) {
            return Err(bad());
        }
        match self.nodes.get(&target) {
            Some(node) if matches!(node.kind, FileType::File | FileType::Hardlink) => Ok(target),
            _ => Err(bad()),
        }
    }

    fn apply_whiteout<A: Applier<Content = C>>(
        &mut self,
        layer: usize,
        header: &EntryHeader,
        parent: &[u8],
        base: &[u8],
        applier: &mut A,
    ) -> Result<(), LayerError> {
        let fail = entry_error(header);
        if base == OPAQUE_MARKER {
            // Hide everything below the directory that came from lower layers.
            return self.remove_children(parent, layer, applier).map_err(fail);
        }
        let name = &base[WHITEOUT_PREFIX.len()..];
        if name.is_empty() {
            return Err(LayerError::BareWhiteout { path: header.path_lossy(), offset: header.offset });
        }
        if name.starts_with(WHITEOUT_PREFIX) || name == b"." || name == b".." {
            return Err(LayerError::UnsupportedWhiteout { path: header.path_lossy(), offset: header.offset });
        }
        let target = join(parent, name);
        self.remove_children(&target, layer, applier).map_err(&fail)?;
        // A directory this layer already wrote into stays (as the runtime leaves it): only what
        // lower layers put below it is hidden.
        if !self.has_children(&target) {
            if let Some(node) = self.nodes.get(&target).filter(|n| n.layer < layer) {
                applier.remove(&target, node.kind).map_err(&fail)?;
                self.nodes.remove(&target);
            }
        }
        Ok(())
    }

    fn has_children(&self, dir: &[u8]) -> bool {
        let prefix = join(dir, b"");
        self.nodes.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Creates missing parents as the runtime would (0755, root) and refuses a parent that
    /// exists but is not a directory.
    fn ensure_parents<A: Applier<Content = C>>(
        &mut self,
        layer: usize,
        header: &EntryHeader,
        parent: &[u8],
        applier: &mut A,
    ) -> Result<(), LayerError> {
        if parent.is_empty() {
            return Ok(());
        }
        let mut end = 0;
        loop {
            let next = parent[end..].iter().position(|&b| b == b'/').map(|p| end + p);
            let prefix = &parent[..next.unwrap_or(parent.len())];
            match self.nodes.get(prefix) {
                Some(node) if node.kind == FileType::Dir => {}
                Some(node) => {
                    return Err(LayerError::ParentNotDirectory {
                        path: header.path_lossy(),
                        offset: header.offset,
                        parent: String::from_utf8_lossy(prefix).into_owned(),
                        kind: file_type_name(node.kind),
                    });
                }
                None => {
                    let meta = Meta::implicit_dir();
                    applier.directory(prefix, &meta).map_err(entry_error(header))?;
                    let node = Node {
                        kind: FileType::Dir,
                        meta,
                        content: None,
                        link_target: None,
                        dev: None,
                        layer,
                        inode: None,
                    };
                    self.nodes.insert(prefix.to_vec(), node);
                }
            }
            match next {
                Some(p) => end = p + 1,
                None => return Ok(()),
            }
        }
    }

    /// Removes every node strictly below `dir` written by a layer lower than `layer`, deepest
    /// first. A directory that still holds a node this layer wrote stays.
    fn remove_children<A: Applier<Content = C>>(
        &mut self,
        dir: &[u8],
        layer: usize,
        applier: &mut A,
    ) -> Result<(), ApplyError> {
        let prefix = if dir.is_empty() { Vec::new() } else { join(dir, b"") };
        let doomed: Vec<(Vec<u8>, FileType)> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, n)| n.layer < layer)
            .map(|(k, n)| (k.clone(), n.kind))
            .collect();
        // In byte order every descendant of `a/b` follows it: reversed, children come first.
        for (key, kind) in doomed.into_iter().rev() {
            if kind == FileType::Dir && self.has_children(&key) {
                continue;
            }
            applier.remove(&key, kind)?;
            self.nodes.remove(&key);
        }
        Ok(())
    }

    /// Every directory with its final metadata, parents before children.
    pub fn directories(&self) -> impl Iterator<Item = DirectoryMeta<'_>> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.kind == FileType::Dir)
            .map(|(path, n)| DirectoryMeta { path, meta: &n.meta })
    }

    /// The manifest entries, sorted by path bytes.
    pub fn into_manifest(self) -> Result<Vec<FileEntry>, LayerError> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut inodes = Vec::with_capacity(self.nodes.len());
        for (path, node) in self.nodes {
            let text = |bytes: &[u8]| {
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| LayerError::NonUtf8 { path: String::from_utf8_lossy(bytes).into_owned(), offset: 0 })
            };
            inodes.push(node.inode);
            out.push(FileEntry {
                path: format!("/{}", text(&path)?),
                kind: node.kind,
                mode: node.meta.mode,
                uid: node.meta.uid,
                gid: node.meta.gid,
                size: node.content.as_ref().map(LeafContent::size),
                sha256: node.content.as_ref().map(|c| crate::digest::Sha256Digest(c.sha256())),
                // A hardlink's node holds its target's content, mark included.
                code: node.content.as_ref().and_then(LeafContent::code),
                link_target: node.link_target.as_deref().map(text).transpose()?,
                dev_major: node.dev.map(|d| d.0),
                dev_minor: node.dev.map(|d| d.1),
                xattrs: FileEntry::signed_xattrs(&node.meta.xattrs),
            });
        }
        crate::manifest::canonicalize_hardlinks(&mut out, &inodes);
        Ok(out)
    }
}

pub(crate) fn file_type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::File => "file",
        FileType::Hardlink => "hardlink",
        FileType::Symlink => "symlink",
        FileType::Dir => "directory",
        FileType::Char => "character device",
        FileType::Block => "block device",
        FileType::Fifo => "fifo",
    }
}

/// Normalises a tar path to `a/b/c`: strips `./` and repeated slashes, refuses absolute paths
/// and `..`. The empty result is the root.
fn normalize(raw: &[u8], header: &EntryHeader) -> Result<Vec<u8>, LayerError> {
    if raw.starts_with(b"/") {
        return Err(LayerError::AbsolutePath { path: header.path_lossy(), offset: header.offset });
    }
    let mut out = Vec::with_capacity(raw.len());
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(LayerError::DotDot { path: header.path_lossy(), offset: header.offset }),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Ok(out)
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}
