//! Debian cloud kernels for the lab, fetched with apt and cached.
//!
//! apt runs with private list, state, cache and source directories under the
//! lab cache, so the machine's own apt configuration and state are untouched
//! and the suite (bookworm, trixie) need not be the host's. The mirror is
//! taken from the host's apt sources (or `$IMGSIGN_LAB_MIRROR`). A package is
//! fetched with `apt-get download` and unpacked with `dpkg -x`; once unpacked,
//! a kernel is reused without touching the network unless `--refresh` asks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One kernel the lab can boot.
#[derive(Debug)]
pub struct KernelSpec {
    /// Short label used on the command line and in reports.
    pub label: &'static str,
    /// Debian suite holding the package.
    pub suite: &'static str,
    /// Package names look like `{prefix}<version>{suffix}`.
    pub prefix: &'static str,
    pub suffix: &'static str,
}

pub const DEBIAN_12: KernelSpec =
    KernelSpec { label: "6.1", suite: "bookworm", prefix: "linux-image-6.1.0-", suffix: "-cloud-amd64-unsigned" };

pub const DEBIAN_13: KernelSpec =
    KernelSpec { label: "6.12", suite: "trixie", prefix: "linux-image-6.12.", suffix: "+deb13-cloud-amd64-unsigned" };

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const COMPLETE: &str = ".imgsign-complete";

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub spec: &'static KernelSpec,
    /// Package name and version, e.g. `linux-image-6.1.0-41-cloud-amd64-unsigned_6.1.158-1`.
    pub package: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` inside the unpacked package.
    pub modules: PathBuf,
}

/// Returns the newest cached kernel for `spec`, fetching it on a miss.
pub fn fetch(spec: &'static KernelSpec, cache: &Path, refresh: bool) -> Result<Kernel> {
    let kernels = cache.join("kernels");
    let selected = kernels.join(format!("{}.selected", spec.label));
    if !refresh {
        if let Ok(package) = fs::read_to_string(&selected) {
            let dir = kernels.join(package.trim());
            if dir.join(COMPLETE).exists() {
                return open(spec, package.trim(), &dir);
            }
        }
    }

    let apt = PrivateApt::new(spec.suite, &cache.join("apt").join(spec.suite))?;
    eprintln!("lab: resolving the newest {} kernel in {}", spec.label, spec.suite);
    apt.update()?;
    let (name, version) = apt.newest(spec)?;
    let package = format!("{name}_{version}");
    let dir = kernels.join(&package);
    if !dir.join(COMPLETE).exists() {
        eprintln!("lab: downloading {package}");
        let download = kernels.join(format!("download-{}-{}", spec.label, std::process::id()));
        let _ = fs::remove_dir_all(&download);
        fs::create_dir_all(&download)?;
        apt.download(&format!("{name}={version}"), &download)?;
        let deb = only_deb(&download)?;
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir), "dpkg -x")?;
        fs::write(dir.join(COMPLETE), "")?;
        let _ = fs::remove_dir_all(&download);
    }
    fs::write(&selected, &package)?;
    open(spec, &package, &dir)
}

fn open(spec: &'static KernelSpec, package: &str, dir: &Path) -> Result<Kernel> {
    let vmlinuz = first_entry(&dir.join("boot"), "vmlinuz-")?;
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| dir.join(p))
        .find(|p| p.is_dir())
        .with_context(|| format!("no lib/modules in {}", dir.display()))?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    Ok(Kernel { spec, package: package.to_string(), vmlinuz, modules: modules.join(release) })
}

fn first_entry(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    found.sort();
    found.pop().with_context(|| format!("no {prefix}* in {}", dir.display()))
}

fn only_deb(dir: &Path) -> Result<PathBuf> {
    first_entry(dir, "linux-image-")
}

/// apt confined to a directory of its own.
struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    fn new(suite: &str, root: &Path) -> Result<Self> {
        let (mirror, security) = host_mirrors()?;
        for dir in ["etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let opts = format!("[signed-by={KEYRING}]");
        let mut list = format!("deb {opts} {mirror} {suite} main\ndeb {opts} {mirror} {suite}-updates main\n");
        if let Some(security) = security {
            list.push_str(&format!("deb {opts} {security} {suite}-security main\n"));
        }
        fs::write(root.join("etc/sources.list"), list)?;
        Ok(Self { root: root.to_path_buf() })
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        let r = |p: &str| self.root.join(p).display().to_string();
        for (key, value) in [
            ("Dir::Etc::SourceList", r("etc/sources.list")),
            ("Dir::Etc::SourceParts", r("etc/sources.list.d")),
            ("Dir::Etc::Preferences", r("etc/preferences")),
            ("Dir::Etc::PreferencesParts", r("etc/preferences.d")),
            ("Dir::State", r("state")),
            ("Dir::State::Lists", r("state/lists")),
            ("Dir::Cache", r("cache")),
            ("Dir::Cache::pkgcache", String::new()),
            ("Dir::Cache::srcpkgcache", String::new()),
            ("APT::Architectures", "amd64".into()),
            ("Acquire::Languages", "none".into()),
            ("APT::Sandbox::User", "root".into()),
        ] {
            cmd.arg("-o").arg(format!("{key}={value}"));
        }
        cmd
    }

    fn update(&self) -> Result<()> {
        run(self.command("apt-get").args(["-q", "update"]), "apt-get update (private lists)")
    }

    /// The newest package matching `spec`: (name, version).
    fn newest(&self, spec: &KernelSpec) -> Result<(String, String)> {
        let out = output(self.command("apt-cache").args(["pkgnames", spec.prefix]), "apt-cache pkgnames")?;
        let mut names: Vec<&str> = out
            .lines()
            .filter(|n| {
                n.strip_prefix(spec.prefix)
                    .and_then(|rest| rest.strip_suffix(spec.suffix))
                    .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        names.sort_by_key(|n| version_key(n));
        let name =
            names.last().with_context(|| format!("no {}*{} package in {}", spec.prefix, spec.suffix, spec.suite))?;
        let policy = output(self.command("apt-cache").args(["policy", name]), "apt-cache policy")?;
        let version = policy
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(|v| v.trim().to_string())
            .filter(|v| v != "(none)")
            .with_context(|| format!("no candidate version for {name}"))?;
        Ok((name.to_string(), version))
    }

    fn download(&self, what: &str, into: &Path) -> Result<()> {
        run(self.command("apt-get").args(["-q", "download", what]).current_dir(into), "apt-get download")
    }
}

/// Numeric parts of a package name, for ordering versions.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect()
}

/// The Debian mirror (and security mirror) the host's apt uses, or
/// `$IMGSIGN_LAB_MIRROR` / `$IMGSIGN_LAB_SECURITY_MIRROR`.
fn host_mirrors() -> Result<(String, Option<String>)> {
    let mut uris = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more.into_iter().filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".list") || n.ends_with(".sources")
        }));
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("URIs:") {
                uris.extend(rest.split_whitespace().map(str::to_string));
            } else if let Some(rest) = line.strip_prefix("deb ") {
                let rest = rest.trim_start();
                let rest = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
                    None => rest,
                };
                uris.extend(rest.split_whitespace().next().map(str::to_string));
            }
        }
    }
    let ending = |suffix: &str| {
        uris.iter().find(|u| u.trim_end_matches('/').ends_with(suffix)).map(|u| u.trim_end_matches('/').to_string())
    };
    let mirror = std::env::var("IMGSIGN_LAB_MIRROR").ok().or_else(|| ending("/debian"));
    let security = std::env::var("IMGSIGN_LAB_SECURITY_MIRROR").ok().or_else(|| ending("/debian-security"));
    match mirror {
        Some(m) => Ok((m, security)),
        None => bail!("no Debian mirror in the host's apt sources; set IMGSIGN_LAB_MIRROR"),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("{what}: cannot start"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{what}: cannot start"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_abi_sorts_last() {
        let mut v = ["linux-image-6.1.0-9-cloud-amd64-unsigned", "linux-image-6.1.0-41-cloud-amd64-unsigned"];
        v.sort_by_key(|n| version_key(n));
        assert_eq!(v[1], "linux-image-6.1.0-41-cloud-amd64-unsigned");
    }
}
