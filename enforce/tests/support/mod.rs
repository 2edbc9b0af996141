//! Shared by the enforce tests: a small image written with testdata's tar/OCI writers, signed
//! with test keys through verifier-core; trust stores; real cgroup v2 directories; policy files.
// Test helpers may print what they saw (clippy allows it in #[test] functions, not in helpers).
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(dead_code)]

use enforce::cgroup;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use testdata::oci::{write_layout, Layer, Written};
use testdata::tar::TarWriter;
use verifier_core::digest::Sha256Digest;
use verifier_core::progress::NoProgress;
use verifier_core::sign::{sign, SignOptions};
use verifier_core::source::ImageRef;

pub const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";
pub const OTHER: &[u8] = b"\x7fELF pretend binary\n";
pub const LAYER2: &[u8] = b"a file of the second layer\n";
pub const WHITED_OUT: &[u8] = b"this file is removed by the second layer\n";
pub const OVERRIDDEN: &[u8] = b"first version, overridden\n";
pub const OVERRIDE: &[u8] = b"second version\n";

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("enforce-test-").tempdir().expect("tempdir")
}

/// Two layers: files (one content twice), a hardlink, a symlink, a whiteout, an override.
/// Returns the layout and the digests the manifest must allow (computed from the contents, not
/// from the manifest): those of the files that may run.
pub fn write_image(dir: &Path) -> (Written, BTreeSet<Sha256Digest>) {
    let mut base = TarWriter::new();
    base.dir("bin", 0o755)
        .file("bin/tool", 0o755, TOOL)
        .file("bin/tool-copy", 0o755, TOOL)
        .hardlink("bin/tool-link", "bin/tool")
        .file("bin/other", 0o755, OTHER)
        .symlink("bin/alias", "tool")
        .file("bin/gone", 0o755, WHITED_OUT)
        .file("bin/changed", 0o755, OVERRIDDEN);
    let mut top = TarWriter::new();
    top.dir("bin", 0o755).whiteout("bin/.wh.gone").file("bin/changed", 0o755, OVERRIDE).dir("etc", 0o755).file(
        "etc/layer2",
        0o644,
        LAYER2,
    );
    let written =
        write_layout(dir, "latest", &[Layer::gzip(&base.finish()), Layer::gzip(&top.finish())]).expect("write image");
    // etc/layer2 (0644, not code) is signed but not loaded: neither an exec bit nor a code mark.
    let expected = [TOOL, OTHER, OVERRIDE].iter().map(|c| digest(c)).collect();
    (written, expected)
}

pub fn digest(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest::parse_hex(&testdata::sha256_hex(bytes)).unwrap()
}

/// Signs `image` as `name` version `version`, valid for `valid` from `signed_at`; returns the
/// bundle file written at `out`.
pub fn sign_to(
    image: &str,
    keys: &[&str],
    name: &str,
    version: u64,
    signed_at: SystemTime,
    valid: Duration,
    out: &Path,
) -> PathBuf {
    let image: ImageRef = image.parse().unwrap();
    let keys: Vec<keys::SigningKey> = keys.iter().map(|k| testdata::keys::test_key(k)).collect();
    let refs: Vec<&keys::SigningKey> = keys.iter().collect();
    let options = SignOptions { name: Some(name.into()), version, expires_in: valid, now: signed_at };
    let signed = sign(&image, &refs, &options, Arc::new(NoProgress)).expect("sign");
    assert_eq!(signed.bundles.len(), 1, "sign_to writes one bundle: sign with one key");
    std::fs::write(out, signed.bundles[0].to_json()).unwrap();
    out.to_path_buf()
}

/// Signs now, valid 30 days.
pub fn sign_now(image: &str, key: &str, name: &str, version: u64, out: &Path) -> PathBuf {
    sign_to(image, &[key], name, version, SystemTime::now(), Duration::from_secs(30 * 86400), out)
}

/// A trust store at `dir` trusting the test keys named.
pub fn trust_store(dir: &Path, keys: &[&str], threshold: usize) -> PathBuf {
    let mut trust = keys::TrustStore::init(dir, threshold).unwrap();
    for k in keys {
        trust.add_key(&testdata::keys::test_key(k).public_key()).unwrap();
    }
    dir.to_path_buf()
}

/// A cgroup v2 directory created for one test, removed when dropped.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    /// Creates `imgsign-test-<pid>-<name>` under the cgroup v2 mount below /sys/fs/cgroup
    /// (/sys/fs/cgroup itself on a unified layout, /sys/fs/cgroup/unified on a hybrid one).
    /// `None`, with a loud message, when the machine has no cgroup v2 there.
    pub fn new(name: &str) -> Option<TestCgroup> {
        let Some(mount) = cgroup2_root() else {
            eprintln!("\n*** SKIPPED: no cgroup v2 file system is mounted under /sys/fs/cgroup; cgroup ids cannot be tested here ***\n");
            return None;
        };
        let path = mount.join(format!("imgsign-test-{}-{name}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&path) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                panic!("cannot create cgroup {} (these tests run as root): {e}", path.display());
            }
        }
        Some(TestCgroup { path })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = cgroup::cgroup2_mounts().expect("reading /proc/self/mountinfo");
    mounts.into_iter().filter(|m| m.starts_with("/sys/fs/cgroup")).min_by_key(|m| m.as_os_str().len())
}

/// Writes `text` as `policy.toml` in `dir`.
pub fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A one-scope policy text.
pub fn one_scope(trust: &Path, cgroup: &Path, mode: &str, bundles: &[&Path], image: Option<&str>) -> String {
    let bundles: Vec<String> = bundles.iter().map(|b| format!("{:?}", b.display().to_string())).collect();
    let mut text = format!(
        "trust = {:?}\nevents = \"-\"\n\n[[scope]]\nname = \"web\"\ncgroup = {:?}\nmode = {mode:?}\nbundles = [{}]\n",
        trust.display().to_string(),
        cgroup.display().to_string(),
        bundles.join(", ")
    );
    if let Some(image) = image {
        text.push_str(&format!("image = {image:?}\n"));
    }
    text
}

/// A writer the test can read back: the daemon's JSON-lines records.
#[derive(Clone, Default)]
pub struct Output(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    /// Every line written so far, parsed.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }
}
