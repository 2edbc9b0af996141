//! `imgsign runtime` driven directly, as an engine would, on a bundle made of the signed real
//! image's rootfs (as root on this host): the lifecycle (create, state, start, exec, ps, pause,
//! resume, kill, delete) with runc's outputs; `run`'s exit code; a tampered bundle refused with
//! runc's JSON log line and nothing created; systemd cgroups and bad signals refused; the
//! `imgsign-runtime` name; `features` and `spec`.

#[path = "support/runtime.rs"]
mod runtime_support;
mod support;

use runtime_support::{root_or_skip, signed_real, Node};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{run, tempdir, Run};
use testdata::real::paths;

/// A bundle whose rootfs is a copy of the signed image's (libcontainer makes mount points in
/// it) and whose process is `args`.
fn bundle(dir: &Path, args: &[&str]) -> PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let status = Command::new("cp").arg("-a").arg(&signed_real().0.rootfs).arg(bundle.join("rootfs")).status();
    assert!(status.unwrap().success());
    runtime(dir, &["spec", "--bundle"]).arg(&bundle).status().unwrap();
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(args);
    spec["root"]["readonly"] = false.into();
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    bundle
}

/// `imgsign runtime --root DIR/state ARGS` under the node policy in `dir`.
fn runtime(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgsign"));
    c.env("IMGSIGN_RUNTIME_CONFIG", dir.join("runtime.toml"));
    c.arg("runtime").arg("--root").arg(dir.join("state")).args(args).stdin(std::process::Stdio::null());
    c
}

fn rt(dir: &Path, args: &[&str]) -> Run {
    run(&mut runtime(dir, args))
}

fn state(dir: &Path, id: &str) -> serde_json::Value {
    rt(dir, &["state", id]).code(0).json()
}

#[test]
fn runtime_lifecycle_as_runc() {
    if !root_or_skip("runtime_lifecycle_as_runc") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::new(dir, "run-unenforced", false);
    let bundle = bundle(dir, &["/bin/sh", "-c", "sleep 300"]);
    let pid_file = dir.join("pid");
    let mut create = runtime(dir, &["create", "--pid-file"]);
    create.arg(&pid_file).arg("--bundle").arg(&bundle).arg("c1");
    // The container's stdio is the one create is given (as with runc): a file, since its init
    // keeps it open past create's exit.
    let out = dir.join("c1.out");
    create.stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(dir.join("c1.err")).unwrap());
    assert!(create.status().unwrap().success(), "{}", std::fs::read_to_string(dir.join("c1.err")).unwrap());
    assert!(std::fs::read_to_string(dir.join("c1.err")).unwrap().contains("WITHOUT kernel enforcement"));
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let s = state(dir, "c1");
    assert_eq!((s["id"].as_str(), s["status"].as_str(), s["pid"].as_i64()), (Some("c1"), Some("created"), Some(pid)));
    assert_eq!(s["bundle"].as_str().map(PathBuf::from), Some(bundle.canonicalize().unwrap()));
    assert_eq!(s["rootfs"].as_str().map(PathBuf::from), Some(bundle.join("rootfs")));
    assert!(s["created"].as_str().is_some_and(|t| t.contains('T')), "{s}");
    assert!(s["imgsign"]["unenforced"].as_str().is_some(), "{s}");

    rt(dir, &["start", "c1"]).code(0);
    assert_eq!(state(dir, "c1")["status"], "running");
    rt(dir, &["exec", "c1", "/bin/sh", "-c", "echo in; exit 4"]).code(4).says("in");
    let pids = rt(dir, &["ps", "--format", "json", "c1"]).code(0).json();
    assert!(pids.as_array().unwrap().iter().any(|p| p.as_i64() == Some(pid)), "{pids}");
    rt(dir, &["pause", "c1"]).code(0);
    assert_eq!(state(dir, "c1")["status"], "paused");
    rt(dir, &["resume", "c1"]).code(0);
    rt(dir, &["kill", "c1", "BOGUS"]).code(1).says("invalid signal");
    rt(dir, &["delete", "c1"]).code(1); // running, no --force
    rt(dir, &["kill", "--all", "c1", "9"]).code(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state(dir, "c1")["status"] != "stopped" {
        assert!(std::time::Instant::now() < deadline, "not stopped after SIGKILL");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(state(dir, "c1")["pid"], 0);
    rt(dir, &["kill", "c1", "KILL"]).code(1).says("container not running");
    rt(dir, &["delete", "c1"]).code(0);
    rt(dir, &["state", "c1"]).code(1).says("does not exist");
    rt(dir, &["delete", "--force", "c1"]).code(0);
    let _ = node;
}

#[test]
fn runtime_run_returns_the_exit_code_and_leaves_nothing() {
    if !root_or_skip("runtime_run_returns_the_exit_code_and_leaves_nothing") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::new(dir, "run-unenforced", false);
    let bundle = bundle(dir, &["/bin/sh", "-c", "echo ok; exit 7"]);
    let mut c = runtime(dir, &["run", "--bundle"]);
    c.arg(&bundle).arg("r1");
    let r = run(&mut c);
    r.code(7);
    assert_eq!(r.stdout, "ok\n");
    let left: Vec<_> = std::fs::read_dir(dir.join("state")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = node;
}

#[test]
fn runtime_refuses_a_tampered_bundle_in_runc_json_log_and_creates_nothing() {
    if !root_or_skip("runtime_refuses_a_tampered_bundle_in_runc_json_log_and_creates_nothing") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let _node = Node::new(dir, "run-unenforced", false);
    let bundle = bundle(dir, &["/bin/sh", "-c", "echo ok"]);
    std::fs::write(bundle.join("rootfs").join(paths::PLAIN_FILE.trim_start_matches('/')), "NAME=tampered\n").unwrap();
    let log = dir.join("log.json");
    let mut c = runtime(dir, &["--log"]);
    c.arg(&log).args(["--log-format", "json", "run", "--bundle"]).arg(&bundle).arg("t1");
    let r = run(&mut c);
    r.code(1).says("imgsign refused container t1").says(paths::PLAIN_FILE);
    assert!(!r.stdout.contains("ok"));
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains(paths::PLAIN_FILE), "{line}");
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
    assert!(!dir.join("state").join("t1").exists(), "the refused container was created");
}

#[test]
fn a_tampered_bundle_with_a_create_hook_is_refused_before_the_hook_runs() {
    // With no hook before `start`, the gate decides beside libcontainer's create (see the test
    // above: refused, nothing left). A hook an engine gives may read the root file system, so
    // with one the gate decides first and the hook never sees a root it would refuse.
    if !root_or_skip("a_tampered_bundle_with_a_create_hook_is_refused_before_the_hook_runs") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let _node = Node::new(dir, "run-unenforced", false);
    let bundle = bundle(dir, &["/bin/sh", "-c", "echo ok"]);
    let marker = dir.join("hook-ran");
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let hook = serde_json::json!([{ "path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", marker.display())] }]);
    spec["hooks"] = serde_json::json!({ "createRuntime": hook });
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    // Untouched, it runs, and the hook with it.
    let log = dir.join("log.json");
    let mut c = runtime(dir, &["--debug", "--log"]);
    c.arg(&log).args(["run", "--bundle"]).arg(&bundle).arg("h1");
    run(&mut c).code(0).says("ok");
    assert!(marker.exists(), "the createRuntime hook did not run");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("libcontainer create") && !text.contains("decided beside"), "{text}");
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(bundle.join("rootfs").join(paths::PLAIN_FILE.trim_start_matches('/')), "NAME=tampered\n").unwrap();
    let mut c = runtime(dir, &["run", "--bundle"]);
    c.arg(&bundle).arg("h2");
    let r = run(&mut c);
    r.code(1).says("imgsign refused container h2").says(paths::PLAIN_FILE);
    assert!(!r.stdout.contains("ok"));
    assert!(!marker.exists(), "the createRuntime hook ran on a refused root file system");
    assert!(!dir.join("state").join("h2").exists(), "the refused container was created");
}

#[test]
fn runtime_refuses_systemd_cgroups_and_an_enforcerless_node_by_default() {
    if !root_or_skip("runtime_refuses_systemd_cgroups_and_an_enforcerless_node_by_default") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let _node = Node::new(dir, "refuse", false);
    let bundle = bundle(dir, &["/bin/sh", "-c", "echo ok"]);
    let mut c = runtime(dir, &["--systemd-cgroup", "create", "--bundle"]);
    c.arg(&bundle).arg("s1");
    run(&mut c).code(1).says("systemd cgroups are not supported");
    let mut c = runtime(dir, &["run", "--bundle"]);
    c.arg(&bundle).arg("s2");
    let r = run(&mut c);
    r.code(1).says("no kernel enforcement").says("when_no_enforcer");
    assert!(!r.stdout.contains("ok"));
    for id in ["s1", "s2"] {
        assert!(!dir.join("state").join(id).exists(), "{id} left state");
    }
}

#[test]
fn runtime_features_spec_and_the_imgsign_runtime_name() {
    let tmp = tempdir();
    let dir = tmp.path();
    let features = rt(dir, &["features"]).code(0).json();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert_eq!(features["linux"]["cgroup"]["systemd"], false);
    assert!(features["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n == "user"));
    let mut c = runtime(dir, &["spec", "--bundle"]);
    c.arg(dir);
    run(&mut c).code(0);
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    run(&mut c).code(1).says("not replaced");
    // The binary as `imgsign-runtime`: its whole argv is the runtime's.
    let link = dir.join("imgsign-runtime");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_imgsign"), &link).unwrap();
    run(Command::new(&link).arg("--version")).code(0).says("imgsign-runtime");
    let r = run(Command::new(&link).arg("--root").arg(dir.join("none")).args(["state", "x"]));
    r.code(1).says("does not exist");
}

#[test]
fn a_failing_poststop_hook_is_a_warning_and_delete_still_removes_the_container() {
    if !root_or_skip("a_failing_poststop_hook_is_a_warning_and_delete_still_removes_the_container") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::new(dir, "run-unenforced", false);
    let bundle = bundle(dir, &["/bin/sh", "-c", "exit 0"]);
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["hooks"] = serde_json::json!({ "poststop": [{ "path": "/bin/false" }] });
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    let mut create = runtime(dir, &["create", "--bundle"]);
    create.arg(&bundle).arg("p1");
    // The init keeps create's stdio open: files, not pipes.
    create.stdout(std::fs::File::create(dir.join("p1.out")).unwrap());
    create.stderr(std::fs::File::create(dir.join("p1.err")).unwrap());
    assert!(create.status().unwrap().success(), "{}", std::fs::read_to_string(dir.join("p1.err")).unwrap());
    rt(dir, &["start", "p1"]).code(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while state(dir, "p1")["status"] != "stopped" {
        assert!(std::time::Instant::now() < deadline, "p1 never stopped");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The runtime spec: a failing poststop hook is a warning, the lifecycle goes on (as runc).
    rt(dir, &["delete", "p1"]).code(0).says("poststop");
    assert!(!dir.join("state/p1").exists(), "the container's state is left");
    let _ = node;
}

/// `imgsign-hook` is `imgsign hook` in an executable of its own: the same stages, the same
/// refusal of a state that is not one, and a usage error (exit 2) for anything else.
#[test]
fn imgsign_hook_takes_the_stages_of_imgsign_hook_and_refuses_anything_else() {
    let tmp = tempdir();
    // The OCI state comes on stdin, as a runtime writes it: from a file here.
    let with_stdin = |mut c: Command, input: &[u8]| {
        let file = tmp.path().join("state.json");
        std::fs::write(&file, input).unwrap();
        let out = run(c.stdin(std::fs::File::open(&file).unwrap()));
        (out.code, out.stderr)
    };
    let hook = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_imgsign-hook"));
        c.args(args);
        c
    };
    for args in [&[][..], &["bogus"], &["create-runtime", "poststop"]] {
        let (code, stderr) = with_stdin(hook(args), b"");
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: imgsign-hook create-runtime|poststop"), "{args:?}: {stderr}");
    }
    let mut full = Command::new(env!("CARGO_BIN_EXE_imgsign"));
    full.args(["hook", "create-runtime"]);
    for command in [hook(&["create-runtime"]), full] {
        let (code, stderr) = with_stdin(command, b"not an OCI state");
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("the OCI state on stdin is not valid"), "{stderr}");
    }
}
