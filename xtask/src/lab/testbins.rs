//! The in-VM test binaries: built by cargo on the host, listed, and planned.
//!
//! A test belongs in the lab when it lives in an integration-test target
//! named `vm_*` and its own name starts with `vm_`; such tests are
//! `#[ignore]`d so a plain host `cargo test` reports them as ignored rather
//! than pretending to run them. The lab runs each one alone with
//! `--ignored --exact`. Benchmarks (`_bench_` in the name) run only when a
//! filter names them (`--filter bench`), so the test command stays short.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Packages whose `vm_*` test targets the lab runs.
const PACKAGES: &[&str] = &["bpf-lsm", "enforce", "imgsign", "store"];

/// Executables the in-VM tests run, copied to `/lab/bin` (the CLI's `vm_*` tests run the
/// `imgsign` and `imgsign-hook` built beside them).
const PROGRAMS: &[&str] = &["imgsign", "imgsign-hook"];

/// The suite that changes the boot for good (an IMA policy): run last.
const BOOT_STATE_SUITE: &str = "vm_enforcer_bench";

/// One test binary and the tests the lab runs from it.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Target name, e.g. `vm_smoke`.
    pub target: String,
    /// Executable on the host.
    pub executable: PathBuf,
    /// Test names, e.g. `vm_smoke_denies_exec_by_digest`.
    pub tests: Vec<String>,
}

/// Builds the `vm_*` test targets and lists their `vm_*` tests; also returns the
/// [`PROGRAMS`] built with them.
pub fn build(root: &Path, filter: Option<&str>) -> Result<(Vec<Suite>, Vec<PathBuf>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = release_build()?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["test", "--no-run", "--message-format=json-render-diagnostics"]);
    if release {
        // Benchmarks time the loader and the test programs themselves.
        cmd.arg("--release");
        for package in PACKAGES {
            cmd.args(["--package", package]);
        }
    } else {
        // The whole workspace, exactly as `cargo test --workspace` (the test
        // command's host stage) builds it: the same features, so the lab
        // reuses those binaries instead of building its own.
        cmd.arg("--workspace");
    }
    eprintln!(
        "lab: building in-VM test binaries ({}, {} profile)",
        PACKAGES.join(", "),
        if release { "release" } else { "dev" }
    );
    let out = cmd.stderr(std::process::Stdio::inherit()).output().context("run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test binaries failed ({})", out.status);
    }

    let mut suites = Vec::new();
    let mut programs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str()) else {
            continue;
        };
        let kind = |want: &str| msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == want));
        if kind("bin") && PROGRAMS.contains(&name) {
            programs.push(PathBuf::from(exe));
            continue;
        }
        let is_test = kind("test");
        if !is_test || !name.starts_with("vm_") || !in_lab_package(&msg["package_id"]) {
            continue;
        }
        let executable = PathBuf::from(exe);
        let tests: Vec<String> =
            list(&executable)?.into_iter().filter(|t| t.starts_with("vm_") && selected(t, filter)).collect();
        if !tests.is_empty() {
            suites.push(Suite { target: name.to_string(), executable, tests });
        }
    }
    // The benchmark loads an IMA policy, which stays for the rest of the boot
    // (it cannot be removed) and makes `imgsign enforce`'s preflight refuse to
    // start: it runs after every other suite.
    suites.sort_by_key(|s| s.target == BOOT_STATE_SUITE);
    if suites.iter().all(|s| s.tests.is_empty()) {
        bail!("no vm_* tests found (filter {filter:?}); the lab refuses to pass with nothing to run");
    }
    Ok((suites, programs))
}

/// Whether the lab builds release binaries: `IMGSIGN_LAB_PROFILE=release`
/// (benchmarks), else the dev profile (tests; the hot dependencies are
/// optimised in it, see the workspace's Cargo.toml).
fn release_build() -> Result<bool> {
    match std::env::var("IMGSIGN_LAB_PROFILE").as_deref() {
        Err(_) | Ok("") | Ok("dev") => Ok(false),
        Ok("release") => Ok(true),
        Ok(other) => bail!("IMGSIGN_LAB_PROFILE={other}: expected dev or release"),
    }
}

/// Whether a cargo package id names one of [`PACKAGES`]. Ids look like
/// `path+file:///w/bpf-lsm#0.1.0` (the name left out when it is the
/// directory's), `path+file:///w/cli#imgsign@0.1.0`, or, from older cargo,
/// `bpf-lsm 0.1.0 (path+file:///w/bpf-lsm)`.
fn in_lab_package(id: &serde_json::Value) -> bool {
    let id = id.as_str().unwrap_or_default();
    let name = match id.split_once('#') {
        Some((_, fragment)) if fragment.contains('@') => fragment.split('@').next().unwrap_or_default(),
        Some((url, _)) => url.rsplit('/').next().unwrap_or_default(),
        None => id.split(' ').next().unwrap_or_default(),
    };
    PACKAGES.contains(&name)
}

/// The ignored tests of a libtest binary (`--list --ignored`).
fn list(executable: &Path) -> Result<Vec<String>> {
    let out = Command::new(executable)
        .args(["--list", "--ignored", "--format", "terse"])
        .output()
        .with_context(|| format!("list tests of {}", executable.display()))?;
    if !out.status.success() {
        bail!("{} --list failed ({})", executable.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// Whether the lab runs test `name`: benchmarks (`_bench_` in the name) only
/// when a filter names them (says `bench` and matches), everything else when
/// it matches the filter.
fn selected(name: &str, filter: Option<&str>) -> bool {
    let bench = name.contains("_bench_");
    match filter {
        Some(f) => name.contains(f) && (!bench || f.contains("bench")),
        None => !bench,
    }
}

#[cfg(test)]
mod selection_tests {
    use super::selected;

    #[test]
    fn benchmarks_run_only_when_asked_for() {
        assert!(selected("vm_enforcer_seal_x", None));
        assert!(!selected("vm_enforcer_bench_exec_latency", None));
        assert!(selected("vm_enforcer_bench_exec_latency", Some("bench")));
        assert!(!selected("vm_enforcer_seal_x", Some("bench")));
        // A filter that matches a suite's tests and its benchmark runs only the tests.
        assert!(selected("vm_engines_podman_x", Some("vm_engines")));
        assert!(!selected("vm_engines_bench_loop", Some("vm_engines")));
        assert!(selected("vm_engines_bench_loop", Some("vm_engines_bench")));
    }

    #[test]
    fn package_ids_of_both_cargo_formats_are_recognised() {
        use super::in_lab_package;
        let id = |s: &str| serde_json::Value::String(s.into());
        assert!(in_lab_package(&id("path+file:///work/main/bpf-lsm#0.1.0")));
        assert!(in_lab_package(&id("path+file:///work/main/enforce#enforce@0.1.0")));
        assert!(in_lab_package(&id("bpf-lsm 0.1.0 (path+file:///work/main/bpf-lsm)")));
        assert!(in_lab_package(&id("path+file:///work/main/cli#imgsign@0.1.0")));
        assert!(!in_lab_package(&id("path+file:///work/main/verifier-core#0.1.0")));
        assert!(!in_lab_package(&id("path+file:///work/main/keys#keys@0.1.0")));
    }
}
