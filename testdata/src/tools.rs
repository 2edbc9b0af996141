//! The external tools the real-image builders run, and a clear failure when one is missing.

use crate::FixtureError;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// Tools the builders need, with the Debian package that provides each.
pub const TOOLS: &[(&str, &str)] = &[("umoci", "umoci"), ("skopeo", "skopeo"), ("busybox", "busybox-static")];

/// Finds `tool` on PATH, or fails naming the Debian package to install.
pub fn require(tool: &'static str) -> Result<PathBuf, FixtureError> {
    require_in(tool, &std::env::var_os("PATH").unwrap_or_default())
}

/// Finds `tool` in the directories of a PATH-style list.
pub fn require_in(tool: &'static str, path: &OsStr) -> Result<PathBuf, FixtureError> {
    let package = TOOLS.iter().find(|(t, _)| *t == tool).map_or(tool, |(_, p)| p);
    std::env::split_paths(path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or(FixtureError::ToolMissing { tool, package })
}

/// Checks every tool in [`TOOLS`] at once.
pub fn require_all() -> Result<(), FixtureError> {
    for (tool, _) in TOOLS {
        require(tool)?;
    }
    Ok(())
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
pub fn run<I, S>(program: &'static str, args: I) -> Result<String, FixtureError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = require(program)?;
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    let command = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(exe).args(&args).output().map_err(crate::io_err(format!("starting `{command}`")))?;
    if !output.status.success() {
        return Err(FixtureError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_debian_package() {
        let err = require_in("busybox", OsStr::new("/nonexistent")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`busybox` is not installed (or not on PATH): install the Debian package `busybox-static` to run these tests"
        );
        let err = require_in("umoci", OsStr::new("")).unwrap_err();
        assert!(err.to_string().contains("Debian package `umoci`"), "{err}");
    }
}
