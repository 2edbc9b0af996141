//! As root on this host, through the `imgsign` binary: image files owned as in the image inside
//! the user namespace (the store's rootfs seen through an idmapped mount), and
//! `imgsign snapshot` of a running container.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::*;

fn signed() -> &'static (String, PathBuf, PathBuf) {
    static SIGNED: OnceLock<(String, PathBuf, PathBuf)> = OnceLock::new();
    SIGNED.get_or_init(|| signed_busybox_image("snapshot-image"))
}

fn state_root() -> PathBuf {
    scratch_root().join("snapshot-state")
}

fn store() -> PathBuf {
    scratch_root().join("snapshot-store")
}

fn run_cmd(extra: &[&str], cmd: &[&str]) -> Command {
    let (image, bundle, trust) = signed();
    let mut c = imgsign();
    c.arg("run").arg(image).arg("--bundle").arg(bundle).arg("--trust").arg(trust);
    c.arg("--state-root").arg(state_root()).arg("--store").arg(store());
    c.arg("--no-record").args(extra).arg("--").args(cmd);
    c
}

/// Every `rootfs/etc/motd` of the test store.
fn stored_motd() -> Vec<PathBuf> {
    let Ok(dir) = fs::read_dir(store().join("images")) else { return vec![] };
    dir.flatten().map(|e| e.path().join("rootfs/etc/motd")).filter(|p| p.exists()).collect()
}

#[test]
fn privileged_run_image_files_owned_by_container_root() {
    let out = scratch_root().join("snapshot-idmap-out");
    fs::create_dir_all(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
    let volume = format!("{}:/out", out.display());
    let r = run(&mut run_cmd(
        &["-v", &volume],
        &[
            "sh",
            "-c",
            "busybox stat -c 'owner %u:%g' /etc/motd /bin/busybox; echo x >> /etc/motd && echo APPENDED; \
             busybox cat /etc/motd; echo v > /out/made",
        ],
    ));
    r.code(0).says("owner 0:0\nowner 0:0\n").says("APPENDED\nsigned\nx\n");
    // The store's file is unchanged (content and host owner).
    let motd = stored_motd();
    assert!(!motd.is_empty(), "no stored rootfs/etc/motd");
    for p in motd {
        assert_eq!(fs::read_to_string(&p).unwrap(), "signed\n");
        let meta = fs::metadata(&p).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }
    let made = fs::metadata(out.join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (100_000, 100_000));
    // --no-userns keeps working (host owners, host root).
    run(&mut run_cmd(&["--no-userns"], &["sh", "-c", "busybox stat -c 'owner %u' /etc/motd; echo y >> /etc/motd"]))
        .code(0)
        .says("owner 0\n");
}

#[test]
fn privileged_snapshot_of_a_running_container() {
    let mut child = run_cmd(&["--name", "snp"], &["sh", "-c", "echo evidence > /tmp/written; exec busybox sleep 1000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Reap;
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = imgsign().arg("kill").arg("snp").arg("--state-root").arg(state_root()).output();
        }
    }
    let _reap = Reap;
    let written = state_root().join("snp/upper/tmp/written");
    let record = state_root().join("snp/imgsign.json");
    let sleeping = || {
        fs::read_to_string(&record)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["pid"].as_i64())
            .and_then(|pid| fs::read_to_string(format!("/proc/{pid}/cmdline")).ok())
            .is_some_and(|c| c.contains("sleep"))
    };
    for _ in 0..200 {
        if written.exists() && sleeping() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(written.exists() && sleeping(), "the container never started");
    let dest = scratch_root().join("snapshot-snp");
    let _ = fs::remove_dir_all(&dest);
    let snap = |dest: &Path| {
        run(imgsign().args(["snapshot", "snp"]).arg(dest).arg("--json").arg("--state-root").arg(state_root()))
    };
    let r = snap(&dest);
    r.code(0);
    let summary = r.json();
    assert_eq!(summary["processes"], 1, "{summary}");
    assert_eq!(summary["events"], 0);
    let listing = Command::new("tar").arg("-tf").arg(dest.join("upper.tar")).output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).lines().any(|l| l == "./tmp/written"));
    let procs: serde_json::Value = serde_json::from_slice(&fs::read(dest.join("processes.json")).unwrap()).unwrap();
    let sleep =
        procs.as_array().unwrap().iter().find(|p| p["cmdline"][1] == "sleep").unwrap_or_else(|| panic!("{procs}"));
    assert_eq!(sleep["pid"], 1);
    assert_eq!(sleep["exeSha256"].as_str().map(str::len), Some(64));
    for f in ["imgsign.json", "events.json", "snapshot.json"] {
        assert!(dest.join(f).is_file(), "{f}");
    }
    // An existing DEST is refused; the container keeps running.
    let again = snap(&dest);
    assert_ne!(again.code, Some(0));
    assert!(again.all().contains("exists already"), "{}", again.all());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "the container stopped");
    assert!(sleeping());
    run(imgsign().arg("kill").arg("snp").arg("--state-root").arg(state_root())).code(0);
    assert_eq!(child.wait().unwrap().code(), Some(137));
}
