//! In-VM smoke tests of BPF-LSM enforcement (issue 3, the kernel lab).
//!
//! Every test needs root in a kernel with BPF-LSM active, so each is
//! `#[ignore]`d on the host; `cargo xtask lab` boots Debian kernels under
//! QEMU and runs them there with `--ignored --exact`.
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use bpf_lsm::smoke::SmokeLsm;
use bpf_lsm::Digest;
use sha2::{Digest as _, Sha256};

/// A static multi-call binary to copy and exec: in the lab, busybox.
fn busybox() -> PathBuf {
    let path = PathBuf::from("/bin/busybox");
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A copy of busybox named `busybox-<tag>` (so it still runs applets) with
/// `tag` appended, giving it a SHA-256 of its own. Returns path and digest.
fn unique_busybox(dir: &Path, tag: &str) -> (PathBuf, Digest) {
    let mut bytes = fs::read(busybox()).expect("read busybox");
    bytes.extend_from_slice(format!("\nimgsign-lab-{tag}\n").as_bytes());
    let path = dir.join(format!("busybox-{tag}"));
    fs::write(&path, &bytes).expect("write copy");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    (path, Sha256::digest(&bytes).into())
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgsign-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run_true(path: &Path) -> std::io::Result<std::process::ExitStatus> {
    Command::new(path).arg("true").status()
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_smoke_denies_exec_by_digest() {
    let dir = scratch_dir("deny");
    let (denied, denied_digest) = unique_busybox(&dir, "deny");
    let (allowed, _) = unique_busybox(&dir, "allow");

    // Before the program is attached, both run.
    assert!(run_true(&denied).expect("exec before attach").success());

    let mut lsm = SmokeLsm::attach().expect("load and attach the smoke program");
    lsm.deny(denied_digest).expect("add digest to the deny set");

    match run_true(&denied) {
        Err(e) => {
            assert!(
                matches!(e.raw_os_error(), Some(1 | 13)) // EPERM | EACCES
                    || e.kind() == ErrorKind::PermissionDenied,
                "exec of the denied file failed, but not with EPERM/EACCES: {e}"
            );
            println!("denied exec of {}: {e}", denied.display());
        }
        Ok(status) => panic!("exec of a file with a denied digest ran: {status}"),
    }
    let seen = lsm
        .seen(fs::metadata(&denied).unwrap().ino())
        .expect("read seen map")
        .expect("program recorded the denied exec");
    assert!(seen.denied, "program did not mark the exec denied: {seen:?}");

    assert!(run_true(&allowed).expect("exec of allowed copy").success());
    assert!(run_true(&busybox()).expect("exec of /bin/busybox").success());

    drop(lsm);
    assert!(run_true(&denied).expect("exec after detach").success(), "dropping the loader must detach the program");
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_smoke_kernel_sha256_matches_userspace() {
    let dir = scratch_dir("hash");
    let (copy, _) = unique_busybox(&dir, "hash");
    let mut lsm = SmokeLsm::attach().expect("load and attach the smoke program");

    for path in [copy.clone(), busybox()] {
        assert!(run_true(&path).expect("exec").success());
        let expected: Digest = Sha256::digest(fs::read(&path).unwrap()).into();
        let seen = lsm
            .seen(fs::metadata(&path).unwrap().ino())
            .expect("read seen map")
            .unwrap_or_else(|| panic!("no record of the exec of {}", path.display()));
        let kernel =
            seen.sha256().unwrap_or_else(|| panic!("bpf_ima_file_hash returned {} for {}", seen.algo, path.display()));
        println!("{}: kernel {} user {}", path.display(), hex::encode(kernel), hex::encode(expected));
        assert_eq!(kernel, expected, "kernel and user-space SHA-256 differ for {}", path.display());
        assert!(!seen.denied);
    }
    fs::remove_dir_all(dir).ok();
}
