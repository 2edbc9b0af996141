//! The process an image runs: the image config's `Entrypoint` + `Cmd` (the caller's command
//! replacing `Cmd`, as docker and podman do), its `Env` with the caller's variables after it
//! (a later `KEY=` replaces an earlier one), `WorkingDir` and `User`. A user or group given by
//! name is looked up in the image's own `/etc/passwd` and `/etc/group`, read from the stored
//! rootfs with every path resolved inside it; a name that is not there is an error, never a
//! guess. [`resolve`] is a pure function of the config, the overrides and those two files.
//!
//! What the config says is signed only through the digest that names it: the OCI image manifest
//! (the statement's subject) names the config by digest, and the source checks the config's bytes
//! against that digest before parsing it; a docker archive is identified by the config digest
//! itself. The per-file manifest does not cover it.

use std::path::{Path, PathBuf};
use verifier_core::image::inroot::InRoot;
use verifier_core::source::ImageConfiguration;

/// Largest `/etc/passwd` or `/etc/group` read from an image.
const MAX_ACCOUNT_FILE: u64 = 4 << 20;
/// The environment when the image sets no `PATH`.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no command: the image config has neither Entrypoint nor Cmd; give one after `--`")]
    NoCommand,
    #[error("working directory {0:?} is not absolute")]
    RelativeWorkdir(String),
    #[error("user {spec:?}: {reason}")]
    User { spec: String, reason: String },
    #[error("environment entry {0:?} is not KEY=VALUE")]
    Env(String),
    #[error("cannot read {path} in the image")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the caller gives on top of the image config.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the config's `Cmd` when not empty.
    pub command: Vec<String>,
    /// `KEY=VALUE`, after (and over) the config's `Env`.
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    /// `uid[:gid]` or `name[:group]`, instead of the config's `User`.
    pub user: Option<String>,
}

/// The process to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The account files of an image, as read (absent files are `None`).
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group` of `rootfs`, resolving every path inside it.
    pub fn read(rootfs: &Path) -> Result<Self, ProcessError> {
        fn read_err(path: &'static str) -> impl FnOnce(std::io::Error) -> ProcessError {
            move |source| ProcessError::Read { path: path.to_string(), source }
        }
        let root = InRoot::open(rootfs).map_err(read_err("/"))?;
        let read = |path: &'static str| -> Result<Option<String>, ProcessError> {
            let bytes =
                root.read_file(path.trim_start_matches('/').as_bytes(), MAX_ACCOUNT_FILE).map_err(read_err(path))?;
            Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        Ok(Accounts { passwd: read("/etc/passwd")?, group: read("/etc/group")? })
    }
}

/// The process of an image whose config is `config` (none for an image without one).
/// `accounts` is only consulted when a user or group is given by name (see [`needs_accounts`]).
pub fn resolve(
    config: Option<&ImageConfiguration>,
    overrides: &Overrides,
    accounts: &Accounts,
) -> Result<Process, ProcessError> {
    let cfg = config.and_then(|c| c.config().as_ref());
    let entrypoint = cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
    let cmd = if overrides.command.is_empty() {
        cfg.and_then(|c| c.cmd().clone()).unwrap_or_default()
    } else {
        overrides.command.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ProcessError::NoCommand);
    }

    let image_env = cfg.and_then(|c| c.env().clone()).unwrap_or_default();
    let mut env: Vec<String> = Vec::new();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }
    for entry in image_env.into_iter().chain(overrides.env.iter().cloned()) {
        let Some((key, _)) = entry.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(ProcessError::Env(entry));
        };
        let prefix = format!("{key}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(entry);
    }

    let cwd = match &overrides.workdir {
        Some(dir) => dir.clone(),
        None => {
            cfg.and_then(|c| c.working_dir().clone()).filter(|d| !d.is_empty()).unwrap_or_else(|| "/".into()).into()
        }
    };
    if !cwd.is_absolute() {
        return Err(ProcessError::RelativeWorkdir(cwd.display().to_string()));
    }

    let user = overrides.user.clone().or_else(|| cfg.and_then(|c| c.user().clone())).unwrap_or_default();
    let (uid, gid, additional_gids) = resolve_user(&user, accounts)?;
    Ok(Process { args, env, cwd, uid, gid, additional_gids })
}

/// True when `resolve` would look a name up (the config's or the override's user names one).
pub fn needs_accounts(config: Option<&ImageConfiguration>, overrides: &Overrides) -> bool {
    let user =
        overrides.user.clone().or_else(|| config.and_then(|c| c.config().as_ref()).and_then(|c| c.user().clone()));
    user.is_some_and(|u| !u.is_empty())
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry { name: f.first()?, uid: f.get(2)?.parse().ok()?, gid: f.get(3)?.parse().ok()? })
    })
}

/// (name, gid, members) of each `/etc/group` line.
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        Some((*f.first()?, f.get(2)?.parse().ok()?, members))
    })
}

fn resolve_user(spec: &str, accounts: &Accounts) -> Result<(u32, u32, Vec<u32>), ProcessError> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let err = |reason: String| ProcessError::User { spec: spec.to_string(), reason };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(err("expected USER[:GROUP]".into()));
    }
    let passwd = accounts.passwd.as_deref().unwrap_or("");
    let groups = accounts.group.as_deref().unwrap_or("");
    let (uid, default_gid, name) = match user.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd_entries(passwd).find(|e| e.uid == uid);
            (uid, entry.as_ref().map_or(0, |e| e.gid), entry.map(|e| e.name))
        }
        Err(_) => {
            if accounts.passwd.is_none() {
                return Err(err(format!("the image has no /etc/passwd to find user {user:?} in")));
            }
            let entry = passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| err(format!("no user {user:?} in the image's /etc/passwd")))?;
            (entry.uid, entry.gid, Some(entry.name))
        }
    };
    let gid = match group {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                if accounts.group.is_none() {
                    return Err(err(format!("the image has no /etc/group to find group {g:?} in")));
                }
                group_entries(groups)
                    .find(|(n, _, _)| *n == g)
                    .map(|(_, gid, _)| gid)
                    .ok_or_else(|| err(format!("no group {g:?} in the image's /etc/group")))?
            }
        },
    };
    // Supplementary groups from /etc/group, as docker gives them, when no group was forced.
    let mut additional = Vec::new();
    if let (None, Some(name)) = (group, name) {
        for (_, g, members) in group_entries(groups) {
            if g != gid && members.contains(&name) && !additional.contains(&g) {
                additional.push(g);
            }
        }
    }
    Ok((uid, gid, additional))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ImageConfiguration {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#""architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}"#;

    fn accounts() -> Accounts {
        Accounts {
            passwd: Some("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n".into()),
            group: Some("root:x:0:\nappg:x:1001:\nwheel:x:10:app,other\nstaff:x:50:\n".into()),
        }
    }

    #[test]
    fn entrypoint_cmd_env_workdir_user() {
        let c = config(&format!(
            r#"{{{BASE},"config":{{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["PATH=/bin","A=1"],"WorkingDir":"/srv","User":"app"}}}}"#
        ));
        let p = resolve(Some(&c), &Overrides::default(), &accounts()).unwrap();
        assert_eq!(p.args, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(p.env, ["PATH=/bin", "A=1"]);
        assert_eq!(p.cwd, Path::new("/srv"));
        assert_eq!((p.uid, p.gid, p.additional_gids), (1000, 1001, vec![10]));

        let o = Overrides {
            command: vec!["echo bye".into()],
            env: vec!["A=2".into(), "B=3".into()],
            workdir: Some("/tmp".into()),
            user: Some("0:50".into()),
        };
        let p = resolve(Some(&c), &o, &accounts()).unwrap();
        assert_eq!(p.args, ["/bin/sh", "-c", "echo bye"]);
        assert_eq!(p.env, ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(p.cwd, Path::new("/tmp"));
        assert_eq!((p.uid, p.gid, p.additional_gids), (0, 50, vec![]));
    }

    #[test]
    fn no_command_is_an_error() {
        let c = config(&format!(r#"{{{BASE},"config":{{"Env":["A=1"]}}}}"#));
        assert!(matches!(resolve(Some(&c), &Overrides::default(), &accounts()), Err(ProcessError::NoCommand)));
        assert!(matches!(resolve(None, &Overrides::default(), &accounts()), Err(ProcessError::NoCommand)));
        let o = Overrides { command: vec!["true".into()], ..Default::default() };
        let p = resolve(Some(&c), &o, &Accounts::default()).unwrap();
        assert_eq!(p.args, ["true"]);
        assert_eq!(p.env, [DEFAULT_PATH, "A=1"]);
        assert_eq!((p.cwd.as_path(), p.uid, p.gid), (Path::new("/"), 0, 0));
    }

    #[test]
    fn users() {
        let a = accounts();
        assert_eq!(resolve_user("1000", &a).unwrap(), (1000, 1001, vec![10]));
        assert_eq!(resolve_user("4242", &a).unwrap(), (4242, 0, vec![]));
        assert_eq!(resolve_user("4242:7", &Accounts::default()).unwrap(), (4242, 7, vec![]));
        assert_eq!(resolve_user("app:staff", &a).unwrap(), (1000, 50, vec![]));
        let e = resolve_user("nobody", &a).unwrap_err().to_string();
        assert!(e.contains("no user \"nobody\" in the image's /etc/passwd"), "{e}");
        let e = resolve_user("app", &Accounts::default()).unwrap_err().to_string();
        assert!(e.contains("has no /etc/passwd"), "{e}");
        assert!(resolve_user("0:nogroup", &a).is_err());
        assert!(resolve_user(":1", &a).is_err());
    }

    #[test]
    fn relative_workdir_is_refused() {
        let c = config(&format!(r#"{{{BASE},"config":{{"Cmd":["x"],"WorkingDir":"srv"}}}}"#));
        assert!(matches!(resolve(Some(&c), &Overrides::default(), &accounts()), Err(ProcessError::RelativeWorkdir(_))));
    }
}
