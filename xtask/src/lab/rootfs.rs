//! The lab's Debian root file system for container-engine tests: a Debian 12 tree with podman,
//! conmon, runc, crun and containerd (made by `mmdebstrap`), as an ext4 disk image the VM gets
//! as an extra virtio disk (snapshot mode: each boot writes to its own throw-away overlay, so
//! the concurrent 6.1 and 6.12 boots share one cached file).
//!
//! Built only when a planned suite needs it ([`NEEDED_BY`]), and cached in the lab's cache
//! directory under a name keyed by everything that goes into it ([`key`]), so a second lab run
//! does not build it again. The image is written under a temporary name and renamed. In the
//! VM the tests find the disk by its file system label ([`LABEL`]) and enter it with `chroot`
//! (cli/tests/support/debian.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::testbins::Suite;

/// Test targets that run container engines inside the Debian tree.
pub const NEEDED_BY: &[&str] = &["vm_engines", "vm_fullmap"];

/// The Debian suite of the tree (the host's and the tests' `imgsign` are built on Debian 12,
/// so they run in it).
const SUITE: &str = "bookworm";

/// Packages installed on top of `minbase`: the engines, their runtimes, and what the tests use
/// in the tree (skopeo turns an OCI layout into the archive `ctr images import` takes;
/// libseccomp2 is a library of `imgsign`).
pub const PACKAGES: &[&str] = &[
    "podman",
    "conmon",
    "runc",
    "crun",
    "containerd",
    "skopeo",
    "iptables",
    "ca-certificates",
    "fuse-overlayfs",
    "libseccomp2",
];

/// The ext4 label the tests look for.
pub const LABEL: &str = "imgsign-debian";

/// Size of the file system (sparse; the tree is about 420 MB, the rest is room for writes).
const SIZE: &str = "1536M";

/// Bumped when the recipe changes in a way the package list does not show.
const RECIPE: u32 = 1;

/// Whether any of `suites` needs the tree.
pub fn needed(suites: &[Suite]) -> bool {
    suites.iter().any(|s| NEEDED_BY.contains(&s.target.as_str()))
}

/// The cache key of a tree: the suite, the sorted package list, the size, the label and the
/// recipe version, hashed (FNV-1a, 64 bits: a cache name, not a security check).
pub fn key(suite: &str, packages: &[&str]) -> String {
    let mut sorted: Vec<&str> = packages.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let text = format!("recipe={RECIPE};suite={suite};size={SIZE};label={LABEL};packages={}", sorted.join(","));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{suite}-{hash:016x}")
}

/// The arguments of `mmdebstrap` that write the tree into `dir`.
fn mmdebstrap_args(suite: &str, packages: &[&str], dir: &Path) -> Vec<String> {
    vec![
        "--quiet".into(),
        "--mode=root".into(),
        "--variant=minbase".into(),
        format!("--include={}", packages.join(",")),
        suite.into(),
        dir.display().to_string(),
    ]
}

/// The cached disk image of the tree, built first if missing (`cache/rootfs/<key>.ext4`).
pub fn ensure(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("rootfs");
    let image = dir.join(format!("{}.ext4", key(SUITE, PACKAGES)));
    if image.is_file() {
        eprintln!("lab: Debian tree cached: {}", image.display());
        return Ok(image);
    }
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let tree = dir.join(format!(".tree-{}", std::process::id()));
    let partial = dir.join(format!(".image-{}.ext4", std::process::id()));
    let built = build(&tree, &partial);
    // The tree is only the input of mkfs; the image holds everything.
    let _ = fs::remove_dir_all(&tree);
    if let Err(e) = built {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    fs::rename(&partial, &image).with_context(|| format!("rename {} to {}", partial.display(), image.display()))?;
    eprintln!("lab: Debian tree built: {}", image.display());
    Ok(image)
}

fn build(tree: &Path, image: &Path) -> Result<()> {
    eprintln!("lab: building the Debian tree for the engine tests (mmdebstrap {SUITE}: {})", PACKAGES.join(" "));
    let status = Command::new("mmdebstrap")
        .args(mmdebstrap_args(SUITE, PACKAGES, tree))
        .stdin(Stdio::null())
        .status()
        .context("run mmdebstrap (apt-get install mmdebstrap; scripts/lab.sh installs it)")?;
    if !status.success() {
        bail!("mmdebstrap {SUITE} into {} failed: {status}", tree.display());
    }
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", LABEL, "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d"])
        .arg(tree)
        .arg(image)
        .arg(SIZE)
        .stdout(Stdio::null())
        .status()
        .context("run mkfs.ext4 (apt-get install e2fsprogs)")?;
    if !status.success() {
        bail!("mkfs.ext4 -d {} {} failed: {status}", tree.display(), image.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_order_and_duplicates() {
        assert_eq!(key("bookworm", &["podman", "runc"]), key("bookworm", &["runc", "podman", "runc"]));
    }

    #[test]
    fn key_changes_with_the_packages_and_the_suite() {
        let base = key("bookworm", &["podman", "runc"]);
        assert_ne!(base, key("bookworm", &["podman", "runc", "crun"]));
        assert_ne!(base, key("trixie", &["podman", "runc"]));
        assert!(base.starts_with("bookworm-") && base.len() == "bookworm-".len() + 16, "{base}");
    }

    #[test]
    fn only_engine_suites_need_the_tree() {
        let suite = |target: &str| Suite { target: target.into(), executable: PathBuf::new(), tests: vec![] };
        assert!(!needed(&[suite("vm_runtime"), suite("vm_smoke")]));
        assert!(needed(&[suite("vm_runtime"), suite("vm_engines")]));
    }

    #[test]
    fn mmdebstrap_installs_every_package_on_minbase() {
        let args = mmdebstrap_args("bookworm", PACKAGES, Path::new("/x"));
        assert!(args.contains(&"--variant=minbase".to_string()));
        let include = args.iter().find_map(|a| a.strip_prefix("--include=")).unwrap();
        for p in ["podman", "conmon", "runc", "crun", "containerd"] {
            assert!(include.split(',').any(|i| i == p), "{p} missing from {include}");
        }
        assert_eq!(&args[args.len() - 2..], ["bookworm", "/x"]);
    }
}
