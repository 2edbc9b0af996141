//! Cgroup v2 ids. On cgroup2 the inode number of a cgroup's directory is its kernfs node id,
//! which is the id `bpf_get_current_cgroup_id()` returns for the tasks in it (the root cgroup is
//! 1). A directory of a cgroup v1 hierarchy or of any other file system has an inode number too,
//! but it names nothing the kernel programs see, so it is refused.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// `CGROUP2_SUPER_MAGIC` from `<linux/magic.h>`.
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot stat cgroup {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a directory, so not a cgroup")]
    NotADirectory { path: PathBuf },
    #[error("{path} is not on a cgroup v2 (cgroup2) file system (file system magic {magic:#x}); scopes are cgroup v2 directories")]
    NotCgroup2 { path: PathBuf, magic: u64 },
}

/// The cgroup id of the cgroup v2 directory at `path`.
pub fn cgroup_id(path: &Path) -> Result<u64, CgroupError> {
    let stat_err = |source: std::io::Error| CgroupError::Stat { path: path.to_path_buf(), source };
    let metadata = std::fs::metadata(path).map_err(stat_err)?;
    if !metadata.is_dir() {
        return Err(CgroupError::NotADirectory { path: path.to_path_buf() });
    }
    let magic = fs_magic(path).map_err(stat_err)?;
    if magic != CGROUP2_SUPER_MAGIC {
        return Err(CgroupError::NotCgroup2 { path: path.to_path_buf(), magic });
    }
    Ok(metadata.ino())
}

/// The cgroup directory at or below `root` whose cgroup id is `id`, searched breadth first down
/// to `max_depth` levels (a task's cgroup is its scope's cgroup or a descendant of it). `None`
/// when it is not there (any more: a cgroup can be removed before its events are read).
pub fn find_below(root: &Path, id: u64, max_depth: usize) -> Option<PathBuf> {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..=max_depth {
        let mut next = Vec::new();
        for dir in level {
            match std::fs::metadata(&dir) {
                Ok(m) if m.is_dir() && m.ino() == id => return Some(dir),
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                next.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
            }
        }
        level = next;
    }
    None
}

/// Freezes (`cgroup.freeze`) or kills (`cgroup.kill`, Linux 5.14 and later) every task in the
/// cgroup v2 directory `dir` and below: the response to a violation in a scope.
pub fn respond(dir: &Path, action: crate::policy::Violation) -> std::io::Result<()> {
    let file = match action {
        crate::policy::Violation::Freeze => "cgroup.freeze",
        crate::policy::Violation::Kill => "cgroup.kill",
    };
    // Opened without O_CREAT: a path that is not a cgroup (or a kernel without the file) is an
    // error to report, not a file to make.
    let mut f = std::fs::OpenOptions::new().write(true).open(dir.join(file))?;
    std::io::Write::write_all(&mut f, b"1")
}

/// The file system magic number of the file system holding `path` (`statfs(2)`'s `f_type`).
pub fn fs_magic(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statfs(path).map_err(std::io::Error::from)?;
    // f_type is a signed word whose value is a 32-bit magic number.
    Ok((stat.f_type as u64) & 0xffff_ffff)
}

/// Mount points of cgroup v2 file systems, from `/proc/self/mountinfo` (e.g. `/sys/fs/cgroup`,
/// or `/sys/fs/cgroup/unified` on a hybrid layout).
pub fn cgroup2_mounts() -> std::io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text, "cgroup2"))
}

/// Mount points of file systems of type `fstype` in mountinfo text.
pub fn parse_mountinfo(text: &str, fstype: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <type> <source> <super options>"
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?;
            (after.split(' ').next()? == fstype).then(|| PathBuf::from(unescape_octal(mount_point)))
        })
        .collect()
}

/// The cgroup v2 mounts in mountinfo text: (mount point, the cgroup the mount shows as its
/// root, from the hierarchy's root or, in a cgroup namespace, from the namespace's).
pub fn parse_cgroup2_mounts(text: &str) -> Vec<(PathBuf, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut fields = before.split(' ').skip(3);
            let (root, mount_point) = (fields.next()?, fields.next()?);
            (after.split(' ').next()? == "cgroup2")
                .then(|| (PathBuf::from(unescape_octal(mount_point)), PathBuf::from(unescape_octal(root))))
        })
        .collect()
}

/// The level of the cgroup at `path` in its hierarchy (the root cgroup is level 0), given the
/// cgroup v2 mounts ([`parse_cgroup2_mounts`]): the levels of the mount's root plus the
/// directories between the mount point and `path`. `None` when `path` is under no cgroup v2
/// mount. (In a cgroup namespace, levels count from the namespace's root: run the daemon in
/// the initial cgroup namespace.)
pub fn level_in(mounts: &[(PathBuf, PathBuf)], path: &Path) -> Option<usize> {
    let depth = |p: &Path| p.components().filter(|c| matches!(c, std::path::Component::Normal(_))).count();
    mounts
        .iter()
        .filter(|(mount_point, _)| path.starts_with(mount_point))
        .max_by_key(|(mount_point, _)| depth(mount_point))
        .map(|(mount_point, root)| depth(root) + depth(path.strip_prefix(mount_point).unwrap_or(path)))
}

/// The level of the cgroup v2 directory `path` (see [`level_in`]), from this process's
/// mountinfo; `None` when it cannot be told.
pub fn level(path: &Path) -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    level_in(&parse_cgroup2_mounts(&text), &path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_finds_cgroup2_on_hybrid_and_unified_layouts() {
        let hybrid = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        assert_eq!(parse_mountinfo(hybrid, "cgroup2"), vec![PathBuf::from("/sys/fs/cgroup/unified")]);
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_mountinfo(unified, "cgroup2"), vec![PathBuf::from("/sys/fs/cgroup")]);
        let escaped = "29 23 0:26 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_mountinfo(escaped, "cgroup2"), vec![PathBuf::from("/mnt/with space")]);
        assert!(parse_mountinfo("garbage\n", "cgroup2").is_empty());
    }

    #[test]
    fn cgroup_levels_count_from_the_hierarchy_root() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
40 23 0:27 /kubepods/pod1 /mnt/pod\\040cg rw - cgroup2 cgroup2 rw
";
        let mounts = parse_cgroup2_mounts(text);
        assert_eq!(
            mounts,
            vec![
                (PathBuf::from("/sys/fs/cgroup/unified"), PathBuf::from("/")),
                (PathBuf::from("/mnt/pod cg"), PathBuf::from("/kubepods/pod1")),
            ]
        );
        assert_eq!(level_in(&mounts, Path::new("/sys/fs/cgroup/unified")), Some(0));
        assert_eq!(level_in(&mounts, Path::new("/sys/fs/cgroup/unified/a/b/c")), Some(3));
        // A bind mount of a subtree: its root's levels count.
        assert_eq!(level_in(&mounts, Path::new("/mnt/pod cg/ctr")), Some(3));
        assert_eq!(level_in(&mounts, Path::new("/sys/fs/cgroup/memory/x")), None);
        // The deepest mount point wins.
        let nested = parse_cgroup2_mounts("1 0 0:1 / /a rw - cgroup2 c rw\n2 1 0:1 /x/y /a/b rw - cgroup2 c rw\n");
        assert_eq!(level_in(&nested, Path::new("/a/b/c")), Some(3));
    }

    #[test]
    fn a_plain_directory_is_not_a_cgroup() {
        let dir = std::env::temp_dir();
        match cgroup_id(&dir) {
            Err(CgroupError::NotCgroup2 { .. }) => {}
            other => panic!("{} gave {other:?}", dir.display()),
        }
        assert!(matches!(cgroup_id(Path::new("/nonexistent-cgroup")), Err(CgroupError::Stat { .. })));
    }
}
