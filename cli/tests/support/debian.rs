//! The lab's Debian 12 tree (podman, conmon, runc, crun, containerd; built by `cargo xtask lab`,
//! xtask/src/lab/rootfs.rs) entered with `chroot` from the lab's initramfs, set up as
//! ../shared/KERNEL.md records podman needs it: `/` rprivate, `/proc`, `/sys` (with the cgroup2
//! and bpf mounts) and `/dev` bound in, devpts, tmpfs on `/dev/shm` and `/run`. The paths the
//! tests share with the daemon, which runs outside the tree, are bound at the same place inside
//! (`/tmp` on the scratch disk, `/lab` with the `imgsign` binary, the test binaries'
//! scratch roots with the signed bundles and the trust stores), so a path means the same on both sides.
//! Container storage (`/var/lib/containers`, `/var/lib/containerd`) is on the scratch disk
//! (ext4), as a node's is.

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the tree is mounted in the VM.
pub const ROOT: &str = "/debian";
/// The ext4 label xtask gives the tree's disk.
const LABEL: &str = "imgsign-debian";
/// Container storage on the scratch disk.
const STORAGE: &str = "/tmp/engines-storage";

pub struct Debian {
    pub root: PathBuf,
}

impl Debian {
    /// Mounts and prepares the tree, once per boot (later tests of the boot find it ready).
    pub fn enter() -> Debian {
        let root = PathBuf::from(ROOT);
        if !mounted(&root) {
            setup(&root);
        }
        Debian { root }
    }

    /// `chroot ROOT program`, with Debian's PATH.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("chroot");
        c.arg(&self.root)
            .arg(program)
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env_remove("TMPDIR")
            .stdin(Stdio::null());
        c
    }
}

fn mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(path.to_str().unwrap()))
}

/// `mount ARGS` (busybox, outside the tree), which must succeed.
#[track_caller]
fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().expect("run mount");
    assert!(out.status.success(), "mount {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Binds `path` (a directory outside) at the same path inside the tree.
#[track_caller]
fn bind_same(root: &Path, path: &Path) {
    let inside = root.join(path.strip_prefix("/").unwrap());
    fs::create_dir_all(&inside).unwrap();
    mount(&["--rbind", path.to_str().unwrap(), inside.to_str().unwrap()]);
}

fn setup(root: &Path) {
    let device = find_disk().unwrap_or_else(|| {
        panic!("no disk labelled {LABEL}: the lab attaches the Debian tree only to suites named in xtask's rootfs::NEEDED_BY")
    });
    fs::create_dir_all(root).unwrap();
    // The initramfs root cannot be remounted: everything below it private, so container
    // storage's own mount-propagation changes apply to mounts it can change.
    mount(&["--make-rprivate", "/"]);
    mount(&["-t", "ext4", device.to_str().unwrap(), root.to_str().unwrap()]);
    let r = |p: &str| root.join(p).to_str().unwrap().to_string();
    mount(&["-t", "proc", "proc", &r("proc")]);
    mount(&["--rbind", "/sys", &r("sys")]);
    mount(&["--rbind", "/dev", &r("dev")]);
    fs::create_dir_all(root.join("dev/pts")).unwrap();
    mount(&["-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", &r("dev/pts")]);
    fs::create_dir_all(root.join("dev/shm")).unwrap();
    mount(&["-t", "tmpfs", "tmpfs", &r("dev/shm")]);
    mount(&["-t", "tmpfs", "tmpfs", &r("run")]);
    for path in ["/tmp", "/lab"] {
        bind_same(root, Path::new(path));
    }
    // The test binaries' scratch roots (one per test process, all below this directory).
    let scratch = super::scratch_root().parent().unwrap();
    bind_same(root, scratch);
    for (inside, outside) in [("var/lib/containers", "containers"), ("var/lib/containerd", "containerd")] {
        let outside = Path::new(STORAGE).join(outside);
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(root.join(inside)).unwrap();
        mount(&["--bind", outside.to_str().unwrap(), &r(inside)]);
    }
}

/// The virtio disk whose ext4 label is [`LABEL`] (the superblock is at 1024, the label at 120 in it).
fn find_disk() -> Option<PathBuf> {
    let mut names: Vec<String> =
        fs::read_dir("/sys/block").ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.into_iter().filter(|n| n.starts_with("vd")).map(|n| PathBuf::from("/dev").join(n)).find(|dev| {
        let mut label = [0u8; 16];
        fs::File::open(dev)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(1024 + 120))?;
                f.read_exact(&mut label)
            })
            .is_ok()
            && label.split(|&b| b == 0).next() == Some(LABEL.as_bytes())
    })
}
