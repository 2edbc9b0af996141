//! What the running kernel offers for BPF-LSM.
//!
//! A kernel can be built with `CONFIG_BPF_LSM=y` and still not run BPF-LSM
//! programs: `bpf` must be in the active LSM list (the `lsm=` boot parameter).
//! The list is read from securityfs.

use std::fs;
use std::io;
use std::path::PathBuf;

/// Where securityfs publishes the active LSMs.
pub const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// Errors reading the kernel's LSM state.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The LSM list could not be read (securityfs not mounted, or no permission).
    #[error("cannot read {path} (is securityfs mounted at /sys/kernel/security?)")]
    ReadLsmList {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The active LSMs, in order, e.g. `["lockdown", "capability", "bpf"]`.
pub fn active_lsms() -> Result<Vec<String>, KernelError> {
    let text =
        fs::read_to_string(LSM_LIST).map_err(|source| KernelError::ReadLsmList { path: LSM_LIST.into(), source })?;
    Ok(text.trim().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// Whether `bpf` is in the active LSM list.
pub fn bpf_lsm_active() -> Result<bool, KernelError> {
    Ok(active_lsms()?.iter().any(|lsm| lsm == "bpf"))
}

/// A sentence on whether `bpf` is in the active LSM list, for error messages.
pub fn describe_bpf_lsm_state() -> String {
    match active_lsms() {
        Ok(lsms) if lsms.iter().any(|l| l == "bpf") => {
            format!("bpf is in the active LSM list ({})", lsms.join(","))
        }
        Ok(lsms) => format!("bpf is NOT in the active LSM list ({}); boot with lsm=...,bpf", lsms.join(",")),
        Err(e) => format!("active LSM list unknown: {e}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lsm_list_read_error_names_securityfs() {
        let err = super::KernelError::ReadLsmList {
            path: "/nonexistent".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(err.to_string().contains("securityfs"));
    }
}
