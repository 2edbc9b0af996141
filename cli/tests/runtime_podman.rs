//! `imgsign runtime` under Debian's podman 4.3 (`podman --runtime WRAPPER`), as root on this
//! host: the signed real image runs and takes `podman exec`; the same image with one file
//! changed in podman's own storage after the pull, and an image nobody signed, are refused
//! with the reason in podman's error; a node whose policy refuses to run unenforced refuses.
//! Each test has its own podman storage (`--root`/`--runroot`/`--tmpdir` in a temp dir) and its
//! own runtime state root. Flags this machine needs: ../shared/KERNEL.md.

#[path = "support/runtime.rs"]
mod runtime_support;
mod support;

use runtime_support::{layer_files, root_or_skip, signed_real, unsigned_image, Node};
use std::path::Path;
use std::process::{Command, Stdio};
use support::{run, tempdir, Run};
use testdata::real::paths;

struct Podman {
    dir: tempfile::TempDir,
    /// podman wants its run root short (at most 50 characters: socket paths live there).
    runroot: tempfile::TempDir,
    node: Node,
    /// With `imgsign hook` in a hooks directory: the stock runc is the runtime.
    hooks: Option<std::path::PathBuf>,
}

impl Podman {
    fn new(when_no_enforcer: &str) -> Podman {
        let dir = tempdir();
        let node = Node::new(dir.path(), when_no_enforcer, true);
        let runroot = tempfile::Builder::new().prefix("imgsign-podman-").tempdir_in("/tmp").unwrap();
        Podman { dir, runroot, node, hooks: None }
    }

    /// Stock runc, with `imgsign-hook create-runtime` and `imgsign hook poststop` in a
    /// `hooks.d` (the node's policy passed through the hook's environment): both ways of
    /// naming a hook, the hooks' own executable and the full command line, are run.
    fn hooked(when_no_enforcer: &str) -> Podman {
        let mut podman = Podman::new(when_no_enforcer);
        let hooks = podman.dir.path().join("hooks.d");
        std::fs::create_dir_all(&hooks).unwrap();
        let create_runtime = [env!("CARGO_BIN_EXE_imgsign-hook"), "imgsign-hook", "create-runtime"];
        let poststop = [env!("CARGO_BIN_EXE_imgsign"), "imgsign", "hook", "poststop"];
        for (stage, arg, command) in
            [("createRuntime", "create-runtime", &create_runtime[..]), ("poststop", "poststop", &poststop[..])]
        {
            let hook = serde_json::json!({
                "version": "1.0.0",
                "hook": {
                    "path": command[0],
                    "args": command[1..],
                    "env": [format!("IMGSIGN_RUNTIME_CONFIG={}", podman.node.policy.display())],
                },
                "when": { "always": true },
                "stages": [stage],
            });
            std::fs::write(hooks.join(format!("imgsign-{arg}.json")), hook.to_string()).unwrap();
        }
        podman.hooks = Some(hooks);
        podman
    }

    fn storage(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.storage())
            .arg("--runroot")
            .arg(self.runroot.path())
            .arg("--tmpdir")
            .arg(d.join("tmp"));
        c.args(["--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]);
        match &self.hooks {
            Some(hooks) => c.args(["--runtime", "runc", "--hooks-dir"]).arg(hooks),
            None => c.arg("--runtime").arg(&self.node.wrapper),
        };
        c.stdin(Stdio::null());
        c
    }

    /// `podman pull REF`: the image id.
    fn pull(&self, reference: &str) -> String {
        let r = run(self.cmd().args(["pull", "--quiet", reference]));
        r.code(0);
        r.stdout.trim().to_string()
    }

    /// `podman run --rm IMAGE ARGS` with this machine's flags.
    fn run(&self, extra: &[&str], image: &str, args: &[&str]) -> Run {
        let mut c = self.cmd();
        c.args(["run", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
        c.args(extra).arg(image).args(args);
        run(&mut c)
    }

    /// Nothing of any container is left: podman knows none, the runtime holds no state.
    #[track_caller]
    fn assert_clean(&self) {
        let r = run(self.cmd().args(["ps", "-a", "-q"]));
        r.code(0);
        assert_eq!(r.stdout.trim(), "", "podman still lists containers");
        if self.hooks.is_none() {
            assert_eq!(self.node.containers(), Vec::<String>::new(), "runtime state left behind");
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Unmounts and removes the test's storage.
        let _ = self.cmd().args(["system", "reset", "--force"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

#[test]
fn podman_runs_the_signed_image_and_execs_into_it() {
    if !root_or_skip("podman_runs_the_signed_image_and_execs_into_it") {
        return;
    }
    let podman = Podman::new("run-unenforced");
    let id = podman.pull(&signed_real().0.oci_ref());
    let r = podman.run(&["--rm"], &id, &["/bin/sh", "-c", "echo ok"]);
    r.code(0);
    assert_eq!(r.stdout, "ok\n");
    podman.assert_clean();

    let r = podman.run(&["-d", "--name", "keep"], &id, &["/bin/sh", "-c", "sleep 300"]);
    r.code(0);
    let container = r.stdout.trim().to_string();
    assert!(podman.node.state.join(&container).is_dir(), "the runtime holds the running container");
    // The gate listed the root from podman's layers (the image's, and the container's upper
    // layer with the mount points podman and the runtime made), not path by path.
    let record = std::fs::read(podman.node.state.join(&container).join("imgsign-runtime.json")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert!(record["layers"].as_u64().unwrap_or(0) >= 2, "{record}");
    assert!(record.get("walkedBecause").is_none(), "{record}");
    let r = run(podman.cmd().args(["exec", "keep", "/bin/sh", "-c", "echo in; cat /etc/hostname"]));
    r.code(0).says("in\n");
    let r = run(podman.cmd().args(["exec", "keep", "/bin/sh", "-c", "exit 3"]));
    r.code(3);
    run(podman.cmd().args(["stop", "-t", "1", "keep"])).code(0);
    run(podman.cmd().args(["rm", "keep"])).code(0);
    podman.assert_clean();
    for controller in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let left = controller.path().join("libpod_parent").join(format!("libpod-{container}"));
        assert!(!left.exists(), "cgroup left: {}", left.display());
    }
}

#[test]
fn podman_refuses_the_signed_image_with_a_file_changed_after_the_pull() {
    if !root_or_skip("podman_refuses_the_signed_image_with_a_file_changed_after_the_pull") {
        return;
    }
    let podman = Podman::new("run-unenforced");
    let id = podman.pull(&signed_real().0.oci_ref());
    // The file as podman stores it, in the layer that holds it.
    let copies = layer_files(&podman.storage().join("overlay"), "diff", paths::PLAIN_FILE);
    assert!(!copies.is_empty(), "{} not found in podman's layers", paths::PLAIN_FILE);
    for copy in &copies {
        std::fs::write(copy, "NAME=tampered\n").unwrap();
    }
    let r = podman.run(&["--rm"], &id, &["/bin/sh", "-c", "echo ok"]);
    assert_ne!(r.code, Some(0), "a tampered image ran:\n{}", r.all());
    assert!(!r.stdout.contains("ok"), "the container's process ran: {}", r.stdout);
    r.says("imgsign refused container").says(paths::PLAIN_FILE);
    podman.assert_clean();
}

#[test]
fn podman_refuses_an_unsigned_image() {
    if !root_or_skip("podman_refuses_an_unsigned_image") {
        return;
    }
    let podman = Podman::new("run-unenforced");
    let id = podman.pull(unsigned_image());
    let r = podman.run(&["--rm"], &id, &["/bin/sh", "-c", "echo ok"]);
    assert_ne!(r.code, Some(0), "an unsigned image ran:\n{}", r.all());
    assert!(!r.stdout.contains("ok"), "the container's process ran: {}", r.stdout);
    r.says("imgsign refused container").says("signed manifest");
    podman.assert_clean();
}

#[test]
fn podman_refuses_the_signed_image_without_an_enforcer_by_default() {
    if !root_or_skip("podman_refuses_the_signed_image_without_an_enforcer_by_default") {
        return;
    }
    // The policy's default: no daemon here (and hybrid cgroups), so nothing may run.
    let podman = Podman::new("refuse");
    let id = podman.pull(&signed_real().0.oci_ref());
    let r = podman.run(&["--rm"], &id, &["/bin/sh", "-c", "echo ok"]);
    assert_ne!(r.code, Some(0), "ran without an enforcer:\n{}", r.all());
    assert!(!r.stdout.contains("ok"), "the container's process ran: {}", r.stdout);
    r.says("no kernel enforcement").says("when_no_enforcer");
    podman.assert_clean();
    assert!(Path::new(&podman.node.policy).is_file());
}

#[test]
fn podman_with_stock_runc_and_imgsign_hook_runs_the_signed_image_and_refuses_a_tampered_one() {
    if !root_or_skip("podman_with_stock_runc_and_imgsign_hook_runs_the_signed_image_and_refuses_a_tampered_one") {
        return;
    }
    let podman = Podman::hooked("run-unenforced");
    let id = podman.pull(&signed_real().0.oci_ref());
    let r = podman.run(&["--rm"], &id, &["/bin/sh", "-c", "echo ok"]);
    r.code(0);
    assert_eq!(r.stdout, "ok\n");
    podman.assert_clean();

    for copy in layer_files(&podman.storage().join("overlay"), "diff", paths::PLAIN_FILE) {
        std::fs::write(copy, "NAME=tampered\n").unwrap();
    }
    let r = podman.run(&["--rm"], &id, &["/bin/sh", "-c", "echo ok"]);
    assert_ne!(r.code, Some(0), "a tampered image ran:\n{}", r.all());
    assert!(!r.stdout.contains("ok"), "the container's process ran: {}", r.stdout);
    r.says("imgsign hook refused container").says(paths::PLAIN_FILE);
    podman.assert_clean();

    let id = podman.pull(unsigned_image());
    let r = podman.run(&["--rm"], &id, &["/bin/sh", "-c", "echo ok"]);
    assert_ne!(r.code, Some(0), "an unsigned image ran:\n{}", r.all());
    r.says("imgsign hook refused container").says("signed manifest");
    podman.assert_clean();
}

/// A control socket that records each request and accepts it, served from a thread: what the
/// hook tells the enforcement daemon, on a host that cannot run the daemon's BPF-LSM programs.
struct RecordingDaemon {
    requests: std::sync::Arc<std::sync::Mutex<Vec<enforce::control::Request>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RecordingDaemon {
    fn serve(socket: &Path) -> RecordingDaemon {
        use enforce::control::{ControlServer, Reply};
        let server = ControlServer::bind(socket).unwrap();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, done) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                while let Some(pending) = server.accept() {
                    let request = pending.request.clone().expect("the hook sends valid requests");
                    seen.lock().unwrap().push(request);
                    pending.reply(&Reply { ok: true, ..Reply::default() });
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        RecordingDaemon { requests, stop, thread: Some(thread) }
    }
}

impl Drop for RecordingDaemon {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn podman_with_the_hook_registers_the_containers_own_cgroup_its_name_and_its_init() {
    if !root_or_skip("podman_with_the_hook_registers_the_containers_own_cgroup_its_name_and_its_init") {
        return;
    }
    // The unified hierarchy: /sys/fs/cgroup/unified on this hybrid host, where runc places the
    // container too; the policy says so, and refuses to run unenforced.
    let unified = enforce::cgroup::cgroup2_mounts()
        .unwrap()
        .into_iter()
        .filter(|m| m.starts_with("/sys/fs/cgroup"))
        .min_by_key(|m| m.as_os_str().len())
        .expect("a cgroup v2 mount under /sys/fs/cgroup");
    let podman = Podman::hooked("refuse");
    let mut policy = std::fs::read_to_string(&podman.node.policy).unwrap();
    policy.push_str(&format!("cgroup_root = {:?}\n", unified.display().to_string()));
    std::fs::write(&podman.node.policy, policy).unwrap();
    let daemon = RecordingDaemon::serve(&podman.dir.path().join("no-daemon.sock"));

    let id = podman.pull(&signed_real().0.oci_ref());
    let cidfile = podman.dir.path().join("cid");
    let annotation = "io.kubernetes.cri.container-name=web";
    let extra = ["--rm", "--annotation", annotation, "--cidfile", cidfile.to_str().unwrap()];
    let r = podman.run(&extra, &id, &["/bin/sh", "-c", "cat /proc/self/cgroup"]);
    r.code(0);
    let container = std::fs::read_to_string(&cidfile).unwrap().trim().to_string();
    let own = r.stdout.lines().find_map(|l| l.strip_prefix("0::")).expect("a unified cgroup line").to_string();
    podman.assert_clean();
    let requests = daemon.requests.lock().unwrap().clone();

    use enforce::control::Request;
    let [Request::Add(add), Request::Remove { name }] = &requests[..] else {
        panic!("the hook registers at createRuntime and removes at poststop: {requests:?}")
    };
    assert_eq!(add.name, container);
    assert_eq!(name, &container);
    // The container's own cgroup, as its process saw it, not one from the spec.
    assert_eq!(add.cgroup, unified.join(own.trim_start_matches('/')));
    assert!(own.contains(&container), "{own}");
    let named = add.container.as_ref().expect("the container is named");
    assert_eq!(named.id, container);
    assert_eq!(named.name.as_deref(), Some("web"), "from the annotation podman passed through runc's state");
    assert!(named.digest.starts_with("sha256:"), "{named:?}");
    assert!(named.init_pid.is_some_and(|p| p > 1), "the runtime's init is named: {named:?}");
    assert_eq!(add.mode, enforce::Mode::Enforce);
    assert!(!add.bundles.is_empty());
}
