//! The node's runtime policy (`/etc/imgsign/runtime.toml`): which trust store, which signed
//! manifests a container's root file system may match, and what happens without the enforcer.
//! Owned by the node's operator; nothing the container's engine or image says can widen it.
//!
//! ```toml
//! trust = "/etc/imgsign/trust"            # the trust store (keys, revocations, threshold)
//! bundles = ["/etc/imgsign/bundles"]      # bundle files, or directories of *.json bundles
//! cache = "/var/lib/imgsign/runtime"      # hashes of files already verified (root only)
//! when_no_enforcer = "refuse"             # or "run-unenforced"
//! enforce_mode = "enforce"                # or "audit": the scope registered with the daemon
//! control_socket = "/run/imgsign/enforce.sock"
//! cgroup_root = "/sys/fs/cgroup"          # the unified (v2) hierarchy, for `imgsign hook`
//!
//! [images]                                # optional: an engine-named image may match only these
//! "registry.example/app:1" = ["/etc/imgsign/bundles/app.json"]
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the policy is read from unless `IMGSIGN_RUNTIME_CONFIG` names another file.
pub const DEFAULT_PATH: &str = "/etc/imgsign/runtime.toml";
pub const CONFIG_ENV: &str = "IMGSIGN_RUNTIME_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the runtime policy {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the runtime policy {path} is not valid")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("the runtime policy {path} lists no bundles: no container could ever start")]
    NoBundles { path: PathBuf },
    #[error("the runtime policy {path}: {field} must be an absolute path, not {value}")]
    Relative { path: PathBuf, field: &'static str, value: PathBuf },
}

/// What to do when no enforcement daemon answers on the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WhenNoEnforcer {
    /// The container is refused (the default: a node that asked for enforcement gets it).
    #[default]
    Refuse,
    /// The container runs with its root file system verified but no kernel enforcement.
    RunUnenforced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EnforceMode {
    #[default]
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The trust store directory.
    pub trust: PathBuf,
    /// Bundle files, or directories whose `*.json` files are bundles.
    pub bundles: Vec<PathBuf>,
    /// Image names or digests (as the engine names them) to the only bundles they may match.
    #[serde(default)]
    pub images: BTreeMap<String, Vec<PathBuf>>,
    #[serde(default = "default_cache")]
    pub cache: PathBuf,
    #[serde(default)]
    pub when_no_enforcer: WhenNoEnforcer,
    #[serde(default)]
    pub enforce_mode: EnforceMode,
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// Where the unified cgroup v2 hierarchy is mounted, under which `imgsign hook` finds the
    /// cgroup a stock runtime made for the container. On a hybrid node this is
    /// `/sys/fs/cgroup/unified`: runc places each container in it too (checked with podman 4.3
    /// and runc 1.1.5), so the container's cgroup there can be its scope.
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
}

fn default_cgroup_root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
}

fn default_cache() -> PathBuf {
    PathBuf::from("/var/lib/imgsign/runtime")
}

fn default_socket() -> PathBuf {
    // The enforcement daemon's default (`enforce::control::DEFAULT_SOCKET`; a launch test holds them equal).
    PathBuf::from("/run/imgsign/enforce.sock")
}

impl Policy {
    /// The policy file: `$IMGSIGN_RUNTIME_CONFIG`, else [`DEFAULT_PATH`].
    pub fn path() -> PathBuf {
        std::env::var_os(CONFIG_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text)
            .map_err(|source| PolicyError::Parse { path: path.to_path_buf(), source: Box::new(source) })?;
        if policy.bundles.is_empty() && policy.images.is_empty() {
            return Err(PolicyError::NoBundles { path: path.to_path_buf() });
        }
        let relative = |field: &'static str, value: &Path| {
            (!value.is_absolute()).then(|| PolicyError::Relative {
                path: path.to_path_buf(),
                field,
                value: value.into(),
            })
        };
        let mut problems = [
            relative("trust", &policy.trust),
            relative("cache", &policy.cache),
            relative("cgroup_root", &policy.cgroup_root),
        ]
        .into_iter()
        .flatten();
        if let Some(problem) = problems.next() {
            return Err(problem);
        }
        for bundle in policy.bundles.iter().chain(policy.images.values().flatten()) {
            if let Some(problem) = relative("bundles", bundle) {
                return Err(problem);
            }
        }
        Ok(policy)
    }
}
