//! The adapter from [`Kernel`](crate::kernel::Kernel) to `bpf_lsm`'s enforcer (load, attach and
//! pin the programs, one scope per cgroup id with its digest set, events from the ring buffer).
//!
//! Not wired yet: the enforcer's loader API in `bpf-lsm` is still being written, so every entry
//! point here answers [`KernelError::Unavailable`] and `imgsign enforce` exits 2 saying so. The
//! daemon logic behind the trait is complete and tested with a recording kernel.

use crate::kernel::{Event, Kernel, KernelError};
use crate::Plan;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

const NOT_YET: &str = "the BPF-LSM enforcer loader (bpf-lsm enforcer API) is not available in this build yet";

/// The BPF-LSM programs pinned under a directory of bpffs.
pub struct BpfKernel {
    _private: (),
}

impl BpfKernel {
    /// Loads and pins the programs under `pin_dir`, or reuses those already pinned there (a
    /// restarted daemon never opens a window without enforcement).
    pub fn open(_pin_dir: &Path) -> Result<Self, KernelError> {
        Err(KernelError::Unavailable(NOT_YET.into()))
    }
}

impl Kernel for BpfKernel {
    fn apply(&mut self, _plan: &Plan) -> Result<(), KernelError> {
        Err(KernelError::Unavailable(NOT_YET.into()))
    }

    fn events(&mut self, _timeout: Duration) -> Result<Vec<Event>, KernelError> {
        Err(KernelError::Unavailable(NOT_YET.into()))
    }
}

/// What is pinned under a pin directory.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pin_dir: String,
    /// (cgroup id, mode, number of digests) per scope in the kernel.
    pub scopes: Vec<(u64, crate::Mode, usize)>,
}

/// Reads what is pinned under `pin_dir`.
pub fn status(_pin_dir: &Path) -> Result<Status, KernelError> {
    Err(KernelError::Unavailable(NOT_YET.into()))
}

/// Unpins the programs and maps under `pin_dir`: enforcement stops.
pub fn detach(_pin_dir: &Path) -> Result<(), KernelError> {
    Err(KernelError::Unavailable(NOT_YET.into()))
}
