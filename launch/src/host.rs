//! The engine's one seam to the kernel for what libcontainer does not do: the private mount
//! namespace of the launching thread, the overlay (or read-only bind) root, the secrets tmpfs,
//! and unmounting them. [`LinuxHost`] makes the calls (nix, no unsafe); [`RecordingHost`]
//! records them for tests that run without root.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
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
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .map_err(err("cannot mount the overlay on", target))
    }

    fn bind_read_only(&self, source: &Path, target: &Path) -> Result<(), HostError> {
        mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(err("cannot bind-mount on", target))?;
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(err("cannot make read-only", target))
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

/// A call the engine made, as [`RecordingHost`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    PrivateNamespace,
    Overlay { lower: PathBuf, upper: PathBuf, work: PathBuf, target: PathBuf },
    BindReadOnly { source: PathBuf, target: PathBuf },
    Tmpfs { target: PathBuf, options: String },
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
    fn mount_tmpfs(&self, target: &Path, options: &str) -> Result<(), HostError> {
        self.record(HostCall::Tmpfs { target: target.into(), options: options.into() }, target)
    }
    fn unmount(&self, target: &Path) -> Result<(), HostError> {
        self.record(HostCall::Unmount { target: target.into() }, target)
    }
}
