//! The external tools the real-image builders run, and a clear failure when one is missing.

use crate::FixtureError;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// Tools the builders need, with the Debian package that provides each.
pub const TOOLS: &[(&str, &str)] = &[("umoci", "umoci"), ("skopeo", "skopeo"), ("busybox", "busybox-static")];

/// Finds `tool` on PATH, or fails naming the Debian package to install.
pub fn require(tool: &'static str) -> Result<PathBuf, FixtureError> {
    let package = TOOLS.iter().find(|(t, _)| *t == tool).map_or(tool, |(_, p)| p);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
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
    let output = Command::new(exe)
        .args(&args)
        .output()
        .map_err(crate::io_err(format!("starting `{command}`")))?;
    if !output.status.success() {
        return Err(FixtureError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
