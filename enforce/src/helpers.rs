//! Runtime helpers: host binaries of the container runtime that run inside a container's scope
//! although no image signed them. Newer runc (cgroup v2) clones `runc init` straight into the
//! container's cgroup (`clone3(CLONE_INTO_CGROUP)`) and execs the runc binary there, for `runc
//! exec` and `create`; judged by the container's signed digest set alone, that exec is denied and
//! `podman exec` fails closed by accident. The policy's `runtime_helpers` lists such files by
//! path; the daemon hashes each one's current content ([`hash`], at start, on SIGHUP and at every
//! recheck, so a package upgrade takes effect without a reload) and the plan allows those digests
//! in every scope that verified ([`crate::plan::Plan::add_helpers`]). The allowance is by digest,
//! as everything the kernel judges: the exact bytes of the helper run anywhere in a scope, also a
//! copy written inside a container (the README's threat model says why that is bounded).
//!
//! A listed path is used only when it is a regular file owned by root and writable by no group or
//! other user ([`assess`], on the opened file, so what is checked is what is hashed); a path that
//! is missing or unfit is reported and ignored, never fatal for the scopes. With no helpers
//! listed (the default) a runtime's own exec in a scope is denied like any unlisted binary, and
//! [`refusal_hint`] names it as a runtime helper in the event and says how to allow it.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use verifier_core::digest::{HashingReader, Sha256Digest};

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("runtime helper {path}: cannot open it")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime helper {path}: cannot read it")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime helper {path}: {unfit}; it is ignored (only a root-owned regular file that no group or other user can write is allowed)")]
    Unfit { path: PathBuf, unfit: Unfit },
}

/// Why a listed file is not taken as a helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("not a regular file")]
    NotRegular,
    #[error("owned by uid {0}, not root")]
    NotRootOwned(u32),
    #[error("writable by its group or others (mode {0:04o})")]
    Writable(u32),
}

/// Whether a file of this type, owner and mode may be a helper: a regular file, owned by root,
/// not writable by group or others (anyone else who could write it could choose what runs in
/// every scope).
pub fn assess(regular: bool, uid: u32, mode: u32) -> Result<(), Unfit> {
    if !regular {
        return Err(Unfit::NotRegular);
    }
    if uid != 0 {
        return Err(Unfit::NotRootOwned(uid));
    }
    if mode & 0o022 != 0 {
        return Err(Unfit::Writable(mode & 0o7777));
    }
    Ok(())
}

/// A helper in force: its path as the policy lists it, and the digest of its content when hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Helper {
    pub path: PathBuf,
    pub sha256: Sha256Digest,
}

/// A listed path that is not in force, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ignored {
    pub path: PathBuf,
    pub reason: String,
}

/// What one hashing of the listed helpers found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Helpers {
    /// Allowed in every scope that verified, in the policy's order.
    pub in_force: Vec<Helper>,
    /// Listed but missing or unfit: reported, not allowed.
    pub ignored: Vec<Ignored>,
}

/// Hashes the current content of each listed path (symlinks followed; the opened file is what is
/// checked and hashed). Never fails as a whole: a path that cannot be used is in `ignored`.
pub fn hash(paths: &[PathBuf]) -> Helpers {
    let mut helpers = Helpers::default();
    for path in paths {
        match hash_one(path) {
            Ok(sha256) => helpers.in_force.push(Helper { path: path.clone(), sha256 }),
            Err(e) => helpers.ignored.push(Ignored { path: path.clone(), reason: crate::verified::error_chain(&e) }),
        }
    }
    helpers
}

fn hash_one(path: &Path) -> Result<Sha256Digest, HelperError> {
    let file = std::fs::File::open(path).map_err(|source| HelperError::Open { path: path.into(), source })?;
    let meta = file.metadata().map_err(|source| HelperError::Read { path: path.into(), source })?;
    assess(meta.file_type().is_file(), meta.uid(), meta.mode())
        .map_err(|unfit| HelperError::Unfit { path: path.into(), unfit })?;
    let mut reader = HashingReader::new(file);
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|source| HelperError::Read { path: path.into(), source })?;
    Ok(reader.finish().0)
}

/// Programs of container runtimes that enter containers' cgroups themselves (newer runc's `runc
/// init`, crun, youki, gVisor's runsc): how a refused exec or mapping is recognised as one.
pub const KNOWN_RUNTIMES: &[&str] = &["runc", "crun", "youki", "runsc"];

/// The note an event gets when what was refused looks like a container runtime's own program
/// (`path`'s file name, or the command `comm`, is one of [`KNOWN_RUNTIMES`]; runc's init calls
/// itself `runc:[2:INIT]`) and is not an allowed helper: it says that a runtime helper was refused
/// and how to allow it. `None` for anything else.
pub fn refusal_hint(path: Option<&str>, comm: &str, helpers: &Helpers) -> Option<String> {
    let known = |name: &str| KNOWN_RUNTIMES.iter().find(|k| name == **k || name.starts_with(&format!("{k}:")));
    let file_name = path.and_then(|p| Path::new(p).file_name()).and_then(|n| n.to_str());
    let runtime = file_name.and_then(known).or_else(|| known(comm))?;
    let mut hint = format!(
        "a container runtime's own program ({runtime}) was refused in a container scope: the runtime enters the \
         container's cgroup itself (newer runc does, for exec and create). To allow it, list its host path{} and, \
         if it is dynamically linked, its loader and libraries (ldd) in the enforcement policy's runtime_helpers, \
         then reload (SIGHUP) or wait for the next recheck",
        path.map(|p| format!(" ({p} as the refused process saw it)")).unwrap_or_default()
    );
    if !helpers.ignored.is_empty() {
        let ignored: Vec<String> = helpers.ignored.iter().map(|i| i.reason.clone()).collect();
        hint.push_str(&format!("; listed helpers ignored: {}", ignored.join("; ")));
    }
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_owned_regular_files_no_one_else_can_write_are_helpers() {
        assert_eq!(assess(true, 0, 0o100755), Ok(()));
        assert_eq!(assess(true, 0, 0o104755), Ok(()), "setuid is judged by the kernel's privileges check");
        assert_eq!(assess(false, 0, 0o40755), Err(Unfit::NotRegular));
        assert_eq!(assess(true, 1000, 0o100755), Err(Unfit::NotRootOwned(1000)));
        assert_eq!(assess(true, 0, 0o100775), Err(Unfit::Writable(0o775)));
        assert_eq!(assess(true, 0, 0o100757), Err(Unfit::Writable(0o757)));
    }

    #[test]
    fn a_refused_runtime_program_gets_a_hint_and_nothing_else_does() {
        let none = Helpers::default();
        let hint = refusal_hint(Some("/usr/sbin/runc"), "perl", &none).unwrap();
        assert!(
            hint.contains("(runc)") && hint.contains("runtime_helpers") && hint.contains("/usr/sbin/runc"),
            "{hint}"
        );
        assert!(refusal_hint(Some("memfd:runc_cloned:/proc/self/exe"), "runc:[2:INIT]", &none).is_some());
        assert!(refusal_hint(Some("/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4"), "crun", &none).is_some());
        assert!(refusal_hint(Some("/tmp/u/busybox"), "sh", &none).is_none());
        assert!(refusal_hint(Some("/usr/bin/runcible"), "runcible", &none).is_none());
        let ignored = Helpers {
            in_force: Vec::new(),
            ignored: vec![Ignored { path: "/usr/bin/crun".into(), reason: "missing".into() }],
        };
        assert!(refusal_hint(Some("/usr/bin/crun"), "x", &ignored).unwrap().contains("ignored: missing"));
    }
}
