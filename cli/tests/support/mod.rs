//! Shared by the sign/verify integration tests: the real image (built once per test binary),
//! test keys, trust stores, and running the `imgsign` binary.

#![allow(dead_code)]

pub mod debian;
pub mod hostile_registry;
pub mod lab_cgroup;
pub mod node;
pub mod registry;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use testdata::real::RealImage;

pub const PASS: &str = "imgsign test passphrase (not a secret)";

/// A directory under cargo's per-target temp dir for this run of this test binary
/// (`imgsign-NAME-PID`). Directories of earlier runs whose process is gone are removed; a run of
/// the same binary going on at the same time (another `cargo test` in this tree) is left alone.
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let name = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("tests").split('-').next().unwrap().to_string();
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let prefix = format!("imgsign-{name}-");
        if let Ok(entries) = fs::read_dir(base) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = base.join(format!("{prefix}{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create scratch root");
        root
    })
}

/// A fresh temp dir for one test, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("t-").tempdir_in(scratch_root()).expect("tempdir")
}

/// The real image (umoci + skopeo), built once per test binary.
pub fn image() -> &'static RealImage {
    static IMAGE: OnceLock<RealImage> = OnceLock::new();
    IMAGE.get_or_init(|| match RealImage::build(&scratch_root().join("real-image")) {
        Ok(image) => image,
        Err(e) => panic!("building the test image failed: {e}"),
    })
}

/// A generated key pair.
#[derive(Debug, Clone)]
pub struct Key {
    pub private: PathBuf,
    pub public: PathBuf,
    pub id: String,
}

/// Three test key pairs (fixed seeds, cheap KDF), written once per test binary.
pub fn keys() -> &'static [Key; 3] {
    static KEYS: OnceLock<[Key; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = scratch_root().join("keys");
        fs::create_dir_all(&dir).unwrap();
        ["a", "b", "c"].map(|name| {
            let files =
                testdata::keys::write_test_keypair(&dir.join(name), name, PASS.as_bytes()).expect("test key pair");
            Key { private: files.private_key, public: files.public_key, id: files.key_id.to_string() }
        })
    })
}

/// Where the kernel lab puts the `imgsign` built beside its in-VM tests (the host path of
/// `CARGO_BIN_EXE_imgsign` does not exist in the VM).
const LAB_IMGSIGN: &str = "/lab/bin/imgsign";

/// The binary, with the passphrase in `IMGSIGN_PASSPHRASE` and no terminal on stdin.
pub fn imgsign() -> Command {
    let built = Path::new(env!("CARGO_BIN_EXE_imgsign"));
    let exe = if built.exists() { built } else { Path::new(LAB_IMGSIGN) };
    let mut c = Command::new(exe);
    c.env("IMGSIGN_PASSPHRASE", PASS).stdin(Stdio::null());
    c
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Asserts the exit code, returning self for more checks.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(expected),
            "expected exit {expected}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts that stdout or stderr contains `needle`.
    #[track_caller]
    pub fn says(&self, needle: &str) -> &Self {
        assert!(
            self.all().contains(needle),
            "expected output to contain {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run imgsign");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `imgsign sign IMAGE --key ... --out OUT EXTRA...`.
pub fn sign(image: &str, keys: &[&Key], out: &Path, extra: &[&str]) -> Run {
    let mut c = imgsign();
    c.arg("sign").arg(image);
    for key in keys {
        c.arg("--key").arg(&key.private);
    }
    c.arg("--out").arg(out).args(extra);
    run(&mut c)
}

/// Signs and asserts success; returns the bundle path.
#[track_caller]
pub fn sign_ok(image: &str, keys: &[&Key], out: &Path, extra: &[&str]) -> PathBuf {
    sign(image, keys, out, extra).code(0);
    assert!(out.is_file(), "sign wrote no bundle at {}", out.display());
    out.to_path_buf()
}

/// `imgsign verify IMAGE --bundle B... --trust T EXTRA...`.
pub fn verify(image: &str, bundles: &[&Path], trust: &Path, extra: &[&str]) -> Run {
    let mut c = imgsign();
    c.arg("verify").arg(image);
    for bundle in bundles {
        c.arg("--bundle").arg(bundle);
    }
    c.arg("--trust").arg(trust).args(extra);
    run(&mut c)
}

/// Creates a trust store at `dir` trusting `keys` with `threshold`.
pub fn trust_store(dir: &Path, keys: &[&Key], threshold: usize) -> PathBuf {
    run(imgsign().args(["trust", "init"]).arg(dir).arg("--threshold").arg(threshold.to_string())).code(0);
    if !keys.is_empty() {
        let mut c = imgsign();
        c.args(["trust", "add"]).arg(dir);
        for key in keys {
            c.arg(&key.public);
        }
        run(&mut c).code(0);
    }
    dir.to_path_buf()
}

/// Asserts that `out` was not written and that its directory holds nothing else either
/// (no temporary files left behind).
#[track_caller]
pub fn assert_nothing_written(out: &Path) {
    assert!(!out.exists(), "{} was written", out.display());
    let dir = out.parent().unwrap();
    let left: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "files left behind in {}: {left:?}", dir.display());
}

/// The statement inside a bundle file.
pub fn statement(bundle: &Path) -> serde_json::Value {
    testdata::hostile::statement(&fs::read(bundle).unwrap()).expect("bundle statement")
}

/// The static busybox the container tests put in their images.
pub fn busybox() -> Vec<u8> {
    fs::read("/bin/busybox").expect("busybox-static (Debian package busybox-static) at /bin/busybox")
}

/// A one-layer container image: busybox as /bin/busybox and /bin/sh, the directories a
/// container needs as mount points, and a root-owned /etc/motd.
pub fn busybox_layer(busybox: &[u8]) -> testdata::oci::Layer {
    let mut tar = testdata::tar::TarWriter::new();
    for d in ["bin", "dev", "etc", "proc", "run", "sys"] {
        tar.dir(d, 0o755);
    }
    tar.dir("tmp", 0o1777);
    tar.file("bin/busybox", 0o755, busybox);
    tar.symlink("bin/sh", "busybox");
    tar.file("etc/motd", 0o644, "signed\n");
    testdata::oci::Layer::gzip(&tar.finish())
}

/// [`busybox_layer`] as an OCI layout under `scratch_root()/name`, signed by the first test key:
/// (oci reference, bundle, trust store).
pub fn signed_busybox_image(name: &str) -> (String, PathBuf, PathBuf) {
    let root = scratch_root().join(name);
    fs::create_dir_all(&root).unwrap();
    let written = testdata::oci::write_layout(&root.join("oci"), "v1", &[busybox_layer(&busybox())]).unwrap();
    let [a, ..] = keys();
    let bundle = sign_ok(&written.reference(), &[a], &root.join("bundle.json"), &["--name", "bb", "--version", "1"]);
    let trust = trust_store(&root.join("trust"), &[a], 1);
    (written.reference(), bundle, trust)
}
