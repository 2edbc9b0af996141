//! The policy file: TOML, every field checked, unknown fields refused. Relative paths (trust
//! store, bundles, event file, image sources) resolve against the policy file's directory, so a
//! policy and its bundles can be shipped together. Errors name the file and the field.
//!
//! ```toml
//! trust = "/etc/imgsign/trust"       # trust store directory
//! events = "-"                       # "-" = stdout, or a file (JSON lines, appended)
//! pin_dir = "/sys/fs/bpf/imgsign"    # where programs and maps are pinned (bpffs)
//! control = "/run/imgsign/enforce.sock" # the control socket (scopes added at run time)
//! runtime_helpers = ["/usr/sbin/runc"] # host files whose current content every verified scope
//!                                    # also allows (see [`crate::helpers`]); default none
//! [[scope]]
//! name = "web"
//! cgroup = "/sys/fs/cgroup/web"      # cgroup v2 directory: the scope is the tasks in it
//! mode = "enforce"                   # or "audit"
//! remote_fs = false                  # true: code from FUSE, NFS, 9p, CIFS, ceph is judged by
//!                                    # digest instead of refused (their servers can serve one
//!                                    # content to the hash and another to the page fault)
//! profile = "default"                # or "strict": also no anonymous executable memory, no io_uring
//! bundles = ["web.sigstore.json"]
//! image = "oci:/images/web:latest"   # optional: also verify the image's files
//! [[scope]]                          # bundles discovered in a registry: none listed, and
//! name = "api"                       # the image a docker:// reference (by tag or digest)
//! cgroup = "/sys/fs/cgroup/api"
//! mode = "enforce"
//! image = "docker://registry.example/api@sha256:..."
//! [registry]                         # optional: how docker:// images are reached
//! insecure = false                   # plain HTTP, loopback hosts only
//! cert_dir = "/etc/imgsign/registry-certs" # extra CA certificates (*.crt)
//! auth_file = "/etc/imgsign/auth.json"     # Docker/Podman auth file (default: the usual ones)
//! timeout_seconds = 30
//! ```
//!
//! A scope with an `image` that is a registry reference and no `bundles` takes the bundles
//! attached to that image in the registry (OCI referrers, else the `sha256-<hex>` tag schema),
//! and only those of one statement the trust store accepts whose subject is the manifest the
//! reference names now (see [`crate::discovered`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use verifier_core::source::{ImageRef, RegistryAccess};

pub use crate::source::ScopeSpec;

/// Where programs and maps are pinned when the policy does not say.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/imgsign";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("policy {path}: {field}: {reason}")]
    Invalid { path: PathBuf, field: String, reason: String },
}

/// What a scope does with content that is not in its digest set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny it.
    Enforce,
    /// Allow it and report it.
    Audit,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

/// What the daemon does to a scope's cgroup when the kernel reports a violation there (an event
/// whose verdict is `denied`, or `audited` in audit mode): a response after the refusal, so the
/// process that tried keeps no foothold. Optional; none when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Violation {
    /// Stop every task of the scope (`cgroup.freeze`), for `imgsign snapshot` and a decision.
    Freeze,
    /// End every task of the scope (`cgroup.kill`).
    Kill,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Violation::Freeze => "freeze",
            Violation::Kill => "kill",
        })
    }
}

/// Which attacker a scope is hardened against (the README's threat model). Optional in the
/// policy; `default` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Against an attacker who runs listed programs with chosen arguments and files: no unsigned
    /// file becomes code, no code is patched in memory (`/proc/PID/mem`, ptrace, userfaultfd,
    /// W+X file mappings). JITs keep working.
    #[default]
    Default,
    /// Also against an attacker who already runs native code in a listed process: no anonymous
    /// executable memory (JITs break) and no io_uring.
    Strict,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Default => "default",
            Profile::Strict => "strict",
        })
    }
}

/// Where decision events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSink {
    Stdout,
    /// A file, opened for appending (JSON lines).
    File(PathBuf),
}

/// A loaded, checked policy with every path resolved.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy file itself.
    pub path: PathBuf,
    pub trust: PathBuf,
    pub events: EventSink,
    pub pin_dir: PathBuf,
    /// The control socket ([`crate::control`]).
    pub control: PathBuf,
    /// May be empty: scopes can also come through the control socket.
    pub scopes: Vec<ScopeSpec>,
    /// How often the running daemon verifies every scope again (expiry, revocation).
    pub recheck: std::time::Duration,
    /// How `docker://` images (the policy's and the control socket's) are reached.
    pub registry: RegistryAccess,
    /// Host files (absolute, distinct) whose current content is allowed in every scope that
    /// verified, besides its signed set: the container runtime's own programs that enter
    /// containers' cgroups ([`crate::helpers`]). Empty by default.
    pub runtime_helpers: Vec<PathBuf>,
}

/// How many runtime helpers a policy may list (each is hashed at every recheck).
pub const MAX_RUNTIME_HELPERS: usize = 64;

/// [`Policy::recheck`] when the policy does not say.
pub const DEFAULT_RECHECK_SECONDS: u64 = 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    trust: PathBuf,
    #[serde(default)]
    events: Option<String>,
    #[serde(default)]
    pin_dir: Option<PathBuf>,
    #[serde(default)]
    control: Option<PathBuf>,
    #[serde(default)]
    recheck_seconds: Option<u64>,
    #[serde(default, rename = "scope")]
    scopes: Vec<ScopeFile>,
    #[serde(default)]
    registry: Option<RegistryFile>,
    #[serde(default)]
    runtime_helpers: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    cert_dir: Option<PathBuf>,
    #[serde(default)]
    auth_file: Option<PathBuf>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    name: String,
    cgroup: PathBuf,
    mode: Mode,
    #[serde(default)]
    remote_fs: bool,
    #[serde(default)]
    profile: Profile,
    #[serde(default)]
    on_violation: Option<Violation>,
    /// A parent that allows nothing of its own: tasks below it that no nearer scope holds
    /// (a container whose scope was never made) fail closed. Takes no bundles.
    #[serde(default)]
    deny_unknown: bool,
    #[serde(default)]
    bundles: Vec<PathBuf>,
    #[serde(default)]
    image: Option<String>,
}

/// Reads and checks the policy at `path` (made absolute first, so relative paths in it do not
/// depend on the daemon's working directory).
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let read_err = |source| PolicyError::Read { path: path.to_path_buf(), source };
    let path = std::path::absolute(path).map_err(read_err)?;
    let text = std::fs::read_to_string(&path).map_err(read_err)?;
    parse(&text, &path)
}

/// Checks policy text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
    let file: PolicyFile =
        toml::from_str(text).map_err(|source| PolicyError::Parse { path: path.to_path_buf(), source })?;
    let invalid = |field: String, reason: &str| PolicyError::Invalid {
        path: path.to_path_buf(),
        field,
        reason: reason.to_string(),
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };

    if file.trust.as_os_str().is_empty() {
        return Err(invalid("trust".into(), "is empty"));
    }
    let events = match file.events.as_deref() {
        None | Some("-") => EventSink::Stdout,
        Some("") => return Err(invalid("events".into(), "is empty (use \"-\" for stdout)")),
        Some(file) => EventSink::File(resolve(Path::new(file))),
    };
    let pin_dir = file.pin_dir.unwrap_or_else(|| DEFAULT_PIN_DIR.into());
    if !pin_dir.is_absolute() {
        return Err(invalid("pin_dir".into(), "must be an absolute path on bpffs"));
    }
    let control = file.control.unwrap_or_else(|| crate::control::DEFAULT_SOCKET.into());
    if !control.is_absolute() {
        return Err(invalid("control".into(), "must be an absolute path"));
    }

    let recheck = match file.recheck_seconds {
        None => DEFAULT_RECHECK_SECONDS,
        Some(0) => return Err(invalid("recheck_seconds".into(), "must be at least 1")),
        Some(s) if s > 86_400 => return Err(invalid("recheck_seconds".into(), "must be at most 86400 (a day)")),
        Some(s) => s,
    };
    let mut registry = RegistryAccess::default();
    if let Some(r) = file.registry {
        registry.insecure = r.insecure;
        registry.cert_dir = r.cert_dir.map(|p| resolve(&p));
        registry.auth_files = r.auth_file.map(|p| resolve(&p)).into_iter().collect();
        match r.timeout_seconds {
            None => {}
            Some(s @ 1..=600) => registry.timeout = std::time::Duration::from_secs(s),
            Some(_) => return Err(invalid("registry.timeout_seconds".into(), "must be 1 to 600")),
        }
    }
    let mut helpers = BTreeSet::new();
    for (index, helper) in file.runtime_helpers.iter().enumerate() {
        let field = format!("runtime_helpers[{index}]");
        if !helper.is_absolute() {
            return Err(invalid(field, "must be an absolute path of a host file (the runtime's program)"));
        }
        if !helpers.insert(helper.clone()) {
            return Err(invalid(field, "is listed twice"));
        }
    }
    if file.runtime_helpers.len() > MAX_RUNTIME_HELPERS {
        return Err(invalid("runtime_helpers".into(), &format!("lists more than {MAX_RUNTIME_HELPERS} files")));
    }
    let mut names = BTreeSet::new();
    let mut cgroups = BTreeSet::new();
    let mut scopes = Vec::new();
    for (index, scope) in file.scopes.into_iter().enumerate() {
        let at = |field: &str| {
            if scope.name.is_empty() {
                format!("scope[{index}].{field}")
            } else {
                format!("scope[{index}] ({:?}).{field}", scope.name)
            }
        };
        if !valid_scope_name(&scope.name) {
            return Err(invalid(at("name"), "must be 1 to 64 characters of letters, digits, '-', '_' or '.'"));
        }
        if !names.insert(scope.name.clone()) {
            return Err(invalid(at("name"), "is used by an earlier scope"));
        }
        if !scope.cgroup.is_absolute() {
            return Err(invalid(at("cgroup"), "must be an absolute path of a cgroup v2 directory"));
        }
        if !cgroups.insert(scope.cgroup.clone()) {
            return Err(invalid(at("cgroup"), "is the cgroup of an earlier scope"));
        }
        let discovers = scope.image.as_deref().is_some_and(|i| i.starts_with("docker://"));
        match (scope.deny_unknown, scope.bundles.is_empty()) {
            (false, true) if discovers => {}
            (false, true) => {
                return Err(invalid(
                    at("bundles"),
                    "is empty: a scope needs at least one signed manifest (or an image = \"docker://...\" whose \
                     attached bundles are discovered, or deny_unknown = true, for a parent cgroup that allows \
                     nothing of its own)",
                ))
            }
            (true, false) => {
                return Err(invalid(
                    at("bundles"),
                    "must be empty in a deny_unknown scope: it allows nothing of its own",
                ))
            }
            (true, true) if scope.image.is_some() => {
                return Err(invalid(at("image"), "is meaningless in a deny_unknown scope: it has no manifest"))
            }
            _ => {}
        }
        let image = match scope.image.as_deref() {
            None => None,
            Some(text) => {
                let image: ImageRef = text.parse().map_err(|_| {
                    invalid(at("image"), &format!("{text:?} is not oci:DIR[:TAG], docker-archive:FILE, dir:PATH or docker://HOST/REPO[:TAG|@DIGEST]"))
                })?;
                Some(match image {
                    ImageRef::Oci { dir, tag, platform } => ImageRef::Oci { dir: resolve(&dir), tag, platform },
                    ImageRef::DockerArchive { file } => ImageRef::DockerArchive { file: resolve(&file) },
                    ImageRef::Dir { path } => ImageRef::Dir { path: resolve(&path) },
                    image @ ImageRef::Registry { .. } => image.with_registry_access(registry.clone()),
                })
            }
        };
        scopes.push(ScopeSpec {
            name: scope.name,
            cgroup: scope.cgroup,
            mode: scope.mode,
            remote_fs: scope.remote_fs,
            profile: scope.profile,
            on_violation: scope.on_violation,
            container: None,
            bundles: scope.bundles.iter().map(|b| resolve(b)).collect(),
            image,
        });
    }
    Ok(Policy {
        path: path.to_path_buf(),
        trust: resolve(&file.trust),
        events,
        pin_dir,
        control,
        scopes,
        recheck: std::time::Duration::from_secs(recheck),
        registry,
        runtime_helpers: file.runtime_helpers,
    })
}

/// Whether `name` can name a scope: 1 to 64 letters, digits, '-', '_' or '.'.
pub fn valid_scope_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "trust = \"trust\"\n[[scope]]\nname = \"web\"\ncgroup = \"/sys/fs/cgroup/web\"\nmode = \"enforce\"\n";

    fn parsed(text: &str) -> Result<Policy, PolicyError> {
        parse(text, Path::new("/etc/imgsign/policy.toml"))
    }

    #[test]
    fn a_registry_image_without_bundles_is_a_discovered_scope_reached_as_the_registry_table_says() {
        let policy = parsed(&format!(
            "{HEAD}image = \"docker://127.0.0.1:5000/web:v1\"\n[registry]\ninsecure = true\ncert_dir = \"certs\"\nauth_file = \"/etc/imgsign/auth.json\"\ntimeout_seconds = 5\n"
        ))
        .unwrap();
        let scope = &policy.scopes[0];
        assert!(scope.bundles.is_empty());
        let Some(ImageRef::Registry { access, .. }) = &scope.image else { panic!("{:?}", scope.image) };
        assert!(access.insecure);
        assert_eq!(access.cert_dir.as_deref(), Some(Path::new("/etc/imgsign/certs")), "relative to the policy");
        assert_eq!(access.auth_files, vec![PathBuf::from("/etc/imgsign/auth.json")]);
        assert_eq!(access.timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn only_a_registry_image_stands_in_for_bundles() {
        for image in ["oci:/images/web:v1", "docker-archive:/images/web.tar", "dir:/images/web"] {
            let err = parsed(&format!("{HEAD}image = {image:?}\n")).unwrap_err().to_string();
            assert!(err.contains("bundles") && err.contains("is empty"), "{image}: {err}");
        }
        let err = parsed(&format!("{HEAD}image = \"docker://h:5000/web:v1\"\n[registry]\ntimeout_seconds = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("registry.timeout_seconds"), "{err}");
        let err =
            parsed(&format!("{HEAD}image = \"docker://h:5000/web:v1\"\n[registry]\nproxy = \"x\"\n")).unwrap_err();
        assert!(matches!(err, PolicyError::Parse { .. }), "unknown fields are refused: {err:?}");
    }
}
