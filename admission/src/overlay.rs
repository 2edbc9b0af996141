//! Lists an overlay root file system from its layers, and proves the listing is the mount's.
//!
//! Why: every path looked up in a freshly mounted overlay makes the kernel build an overlay
//! dentry and inode for it, and tear them all down again when the container's mount goes. On a
//! Debian image (8742 paths) that was most of a warm gate's time, and another 15 ms at the
//! container's removal. The layers' own dentries stay cached from one start to the next.
//!
//! How it stays a proof: the layers the mount's options name are listed (metadata and inode
//! number of every entry), composed by overlay's rules (the upper layer wins; whiteouts and
//! non-directories hide what is below them; opaque directories hide the layers below), and the
//! composition is then compared with the mount itself, directory by directory: each directory
//! of the composition is opened in the mount (relative to its parent, never through a symlink)
//! and must have the composition's mode and owner, and must list exactly the composition's
//! names, each with its type and (but for directories, which report their origin's once copied
//! up) inode number. Listing an overlay directory does
//! not look its entries up, so only directories get overlay inodes.
//!
//! Why an inode number is enough: when every layer is on one file system (checked: only then
//! does the mount report its own device for a non-directory, and its statfs has the sizes of
//! the upper layer's file system), the mount reports each object's real inode number, and on one file
//! system an inode number names one inode. A path the mount lists with inode N is the inode N
//! the layer listing looked at: its metadata, and through the hash cache or a fresh hash its
//! content (unless metacopy lets a file's data come from another layer: then this module is
//! not used). Layers re-pointed after the mount (podman's `l/` links), a layer on another file
//! system, redirects, xattr whiteouts, anything the composition does not foresee: the
//! comparison fails and the caller walks the mount path by path. The rules decide how often
//! this path is taken, never what is admitted.
//!
//! One inode number is not the served inode's: a file copied up into the upper layer reports
//! its origin's (the lower file's), so the names of the upper layer must come from the mounted
//! upper directory itself. It is the one at the options' path (no symlink in it) whose inode
//! number the mount's root reports (the root takes its upper directory's, never an origin's);
//! otherwise the walk goes through the mount.

use crate::hashes::HashCache;
use crate::walk::{list_tree, Observed, WalkError};
use rustix::fd::{AsFd as _, OwnedFd};
use rustix::fs::{AtFlags, FileType as Kind, Mode, OFlags, StatxAttributes, StatxFlags};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use verifier_core::manifest::FileType;

/// `OVERLAYFS_SUPER_MAGIC` (linux/magic.h).
const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// Why the layers were not used, and the mount was walked path by path instead.
#[derive(Debug, thiserror::Error)]
pub enum Fallback {
    #[error("not the root of an overlay mount")]
    NotOverlay,
    #[error("cannot read the mount at {path}")]
    Mount { path: PathBuf, source: std::io::Error },
    #[error("the mount's options: {0}")]
    Options(String),
    #[error("overlay metacopy may be on (a file's data could come from another layer)")]
    Metacopy,
    #[error("the layers are not all on the upper layer's file system")]
    OtherFileSystem,
    #[error("the upper layer the options name is not the mounted one")]
    OtherUpper,
    #[error("cannot list a layer")]
    Layer(#[source] WalkError),
    #[error("the mount differs from its layers' composition at {path}: {what}")]
    Differs { path: String, what: String },
}

/// The listing of the overlay mounted at `root` (its root), from its layers, and how many
/// layers there were; `Err` says why the caller must walk the mount itself.
pub(crate) fn list(root: &Path, known: Option<&HashCache>) -> Result<(Vec<Observed>, usize), Fallback> {
    let at_mount = |source: rustix::io::Errno| Fallback::Mount { path: root.to_path_buf(), source: source.into() };
    let fs = rustix::fs::statfs(root).map_err(at_mount)?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    if fs.f_type as u64 != OVERLAYFS_SUPER_MAGIC {
        return Err(Fallback::NotOverlay);
    }
    let stx = rustix::fs::statx(
        rustix::fs::CWD,
        root,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )
    .map_err(at_mount)?;
    let mount_root = stx.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
        && stx.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    if !mount_root || stx.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
        return Err(Fallback::NotOverlay);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| Fallback::Mount { path: "/proc/self/mountinfo".into(), source })?;
    let options = super_options(&mountinfo, stx.stx_mnt_id).ok_or(Fallback::NotOverlay)?;
    let layers = Layers::parse(options)?;
    if !layers.metacopy_off && !metacopy_default_off() {
        return Err(Fallback::Metacopy);
    }
    // One file system for all layers, and the one the mount's statfs reports (the upper
    // layer's, or the top lower's when there is no upper).
    let roots: Vec<PathBuf> = layers
        .dirs
        .iter()
        .map(|dir| std::fs::canonicalize(dir).map_err(|source| Fallback::Mount { path: dir.clone(), source }))
        .collect::<Result<_, _>>()?;
    let devices: Result<Vec<(u32, u32)>, Fallback> = roots
        .iter()
        .map(|dir| {
            let s = rustix::fs::statx(rustix::fs::CWD, dir, AtFlags::empty(), StatxFlags::BASIC_STATS)
                .map_err(|e| Fallback::Mount { path: dir.clone(), source: e.into() })?;
            Ok((s.stx_dev_major, s.stx_dev_minor))
        })
        .collect();
    let devices = devices?;
    if devices.iter().any(|d| *d != devices[0]) || !same_file_system(root, &roots[0])? {
        return Err(Fallback::OtherFileSystem);
    }
    // The mount's directories are read beside the layers' listing where there are two CPUs
    // (neither needs the other until they are compared); on one, one after the other (another
    // thread would only add its start and switches).
    let threads = crate::walk::workers();
    let list_layers = || -> Result<Vec<Vec<Observed>>, WalkError> {
        roots.iter().map(|dir| list_tree(dir, known, threads)).collect()
    };
    let (listed, mount) = if threads > 1 {
        std::thread::scope(|scope| {
            let mount = scope.spawn(|| read_mount(root));
            let listed = list_layers();
            (listed, mount.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })
    } else {
        (list_layers(), read_mount(root))
    };
    let listed = listed.map_err(Fallback::Layer)?;
    let mount = mount?;
    // With one file system (the mount's reading checked it), the mount's root reports its upper
    // directory's inode number. An upper layer at another directory than the mounted one
    // (renamed after the mount) would hide files copied up there, which the mount lists with
    // their origin's inode number.
    if layers.upper && (roots[0] != layers.dirs[0] || !same_inode(&roots[0], stx.stx_ino)) {
        return Err(Fallback::OtherUpper);
    }
    let composed = compose(&listed, layers.opaque_xattr);
    let extras = compare(root, layers.upper, &composed, &listed, &mount, known)?;
    let count = listed.len();
    let mut shown: Vec<Vec<bool>> = listed.iter().map(|layer| vec![false; layer.len()]).collect();
    for &(layer, index) in &composed.visible {
        shown[layer][index] = true;
    }
    drop(composed);
    let observed: Vec<Observed> = listed
        .into_iter()
        .zip(shown)
        .flat_map(|(layer, shown)| layer.into_iter().zip(shown).filter_map(|(o, shown)| shown.then_some(o)))
        .chain(extras)
        .collect();
    Ok((observed, count))
}

/// The super options of mount `id` when it is an overlay mounted at its root.
fn super_options(mountinfo: &str, id: u64) -> Option<&str> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        if fields.next()?.parse::<u64>().ok()? != id {
            return None;
        }
        let root = fields.nth(2)?;
        // Optional fields end with a lone "-"; then type, source, super options.
        let mut rest = fields.skip_while(|f| *f != "-").skip(1);
        let (fstype, _source, options) = (rest.next()?, rest.next()?, rest.next()?);
        (fstype == "overlay" && root == "/").then_some(options)
    })
}

/// What the mount's options say about its layers.
#[derive(Debug, PartialEq)]
struct Layers {
    /// Upper first (when there is one), then the lower layers, top to bottom.
    dirs: Vec<PathBuf>,
    upper: bool,
    metacopy_off: bool,
    /// The xattr that marks an opaque directory (`userxattr` mounts use the user namespace).
    opaque_xattr: &'static str,
}

impl Layers {
    fn parse(options: &str) -> Result<Layers, Fallback> {
        let unsupported = |what: &str| Err(Fallback::Options(what.to_string()));
        if options.contains('\\') {
            // Escaped characters in a path (mountinfo's octal escapes, overlay's own).
            return unsupported("a layer path with escaped characters");
        }
        let (mut upper, mut lowers, mut metacopy_off, mut user) = (None, Vec::new(), false, false);
        for option in options.split(',') {
            let (name, value) = option.split_once('=').unwrap_or((option, ""));
            match name {
                "lowerdir" => {
                    if value.contains("::") {
                        return unsupported("data-only lower layers");
                    }
                    lowers = value.split(':').map(PathBuf::from).collect();
                }
                "upperdir" => upper = Some(PathBuf::from(value)),
                "lowerdir+" | "datadir+" => return unsupported("layers added one by one"),
                "metacopy" => match value {
                    "off" => metacopy_off = true,
                    _ => return Err(Fallback::Metacopy),
                },
                "userxattr" => user = true,
                _ => {}
            }
        }
        if lowers.is_empty() {
            return unsupported("no lowerdir");
        }
        let has_upper = upper.is_some();
        let dirs: Vec<PathBuf> = upper.into_iter().chain(lowers).collect();
        if dirs.iter().any(|d| !d.is_absolute()) {
            return unsupported("a layer named by a relative path");
        }
        let opaque_xattr = if user { "user.overlay.opaque" } else { "trusted.overlay.opaque" };
        Ok(Layers { dirs, upper: has_upper, metacopy_off, opaque_xattr })
    }
}

/// Whether overlay's metacopy is off unless a mount asks for it.
fn metacopy_default_off() -> bool {
    std::fs::read_to_string("/sys/module/overlay/parameters/metacopy").is_ok_and(|v| v.trim() == "N")
}

/// Whether `dir` (its inode number) is `ino`.
fn same_inode(dir: &Path, ino: u64) -> bool {
    rustix::fs::statx(rustix::fs::CWD, dir, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::INO).is_ok_and(|s| s.stx_ino == ino)
}

/// Whether the mount's statfs (overlay reports its upper layer's file system's sizes, under a
/// file system id of its own) has `layer`'s sizes.
fn same_file_system(mount: &Path, layer: &Path) -> Result<bool, Fallback> {
    let vfs = |path: &Path| {
        rustix::fs::statvfs(path).map_err(|e| Fallback::Mount { path: path.to_path_buf(), source: e.into() })
    };
    let (a, b) = (vfs(mount)?, vfs(layer)?);
    Ok(a.f_blocks == b.f_blocks && a.f_files == b.f_files && a.f_bsize == b.f_bsize && a.f_frsize == b.f_frsize)
}

/// Where an entry of the composition comes from: (layer, index in that layer's listing).
type Place = (usize, usize);

/// The composition of the layers: what the mount should show.
struct Composed<'a> {
    /// Every path the mount should show.
    visible: Vec<Place>,
    /// Every directory the mount should show, depth first, each before its children.
    dirs: Vec<ComposedDir<'a>>,
}

/// Names are borrowed from the layers' listings.
struct ComposedDir<'a> {
    /// "" for the root.
    path: &'a str,
    /// Its entry (none for the root).
    own: Option<Place>,
    children: HashMap<&'a str, Place>,
}

/// A directory still to compose: its path, its entry, and the layers merged into it.
struct ToCompose<'a> {
    path: &'a str,
    own: Option<Place>,
    stack: Vec<usize>,
}

fn is_whiteout(entry: &verifier_core::manifest::FileEntry) -> bool {
    entry.kind == FileType::Char && entry.dev_major == Some(0) && entry.dev_minor == Some(0)
}

/// Overlay's lookup rules over the layers' listings: a name is taken from the first layer of
/// its parent's stack that has it; a whiteout there hides it; a directory merges with the same
/// name in the layers below until one of them is not a directory or it is opaque.
fn compose<'a>(layers: &'a [Vec<Observed>], opaque_xattr: &str) -> Composed<'a> {
    let by_parent: Vec<HashMap<&str, Vec<usize>>> = layers
        .iter()
        .map(|layer| {
            let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
            for (index, observed) in layer.iter().enumerate() {
                let parent = observed.entry.path.rsplit_once('/').map_or("", |(parent, _)| parent);
                children.entry(parent).or_default().push(index);
            }
            children
        })
        .collect();
    let opaque = |observed: &Observed| {
        let mut value = [0u8; 8];
        matches!(rustix::fs::lgetxattr(&observed.host_path, opaque_xattr, &mut value), Ok(1) if value[0] == b'y')
    };
    let mut composed = Composed { visible: Vec::new(), dirs: Vec::new() };
    let mut todo = vec![ToCompose { path: "", own: None, stack: (0..layers.len()).collect() }];
    while let Some(ToCompose { path: dir, own, stack }) = todo.pop() {
        let mut names: BTreeMap<&'a str, Vec<Place>> = BTreeMap::new();
        for &layer in &stack {
            for &index in by_parent[layer].get(dir).into_iter().flatten() {
                let path = &layers[layer][index].entry.path;
                names.entry(&path[dir.len() + 1..]).or_default().push((layer, index));
            }
        }
        let mut children = HashMap::with_capacity(names.len());
        for (name, found) in names {
            let (layer, index) = found[0];
            let top = &layers[layer][index];
            if is_whiteout(&top.entry) {
                continue;
            }
            composed.visible.push((layer, index));
            children.insert(name, (layer, index));
            if top.entry.kind == FileType::Dir {
                let mut below = vec![layer];
                let mut last = top;
                for &(layer, index) in &found[1..] {
                    let next = &layers[layer][index];
                    if next.entry.kind != FileType::Dir || opaque(last) {
                        break;
                    }
                    below.push(layer);
                    last = next;
                }
                todo.push(ToCompose { path: &top.entry.path, own: Some((layer, index)), stack: below });
            }
        }
        composed.dirs.push(ComposedDir { path: dir, own, children });
    }
    composed
}

/// One directory of the mount as listed: its mode and owner, and its names with their types
/// and inode numbers.
struct MountDir {
    mode_owner: (u32, u64, u64),
    names: Vec<(String, Kind, u64)>,
}

/// Every directory of the mount at `root` ("" for the root), listed; only directories are looked
/// up (each opened relative to its parent, never through a symlink). Also checks that the
/// mount reports its own device for a non-directory: all its layers are on one file system
/// (or xino maps inode numbers, then never to a lower layer's own).
fn read_mount(root: &Path) -> Result<HashMap<String, MountDir>, Fallback> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root_fd = rustix::fs::open(root, flags, Mode::empty()).map_err(at(""))?;
    let mount_dev = rustix::fs::fstat(&root_fd).map_err(at(""))?.st_dev;
    let mut same_fs_checked = false;
    let mut dirs = HashMap::new();
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    // Depth first: a directory stays open while its subdirectories are still to be opened.
    // (the parent directory and this one's name in it, none for the root; its path)
    type ToRead = (Option<(std::sync::Arc<OwnedFd>, CString)>, String);
    let mut todo: Vec<ToRead> = vec![(None, String::new())];
    while let Some((parent, dir)) = todo.pop() {
        let fd = match &parent {
            None => root_fd.try_clone().map_err(|e| differs(&dir, format!("cannot reopen it: {e}")))?,
            Some((parent, name)) => {
                rustix::fs::openat(parent, name.as_c_str(), flags, Mode::empty()).map_err(at(&dir))?
            }
        };
        drop(parent);
        let st = rustix::fs::fstat(&fd).map_err(at(&dir))?;
        let fd = std::sync::Arc::new(fd);
        let mut names = Vec::new();
        let mut entries = rustix::fs::RawDir::new(fd.as_fd(), buf.spare_capacity_mut());
        while let Some(child) = entries.next() {
            let child = child.map_err(at(&dir))?;
            let raw = child.file_name();
            if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
                continue;
            }
            let name = std::str::from_utf8(raw.to_bytes())
                .map_err(|_| differs(&dir, format!("a name that is not UTF-8: {raw:?}")))?;
            let kind = child.file_type();
            if kind == Kind::Directory {
                todo.push((Some((fd.clone(), raw.to_owned())), format!("{dir}/{name}")));
            } else if !same_fs_checked {
                same_fs_checked = true;
                let same = rustix::fs::statx(&*fd, raw, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::INO).is_ok_and(|s| {
                    rustix::fs::makedev(s.stx_dev_major, s.stx_dev_minor) == mount_dev && s.stx_ino == child.ino()
                });
                if !same {
                    return Err(Fallback::OtherFileSystem);
                }
            }
            names.push((name.to_string(), kind, child.ino()));
        }
        let mode_owner = (st.st_mode & 0o7777, u64::from(st.st_uid), u64::from(st.st_gid));
        dirs.insert(dir, MountDir { mode_owner, names });
    }
    Ok(dirs)
}

/// Compares the composition with the mount as listed, directory by directory. The runtime
/// makes the mount points of the container's mounts while the gate runs, so the two readings
/// can differ by a file of the upper layer: a file the mount lists and the layers did not have
/// is looked at through the mount, and returned (an extra path to the admission, which allows
/// one only where a mount will cover it); a file of the upper layer the mount did not list yet
/// is kept as the upper layer has it.
fn compare(
    root: &Path,
    upper: bool,
    composed: &Composed,
    layers: &[Vec<Observed>],
    mount: &HashMap<String, MountDir>,
    known: Option<&HashCache>,
) -> Result<Vec<Observed>, Fallback> {
    if mount.len() != composed.dirs.len() {
        return Err(differs("", format!("{} directories listed, {} composed", mount.len(), composed.dirs.len())));
    }
    let mut extras = Vec::new();
    for ComposedDir { path: dir, own, children } in &composed.dirs {
        let seen = mount.get(*dir).ok_or_else(|| differs(dir, "composed, not listed".into()))?;
        if let Some((layer, index)) = own {
            // A directory's inode number is not compared: a copied-up directory reports its
            // origin's, and nothing is taken from the directory but its mode and owner
            // (compared here) and its names (compared below, each with its inode number).
            let entry = &layers[*layer][*index].entry;
            let composed = (entry.mode, entry.uid, entry.gid);
            if seen.mode_owner != composed {
                return Err(differs(dir, format!("mode and owner {:?}, composed {composed:?}", seen.mode_owner)));
            }
        }
        let mut matched = 0usize;
        for (name, kind, ino) in &seen.names {
            // Made only where it is needed: formatting every path was a visible cost.
            let path = || format!("{dir}/{name}");
            let Some(&(layer, index)) = children.get(name.as_str()) else {
                if *kind == Kind::Directory {
                    return Err(differs(&path(), "a directory listed, not composed".into()));
                }
                extras.push(observe_in_mount(root, dir, name, path(), known)?);
                continue;
            };
            let observed = &layers[layer][index];
            let is_dir = observed.entry.kind == FileType::Dir;
            if (!is_dir && *ino != observed.ino) || !same_type(*kind, observed.entry.kind) {
                let what = format!("inode {ino} ({kind:?}), composed {} ({:?})", observed.ino, observed.entry.kind);
                return Err(differs(&path(), what));
            }
            matched += 1;
        }
        if matched != children.len() {
            // A file of the upper layer the mount did not list yet: made (a mount point)
            // between the two readings. It is the upper layer's, so the mount shows it now.
            let listed: std::collections::HashSet<&str> = seen.names.iter().map(|(n, _, _)| n.as_str()).collect();
            for (name, &(layer, index)) in children {
                let made_since = upper && layer == 0 && layers[layer][index].entry.kind != FileType::Dir;
                if !listed.contains(*name) && !made_since {
                    return Err(differs(&format!("{dir}/{name}"), "composed, not listed".into()));
                }
            }
        }
    }
    Ok(extras)
}

/// `dir/name` of the mount at `root`, looked at as the path-by-path walk would (the directory
/// reopened beneath the root, through no symlink).
fn observe_in_mount(
    root: &Path,
    dir: &str,
    name: &str,
    path: String,
    known: Option<&HashCache>,
) -> Result<Observed, Fallback> {
    use rustix::fs::ResolveFlags;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let unreadable = |what: String| differs(&path, format!("listed, not composed, and unreadable: {what}"));
    let root_fd = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| unreadable(e.to_string()))?;
    let relative = if dir.is_empty() { ".".to_string() } else { dir[1..].to_string() };
    let dir_fd = rustix::fs::openat2(
        &root_fd,
        relative.as_str(),
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| unreadable(e.to_string()))?;
    let name = CString::new(name).map_err(|e| unreadable(e.to_string()))?;
    let host_path = root.join(&path[1..]);
    crate::walk::observe(&dir_fd, &name, path.clone(), host_path, known).map_err(|e| unreadable(e.to_string()))
}

fn differs(path: &str, what: String) -> Fallback {
    Fallback::Differs { path: if path.is_empty() { "/".into() } else { path.to_string() }, what }
}

fn at(path: &str) -> impl Fn(rustix::io::Errno) -> Fallback + '_ {
    move |e| differs(path, format!("cannot open or read it: {e}"))
}

fn same_type(listed: Kind, kind: FileType) -> bool {
    // getdents' own type names, as rustix reads them.
    match kind {
        FileType::Dir => listed == Kind::Directory,
        FileType::File | FileType::Hardlink => listed == Kind::RegularFile,
        FileType::Symlink => listed == Kind::Symlink,
        FileType::Char => listed == Kind::CharacterDevice,
        FileType::Block => listed == Kind::BlockDevice,
        FileType::Fifo => listed == Kind::Fifo || listed == Kind::Socket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODMAN: &str = "55 48 0:43 / /s/overlay/ba1b/merged rw,relatime - overlay overlay \
        rw,lowerdir=/s/overlay/l/PSCN:/s/overlay/l/FMJN,upperdir=/s/overlay/ba1b/diff,workdir=/s/overlay/ba1b/work,uuid=on";

    #[test]
    fn the_layers_of_a_podman_mount_are_read_from_its_super_options() {
        let options = super_options(PODMAN, 55).unwrap();
        let layers = Layers::parse(options).unwrap();
        let dirs: Vec<&str> = layers.dirs.iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(dirs, ["/s/overlay/ba1b/diff", "/s/overlay/l/PSCN", "/s/overlay/l/FMJN"]);
        assert!(!layers.metacopy_off);
        assert_eq!(layers.opaque_xattr, "trusted.overlay.opaque");
        assert!(super_options(PODMAN, 54).is_none());
    }

    #[test]
    fn options_the_composition_cannot_follow_are_refused() {
        for options in [
            "rw,lowerdir=/a:/b,metacopy=on",
            "rw,lowerdir=/a::/data",
            "rw,lowerdir=a/rel",
            "rw,lowerdir=/with\\040space",
            "rw,upperdir=/u,workdir=/w",
        ] {
            assert!(matches!(Layers::parse(options), Err(Fallback::Options(_) | Fallback::Metacopy)), "{options}");
        }
        assert!(Layers::parse("rw,lowerdir=/a,metacopy=off,userxattr").unwrap().metacopy_off);
        // Not an overlay, or not at its root: no options.
        let bind = "60 48 0:43 /sub /m rw - overlay overlay rw,lowerdir=/a";
        assert!(super_options(bind, 60).is_none());
        let ext4 = "61 48 254:0 / /m rw - ext4 /dev/vda rw";
        assert!(super_options(ext4, 61).is_none());
    }
}
