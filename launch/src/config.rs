//! What a container is asked to be: [`LaunchConfig`] and its parts, with the hardened defaults
//! and the parsers the command line uses for its flags. Every loosening is a named field here
//! (`net`, `userns`, `cap_add`, ...), so a spec never gets weaker by accident.

use oci_spec::runtime::Capability;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where containers keep their state unless told otherwise.
pub const DEFAULT_STATE_ROOT: &str = "/run/imgsign/containers";
/// First host uid/gid of the default user namespace mapping (container 0 -> host 100000).
pub const DEFAULT_USERNS_BASE: u32 = 100_000;
/// Size of the user namespace mapping.
pub const USERNS_SIZE: u32 = 65_536;
/// Default pids limit.
pub const DEFAULT_PIDS_LIMIT: i64 = 512;
/// Default memory limit (1 GiB).
pub const DEFAULT_MEMORY: i64 = 1 << 30;
/// Largest secret file copied into the secrets tmpfs.
pub const MAX_SECRET_BYTES: u64 = 1 << 20;

/// The capabilities a container keeps by default: enough for an init that changes users and
/// owns files inside its own user namespace, nothing that reaches the kernel or devices.
pub const MINIMAL_CAPABILITIES: [Capability; 8] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::NetBindService,
    Capability::Setgid,
    Capability::Setuid,
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error("--secret wants NAME=SRC with NAME a plain file name, got {0:?}")]
    Secret(String),
    #[error("--volume wants HOST:CONTAINER[:ro] with absolute paths, got {0:?}")]
    Volume(String),
    #[error("cannot read a size from {0:?} (examples: 512m, 1g, 1048576)")]
    Size(String),
    #[error("--net is none or host, got {0:?}")]
    Net(String),
    #[error("container id {0:?}: use 1 to 64 of [a-zA-Z0-9_.-], not starting with . or -")]
    Id(String),
    #[error("the user namespace range {base}..{end} holds host account {name:?} ({kind} {id})")]
    RangeInUse { base: u32, end: u64, name: String, kind: &'static str, id: u32 },
    #[error("--userns-base {0} is root's own range; pick an unprivileged base (default 100000)")]
    RangeRoot(u32),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Network of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    /// A new, empty network namespace (loopback only).
    #[default]
    None,
    /// The host's network namespace (`--net host`).
    Host,
}

impl FromStr for Net {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "none" => Ok(Net::None),
            "host" => Ok(Net::Host),
            other => Err(ConfigError::Net(other.to_string())),
        }
    }
}

/// A user namespace mapping: container ids `0..size` are host ids `base..base+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IdRange {
    pub base: u32,
    pub size: u32,
}

impl Default for IdRange {
    fn default() -> Self {
        IdRange { base: DEFAULT_USERNS_BASE, size: USERNS_SIZE }
    }
}

impl IdRange {
    /// The host uid of container uid `id`.
    pub fn host_id(&self, id: u32) -> u32 {
        self.base + id
    }

    /// Checks that no account in `passwd` or group in `group` (files in `/etc/passwd` format)
    /// falls in the range, so that container root is nobody on the host.
    pub fn check_unused(&self, passwd: &Path, group: &Path) -> Result<(), ConfigError> {
        if self.base == 0 {
            return Err(ConfigError::RangeRoot(self.base));
        }
        let end = u64::from(self.base) + u64::from(self.size);
        for (path, kind) in [(passwd, "uid"), (group, "gid")] {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
            };
            for line in text.lines() {
                let fields: Vec<&str> = line.split(':').collect();
                let Some(id) = fields.get(2).and_then(|f| f.parse::<u32>().ok()) else { continue };
                // 65534 (nobody/nogroup) is the overflow id, never a mapped owner.
                if id != 65534 && u64::from(id) >= u64::from(self.base) && u64::from(id) < end {
                    return Err(ConfigError::RangeInUse {
                        base: self.base,
                        end,
                        name: fields[0].to_string(),
                        kind,
                        id,
                    });
                }
            }
        }
        Ok(())
    }
}

/// `--secret NAME=SRC`: the file SRC, read-only at `/run/secrets/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Secret {
    pub name: String,
    pub source: PathBuf,
}

impl FromStr for Secret {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Secret(s.to_string());
        let (name, source) = s.split_once('=').ok_or_else(bad)?;
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || source.is_empty() {
            return Err(bad());
        }
        Ok(Secret { name: name.to_string(), source: PathBuf::from(source) })
    }
}

/// `--volume HOST:CONTAINER[:ro]`: a host directory bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Volume {
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
}

impl FromStr for Volume {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Volume(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [h, c] => (h, c, false),
            [h, c, "ro"] => (h, c, true),
            [h, c, "rw"] => (h, c, false),
            _ => return Err(bad()),
        };
        if !host.starts_with('/') || !container.starts_with('/') || container.split('/').any(|c| c == "..") {
            return Err(bad());
        }
        Ok(Volume { host: PathBuf::from(host), container: PathBuf::from(container), read_only })
    }
}

/// Parses a capability name (`NET_ADMIN`, `CAP_NET_ADMIN`, any case).
pub fn parse_capability(s: &str) -> Result<Capability, ConfigError> {
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| ConfigError::Capability(s.to_string()))
}

/// Parses a byte size: a number with an optional k, m or g suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<i64, ConfigError> {
    let bad = || ConfigError::Size(s.to_string());
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, shift) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 10),
        Some('m') => (&lower[..lower.len() - 1], 20),
        Some('g') => (&lower[..lower.len() - 1], 30),
        _ => (lower, 0),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// The container's cgroup path, relative to each hierarchy's root (`/sys/fs/cgroup` on a
/// unified node): where libcontainer puts it, and what `imgsign run --enforce` registers.
pub fn cgroup_path(id: &str) -> String {
    format!("/imgsign/{id}")
}

/// Checks a container id: it names a directory under the state root and a cgroup.
pub fn check_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Id(id.to_string()))
    }
}

/// A short random hex id (12 hex digits from the kernel's random pool).
pub fn random_id() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 6];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        // No /dev/urandom: time and pid still make ids distinct on one node.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mixed = nanos as u64 ^ (u64::from(std::process::id()) << 32);
        bytes.copy_from_slice(&mixed.to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ids the container's command runs as (container ids, mapped by the user namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Everything the engine needs to make one container.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaunchConfig {
    /// Container id (see [`check_id`]).
    pub id: String,
    /// The verified root file system, never written: the overlay's only lower layer.
    pub lower: PathBuf,
    /// Parent of the per-container directory.
    pub state_root: PathBuf,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: PathBuf,
    /// The user the command runs as, in the container's ids (default root).
    pub user: ProcessUser,
    /// Hostname; defaults to the id.
    pub hostname: Option<String>,
    /// No upper layer: the lower is bind-mounted read-only.
    pub read_only: bool,
    pub net: Net,
    /// No seccomp filter at all: an explicit loosening (`--seccomp unconfined`).
    pub seccomp_unconfined: bool,
    /// The user namespace mapping; `None` only with an explicit loosening (root is host root).
    pub userns: Option<IdRange>,
    /// Capabilities added to [`MINIMAL_CAPABILITIES`].
    pub cap_add: Vec<Capability>,
    pub pids_limit: i64,
    /// Memory limit in bytes.
    pub memory: i64,
    pub secrets: Vec<Secret>,
    pub volumes: Vec<Volume>,
    /// Shown by `ps`: the image reference and its signed subject digest.
    pub image: String,
    pub digest: String,
    /// Shown by `ps`: the enforcement scope the container's cgroup was registered as.
    pub scope: Option<String>,
}

impl LaunchConfig {
    /// A config with every hardened default, running `args` on `lower`.
    pub fn new(id: impl Into<String>, lower: impl Into<PathBuf>, args: Vec<String>) -> Self {
        LaunchConfig {
            id: id.into(),
            lower: lower.into(),
            state_root: PathBuf::from(DEFAULT_STATE_ROOT),
            args,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()],
            cwd: PathBuf::from("/"),
            user: ProcessUser::default(),
            hostname: None,
            read_only: false,
            net: Net::None,
            seccomp_unconfined: false,
            userns: Some(IdRange::default()),
            cap_add: Vec::new(),
            pids_limit: DEFAULT_PIDS_LIMIT,
            memory: DEFAULT_MEMORY,
            secrets: Vec::new(),
            volumes: Vec::new(),
            image: String::new(),
            digest: String::new(),
            scope: None,
        }
    }

    /// The per-container directory: `<state_root>/<id>`.
    pub fn dir(&self) -> PathBuf {
        self.state_root.join(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!(parse_capability("cap_net_admin").unwrap(), Capability::NetAdmin);
        assert_eq!(parse_capability("SYS_ADMIN").unwrap(), Capability::SysAdmin);
        assert!(parse_capability("NOPE").is_err());
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("lots").is_err());
        let s: Secret = "token=/etc/hostname".parse().unwrap();
        assert_eq!(s.name, "token");
        assert!("../x=/etc/hostname".parse::<Secret>().is_err());
        assert!("a/b=/x".parse::<Secret>().is_err());
        assert!("=x".parse::<Secret>().is_err());
        let v: Volume = "/tmp/x:/data:ro".parse().unwrap();
        assert!(v.read_only);
        assert!("rel:/data".parse::<Volume>().is_err());
        assert!("/a:/../etc".parse::<Volume>().is_err());
        assert!(check_id("abc-1.2_x").is_ok());
        assert!(check_id("../x").is_err());
        assert!(check_id("").is_err());
        assert_eq!(random_id().len(), 12);
        assert_ne!(random_id(), random_id());
    }

    #[test]
    fn id_range_must_be_unused() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n").unwrap();
        std::fs::write(&group, "root:x:0:\n").unwrap();
        IdRange::default().check_unused(&passwd, &group).unwrap();
        std::fs::write(&passwd, "svc:x:100005:100005::/:/bin/false\n").unwrap();
        let err = IdRange::default().check_unused(&passwd, &group).unwrap_err();
        assert!(err.to_string().contains("svc"), "{err}");
        assert!(IdRange { base: 0, size: 10 }.check_unused(&passwd, &group).is_err());
    }
}
