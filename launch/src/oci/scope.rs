//! The container's enforcement scope: after libcontainer's create (the init waits for `start`;
//! nothing of the container has run), the init's own cgroup (the unified `0::` line of
//! `/proc/<pid>/cgroup`) is registered with the enforcement daemon through its control socket,
//! holding the bundles the gate matched. The daemon verifies them again and replies once the
//! kernel holds the digests.
//!
//! No daemon to reach, or a node where the container's unified cgroup is not its own (cgroup
//! v1 or hybrid layouts, where libcontainer places it in the v1 hierarchies): the policy's
//! `when_no_enforcer` decides between refusing (the default) and running unenforced. A daemon
//! that answers and refuses always refuses the container.

use super::record::ScopeRecord;
use admission::{Admitted, EnforceMode, Policy, WhenNoEnforcer};
use enforce::control::{self, AddScope, ContainerInfo, ControlError, Request};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The daemon verifies every bundle before it replies: a large image takes a few seconds.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("no kernel enforcement for the container ({reason}), and the runtime policy refuses to run it unenforced (when_no_enforcer = \"refuse\")")]
    NoEnforcer { reason: String },
    #[error("the enforcement daemon refused the container's scope: {0}")]
    Refused(String),
    #[error("registering the container's scope")]
    Daemon(#[source] ControlError),
    #[error("removing scope {name} from the enforcement daemon: {reason}")]
    Remove { name: String, reason: String },
    #[error("cannot read the cgroup of the container's init {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the container stands against the enforcer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attached {
    Scoped(ScopeRecord),
    /// Running unenforced, and why (the policy allowed it).
    Unenforced(String),
}

/// Where the cgroup file systems and `/proc` are (a test points them elsewhere).
#[derive(Debug, Clone)]
pub struct Paths {
    pub cgroup_root: PathBuf,
    pub proc: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths { cgroup_root: PathBuf::from("/sys/fs/cgroup"), proc: PathBuf::from("/proc") }
    }
}

/// What an engine says of a container besides the runtime's id, from the annotations of its
/// OCI config (the state a hook reads carries them): the names that make an event readable.
/// Engines differ: containerd's CRI plugin sets `io.kubernetes.cri.container-name`,
/// `io.kubernetes.cri.sandbox-name` and `-namespace`; CRI-O sets `io.kubernetes.container.name`,
/// `io.kubernetes.pod.name` and `io.kubernetes.pod.namespace`; podman 4.3 puts no name there
/// (its annotations are `io.container.manager=libpod` and `io.podman.annotations.*` flags,
/// checked with `podman init` on Debian's 4.3.1), so a podman container is named by its id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    pub name: Option<String>,
    /// `namespace/name` of the Kubernetes pod.
    pub pod: Option<String>,
}

impl Naming {
    /// The names in a container's annotations, where an engine put them.
    pub fn from_annotations<'a>(annotations: impl Fn(&str) -> Option<&'a str>) -> Naming {
        let first =
            |keys: &[&str]| keys.iter().find_map(|k| annotations(k)).filter(|v| !v.is_empty()).map(String::from);
        let name = first(&["io.kubernetes.cri.container-name", "io.kubernetes.container.name"]);
        let pod_name = first(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]);
        let namespace = first(&["io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"]);
        let pod = match (namespace, pod_name) {
            (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
            (None, pod) => pod,
            (Some(_), None) => None,
        };
        Naming { name, pod }
    }
}

/// Finds the cgroup of container `id`'s init `pid` and makes it a scope, or applies the
/// policy's `when_no_enforcer`.
pub fn attach(
    policy: &Policy,
    id: &str,
    pid: i32,
    admitted: &Admitted,
    naming: &Naming,
    paths: &Paths,
) -> Result<Attached, ScopeError> {
    match enforce::cgroup::fs_magic(&paths.cgroup_root) {
        Ok(enforce::cgroup::CGROUP2_SUPER_MAGIC) => {}
        Ok(_) => {
            return without_enforcer(
                policy,
                format!(
                    "{} is not the unified cgroup v2 hierarchy (cgroup v1 or hybrid): the container's \
                     cgroup cannot be an enforcement scope of its own",
                    paths.cgroup_root.display()
                ),
            )
        }
        Err(e) => return without_enforcer(policy, format!("cannot stat {}: {e}", paths.cgroup_root.display())),
    }
    let file = paths.proc.join(pid.to_string()).join("cgroup");
    let text = std::fs::read_to_string(&file).map_err(|source| ScopeError::Read { path: file.clone(), source })?;
    match unified_cgroup(&text) {
        Some(relative) if relative != "/" => {
            let cgroup = paths.cgroup_root.join(relative.trim_start_matches('/'));
            // The init runs the runtime's code until it execs the entrypoint: the daemon's check
            // of what already runs in the cgroup spares it (its exec is the kernel's to judge).
            register_named(policy, id, &cgroup, admitted, naming, u32::try_from(pid).ok())
        }
        _ => without_enforcer(policy, format!("{} names no cgroup of the container's own", file.display())),
    }
}

/// The path of the `0::` line (the unified hierarchy) of a `/proc/<pid>/cgroup`.
pub fn unified_cgroup(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| line.strip_prefix("0::"))
}

/// Registers `cgroup` as scope `id` holding `admitted`'s bundles, over the policy's socket.
pub fn register(policy: &Policy, id: &str, cgroup: &Path, admitted: &Admitted) -> Result<Attached, ScopeError> {
    register_named(policy, id, cgroup, admitted, &Naming::default(), None)
}

/// [`register`], naming the container and the runtime's init in the cgroup (`init_pid`).
pub fn register_named(
    policy: &Policy,
    id: &str,
    cgroup: &Path,
    admitted: &Admitted,
    naming: &Naming,
    init_pid: Option<u32>,
) -> Result<Attached, ScopeError> {
    let request = Request::Add(AddScope {
        name: id.to_string(),
        cgroup: cgroup.to_path_buf(),
        mode: match policy.enforce_mode {
            EnforceMode::Enforce => enforce::Mode::Enforce,
            EnforceMode::Audit => enforce::Mode::Audit,
        },
        profile: enforce::Profile::default(),
        remote_fs: false,
        on_violation: None,
        container: Some(ContainerInfo {
            id: id.to_string(),
            image: admitted.name.clone(),
            digest: admitted.digest.clone(),
            name: naming.name.clone(),
            pod: naming.pod.clone(),
            init_pid,
        }),
        bundles: admitted.bundles.clone(),
        image: None,
    });
    match control::call(&policy.control_socket, &request, REGISTER_TIMEOUT) {
        Ok(reply) if reply.ok => Ok(Attached::Scoped(ScopeRecord {
            name: id.to_string(),
            cgroup: cgroup.to_path_buf(),
            socket: policy.control_socket.clone(),
        })),
        Ok(reply) => Err(ScopeError::Refused(reply.error.unwrap_or_else(|| "no reason given".into()))),
        Err(e @ ControlError::Connect { .. }) => without_enforcer(policy, enforce::verified::error_chain(&e)),
        Err(e) => Err(ScopeError::Daemon(e)),
    }
}

/// Asks the daemon to forget the scope.
pub fn remove(scope: &ScopeRecord) -> Result<(), ScopeError> {
    let request = Request::Remove { name: scope.name.clone() };
    let failed = |reason: String| ScopeError::Remove { name: scope.name.clone(), reason };
    match control::call(&scope.socket, &request, REMOVE_TIMEOUT) {
        Ok(reply) if reply.ok => Ok(()),
        Ok(reply) => Err(failed(reply.error.unwrap_or_default())),
        Err(e) => Err(failed(enforce::verified::error_chain(&e))),
    }
}

fn without_enforcer(policy: &Policy, reason: String) -> Result<Attached, ScopeError> {
    match policy.when_no_enforcer {
        WhenNoEnforcer::Refuse => Err(ScopeError::NoEnforcer { reason }),
        WhenNoEnforcer::RunUnenforced => Ok(Attached::Unenforced(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_named_from_what_each_engine_annotates() {
        let names = |pairs: &[(&str, &str)]| {
            let map: std::collections::BTreeMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Naming::from_annotations(|k| map.get(k).map(String::as_str))
        };
        // containerd's CRI plugin.
        let cri = names(&[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.container-name", "web"),
            ("io.kubernetes.cri.sandbox-name", "web-7d9f"),
            ("io.kubernetes.cri.sandbox-namespace", "shop"),
        ]);
        assert_eq!(cri, Naming { name: Some("web".into()), pod: Some("shop/web-7d9f".into()) });
        // CRI-O.
        let crio = names(&[
            ("io.kubernetes.container.name", "db"),
            ("io.kubernetes.pod.name", "db-0"),
            ("io.kubernetes.pod.namespace", "data"),
        ]);
        assert_eq!(crio, Naming { name: Some("db".into()), pod: Some("data/db-0".into()) });
        // podman 4.3.1's annotations, as `podman init` wrote them: no name to take.
        let podman = names(&[
            ("io.container.manager", "libpod"),
            ("io.kubernetes.cri-o.Created", "2026-12-01T12:47:20.519016944Z"),
            ("io.kubernetes.cri-o.TTY", "false"),
            ("io.podman.annotations.autoremove", "FALSE"),
        ]);
        assert_eq!(podman, Naming::default());
    }

    #[test]
    fn the_runtime_policy_defaults_to_the_daemons_socket() {
        let policy = Policy::parse("trust = \"/t\"\nbundles = [\"/b\"]\n", Path::new("runtime.toml")).unwrap();
        assert_eq!(policy.control_socket, Path::new(enforce::control::DEFAULT_SOCKET));
    }
    use enforce::control::{ControlServer, Reply};

    fn policy(dir: &Path, when: &str) -> Policy {
        let text = format!(
            "trust = \"/t\"\nbundles = [\"/b.json\"]\nwhen_no_enforcer = {when:?}\nenforce_mode = \"audit\"\ncontrol_socket = {:?}\n",
            dir.join("control.sock")
        );
        Policy::parse(&text, &dir.join("runtime.toml")).unwrap()
    }

    fn admitted() -> Admitted {
        Admitted {
            name: "app".into(),
            digest: "sha256:ab".into(),
            bundles: vec![PathBuf::from("/b.json")],
            entries: 3,
            hashed: 1,
            cached: 2,
            layers: 0,
            walked_because: None,
            remembered: false,
        }
    }

    /// A daemon that answers one request with `reply`; returns the request it got.
    fn daemon(socket: &Path, reply: Reply) -> std::thread::JoinHandle<Option<Request>> {
        let server = ControlServer::bind(socket).unwrap();
        std::thread::spawn(move || {
            for _ in 0..400 {
                if let Some(pending) = server.accept() {
                    let request = pending.request.clone().ok();
                    pending.reply(&reply);
                    return request;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        })
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn the_unified_line_names_the_cgroup() {
        let text = "12:pids:/libpod_parent/x\n1:name=systemd:/a\n0::/libpod_parent/libpod-x\n";
        assert_eq!(unified_cgroup(text), Some("/libpod_parent/libpod-x"));
        assert_eq!(unified_cgroup("3:memory:/x\n"), None);
    }

    #[test]
    fn a_daemon_that_accepts_gets_the_cgroup_the_bundles_and_the_container() {
        if !is_root() {
            return; // the control socket serves root peers only
        }
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), "refuse");
        let served = daemon(&policy.control_socket, Reply { ok: true, ..Reply::default() });
        let attached = register(&policy, "c1", Path::new("/sys/fs/cgroup/x/c1"), &admitted()).unwrap();
        let Some(Request::Add(add)) = served.join().unwrap() else { panic!("no add request") };
        assert_eq!(add.cgroup, Path::new("/sys/fs/cgroup/x/c1"));
        assert_eq!(add.mode, enforce::Mode::Audit);
        assert_eq!(add.bundles, vec![PathBuf::from("/b.json")]);
        assert_eq!(add.container.unwrap().digest, "sha256:ab");
        let Attached::Scoped(scope) = attached else { panic!("not scoped: {attached:?}") };
        assert_eq!(scope.socket, policy.control_socket);
        // remove() sends Remove for the same name.
        let served = daemon(&policy.control_socket, Reply { ok: true, ..Reply::default() });
        remove(&scope).unwrap();
        assert_eq!(served.join().unwrap(), Some(Request::Remove { name: "c1".into() }));
    }

    #[test]
    fn a_daemon_that_refuses_refuses_the_container_whatever_the_policy() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), "run-unenforced");
        let served = daemon(&policy.control_socket, Reply::refused("bundle not trusted"));
        let err = register(&policy, "c1", Path::new("/sys/fs/cgroup/c1"), &admitted()).unwrap_err();
        served.join().unwrap();
        assert!(matches!(&err, ScopeError::Refused(reason) if reason == "bundle not trusted"), "{err}");
    }

    #[test]
    fn no_daemon_refuses_by_default_and_runs_unenforced_only_when_the_policy_says() {
        let dir = tempfile::tempdir().unwrap();
        let err = register(&policy(dir.path(), "refuse"), "c1", Path::new("/c"), &admitted()).unwrap_err();
        assert!(matches!(&err, ScopeError::NoEnforcer { reason } if reason.contains("cannot reach")), "{err}");
        let attached = register(&policy(dir.path(), "run-unenforced"), "c1", Path::new("/c"), &admitted()).unwrap();
        assert!(matches!(&attached, Attached::Unenforced(reason) if reason.contains("cannot reach")), "{attached:?}");
    }

    #[test]
    fn a_cgroup_root_that_is_not_cgroup2_is_no_enforcer_with_that_reason() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths { cgroup_root: dir.path().to_path_buf(), proc: PathBuf::from("/proc") };
        let err = attach(&policy(dir.path(), "refuse"), "c1", 1, &admitted(), &Naming::default(), &paths).unwrap_err();
        assert!(
            matches!(&err, ScopeError::NoEnforcer { reason } if reason.contains("not the unified cgroup v2")),
            "{err}"
        );
    }
}
