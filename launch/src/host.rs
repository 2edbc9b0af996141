//! The engine's one seam to the kernel for what libcontainer does not do: the private mount
//! namespace of the launching thread, the overlay (or read-only bind) root, the idmapped mount
//! of the image's tree, the secrets tmpfs, and unmounting them. [`LinuxHost`] makes the calls
//! (nix, and libcontainer's safe wrappers of `open_tree`, `mount_setattr` and `move_mount`: no
//! unsafe here); [`RecordingHost`] records them for tests that run without root.
//!
//! The idmapped mount: the store's tree keeps the image's owners (uid 0 ...). Seen through a
//! mount idmapped with the container's mapping (container 0..size = host base..), a file owned
//! by 0 in the image reads as host `base`, which is container root inside the user namespace;
//! no shifted copy is written. `mount_setattr(MOUNT_ATTR_IDMAP)` needs a user namespace holding
//! the mapping before libcontainer makes the container's own, so [`LinuxHost`] makes a
//! throwaway one: a child (libcontainer's `container_clone`) unshares `CLONE_NEWUSER` and waits;
//! its `uid_map`/`gid_map` are written, `/proc/PID/ns/user` opened, the child killed. The kernel
//! keeps the mapping with the mount.

use crate::config::IdRange;
use libcontainer::syscall::linux::{LinuxSyscall, MountAttr};
use libcontainer::syscall::Syscall as _;
use nix::libc;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
#[error("{what} {path}")]
pub struct HostError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> HostError + 'a {
    move |e| HostError { what, path: path.to_path_buf(), source: std::io::Error::from(e) }
}

/// Mounts and namespaces the engine makes itself.
pub trait Host {
    /// Moves the calling thread into a new mount namespace whose mounts are all private, so
    /// nothing mounted afterwards is seen by (or propagates to) the host.
    fn private_mount_namespace(&self) -> Result<(), HostError>;
    /// Mounts an overlay of `lower` (read-only) with `upper` and `work` on `target`.
    fn mount_overlay(&self, lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), HostError>;
    /// Bind-mounts `source` read-only on `target`.
    fn bind_read_only(&self, source: &Path, target: &Path) -> Result<(), HostError>;
    /// Mounts `source` on `target` idmapped with `range` (files owned by id N in `source` are
    /// owned by host id `range.base + N` under `target`), read-only; with `root` also nosuid
    /// and nodev (the container's read-only root). Not recursive: mounts under `source` are not
    /// carried over.
    fn mount_idmapped(&self, source: &Path, target: &Path, range: IdRange, root: bool) -> Result<(), HostError>;
    /// Mounts a tmpfs with `options` (`size=...,mode=...`) on `target`.
    fn mount_tmpfs(&self, target: &Path, options: &str) -> Result<(), HostError>;
    /// Detaches the mount on `target`.
    fn unmount(&self, target: &Path) -> Result<(), HostError>;
}

/// The real host.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxHost;

impl Host for LinuxHost {
    fn private_mount_namespace(&self) -> Result<(), HostError> {
        let root = Path::new("/");
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(err("cannot unshare the mount namespace of", root))?;
        mount(None::<&str>, root, None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(err("cannot make private the mounts under", root))
    }

    fn mount_overlay(&self, lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), HostError> {
        let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        // `volatile` (Linux 5.10+): no sync of the upper file system, at the container's fsyncs
        // or at unmount (which otherwise waits for a journal commit of the upper's file system on
        // every exit). The upper is the container's scratch, made fresh and removed with it;
        // what must survive a host crash belongs in a volume. Older kernels refuse the option.
        let volatile = format!("{options},volatile");
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(volatile.as_str()))
            .or_else(|e| match e {
                nix::errno::Errno::EINVAL => {
                    mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
                }
                other => Err(other),
            })
            .map_err(err("cannot mount the overlay on", target))
    }

    fn bind_read_only(&self, source: &Path, target: &Path) -> Result<(), HostError> {
        mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(err("cannot bind-mount on", target))?;
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(err("cannot make read-only", target))
    }

    fn mount_idmapped(&self, source: &Path, target: &Path, range: IdRange, root: bool) -> Result<(), HostError> {
        let userns = mapped_user_namespace(range)?;
        let failed = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |e: libcontainer::syscall::SyscallError| HostError { what, path, source: std::io::Error::other(e) }
        };
        let sys = LinuxSyscall;
        let source_str = source.to_str().ok_or_else(|| HostError {
            what: "not UTF-8:",
            path: source.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        // A detached copy of the mount at `source`, not yet in any mount table.
        let tree = sys
            .open_tree(libc::AT_FDCWD, Some(source_str), libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC)
            .map_err(failed("cannot clone the mount (open_tree) of", source))?;
        let mut attr_set = libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY;
        if root {
            attr_set |= libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
        }
        let attr = MountAttr { attr_set, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
        sys.mount_setattr(
            tree.as_fd(),
            Path::new(""),
            libc::AT_EMPTY_PATH as u32,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
        .map_err(failed(
            "cannot idmap (mount_setattr MOUNT_ATTR_IDMAP; the file system must support idmapped mounts, \
                 ext4, xfs and btrfs do, tmpfs only since Linux 6.3) the mount of",
            source,
        ))?;
        let root_dir =
            std::fs::File::open("/").map_err(|source| HostError { what: "cannot open", path: "/".into(), source })?;
        let target_str = target.to_str().ok_or_else(|| HostError {
            what: "not UTF-8:",
            path: target.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        sys.move_mount(tree.as_fd(), None, root_dir.as_fd(), Some(target_str), libc::MOVE_MOUNT_F_EMPTY_PATH)
            .map_err(failed("cannot attach (move_mount) the idmapped mount on", target))
    }

    fn mount_tmpfs(&self, target: &Path, options: &str) -> Result<(), HostError> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options))
            .map_err(err("cannot mount a tmpfs on", target))
    }

    fn unmount(&self, target: &Path) -> Result<(), HostError> {
        umount2(target, MntFlags::MNT_DETACH).map_err(err("cannot unmount", target))
    }
}

/// Whether this mount namespace's `/` is the initial ramdisk (`rootfs` in mountinfo), which
/// `pivot_root(2)` refuses to move.
pub fn root_is_ramdisk() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| ramdisk_root_in(&text))
}

/// [`root_is_ramdisk`] over mountinfo text: the last mount on `/` (the one in force) is rootfs.
fn ramdisk_root_in(mountinfo: &str) -> bool {
    let root_fstype = mountinfo
        .lines()
        .filter(|line| line.split(' ').nth(4) == Some("/"))
        .filter_map(|line| line.split_once(" - ").and_then(|(_, after)| after.split(' ').next()))
        .next_back();
    root_fstype == Some("rootfs")
}

/// A user namespace whose uid and gid maps are `range` (container 0..size = host base..), held
/// by its file descriptor. The unsharing child is util-linux's `unshare --user -- cat` (no safe
/// way to run code in a forked child is at hand: nix's `fork` is unsafe and libcontainer 0.7
/// keeps its `container_clone` private). `cat` echoing a byte back says it runs, so the
/// namespace exists (no polling); its maps are written from here (root in the parent namespace
/// may write any mapping), its namespace is opened, then it is killed and reaped.
fn mapped_user_namespace(range: IdRange) -> Result<std::fs::File, HostError> {
    use std::io::{Read as _, Write as _};
    let ours = Path::new("/proc/self/ns/user");
    let own =
        std::fs::read_link(ours).map_err(|source| HostError { what: "cannot read", path: ours.into(), source })?;
    let forks = crate::fork::guard();
    let mut child = std::process::Command::new(system_tool("unshare"))
        .arg("--user")
        .arg("--")
        .arg(system_tool("cat"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| HostError {
            what: "cannot run util-linux `unshare --user` to make a user namespace for",
            path: ours.into(),
            source,
        })?;
    drop(forks);
    let dir = PathBuf::from(format!("/proc/{}", child.id()));
    let result = (|| {
        let ns = dir.join("ns/user");
        let ended = |source| HostError {
            what: "the `unshare --user` child ended before its namespace was in",
            path: ns.clone(),
            source,
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.as_mut(), child.stdout.as_mut()) else {
            return Err(ended(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        };
        stdin.write_all(b"\n").map_err(ended)?;
        stdout.read_exact(&mut [0u8; 1]).map_err(ended)?;
        match std::fs::read_link(&ns) {
            Ok(link) if link != own => {}
            other => {
                let source = other.err().unwrap_or_else(|| std::io::Error::other("the same user namespace as ours"));
                return Err(HostError { what: "no new user namespace in", path: ns, source });
            }
        }
        let map = format!("0 {} {}\n", range.base, range.size);
        for file in ["uid_map", "gid_map"] {
            let path = dir.join(file);
            std::fs::write(&path, &map).map_err(|source| HostError { what: "cannot write", path, source })?;
        }
        std::fs::File::open(&ns).map_err(|source| HostError { what: "cannot open", path: ns, source })
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// A system program by its path in /usr/bin or /bin (no search of the caller's PATH, which could
/// name another program, and no failed execs on the way), else by name.
fn system_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| name.into())
}

/// A call the engine made, as [`RecordingHost`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    PrivateNamespace,
    Overlay { lower: PathBuf, upper: PathBuf, work: PathBuf, target: PathBuf },
    BindReadOnly { source: PathBuf, target: PathBuf },
    Tmpfs { target: PathBuf, options: String },
    Idmapped { source: PathBuf, target: PathBuf, range: IdRange, root: bool },
    Unmount { target: PathBuf },
}

/// Records calls and succeeds (or fails the call whose index is `fail_at`).
#[derive(Debug, Clone, Default)]
pub struct RecordingHost {
    pub calls: Arc<Mutex<Vec<HostCall>>>,
    pub fail_at: Option<usize>,
}

impl RecordingHost {
    fn record(&self, call: HostCall, path: &Path) -> Result<(), HostError> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let index = calls.len();
        calls.push(call);
        if self.fail_at == Some(index) {
            return Err(HostError {
                what: "injected failure at",
                path: path.to_path_buf(),
                source: std::io::Error::other("injected"),
            });
        }
        Ok(())
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<HostCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Host for RecordingHost {
    fn private_mount_namespace(&self) -> Result<(), HostError> {
        self.record(HostCall::PrivateNamespace, Path::new("/"))
    }
    fn mount_overlay(&self, lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), HostError> {
        let call =
            HostCall::Overlay { lower: lower.into(), upper: upper.into(), work: work.into(), target: target.into() };
        self.record(call, target)
    }
    fn bind_read_only(&self, source: &Path, target: &Path) -> Result<(), HostError> {
        self.record(HostCall::BindReadOnly { source: source.into(), target: target.into() }, target)
    }
    fn mount_idmapped(&self, source: &Path, target: &Path, range: IdRange, root: bool) -> Result<(), HostError> {
        self.record(HostCall::Idmapped { source: source.into(), target: target.into(), range, root }, target)
    }
    fn mount_tmpfs(&self, target: &Path, options: &str) -> Result<(), HostError> {
        self.record(HostCall::Tmpfs { target: target.into(), options: options.into() }, target)
    }
    fn unmount(&self, target: &Path) -> Result<(), HostError> {
        self.record(HostCall::Unmount { target: target.into() }, target)
    }
}

#[cfg(test)]
mod tests {
    use super::ramdisk_root_in;

    #[test]
    fn a_ramdisk_root_is_told_from_a_disk_root() {
        let lab = "1 1 0:2 / / rw - rootfs rootfs rw,size=1000k\n22 1 0:20 / /proc rw - proc proc rw\n";
        assert!(ramdisk_root_in(lab));
        let disk = "23 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n24 23 0:22 / /proc rw - proc proc rw\n";
        assert!(!ramdisk_root_in(disk));
        // A root mounted over the ramdisk (switch_root's, or a chroot's bind) is what counts.
        let over = format!("{lab}30 1 254:1 / / rw - ext4 /dev/vda rw\n");
        assert!(!ramdisk_root_in(&over));
        assert!(!ramdisk_root_in(""));
    }
}
