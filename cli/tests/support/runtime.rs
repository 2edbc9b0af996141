#![allow(dead_code)]

//! Shared by the `imgsign runtime` host tests (podman, containerd): the signed real image, an
//! unsigned one, a node policy in a temp dir, and the wrapper script an engine is given as its
//! runtime binary (it names the policy and execs `imgsign runtime`).
//! Included with `#[path]` by the tests that need it (beside `mod support;`).

use crate::support::{busybox, busybox_layer, image, keys, scratch_root, sign_ok, trust_store};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use testdata::real::RealImage;

/// Root is needed to create containers; anything else runs these tests for real.
pub fn root_or_skip(test: &str) -> bool {
    if nix_is_root() {
        return true;
    }
    println!("SKIPPED {test}: needs root (containers, mounts, cgroups)");
    false
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The real multi-layer image, signed by the first test key: (image, bundle, trust store).
pub fn signed_real() -> &'static (RealImage, PathBuf, PathBuf) {
    static SIGNED: OnceLock<(RealImage, PathBuf, PathBuf)> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let image = image().clone();
        let dir = scratch_root().join("signed");
        fs::create_dir_all(&dir).unwrap();
        let [a, ..] = keys();
        let bundle = sign_ok(&image.oci_ref(), &[a], &dir.join("bundle.json"), &["--name", "real", "--version", "1"]);
        let trust = trust_store(&dir.join("trust"), &[a], 1);
        (image, bundle, trust)
    })
}

/// A different image (busybox alone), signed by nobody: an OCI layout reference.
pub fn unsigned_image() -> &'static String {
    static UNSIGNED: OnceLock<String> = OnceLock::new();
    UNSIGNED.get_or_init(|| {
        let dir = scratch_root().join("unsigned");
        testdata::oci::write_layout(&dir, "v1", &[busybox_layer(&busybox())]).unwrap().reference()
    })
}

/// A node: its runtime policy (trusting the signed image's bundle) and the wrapper.
pub struct Node {
    pub policy: PathBuf,
    pub wrapper: PathBuf,
    /// The runtime's state root when the wrapper is given one.
    pub state: PathBuf,
}

impl Node {
    /// `when_no_enforcer` as the test wants it (CI has no BPF-LSM: `run-unenforced`);
    /// `with_root`: the wrapper passes `--root <dir>/state` (podman passes none; containerd
    /// passes its own and must not get two).
    pub fn new(dir: &Path, when_no_enforcer: &str, with_root: bool) -> Node {
        let (_, bundle, trust) = signed_real();
        let policy = dir.join("runtime.toml");
        fs::write(
            &policy,
            format!(
                "trust = {:?}\nbundles = [{:?}]\ncache = {:?}\nwhen_no_enforcer = {:?}\ncontrol_socket = {:?}\n",
                trust,
                bundle,
                dir.join("cache"),
                when_no_enforcer,
                dir.join("no-daemon.sock"),
            ),
        )
        .unwrap();
        let state = dir.join("state");
        let root_flag = if with_root { format!("--root '{}' ", state.display()) } else { String::new() };
        let wrapper = dir.join("imgsign-runtime-wrapper");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nIMGSIGN_RUNTIME_CONFIG='{}' exec '{}' runtime {root_flag}\"$@\"\n",
                policy.display(),
                env!("CARGO_BIN_EXE_imgsign"),
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        Node { policy, wrapper, state }
    }

    /// Containers whose state the runtime still holds under `state`.
    pub fn containers(&self) -> Vec<String> {
        let Ok(dir) = fs::read_dir(&self.state) else { return Vec::new() };
        dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }
}

/// Every file named `relative` under `base/*/<sub>/` (the layer directories of a store).
pub fn layer_files(base: &Path, sub: &str, relative: &str) -> Vec<PathBuf> {
    let Ok(dir) = fs::read_dir(base) else { return Vec::new() };
    dir.flatten().map(|e| e.path().join(sub).join(relative.trim_start_matches('/'))).filter(|p| p.is_file()).collect()
}
