//! Whether this kernel can run the enforcer, and if not, what to change. BPF-LSM needs three
//! things the daemon cannot fix by itself: securityfs mounted (to read the active LSM list),
//! `bpf` in that list (the `lsm=` boot parameter), and bpffs mounted where programs and maps are
//! pinned. The LSM list is read by `bpf_lsm::kernel`; this module turns what it found into a
//! verdict with instructions.
//!
//! IMA must stay out of the way of `bpf_ima_file_hash`, the programs' hash ([`ImaFacts`]):
//! - with an IMA policy in force, the helper returns the digest IMA cached for a file it measured
//!   or appraised (IMA refreshes it when the last writer closes, not while a writer is open, and
//!   in IMA's algorithm), instead of hashing the bytes the decision is about: refused. A policy
//!   is seen as rules in `/sys/kernel/security/ima/policy`, entries beyond the boot aggregate in
//!   the measurement list, or a built-in policy on the kernel command line (`ima_policy=`,
//!   `ima_tcb`, `ima_appraise_tcb`);
//! - with `ima_hash=` other than sha256 on the kernel command line, the helper hashes with that
//!   algorithm and every decision fails: refused.

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
    #[error("an IMA policy is in force ({evidence}): with a policy, bpf_ima_file_hash returns the digest IMA cached for a file (not refreshed while the file is open for write) instead of hashing its bytes, so decisions could be made on content that is gone; boot without an IMA policy (no ima_policy=, ima_tcb or ima_appraise_tcb on the kernel command line, nothing written to {IMA_POLICY})")]
    ImaPolicy { evidence: String },
    #[error("the kernel command line sets ima_hash={algorithm}: bpf_ima_file_hash would hash with {algorithm} and every decision needs SHA-256, so every exec in a scope would be refused; remove ima_hash= or set ima_hash=sha256")]
    ImaHash { algorithm: String },
}

/// The IMA policy in force, as securityfs shows it (needs CONFIG_IMA_READ_POLICY).
pub const IMA_POLICY: &str = "/sys/kernel/security/ima/policy";
/// How many entries IMA's measurement list holds (1: the boot aggregate alone).
pub const IMA_MEASUREMENTS: &str = "/sys/kernel/security/ima/runtime_measurements_count";
/// The kernel command line.
pub const CMDLINE: &str = "/proc/cmdline";

/// What the kernel says about IMA: the facts [`assess`] judges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImaFacts {
    /// The text of [`IMA_POLICY`], when it could be read.
    pub policy: Option<String>,
    /// The number in [`IMA_MEASUREMENTS`], when it could be read.
    pub measurements: Option<u64>,
    /// The kernel command line ([`CMDLINE`]).
    pub cmdline: String,
}

impl ImaFacts {
    /// Reads them from securityfs and /proc (what cannot be read is left out).
    pub fn read() -> Self {
        ImaFacts {
            policy: std::fs::read_to_string(IMA_POLICY).ok(),
            measurements: std::fs::read_to_string(IMA_MEASUREMENTS).ok().and_then(|t| t.trim().parse().ok()),
            cmdline: std::fs::read_to_string(CMDLINE).unwrap_or_default(),
        }
    }
}

/// What in `ima` stands in the way, if anything.
fn assess_ima(ima: &ImaFacts) -> Vec<Missing> {
    let mut missing = Vec::new();
    let mut evidence = Vec::new();
    if let Some(policy) = &ima.policy {
        let rules: Vec<&str> = policy.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        if let Some(first) = rules.first() {
            evidence.push(format!("{} rule(s) in {IMA_POLICY}, the first `{first}`", rules.len()));
        }
    }
    if let Some(count) = ima.measurements.filter(|&n| n > 1) {
        evidence.push(format!("{count} entries in the measurement list, the boot aggregate is 1"));
    }
    let words: Vec<&str> = ima.cmdline.split_whitespace().collect();
    for word in &words {
        if word.starts_with("ima_policy=") || *word == "ima_tcb" || *word == "ima_appraise_tcb" {
            evidence.push(format!("`{word}` on the kernel command line"));
        }
    }
    if !evidence.is_empty() {
        missing.push(Missing::ImaPolicy { evidence: evidence.join("; ") });
    }
    if let Some(algorithm) = words.iter().rev().find_map(|w| w.strip_prefix("ima_hash=")) {
        if !algorithm.eq_ignore_ascii_case("sha256") {
            missing.push(Missing::ImaHash { algorithm: algorithm.to_string() });
        }
    }
    missing
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
    assess(
        bpf_lsm::kernel::active_lsms(),
        on_bpffs,
        if on_bpffs { &bpffs } else { bpffs_mount_for(pin_dir) },
        &ImaFacts::read(),
    )
}

/// The verdict from what was read: the LSM list (or why it could not be read), whether the
/// pin directory is on bpffs (`bpffs` names the mount point to suggest) and IMA's state.
pub fn assess(lsms: Result<Vec<String>, KernelError>, on_bpffs: bool, bpffs: &Path, ima: &ImaFacts) -> Capability {
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
    missing.extend(assess_ima(ima));
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

    /// No IMA policy, no ima_hash: the lab kernels' state.
    fn none() -> ImaFacts {
        ImaFacts {
            policy: Some(String::new()),
            measurements: Some(1),
            cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/vda console=ttyS0 lsm=lockdown,capability,bpf".into(),
        }
    }

    fn unreadable(kind: ErrorKind) -> Result<Vec<String>, KernelError> {
        Err(KernelError::ReadLsmList { path: LSM_LIST.into(), source: kind.into() })
    }

    #[test]
    fn bpf_in_the_list_and_bpffs_mounted_is_enough() {
        let found = assess(list("lockdown,capability,landlock,bpf\n"), true, Path::new(BPFFS), &none());
        assert!(found.ok(), "{:?}", found.missing);
    }

    #[test]
    fn bpf_missing_from_the_list_names_lsm_and_shows_the_current_list() {
        let found = assess(list("lockdown,capability,landlock,yama,apparmor"), true, Path::new(BPFFS), &none());
        assert_eq!(found.missing.len(), 1);
        let message = found.missing[0].to_string();
        assert!(message.contains("lsm="), "{message}");
        assert!(message.contains("lsm=lockdown,capability,landlock,yama,apparmor,bpf"), "{message}");
    }

    #[test]
    fn securityfs_not_mounted_says_how_to_mount_it() {
        let found = assess(unreadable(ErrorKind::NotFound), true, Path::new(BPFFS), &none());
        assert_eq!(found.missing, vec![Missing::Securityfs]);
        assert!(found.missing[0].to_string().contains("mount -t securityfs securityfs /sys/kernel/security"));
        let denied = assess(unreadable(ErrorKind::PermissionDenied), true, Path::new(BPFFS), &none());
        assert!(matches!(denied.missing[..], [Missing::LsmListUnreadable(_)]));
    }

    #[test]
    fn bpffs_not_mounted_says_how_to_mount_it() {
        let found = assess(list("capability,bpf"), false, Path::new(BPFFS), &none());
        assert_eq!(found.missing.len(), 1);
        assert!(found.missing[0].to_string().contains("mount -t bpf bpf /sys/fs/bpf"));
        // Every missing piece is reported at once.
        assert_eq!(assess(unreadable(ErrorKind::NotFound), false, Path::new(BPFFS), &none()).missing.len(), 2);
    }

    #[test]
    fn no_ima_policy_and_no_ima_hash_pass() {
        assert!(assess_ima(&none()).is_empty());
        // IMA not built in (nothing readable) and ima_hash=sha256 pass too.
        let facts = ImaFacts { cmdline: "ro ima_hash=sha256".into(), ..Default::default() };
        assert!(assess_ima(&facts).is_empty());
    }

    #[test]
    fn an_ima_policy_in_force_is_refused_naming_what_showed_it() {
        let written = ImaFacts {
            policy: Some("measure func=BPRM_CHECK fowner=4242\nappraise func=BPRM_CHECK fowner=4243\n".into()),
            ..none()
        };
        let found = assess(list("capability,bpf"), true, Path::new(BPFFS), &written);
        assert!(matches!(&found.missing[..], [Missing::ImaPolicy { .. }]), "{:?}", found.missing);
        let message = found.missing[0].to_string();
        assert!(message.contains("2 rule(s)") && message.contains("measure func=BPRM_CHECK fowner=4242"), "{message}");
        assert!(message.contains("cached"), "{message}");

        // An unreadable policy file: the measurement list still shows a measuring policy.
        let measured = ImaFacts { policy: None, measurements: Some(57), ..none() };
        let message = assess_ima(&measured)[0].to_string();
        assert!(message.contains("57 entries"), "{message}");
        // The boot aggregate alone is not a policy.
        assert!(assess_ima(&ImaFacts { policy: None, measurements: Some(1), ..none() }).is_empty());

        // A built-in policy chosen at boot.
        for word in ["ima_policy=tcb", "ima_tcb", "ima_appraise_tcb", "ima_policy=appraise_tcb|secure_boot"] {
            let facts = ImaFacts { policy: None, measurements: None, cmdline: format!("ro {word} quiet") };
            let missing = assess_ima(&facts);
            assert!(
                matches!(&missing[..], [Missing::ImaPolicy { evidence }] if evidence.contains(word)),
                "{word}: {missing:?}"
            );
        }
    }

    #[test]
    fn ima_hash_other_than_sha256_is_refused_naming_it() {
        let facts = ImaFacts { cmdline: "ro ima_hash=sha1".into(), ..none() };
        let missing = assess_ima(&facts);
        assert_eq!(missing, vec![Missing::ImaHash { algorithm: "sha1".into() }]);
        let message = missing[0].to_string();
        assert!(message.contains("ima_hash=sha1") && message.contains("ima_hash=sha256"), "{message}");
        // The last one given wins, as in the kernel.
        assert!(assess_ima(&ImaFacts { cmdline: "ima_hash=sha1 ima_hash=sha256".into(), ..none() }).is_empty());
        assert_eq!(assess_ima(&ImaFacts { cmdline: "ima_hash=sha256 ima_hash=sha512".into(), ..none() }).len(), 1);
        // Both problems are reported at once.
        let both = ImaFacts { cmdline: "ima_policy=tcb ima_hash=md5".into(), ..none() };
        assert_eq!(assess_ima(&both).len(), 2);
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
