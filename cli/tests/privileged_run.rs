//! `imgsign run` and `imgsign ps` as root on this host: a busybox-static image packed as an OCI
//! layout, signed with a test key, verified, unpacked and launched through libcontainer. Refusals
//! (tampered, untrusted, expired) happen before anything runs.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::*;
use testdata::oci::{write_layout, write_layout_with_config, Layer};
use testdata::tar::TarWriter;

/// The signed image: (oci reference, bundle, trust store); built once per test binary.
fn signed() -> &'static (String, PathBuf, PathBuf) {
    static SIGNED: OnceLock<(String, PathBuf, PathBuf)> = OnceLock::new();
    SIGNED.get_or_init(|| signed_busybox_image("run-image"))
}

fn state_root() -> PathBuf {
    scratch_root().join("state")
}

/// `imgsign run IMAGE --bundle B --trust T --state-root S --store S2 EXTRA... -- CMD...`.
fn run_cmd(image: &str, bundle: &Path, trust: &Path, extra: &[&str], cmd: &[&str]) -> Command {
    run_cmd_in(&scratch_root().join("store"), image, bundle, trust, extra, cmd)
}

/// [`run_cmd`] with a store of its own.
fn run_cmd_in(store: &Path, image: &str, bundle: &Path, trust: &Path, extra: &[&str], cmd: &[&str]) -> Command {
    let mut c = imgsign();
    c.arg("run").arg(image).arg("--bundle").arg(bundle).arg("--trust").arg(trust);
    c.arg("--state-root").arg(state_root()).arg("--store").arg(store);
    c.arg("--no-record").args(extra).arg("--").args(cmd);
    c
}

/// Complete image entries in the test store (`images/<digest>`, not `.tmp-*`).
fn stored_images() -> usize {
    let Ok(dir) = fs::read_dir(scratch_root().join("store").join("images")) else { return 0 };
    dir.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count()
}

fn run_signed(extra: &[&str], cmd: &[&str]) -> Run {
    let (image, bundle, trust) = signed();
    run(&mut run_cmd(image, bundle, trust, extra, cmd))
}

#[test]
fn privileged_run_echo_ok_and_exit_codes() {
    let r = run_signed(&["--name", "echo"], &["/bin/sh", "-c", "echo ok"]);
    r.code(0);
    assert_eq!(r.stdout, "ok\n");
    run_signed(&["--name", "seven"], &["sh", "-c", "exit 7"]).code(7);
    // A command the image does not have: the launch fails (125), naming it.
    run_signed(&["--name", "nocmd"], &["no-such-command"]).code(125).says("no-such-command");
    // Nothing left but the stored image: no container directory, no mount, no cgroup.
    assert_eq!(stored_images(), 1, "one image in the store, shared by the three runs");
    for id in ["echo", "seven", "nocmd"] {
        assert!(!state_root().join(id).exists());
        for controller in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            assert!(!controller.path().join("imgsign").join(id).exists(), "{id}: cgroup left");
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&format!("/{id}/")), "{id}: mount left");
    }
}

/// An image whose config names the process: Entrypoint, Cmd, Env, WorkingDir and User (a
/// name from the image's /etc/passwd).
fn signed_with_config() -> (String, PathBuf, PathBuf) {
    let root = scratch_root().join("run-config-image");
    fs::create_dir_all(&root).unwrap();
    let mut tar = TarWriter::new();
    for d in ["bin", "dev", "etc", "proc", "run", "srv", "sys"] {
        tar.dir(d, 0o755);
    }
    tar.dir("tmp", 0o1777);
    tar.file("bin/busybox", 0o755, busybox());
    tar.symlink("bin/sh", "busybox");
    tar.file("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/srv:/bin/sh\n");
    tar.file("etc/group", 0o644, "root:x:0:\napp:x:1001:\n");
    let process = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo \"$GREETING $OTHER from $(pwd) as $(busybox id -u):$(busybox id -g)\""],
        "Env": ["GREETING=hello", "OTHER=image"],
        "WorkingDir": "/srv",
        "User": "app",
    });
    let written = write_layout_with_config(&root.join("oci"), "v1", &[Layer::gzip(&tar.finish())], process).unwrap();
    let [a, ..] = keys();
    let bundle = sign_ok(&written.reference(), &[a], &root.join("bundle.json"), &["--name", "cfg", "--version", "1"]);
    let trust = trust_store(&root.join("trust"), &[a], 1);
    (written.reference(), bundle, trust)
}

#[test]
fn privileged_run_uses_the_image_config() {
    let (image, bundle, trust) = signed_with_config();
    // A store of its own: other tests count the images of the shared one.
    let store = scratch_root().join("run-config-image").join("store");
    let run_cmd = |image: &str, bundle: &Path, trust: &Path, extra: &[&str], cmd: &[&str]| {
        run_cmd_in(&store, image, bundle, trust, extra, cmd)
    };
    // No command: Entrypoint + Cmd, with the image's Env, WorkingDir and User.
    let r = run(&mut run_cmd(&image, &bundle, &trust, &["--name", "cfg1"], &[]));
    r.code(0);
    assert_eq!(r.stdout, "hello image from /srv as 1000:1001\n", "{}", r.all());
    // `-- CMD` replaces Cmd (the Entrypoint stays); --env comes after (and over) the image's;
    // --user and --workdir replace the image's.
    let r = run(&mut run_cmd(
        &image,
        &bundle,
        &trust,
        &["--name", "cfg2", "--env", "OTHER=flag", "--user", "0:0", "--workdir", "/tmp"],
        &["echo \"$GREETING $OTHER from $(pwd) as $(busybox id -u)\""],
    ));
    r.code(0);
    assert_eq!(r.stdout, "hello flag from /tmp as 0\n", "{}", r.all());
    // A user name the image's /etc/passwd does not hold: a clear error, nothing runs.
    run(&mut run_cmd(&image, &bundle, &trust, &["--name", "cfg3", "--user", "nobody"], &[]))
        .code(2)
        .says("no user \"nobody\" in the image's /etc/passwd");
}

#[test]
fn privileged_run_without_command_or_image_default_is_refused() {
    // The busybox image's config has neither Entrypoint nor Cmd.
    run_signed(&["--name", "nocmd-cfg"], &[]).code(2).says("neither Entrypoint nor Cmd");
    assert!(!state_root().join("nocmd-cfg").exists());
}

#[test]
fn privileged_run_json_summary_and_hardened_defaults() {
    let r = run_signed(
        &["--name", "json", "--json"],
        &[
            "sh",
            "-c",
            "busybox mount -t tmpfs x /tmp 2>/dev/null && echo MOUNTED; busybox grep -E 'CapEff|SigBlk' /proc/self/status >&2",
        ],
    );
    r.code(0);
    assert!(!r.stdout.contains("MOUNTED"), "{}", r.all());
    assert!(r.stderr.contains("CapEff:\t00000000000004fb"), "{}", r.all());
    // imgsign blocks SIGINT/SIGTERM to forward them; the container must not inherit that.
    assert!(r.stderr.contains("SigBlk:\t0000000000000000"), "{}", r.all());
    let summary: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["id"], "json");
    assert_eq!(summary["exitCode"], 0);
}

#[test]
fn privileged_run_volume_owned_by_mapped_uid() {
    let host = scratch_root().join("volume");
    fs::create_dir_all(&host).unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o777)).unwrap();
    let volume = format!("{}:/data", host.display());
    run_signed(&["--name", "vol", "--volume", &volume], &["sh", "-c", "echo hi > /data/f"]).code(0);
    let meta = fs::metadata(host.join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (100_000, 100_000), "root inside must not be root outside");
}

#[test]
fn privileged_run_secret() {
    let src = scratch_root().join("token");
    fs::write(&src, "hunter2").unwrap();
    let secret = format!("token={}", src.display());
    let r = run_signed(&["--name", "sec", "--secret", &secret], &["sh", "-c", "busybox cat /run/secrets/token"]);
    r.code(0);
    assert_eq!(r.stdout, "hunter2");
}

#[test]
fn privileged_run_sigterm_is_forwarded_and_ps_lists_it() {
    let (image, bundle, trust) = signed();
    let mut child = run_cmd(
        image,
        bundle,
        trust,
        &["--name", "sleeper"],
        &["sh", "-c", "trap 'exit 42' TERM; while true; do busybox sleep 0.1; done"],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until ps shows it running.
    let mut listed = String::new();
    for _ in 0..100 {
        let ps = run(imgsign().arg("ps").arg("--json").arg("--state-root").arg(state_root()));
        if ps.stdout.contains("\"sleeper\"") {
            listed = ps.stdout;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ps: serde_json::Value = serde_json::from_str(&listed).expect("ps listed the container");
    let entry = ps.as_array().unwrap().iter().find(|e| e["id"] == "sleeper").unwrap();
    assert_eq!(entry["status"], "running");
    assert!(entry["digest"].as_str().unwrap().starts_with("sha256:"), "{entry}");
    assert!(entry["pid"].as_i64().unwrap() > 1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    assert!(!state_root().join("sleeper").exists());
}

#[test]
fn privileged_run_refuses_a_tampered_image_before_launch() {
    let (_, bundle, trust) = signed();
    // The same image with one byte of /bin/busybox changed, repacked with consistent digests.
    let mut changed = busybox();
    let i = changed.len() / 2;
    changed[i] ^= 1;
    let tmp = tempdir();
    let written = write_layout(&tmp.path().join("oci"), "v1", &[busybox_layer(&changed)]).unwrap();
    let marker = tmp.path().join("ran");
    let volume = format!("{}:/m", tmp.path().display());
    let before = stored_images();
    let r = run(&mut run_cmd(
        &written.reference(),
        bundle,
        trust,
        &["--name", "tampered", "-v", &volume],
        &["sh", "-c", "echo x > /m/ran"],
    ));
    r.code(1).says("/bin/busybox");
    assert!(!marker.exists(), "the tampered image ran");
    assert_eq!(stored_images(), before, "a refused image leaves no store entry");

    // One byte of the layer blob changed on disk: refused (digest mismatch).
    let (image, _, _) = signed();
    let copy = tmp.path().join("copy");
    Command::new("cp")
        .arg("-a")
        .arg(image.strip_prefix("oci:").unwrap().split(':').next().unwrap())
        .arg(&copy)
        .status()
        .unwrap();
    let blobs: Vec<PathBuf> = fs::read_dir(copy.join("blobs/sha256")).unwrap().flatten().map(|e| e.path()).collect();
    let blob = blobs.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(blob).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    fs::write(blob, bytes).unwrap();
    // Into an empty store: refused. (Where the image is already stored, the layers are not read
    // again: what runs is the tree verified when it was stored, whatever the blob on disk says.)
    let empty_store = tmp.path().join("store");
    let copied = format!("oci:{}:v1", copy.display());
    let r = run(&mut run_cmd_in(&empty_store, &copied, bundle, trust, &["--name", "blob"], &["true"]));
    r.code(1).says("refused");
    let entries = fs::read_dir(empty_store.join("images")).map(|d| d.flatten().count()).unwrap_or(0);
    assert_eq!(entries, 0, "no store entry, not even a temporary one");
}

#[test]
fn privileged_run_refuses_untrusted_and_enforce() {
    let (image, bundle, _) = signed();
    let [_, b, _] = keys();
    let tmp = tempdir();
    let other = trust_store(&tmp.path().join("trust-b"), &[b], 1);
    let r = run(&mut run_cmd(image, bundle, &other, &["--name", "untrusted"], &["true"]));
    r.code(1).says("refused");
    // --enforce with no daemon at the socket (or, on a node with cgroup v1 controllers, with no
    // unified hierarchy to scope): the container does not run unenforced.
    let (_, _, trust) = signed();
    let extra = ["--name", "enf", "--enforce", "--control-socket", "/run/imgsign-test-no-daemon.sock"];
    let r = run(&mut run_cmd(image, bundle, trust, &extra, &["/bin/sh", "-c", "echo RAN"]));
    r.code(125);
    assert!(
        r.stderr.contains("cannot reach the enforcement daemon") || r.stderr.contains("unified cgroup v2"),
        "{}",
        r.all()
    );
    assert!(!r.stdout.contains("RAN"), "{}", r.all());
    assert!(!state_root().join("enf").exists());
    assert!(!Path::new("/sys/fs/cgroup/imgsign/enf").exists(), "cgroup left");
    // A response to violations needs enforcement to report them.
    let r = run(&mut run_cmd(image, bundle, trust, &["--name", "enf2", "--on-violation", "kill"], &["true"]));
    r.code(2).says("--enforce");
}

#[test]
fn privileged_run_refuses_expired_and_rolled_back() {
    let (image, _, _) = signed();
    let [a, ..] = keys();
    let tmp = tempdir();
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let expiring =
        sign_ok(image, &[a], &tmp.path().join("exp.json"), &["--name", "bbx", "--version", "1", "--expires", "1s"]);
    let v1 = sign_ok(image, &[a], &tmp.path().join("v1.json"), &["--name", "bbr", "--version", "1"]);
    let v2 = sign_ok(image, &[a], &tmp.path().join("v2.json"), &["--name", "bbr", "--version", "2"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = run(&mut run_cmd(image, &expiring, &trust, &["--name", "expired"], &["true"]));
    r.code(1).says("expired at");
    // Version 2 runs (and is recorded: run without --no-record), then version 1 is a rollback.
    let mut c = imgsign();
    c.arg("run").arg(image).arg("--bundle").arg(&v2).arg("--trust").arg(&trust);
    c.arg("--state-root").arg(state_root()).arg("--store").arg(scratch_root().join("store"));
    c.args(["--name", "v2", "--", "busybox", "true"]);
    run(&mut c).code(0);
    let r = run(&mut run_cmd(image, &v1, &trust, &["--name", "v1"], &["true"]));
    r.code(1).says("rollback");
}

#[test]
fn privileged_run_pids_limit() {
    // 8 tasks at most: of 20 background sleeps some cannot be forked.
    let r = run_signed(
        &["--name", "pids", "--pids-limit", "8"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do busybox sleep 1 & done; echo started",
        ],
    );
    assert!(r.stderr.contains("can't fork"), "{}", r.all());
    // Without the limit, the same script forks them all.
    let r = run_signed(
        &["--name", "pids-default"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do busybox sleep 1 & done; echo started",
        ],
    );
    r.code(0).says("started");
}

#[test]
fn privileged_freeze_thaw_and_kill() {
    let (image, bundle, trust) = signed();
    let out = scratch_root().join("ticks");
    fs::create_dir_all(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
    let volume = format!("{}:/t", out.display());
    let mut child = run_cmd(
        image,
        bundle,
        trust,
        &["--name", "frz", "-v", &volume],
        &["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /t/n; busybox sleep 0.05; done"],
    )
    .spawn()
    .unwrap();
    // If an assertion fails, do not leave a frozen container (and this test's pipes) behind.
    struct Reap;
    impl Drop for Reap {
        fn drop(&mut self) {
            for cmd in ["thaw", "kill"] {
                let _ = imgsign().arg(cmd).arg("frz").arg("--state-root").arg(state_root()).output();
            }
        }
    }
    let _reap = Reap;
    let ticks = || fs::read_to_string(out.join("n")).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    for _ in 0..100 {
        if ticks() > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ticks() > 0, "the container never ticked");
    let ctl = |cmd: &str| run(imgsign().arg(cmd).arg("frz").arg("--state-root").arg(state_root()));
    ctl("freeze").code(0);
    let state = fs::read_to_string("/sys/fs/cgroup/freezer/imgsign/frz/freezer.state").unwrap();
    assert_eq!(state.trim(), "FROZEN");
    let ps = run(imgsign().args(["ps", "--json", "--state-root"]).arg(state_root()));
    assert!(ps.stdout.contains("\"frozen\""), "{}", ps.stdout);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let frozen_at = ticks();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(ticks(), frozen_at, "a frozen container kept running");
    ctl("thaw").code(0);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(ticks() > frozen_at, "a thawed container stayed stopped");
    ctl("kill").code(0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    assert!(!state_root().join("frz").exists());
    assert!(!Path::new("/sys/fs/cgroup/freezer/imgsign/frz").exists());
    run(imgsign().args(["kill", "frz", "--state-root"]).arg(state_root())).code(2).says("no container frz");
}

/// `imgsign run docker://...` from an empty store: the busybox image pushed by skopeo to Debian's
/// docker-registry on loopback, signed there with `sign --push`, its bundle discovered (no
/// `--bundle`), verified onto disk and launched.
#[test]
fn privileged_run_by_registry_reference_from_an_empty_store() {
    let (reference, _, trust) = signed();
    let registry = support::registry::TestRegistry::plain();
    registry.push(reference, "busybox/run:v1");
    let image = format!("{}:v1", registry.reference("busybox/run"));
    let tmp = tempdir();
    let [a, ..] = keys();
    let signed = sign(&image, &[a], &tmp.path().join("pushed.bundle"), &["--insecure", "--push", "--name", "bb"]);
    signed.code(0).says("pushed to");
    let mut c = imgsign();
    c.arg("run").arg(&image).arg("--insecure").arg("--trust").arg(trust);
    c.arg("--state-root").arg(state_root()).arg("--store").arg(tmp.path().join("store"));
    c.args(["--no-record", "--", "/bin/sh", "-c", "echo ran from the registry"]);
    run(&mut c).code(0).says("ran from the registry");
}

#[test]
fn privileged_run_remembers_a_verified_bundle_and_still_refuses_a_revoked_key() {
    let (image, _, _) = signed();
    let [a, ..] = keys();
    let tmp = tempdir();
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let bundle = sign_ok(image, &[a], &tmp.path().join("b.json"), &["--name", "remembered"]);
    let store = tmp.path().join("store");
    let summary = |r: &Run| -> serde_json::Value { serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap() };
    let first =
        run(&mut run_cmd_in(&store, image, &bundle, &trust, &["--name", "rem1", "--json"], &["busybox", "true"]));
    assert_eq!(summary(first.code(0))["ensure"]["remembered"], false, "{}", first.all());
    let second =
        run(&mut run_cmd_in(&store, image, &bundle, &trust, &["--name", "rem2", "--json"], &["busybox", "true"]));
    assert_eq!(summary(second.code(0))["ensure"]["remembered"], true, "{}", second.all());
    // The remembered verification is rechecked against the trust store of now.
    run(imgsign().args(["trust", "revoke"]).arg(&trust).arg(&a.id)).code(0);
    let r = run(&mut run_cmd_in(&store, image, &bundle, &trust, &["--name", "rem3"], &["/bin/sh", "-c", "echo RAN"]));
    r.code(1).says("revoked key");
    assert!(!r.stdout.contains("RAN"), "{}", r.all());
}
