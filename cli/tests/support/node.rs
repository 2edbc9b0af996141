//! The enforcement daemon of the kernel-lab CLI tests (`vm_*.rs`): a signed busybox image, a
//! trust store, and `imgsign enforce` with a control socket, stopped and unpinned on drop.

use super::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    /// This node's directory (policy, socket, events, daemon log).
    pub work: PathBuf,
    pub image: String,
    pub bundle: PathBuf,
    pub trust: PathBuf,
    pub socket: PathBuf,
    pub events: PathBuf,
    pub policy: PathBuf,
    daemon: Option<Child>,
}

impl Node {
    /// A signed busybox image, and the daemon in `root/name` with `scopes` (policy `[[scope]]`
    /// tables, or nothing: then scopes come from the control socket).
    pub fn start(root: &Path, name: &str, scopes: &str) -> Node {
        Node::start_pinned(root, name, scopes, Path::new("/sys/fs/bpf/imgsign-vm-run"))
    }

    /// [`Node::start`] with the enforcer pinned under `pin_dir` (an enforcer of the test's own,
    /// for tests that fill its maps).
    pub fn start_pinned(root: &Path, name: &str, scopes: &str, pin_dir: &Path) -> Node {
        let work = root.join(name);
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        let (image, bundle, trust) = signed_busybox_image(&format!("vm-run-{name}"));
        let socket = work.join("enforce.sock");
        let events = work.join("events.jsonl");
        let policy = work.join("policy.toml");
        fs::write(
            &policy,
            format!(
                "trust = {:?}\nevents = {:?}\ncontrol = {:?}\npin_dir = {:?}\n{scopes}",
                trust, events, socket, pin_dir
            ),
        )
        .unwrap();
        let daemon = imgsign()
            .args(["enforce", "--policy"])
            .arg(&policy)
            .stdout(Stdio::null())
            .stderr(fs::File::create(work.join("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        let node = Node { work: work.clone(), image, bundle, trust, socket, events, policy, daemon: Some(daemon) };
        node.wait_for(|| node.socket.exists() && node.events_text().contains("\"started\""), "the daemon to start");
        node
    }

    pub fn events_text(&self) -> String {
        fs::read_to_string(&self.events).unwrap_or_default()
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events_text().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    pub fn wait_for(&self, done: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "waited 60 s for {what}; events:\n{}", self.events_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn scopes(&self) -> String {
        let r = run(imgsign().args(["enforce", "scope", "--socket"]).arg(&self.socket).arg("ls"));
        r.code(0);
        r.stdout
    }

    /// The daemon's process id.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("the daemon runs until the node is dropped").id()
    }

    /// Event records of scope `id` with `verdict`.
    pub fn verdicts(&self, id: &str, verdict: &str) -> Vec<serde_json::Value> {
        self.events().into_iter().filter(|e| e["scope"] == id && e["verdict"] == verdict).collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        // Unpin: enforcement ends with the test.
        let _ = imgsign().args(["enforce", "--detach", "--policy"]).arg(&self.policy).output();
    }
}

impl Node {
    /// An OCI bundle in `work/ID` for container `id` running `args`: the files of the node's
    /// signed image (`support::busybox_layer`) as its rootfs, config.json from `imgsign runtime
    /// spec` with the process and the cgroup (`/CGROUP_PARENT/ID`) set, and the runtime policy
    /// trusting the node's image with the daemon's socket at `socket`: (bundle dir, policy).
    pub fn runtime_bundle(&self, id: &str, args: &[&str], cgroup_parent: &str, socket: &Path) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.work.join(id);
        let _ = fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in ["bin", "dev", "etc", "proc", "run", "sys", "tmp"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
            fs::set_permissions(rootfs.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::write(rootfs.join("bin/busybox"), super::busybox()).unwrap();
        fs::set_permissions(rootfs.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        fs::write(rootfs.join("etc/motd"), "signed\n").unwrap();
        fs::set_permissions(rootfs.join("etc/motd"), fs::Permissions::from_mode(0o644)).unwrap();
        super::run(super::imgsign().args(["runtime", "spec", "--bundle"]).arg(&dir)).code(0);
        let config_path = dir.join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.into();
        config["root"] = serde_json::json!({ "path": "rootfs", "readonly": false });
        config["linux"]["cgroupsPath"] = format!("/{cgroup_parent}/{id}").into();
        fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let policy = dir.join("runtime.toml");
        fs::write(
            &policy,
            format!(
                "trust = {:?}\nbundles = [{:?}]\ncache = {:?}\ncontrol_socket = {:?}\n",
                self.trust,
                self.bundle,
                self.work.join("hash-cache"),
                socket
            ),
        )
        .unwrap();
        (dir, policy)
    }
}
