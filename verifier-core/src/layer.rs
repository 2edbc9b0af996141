//! Applies layer tar streams in order with the OCI rules (whiteouts, opaque directories, hardlinks,
//! later layers overriding earlier ones) into the flattened tree a runtime would see, hashing file
//! content on the way, without writing anything to disk.
//!
//! Where runtimes could disagree about the result, the layer is refused instead: an entry below a
//! path that is not a directory (an unpacker that follows the symlink writes somewhere else than
//! the manifest says), the same path twice in one layer, `..` or absolute names.

use crate::manifest::{FileEntry, FileType};
use crate::tar::{EntryHeader, EntryKind, TarError, TarReader};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const HASH_BUFFER: usize = 256 * 1024;

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
}

/// A node of the flattened tree.
#[derive(Debug, Clone)]
struct Node {
    kind: FileType,
    mode: u32,
    uid: u64,
    gid: u64,
    size: Option<u64>,
    sha256: Option<[u8; 32]>,
    link_target: Option<Vec<u8>>,
    dev: Option<(u32, u32)>,
    xattrs: BTreeMap<String, String>,
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

/// The flattened file tree, keyed by normalised relative path bytes (`usr/bin/env`).
#[derive(Default)]
pub struct FileTree {
    nodes: BTreeMap<Vec<u8>, Node>,
    buffer: Vec<u8>,
    next_inode: u64,
}

impl FileTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Applies one layer on top of the tree. `on_bytes` is told how many content bytes were read.
    pub fn apply_layer<R: Read>(
        &mut self,
        layer: usize,
        tar: &mut TarReader<R>,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<LayerStats, LayerError> {
        let mut stats = LayerStats::default();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        if self.buffer.len() < HASH_BUFFER {
            self.buffer = vec![0; HASH_BUFFER];
        }
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
                self.apply_whiteout(layer, &header, parent, base)?;
                continue;
            }
            if path.is_empty() {
                continue; // the root directory itself: its metadata is the runtime's
            }
            self.ensure_parents(layer, &header, parent)?;
            let node = match header.kind {
                EntryKind::File => {
                    let (digest, size) = self.hash_content(tar, on_bytes)?;
                    stats.content_bytes += size;
                    self.next_inode += 1;
                    Node {
                        kind: FileType::File,
                        mode: header.mode,
                        uid: header.uid,
                        gid: header.gid,
                        size: Some(size),
                        sha256: Some(digest),
                        link_target: None,
                        dev: None,
                        xattrs: FileEntry::signed_xattrs(&header.xattrs),
                        layer,
                        inode: Some(self.next_inode),
                    }
                }
                EntryKind::HardLink => self.hardlink_node(layer, &header)?,
                kind => Node {
                    kind: match kind {
                        EntryKind::Symlink => FileType::Symlink,
                        EntryKind::Directory => FileType::Dir,
                        EntryKind::CharDevice => FileType::Char,
                        EntryKind::BlockDevice => FileType::Block,
                        _ => FileType::Fifo,
                    },
                    mode: header.mode,
                    uid: header.uid,
                    gid: header.gid,
                    size: None,
                    sha256: None,
                    link_target: header.link_target.clone(),
                    dev: matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice)
                        .then_some((header.dev_major, header.dev_minor)),
                    xattrs: FileEntry::signed_xattrs(&header.xattrs),
                    layer,
                    inode: None,
                },
            };
            self.insert(path, node);
        }
        Ok(stats)
    }

    /// Puts a node in place; a non-directory replacing anything, or anything replacing a
    /// non-directory, removes what was there (with its subtree). Directory over directory keeps
    /// the children and takes the new metadata.
    fn insert(&mut self, path: Vec<u8>, node: Node) {
        let replaces_dir = self.nodes.get(&path).is_some_and(|old| old.kind == FileType::Dir);
        if replaces_dir && node.kind != FileType::Dir {
            self.remove_children(&path, usize::MAX);
        }
        self.nodes.insert(path, node);
    }

    fn hash_content<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<([u8; 32], u64), LayerError> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = tar.read_content(&mut self.buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&self.buffer[..n]);
            size += n as u64;
            on_bytes(n as u64);
        }
        Ok((hasher.finalize().into(), size))
    }

    fn hardlink_node(&self, layer: usize, header: &EntryHeader) -> Result<Node, LayerError> {
        let raw_target = header.link_target.as_deref().unwrap_or_default();
        let bad = || LayerError::BadHardlink {
            path: header.path_lossy(),
            offset: header.offset,
            target: String::from_utf8_lossy(raw_target).into_owned(),
        };
        let target = normalize(raw_target, header).map_err(|_| bad())?;
        let target_node = self.nodes.get(&target).ok_or_else(bad)?;
        if !matches!(target_node.kind, FileType::File | FileType::Hardlink) {
            return Err(bad());
        }
        // A hardlink shares the target's inode: its metadata and content are the target's.
        Ok(Node {
            kind: FileType::Hardlink,
            link_target: Some([b"/".as_slice(), &target].concat()),
            layer,
            ..target_node.clone()
        })
    }

    fn apply_whiteout(
        &mut self,
        layer: usize,
        header: &EntryHeader,
        parent: &[u8],
        base: &[u8],
    ) -> Result<(), LayerError> {
        if base == OPAQUE_MARKER {
            // Hide everything below the directory that came from lower layers.
            self.remove_children(parent, layer);
            return Ok(());
        }
        let name = &base[WHITEOUT_PREFIX.len()..];
        if name.is_empty() {
            return Err(LayerError::BareWhiteout { path: header.path_lossy(), offset: header.offset });
        }
        if name.starts_with(WHITEOUT_PREFIX) || name == b"." || name == b".." {
            return Err(LayerError::UnsupportedWhiteout { path: header.path_lossy(), offset: header.offset });
        }
        let target = join(parent, name);
        self.remove_children(&target, layer);
        // A directory this layer already wrote into stays (as the runtime leaves it): only what
        // lower layers put below it is hidden.
        let prefix = join(&target, b"");
        let keeps_children = self.nodes.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix));
        if !keeps_children && self.nodes.get(&target).is_some_and(|n| n.layer < layer) {
            self.nodes.remove(&target);
        }
        Ok(())
    }

    /// Creates missing parents as the runtime would (0755, root) and refuses a parent that
    /// exists but is not a directory.
    fn ensure_parents(&mut self, layer: usize, header: &EntryHeader, parent: &[u8]) -> Result<(), LayerError> {
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
                    self.nodes.insert(prefix.to_vec(), implicit_dir(layer));
                }
            }
            match next {
                Some(p) => end = p + 1,
                None => return Ok(()),
            }
        }
    }

    /// Removes every node strictly below `dir` written by a layer lower than `layer`.
    fn remove_children(&mut self, dir: &[u8], layer: usize) {
        let prefix = if dir.is_empty() { Vec::new() } else { join(dir, b"") };
        let doomed: Vec<Vec<u8>> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, n)| n.layer < layer)
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.nodes.remove(&key);
        }
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
                mode: node.mode,
                uid: node.uid,
                gid: node.gid,
                size: node.size,
                sha256: node.sha256.map(crate::digest::Sha256Digest),
                link_target: node.link_target.as_deref().map(text).transpose()?,
                dev_major: node.dev.map(|d| d.0),
                dev_minor: node.dev.map(|d| d.1),
                xattrs: node.xattrs,
            });
        }
        crate::manifest::canonicalize_hardlinks(&mut out, &inodes);
        Ok(out)
    }
}

fn implicit_dir(layer: usize) -> Node {
    Node {
        kind: FileType::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: None,
        sha256: None,
        link_target: None,
        dev: None,
        xattrs: BTreeMap::new(),
        layer,
        inode: None,
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
