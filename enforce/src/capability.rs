//! Whether this kernel can run the enforcer, and if not, what to change. BPF-LSM needs three
//! things the daemon cannot fix by itself: securityfs mounted (to read the active LSM list),
//! `bpf` in that list (the `lsm=` boot parameter), and bpffs mounted where programs and maps are
//! pinned. The LSM list is read by `bpf_lsm::kernel`; this module turns what it found into a
//! verdict with instructions.

use crate::cgroup::fs_magic;
use bpf_lsm::kernel::{KernelError, LSM_LIST};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// `BPF_FS_MAGIC` from `<linux/magic.h>`.
pub const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// Where bpffs is conventionally mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// One reason the enforcer cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("securityfs is not mounted, so the active LSM list ({LSM_LIST}) cannot be read: mount -t securityfs securityfs /sys/kernel/security")]
    Securityfs,
    #[error("cannot read the active LSM list {LSM_LIST}: {0} (run as root)")]
    LsmListUnreadable(String),
    #[error("BPF-LSM is not active: `bpf` is not in the kernel's LSM list ({current}); add it to the `lsm=` kernel boot parameter, e.g. lsm={current},bpf (the kernel must be built with CONFIG_BPF_LSM=y)")]
    BpfNotInLsmList { current: String },
    #[error("bpffs is not mounted at {path}: mount -t bpf bpf {path}")]
    Bpffs { path: PathBuf },
}

/// What was found: every missing piece, empty when the enforcer can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The active LSMs, when they could be read.
    pub lsms: Option<Vec<String>>,
    pub missing: Vec<Missing>,
}

impl Capability {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Checks the running kernel, with programs and maps to be pinned under `pin_dir`.
pub fn check(pin_dir: &Path) -> Capability {
    let bpffs = nearest_existing(pin_dir).unwrap_or_else(|| PathBuf::from(BPFFS));
    let on_bpffs = fs_magic(&bpffs).map(|m| m == BPF_FS_MAGIC).unwrap_or(false);
    assess(bpf_lsm::kernel::active_lsms(), on_bpffs, if on_bpffs { &bpffs } else { bpffs_mount_for(pin_dir) })
}

/// The verdict from what was read: the LSM list (or why it could not be read) and whether the
/// pin directory is on bpffs (`bpffs` names the mount point to suggest).
pub fn assess(lsms: Result<Vec<String>, KernelError>, on_bpffs: bool, bpffs: &Path) -> Capability {
    let mut missing = Vec::new();
    let lsms = match lsms {
        Ok(list) => {
            if !list.iter().any(|lsm| lsm == "bpf") {
                missing.push(Missing::BpfNotInLsmList { current: list.join(",") });
            }
            Some(list)
        }
        Err(KernelError::ReadLsmList { source, .. }) if source.kind() == ErrorKind::NotFound => {
            missing.push(Missing::Securityfs);
            None
        }
        Err(KernelError::ReadLsmList { source, .. }) => {
            missing.push(Missing::LsmListUnreadable(source.to_string()));
            None
        }
    };
    if !on_bpffs {
        missing.push(Missing::Bpffs { path: bpffs.to_path_buf() });
    }
    Capability { lsms, missing }
}

/// The directory to mount bpffs on for `pin_dir`: /sys/fs/bpf when the pin dir is below it.
fn bpffs_mount_for(pin_dir: &Path) -> &Path {
    if pin_dir.starts_with(BPFFS) {
        Path::new(BPFFS)
    } else {
        pin_dir.parent().unwrap_or(pin_dir)
    }
}

/// `path` itself or its nearest ancestor that exists.
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Result<Vec<String>, KernelError> {
        Ok(text.trim().split(',').map(str::to_owned).collect())
    }

    fn unreadable(kind: ErrorKind) -> Result<Vec<String>, KernelError> {
        Err(KernelError::ReadLsmList { path: LSM_LIST.into(), source: kind.into() })
    }

    #[test]
    fn bpf_in_the_list_and_bpffs_mounted_is_enough() {
        let found = assess(list("lockdown,capability,landlock,bpf\n"), true, Path::new(BPFFS));
        assert!(found.ok(), "{:?}", found.missing);
    }

    #[test]
    fn bpf_missing_from_the_list_names_lsm_and_shows_the_current_list() {
        let found = assess(list("lockdown,capability,landlock,yama,apparmor"), true, Path::new(BPFFS));
        assert_eq!(found.missing.len(), 1);
        let message = found.missing[0].to_string();
        assert!(message.contains("lsm="), "{message}");
        assert!(message.contains("lsm=lockdown,capability,landlock,yama,apparmor,bpf"), "{message}");
    }

    #[test]
    fn securityfs_not_mounted_says_how_to_mount_it() {
        let found = assess(unreadable(ErrorKind::NotFound), true, Path::new(BPFFS));
        assert_eq!(found.missing, vec![Missing::Securityfs]);
        assert!(found.missing[0].to_string().contains("mount -t securityfs securityfs /sys/kernel/security"));
        let denied = assess(unreadable(ErrorKind::PermissionDenied), true, Path::new(BPFFS));
        assert!(matches!(denied.missing[..], [Missing::LsmListUnreadable(_)]));
    }

    #[test]
    fn bpffs_not_mounted_says_how_to_mount_it() {
        let found = assess(list("capability,bpf"), false, Path::new(BPFFS));
        assert_eq!(found.missing.len(), 1);
        assert!(found.missing[0].to_string().contains("mount -t bpf bpf /sys/fs/bpf"));
        // Every missing piece is reported at once.
        assert_eq!(assess(unreadable(ErrorKind::NotFound), false, Path::new(BPFFS)).missing.len(), 2);
    }

    /// The real kernel: whatever this host has, the verdict agrees with what the files say.
    #[test]
    fn host_kernel_verdict_agrees_with_the_files() {
        let found = check(Path::new("/sys/fs/bpf/imgsign"));
        let lsm_list = std::fs::read_to_string(LSM_LIST);
        match &lsm_list {
            Err(e) if e.kind() == ErrorKind::NotFound => assert!(found.missing.contains(&Missing::Securityfs)),
            Err(_) => assert!(found.missing.iter().any(|m| matches!(m, Missing::LsmListUnreadable(_)))),
            Ok(text) => {
                let has_bpf = text.trim().split(',').any(|l| l == "bpf");
                assert_eq!(has_bpf, !found.missing.iter().any(|m| matches!(m, Missing::BpfNotInLsmList { .. })));
                assert_eq!(found.lsms.as_ref().map(|l| l.join(",")), Some(text.trim().to_string()));
            }
        }
        let bpffs_mounted =
            crate::cgroup::parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap(), "bpf")
                .iter()
                .any(|m| m == Path::new(BPFFS));
        assert_eq!(bpffs_mounted, !found.missing.iter().any(|m| matches!(m, Missing::Bpffs { .. })));
    }
}
