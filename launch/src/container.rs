//! One container's lifecycle: [`Container::prepare`] (directory, private mount namespace,
//! overlay or read-only root, secrets tmpfs, spec, record), [`Container::start`] (youki's
//! libcontainer creates and starts it), [`Container::wait`] or [`Container::wait_forwarding`]
//! (its exit code), [`Container::cleanup`] (libcontainer deletes it and its cgroup; every mount
//! made here is detached; the directory removed). Dropping a container that was not cleaned up
//! cleans it up, so an error path leaves nothing behind.
//!
//! Every mount the engine makes lives in a mount namespace private to the calling thread
//! (made by `prepare`): the host's mount table never shows the overlay or the secrets, and if
//! the process dies they go with it. Call `start`, `wait` and `cleanup` on the thread that
//! called `prepare`.

use crate::config::{check_id, ConfigError, LaunchConfig, MAX_SECRET_BYTES};
use crate::host::{Host, HostError, LinuxHost};
use crate::spec::{self, SpecError};
use crate::state::{ContainerRecord, StateError};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("container {id} exists already under {dir}")]
    Exists { id: String, dir: PathBuf },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("path {0} cannot be an overlay layer (it holds ',', ':' or '\\')")]
    LayerPath(PathBuf),
    #[error("secret {name}: {source_path} is larger than {max} bytes")]
    SecretTooLarge { name: String, source_path: PathBuf, max: u64 },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the container runtime (libcontainer) failed to {what}")]
    Runtime {
        what: &'static str,
        #[source]
        source: libcontainer::error::LibcontainerError,
    },
    #[error("the container has not been started")]
    NotStarted,
    #[error("cannot wait for the container's init (pid {pid})")]
    Wait {
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("cleanup left something behind: {0}")]
    Cleanup(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LaunchError + 'a {
    move |source| LaunchError::Io { what, path: path.to_path_buf(), source }
}

/// Paths of one container's directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    pub secrets: PathBuf,
    /// Mount point of the idmapped view of the lower (with a user namespace).
    pub lower: PathBuf,
    /// libcontainer's state root (it keeps `runtime/<id>/state.json`).
    pub runtime: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        Layout {
            dir: dir.to_path_buf(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            secrets: dir.join("secrets"),
            lower: dir.join("lower"),
            runtime: dir.join("runtime"),
        }
    }
}

/// A container from preparation to cleanup.
pub struct Container<H: Host = LinuxHost> {
    config: LaunchConfig,
    layout: Layout,
    host: H,
    /// Mount targets made here, in order.
    mounted: Vec<PathBuf>,
    runtime: Option<libcontainer::container::Container>,
    record: ContainerRecord,
    exit: Option<i32>,
    cleaned: bool,
}

impl Container<LinuxHost> {
    /// [`Container::prepare_on`] the real host.
    pub fn prepare(config: LaunchConfig) -> Result<Self, LaunchError> {
        Self::prepare_on(config, LinuxHost)
    }
}

impl<H: Host> Container<H> {
    /// Makes `<state_root>/<id>/` (upper, work, merged, secrets, config.json, imgsign.json),
    /// moves the calling thread into a private mount namespace, mounts the root (an overlay over
    /// `config.lower`, or with `read_only` a read-only bind of it) and the secrets tmpfs, and
    /// writes the spec. On error everything made so far is undone.
    pub fn prepare_on(config: LaunchConfig, host: H) -> Result<Self, LaunchError> {
        check_id(&config.id)?;
        if let Some(range) = config.userns {
            range.check_unused(Path::new("/etc/passwd"), Path::new("/etc/group"))?;
        }
        for p in [&config.lower, &config.state_root] {
            if p.to_string_lossy().contains([',', ':', '\\']) {
                return Err(LaunchError::LayerPath(p.to_path_buf()));
            }
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&config.state_root)
            .map_err(io("cannot create the state root", &config.state_root))?;
        let dir = config.dir();
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(LaunchError::Exists { id: config.id.clone(), dir });
            }
            Err(e) => return Err(io("cannot create", &dir)(e)),
        }
        let record = ContainerRecord {
            id: config.id.clone(),
            image: config.image.clone(),
            digest: config.digest.clone(),
            pid: None,
            status: "created".to_string(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cgroup: crate::config::cgroup_path(&config.id),
            scope: config.scope.clone(),
        };
        let mut container = Container {
            layout: Layout::new(&dir),
            config,
            host,
            mounted: Vec::new(),
            runtime: None,
            record,
            exit: None,
            cleaned: false,
        };
        // On error, Drop undoes what was made.
        container.make()?;
        Ok(container)
    }

    fn make(&mut self) -> Result<(), LaunchError> {
        let l = self.layout.clone();
        let owner = self.config.userns.map(|r| r.host_id(0));
        for d in [&l.merged, &l.runtime] {
            std::fs::DirBuilder::new().mode(0o711).create(d).map_err(io("cannot create", d))?;
        }
        self.host.private_mount_namespace()?;
        // With a user namespace the image's tree is seen through a mount idmapped with its
        // mapping, so image files owned by root are owned by container root (host base).
        let mut lower = self.config.lower.clone();
        if self.config.read_only {
            match self.config.userns {
                Some(range) => self.host.mount_idmapped(&self.config.lower, &l.merged, range, true)?,
                None => self.host.bind_read_only(&self.config.lower, &l.merged)?,
            }
        } else {
            if let Some(range) = self.config.userns {
                std::fs::DirBuilder::new().mode(0o700).create(&l.lower).map_err(io("cannot create", &l.lower))?;
                self.host.mount_idmapped(&self.config.lower, &l.lower, range, false)?;
                self.mounted.push(l.lower.clone());
                lower = l.lower.clone();
            }
            for d in [&l.upper, &l.work] {
                std::fs::DirBuilder::new().mode(0o755).create(d).map_err(io("cannot create", d))?;
            }
            // The overlay's root directory is the upper's: owned by container root.
            if let Some(uid) = owner {
                std::os::unix::fs::chown(&l.upper, Some(uid), Some(uid)).map_err(io("cannot chown", &l.upper))?;
            }
        }
        let secrets = (!self.config.secrets.is_empty()).then(|| l.secrets.clone());
        let spec = spec::build(&self.config, &l.merged, secrets.as_deref())?;
        if !self.config.read_only {
            // Mount points missing from the image are made in the upper layer before it is
            // mounted: container root could not create them under directories owned by host ids.
            for m in spec.mounts().iter().flatten() {
                ensure_mount_point(&self.config.lower, &l.upper, m.destination(), self.config.userns)?;
            }
            self.host.mount_overlay(&lower, &l.upper, &l.work, &l.merged)?;
        }
        self.mounted.push(l.merged.clone());
        if !self.config.secrets.is_empty() {
            self.make_secrets(owner)?;
        }
        let config_path = l.dir.join("config.json");
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| io("cannot write", &config_path)(e.into()))?;
        std::fs::write(&config_path, json).map_err(io("cannot write", &config_path))?;
        self.record.save(&l.dir)?;
        Ok(())
    }

    /// A small tmpfs in the private mount namespace holding a copy of each secret (0400, owned
    /// by container root); the spec binds it read-only at /run/secrets.
    fn make_secrets(&mut self, owner: Option<u32>) -> Result<(), LaunchError> {
        let dir = self.layout.secrets.clone();
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io("cannot create", &dir))?;
        let id = owner.unwrap_or(0);
        self.host.mount_tmpfs(&dir, &format!("size=2m,mode=0500,uid={id},gid={id}"))?;
        self.mounted.push(dir.clone());
        for secret in &self.config.secrets {
            let mut bytes = Vec::new();
            std::fs::File::open(&secret.source)
                .and_then(|f| f.take(MAX_SECRET_BYTES + 1).read_to_end(&mut bytes))
                .map_err(io("cannot read secret", &secret.source))?;
            if bytes.len() as u64 > MAX_SECRET_BYTES {
                return Err(LaunchError::SecretTooLarge {
                    name: secret.name.clone(),
                    source_path: secret.source.clone(),
                    max: MAX_SECRET_BYTES,
                });
            }
            let path = dir.join(&secret.name);
            std::fs::write(&path, &bytes).map_err(io("cannot write secret", &path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
                .map_err(io("cannot chmod secret", &path))?;
            std::os::unix::fs::chown(&path, Some(id), Some(id)).map_err(io("cannot chown secret", &path))?;
        }
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &LaunchConfig {
        &self.config
    }

    /// Host pid of the container's init, once started.
    pub fn pid(&self) -> Option<i32> {
        self.record.pid
    }

    /// Creates the container with libcontainer (namespaces, cgroup with the spec's limits and
    /// device rules, mounts, seccomp, capabilities) and starts its process. Returns its host pid.
    pub fn start(&mut self) -> Result<i32, LaunchError> {
        let runtime_err = |what| move |source| LaunchError::Runtime { what, source };
        // Until `start` returns, libcontainer's children run Rust code between fork and exec.
        let _forks = crate::fork::guard();
        let runtime = ContainerBuilder::new(self.config.id.clone(), SyscallType::default())
            .with_root_path(self.layout.runtime.clone())
            .map_err(runtime_err("use its state root"))?
            .validate_id()
            .map_err(runtime_err("accept the container id"))?
            .with_executor(UnblockSignals(DefaultExecutor {}))
            .as_init(&self.layout.dir)
            .with_systemd(false)
            .with_detach(false)
            // pivot_root cannot leave a ramdisk root (diskless nodes, the kernel lab): there
            // libcontainer moves the rootfs over / and chroots, as runc does on a ramdisk. The
            // container holds no CAP_SYS_CHROOT by default to climb back out with.
            .with_no_pivot(crate::host::root_is_ramdisk())
            .build()
            .map_err(runtime_err("create the container"))?;
        let pid = runtime.pid().map(Pid::as_raw);
        self.runtime = Some(runtime);
        if let Some(runtime) = self.runtime.as_mut() {
            runtime.start().map_err(runtime_err("start the container"))?;
        }
        let pid = pid.ok_or(LaunchError::NotStarted)?;
        self.record.pid = Some(pid);
        self.record.status = "running".to_string();
        self.record.save(&self.layout.dir)?;
        Ok(pid)
    }

    /// Waits for the container's init to end: its exit code, or 128 + the signal that killed it.
    pub fn wait(&mut self) -> Result<i32, LaunchError> {
        if let Some(code) = self.exit {
            return Ok(code);
        }
        let pid = self.record.pid.ok_or(LaunchError::NotStarted)?;
        let code = crate::forward::exit_code(pid).map_err(|source| LaunchError::Wait { pid, source })?;
        self.exit = Some(code);
        self.record.status = "stopped".to_string();
        let _ = self.record.save(&self.layout.dir);
        Ok(code)
    }

    /// [`Container::wait`], forwarding SIGINT and SIGTERM to the container's init meanwhile.
    /// The calling thread blocks both signals and a helper thread takes them with `sigwait`, so
    /// call it from a program whose other threads block them too (a single-threaded CLI does).
    pub fn wait_forwarding(&mut self) -> Result<i32, LaunchError> {
        let pid = self.record.pid.ok_or(LaunchError::NotStarted)?;
        let _forwarder = crate::forward::Forwarder::start(pid, block_forwarded_signals());
        self.wait()
    }

    /// Sends `signal` to the container's init.
    pub fn signal(&self, signal: Signal) -> Result<(), LaunchError> {
        let pid = self.record.pid.ok_or(LaunchError::NotStarted)?;
        kill(Pid::from_raw(pid), signal).map_err(|source| LaunchError::Wait { pid, source })
    }

    /// Ends the container if it runs, deletes it with libcontainer (its processes, cgroup and
    /// runtime state), detaches every mount made here and removes the container directory.
    /// Every step is tried; the first failure is returned.
    pub fn cleanup(&mut self) -> Result<(), LaunchError> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut failures = Vec::new();
        if let Some(mut runtime) = self.runtime.take() {
            if self.exit.is_none() {
                if let Some(pid) = self.record.pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    let _ = waitpid(Pid::from_raw(pid), None);
                }
            }
            if let Err(e) = runtime.delete(true) {
                failures.push(format!("libcontainer delete: {e}"));
            }
        }
        for target in self.mounted.drain(..).rev() {
            if let Err(e) = self.host.unmount(&target) {
                failures.push(e.to_string());
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.layout.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                failures.push(format!("remove {}: {e}", self.layout.dir.display()));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(LaunchError::Cleanup(failures.join("; ")))
        }
    }

    /// prepare, start, wait (forwarding SIGINT/SIGTERM when `forward_signals`), cleanup: the
    /// container's exit code.
    pub fn run(mut self, forward_signals: bool) -> Result<i32, LaunchError> {
        if forward_signals {
            // Blocked before the start, so none is lost; the container's init unblocks all.
            block_forwarded_signals();
        }
        self.start()?;
        let code = if forward_signals { self.wait_forwarding()? } else { self.wait()? };
        self.cleanup()?;
        Ok(code)
    }
}

/// Blocks SIGINT and SIGTERM on the calling thread (they stay pending until
/// [`Container::wait_forwarding`] takes them) and returns the set.
pub fn block_forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    set
}

/// libcontainer's default executor, after unblocking every signal: the container's process must
/// not inherit the mask of the thread that launched it.
#[derive(Clone)]
struct UnblockSignals(DefaultExecutor);

impl Executor for UnblockSignals {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        let _ = SigSet::all().thread_unblock();
        self.0.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        self.0.validate(spec)
    }
}

/// Makes the directories of `destination` (absolute, inside the container) that the lower does
/// not have in `upper`; those the lower has are made in the upper with the lower's owner and
/// mode (so the merged directory looks the same; with a user namespace the owner is shifted
/// as the idmapped lower shows it). Stops at anything in the lower that is not a
/// directory (a symlink is never followed; libcontainer resolves such targets itself).
fn ensure_mount_point(
    lower: &Path,
    upper: &Path,
    destination: &Path,
    userns: Option<crate::config::IdRange>,
) -> Result<(), LaunchError> {
    use std::os::unix::fs::MetadataExt as _;
    let mut relative = PathBuf::new();
    for component in destination.components() {
        let std::path::Component::Normal(name) = component else { continue };
        relative.push(name);
        let in_upper = upper.join(&relative);
        match std::fs::symlink_metadata(lower.join(&relative)) {
            Ok(meta) if meta.is_dir() => {
                if std::fs::symlink_metadata(&in_upper).is_err() {
                    std::fs::create_dir(&in_upper).map_err(io("cannot create", &in_upper))?;
                    std::fs::set_permissions(&in_upper, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                        .map_err(io("cannot chmod", &in_upper))?;
                    let shift = |id: u32| match userns {
                        Some(range) if id < range.size => range.host_id(id),
                        _ => id,
                    };
                    std::os::unix::fs::chown(&in_upper, Some(shift(meta.uid())), Some(shift(meta.gid())))
                        .map_err(io("cannot chown", &in_upper))?;
                }
            }
            Ok(_) => return Ok(()),
            Err(_) => {
                if std::fs::symlink_metadata(&in_upper).is_err() {
                    std::fs::DirBuilder::new().mode(0o755).create(&in_upper).map_err(io("cannot create", &in_upper))?;
                }
            }
        }
    }
    Ok(())
}

impl<H: Host> Drop for Container<H> {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HostCall, RecordingHost};

    fn config(root: &Path) -> LaunchConfig {
        let mut c = LaunchConfig::new("t1", root.join("lower"), vec!["/bin/true".into()]);
        c.state_root = root.join("state");
        c.userns = None; // chown needs root; the range check reads the host's files
        c
    }

    #[test]
    fn prepare_then_cleanup_undoes_every_mount() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("lower")).unwrap();
        let secret = tmp.path().join("token");
        std::fs::write(&secret, "s3cret").unwrap();
        let mut c = config(tmp.path());
        c.secrets = vec![format!("token={}", secret.display()).parse().unwrap()];
        let host = RecordingHost::default();
        let mut container = Container::prepare_on(c, host.clone()).unwrap();
        let dir = container.layout().dir.clone();
        assert!(dir.join("config.json").is_file());
        assert!(dir.join(crate::state::STATE_FILE).is_file());
        // The secret was copied into the (here not really mounted) tmpfs directory, 0400.
        let copied = dir.join("secrets/token");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), "s3cret");
        assert_eq!(std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777, 0o400);
        // Only an empty mount point lands in the upper layer.
        assert_eq!(std::fs::read_dir(dir.join("upper/run/secrets")).unwrap().count(), 0);
        container.cleanup().unwrap();
        assert!(!dir.exists());
        let calls = host.calls();
        assert_eq!(calls[0], HostCall::PrivateNamespace);
        assert!(matches!(calls[1], HostCall::Overlay { .. }));
        assert!(matches!(calls[2], HostCall::Tmpfs { .. }));
        assert_eq!(calls[3], HostCall::Unmount { target: dir.join("secrets") });
        assert_eq!(calls[4], HostCall::Unmount { target: dir.join("merged") });
        assert_eq!(crate::state::list(&tmp.path().join("state")).unwrap(), vec![]);
    }

    #[test]
    fn failed_prepare_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("lower")).unwrap();
        let mut c = config(tmp.path());
        c.secrets = vec![format!("x={}", tmp.path().join("missing").display()).parse().unwrap()];
        let host = RecordingHost::default();
        let err = Container::prepare_on(c.clone(), host.clone()).err().unwrap();
        assert!(err.to_string().contains("cannot read secret"), "{err}");
        assert!(!c.dir().exists());
        let calls = host.calls();
        assert_eq!(calls.iter().filter(|c| matches!(c, HostCall::Unmount { .. })).count(), 2);

        let host = RecordingHost { fail_at: Some(1), ..Default::default() };
        assert!(Container::prepare_on(c.clone(), host.clone()).is_err());
        assert!(!c.dir().exists());
        // The overlay that failed is not unmounted.
        assert_eq!(host.calls().len(), 2);
    }

    #[test]
    fn read_only_root_with_a_user_namespace_is_idmapped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("lower")).unwrap();
        let mut c = config(tmp.path());
        c.read_only = true;
        let range = crate::config::IdRange::default();
        c.userns = Some(range);
        let host = RecordingHost::default();
        let mut container = Container::prepare_on(c.clone(), host.clone()).unwrap();
        let dir = container.layout().dir.clone();
        container.cleanup().unwrap();
        let calls = host.calls();
        assert_eq!(
            calls[1],
            HostCall::Idmapped { source: c.lower.clone(), target: dir.join("merged"), range, root: true }
        );
        assert_eq!(calls[2], HostCall::Unmount { target: dir.join("merged") });
        // Without a user namespace: a plain read-only bind.
        c.userns = None;
        let host = RecordingHost::default();
        drop(Container::prepare_on(c, host.clone()).unwrap());
        assert!(matches!(host.calls()[1], HostCall::BindReadOnly { .. }));
    }

    #[test]
    fn ids_in_use_and_bad_ids_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("lower")).unwrap();
        let c = config(tmp.path());
        let first = Container::prepare_on(c.clone(), RecordingHost::default()).unwrap();
        assert!(matches!(Container::prepare_on(c.clone(), RecordingHost::default()), Err(LaunchError::Exists { .. })));
        drop(first);
        assert!(!c.dir().exists());
        let mut bad = c;
        bad.id = "../x".into();
        assert!(matches!(Container::prepare_on(bad, RecordingHost::default()), Err(LaunchError::Config(_))));
    }
}
