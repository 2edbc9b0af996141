//! Container engines inside the lab's Debian tree (`support::debian`), routed to the node's
//! enforcement daemon (`support::node`, running outside the tree): podman with a stock runtime
//! (runc, crun) and `imgsign hook` in a `hooks.d`, podman with `imgsign runtime` as its runtime,
//! and containerd's `ctr` with `imgsign runtime` as its runc binary. Also the signed test image
//! (busybox, an entrypoint script) and the node's runtime policy that trusts it.
//! Included with `#[path]` by the tests that need it (beside `mod support;`).

use crate::support::debian::Debian;
use crate::support::node::Node;
use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What the image's entrypoint prints before it runs its arguments.
pub const ENTRYPOINT_MARK: &str = "ENTRYPOINT-RAN";
/// The image as ctr knows it.
pub const CTR_IMAGE: &str = "docker.io/imgsign/engines:1";
const IMGSIGN: &str = "/lab/bin/imgsign";
/// The hooks' own executable, as a node names it in `hooks.d`.
pub const IMGSIGN_HOOK: &str = "/lab/bin/imgsign-hook";

/// The signed test image: busybox (`/bin/busybox`, `/bin/sh`) and `/usr/bin/entry`, a script that
/// prints [`ENTRYPOINT_MARK`] and execs its arguments, as the image's Entrypoint.
pub struct Image {
    /// `oci:DIR:v1`.
    pub reference: String,
    pub bundle: PathBuf,
}

pub fn signed_image() -> Image {
    let root = scratch_root().join("engines-image");
    fs::create_dir_all(&root).unwrap();
    let mut tar = testdata::tar::TarWriter::new();
    for d in ["bin", "dev", "etc", "proc", "run", "sys", "usr", "usr/bin"] {
        tar.dir(d, 0o755);
    }
    tar.dir("tmp", 0o1777);
    tar.file("bin/busybox", 0o755, busybox());
    tar.symlink("bin/sh", "busybox");
    tar.file("usr/bin/entry", 0o755, format!("#!/bin/sh\necho {ENTRYPOINT_MARK}\nexec \"$@\"\n"));
    let written = testdata::oci::write_layout_with_config(
        &root.join("oci"),
        "v1",
        &[testdata::oci::Layer::gzip(&tar.finish())],
        serde_json::json!({ "Entrypoint": ["/usr/bin/entry"], "Env": ["PATH=/bin:/usr/bin"] }),
    )
    .unwrap();
    let [a, ..] = keys();
    let bundle =
        sign_ok(&written.reference(), &[a], &root.join("bundle.json"), &["--name", "engines", "--version", "1"]);
    Image { reference: written.reference(), bundle }
}

/// A busybox that is not the signed one (a byte appended: still a working program), at
/// `dir/busybox` (busybox picks its applet from its own name, so the name stays).
pub fn unsigned_busybox(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let mut bytes = busybox();
    bytes.push(b'\n');
    let path = dir.join("busybox");
    fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The node's runtime policy (trusting `image`, the daemon's socket) for `imgsign hook` and
/// `imgsign runtime`, in `dir`.
pub fn runtime_policy(node: &Node, image: &Image, dir: &Path) -> PathBuf {
    let policy = dir.join("runtime.toml");
    fs::write(
        &policy,
        format!(
            "trust = {:?}\nbundles = [{:?}]\ncache = {:?}\ncontrol_socket = {:?}\n",
            node.trust,
            image.bundle,
            dir.join("hash-cache"),
            node.socket
        ),
    )
    .unwrap();
    policy
}

/// The runtime binary an engine is given: names the policy, then `imgsign runtime`
/// (conmon and the containerd shim pass a runtime no environment).
pub fn runtime_wrapper(policy: &Path, dir: &Path) -> PathBuf {
    let wrapper = dir.join("imgsign-runtime");
    fs::write(
        &wrapper,
        format!("#!/bin/sh\nIMGSIGN_RUNTIME_CONFIG='{}' exec {IMGSIGN} runtime \"$@\"\n", policy.display()),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// `imgsign-hook create-runtime` and `poststop` in `dir/hooks.d`.
pub fn hooks_dir(policy: &Path, dir: &Path) -> PathBuf {
    hooks_dir_env(policy, dir, &[])
}

/// [`hooks_dir`], the hooks also given `env` (`NAME=value`).
pub fn hooks_dir_env(policy: &Path, dir: &Path, env: &[String]) -> PathBuf {
    let hooks = dir.join("hooks.d");
    fs::create_dir_all(&hooks).unwrap();
    for (stage, arg) in [("createRuntime", "create-runtime"), ("poststop", "poststop")] {
        let hook = serde_json::json!({
            "version": "1.0.0",
            "hook": {
                "path": IMGSIGN_HOOK,
                "args": ["imgsign-hook", arg],
                "env": std::iter::once(format!("IMGSIGN_RUNTIME_CONFIG={}", policy.display()))
                    .chain(env.iter().cloned())
                    .collect::<Vec<_>>(),
            },
            "when": { "always": true },
            "stages": [stage],
        });
        fs::write(hooks.join(format!("imgsign-{arg}.json")), hook.to_string()).unwrap();
    }
    hooks
}

/// Runs `cmd`, keeping its output.
pub fn output(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run a command in the Debian tree");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// podman in the tree, with the flags the lab VM needs and its runtime chosen.
pub struct Podman {
    pub debian: Debian,
    /// `--runtime` and, for a stock runtime, `--hooks-dir`.
    pub global: Vec<String>,
}

impl Podman {
    pub fn cmd(&self) -> Command {
        let mut c = self.debian.cmd("podman");
        c.args(["--cgroup-manager", "cgroupfs", "--events-backend", "none", "--storage-driver", "overlay"]);
        c.args(&self.global);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output(self.cmd().args(args))
    }

    /// `podman pull oci:DIR:TAG`: the image id.
    pub fn pull(&self, reference: &str) -> String {
        let r = self.run(&["pull", "--quiet", reference]);
        r.code(0);
        r.stdout.trim().to_string()
    }
}

/// containerd of the test's own in the tree (its root on the scratch disk, state on `/run`),
/// and `ctr` talking to it; killed on drop.
pub struct Containerd {
    pub debian: Debian,
    dir: PathBuf,
    daemon: Child,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        let debian = Debian::enter();
        let config = dir.join("containerd.toml");
        fs::write(
            &config,
            "version = 2\nroot = \"/var/lib/containerd\"\nstate = \"/run/containerd\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"/run/containerd/containerd.sock\"\n\
             [ttrpc]\n  address = \"/run/containerd/containerd.sock.ttrpc\"\n",
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = debian
            .cmd("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd in the tree");
        let c = Containerd { debian, dir: dir.to_path_buf(), daemon };
        let deadline = Instant::now() + Duration::from_secs(60);
        while output(c.ctr().arg("version")).code != Some(0) {
            assert!(Instant::now() < deadline, "containerd did not come up: {}", c.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr(&self) -> Command {
        let mut c = self.debian.cmd("ctr");
        c.args(["--address", "/run/containerd/containerd.sock"]);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output(self.ctr().args(args))
    }

    /// `skopeo copy oci:DIR:TAG oci-archive:FILE:NAME`, then `ctr images import FILE`.
    pub fn import(&self, reference: &str, name: &str) {
        let archive = self.dir.join("image.tar");
        let dest = format!("oci-archive:{}:{name}", archive.display());
        output(self.debian.cmd("skopeo").args(["copy", "--quiet", reference, &dest])).code(0);
        self.run(&["images", "import", archive.to_str().unwrap()]).code(0);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Denied events of container `id` for `path`.
pub fn denials(node: &Node, id: &str, path: &str) -> usize {
    node.events().iter().filter(|e| e["verdict"] == "denied" && e["container"]["id"] == id && e["path"] == path).count()
}

/// Waits until the daemon has reported more than `before` denials of `path` in container `id`.
pub fn wait_denial(node: &Node, id: &str, path: &str, before: usize) {
    node.wait_for(|| denials(node, id, path) > before, &format!("a denial of {path} naming container {id}"));
}

/// How long the engine may take to make or remove a scope: its hooks and runtime do it within
/// a few seconds. (The daemon's own collection of scopes whose cgroup has gone, at its next
/// rebuild, must not be what passes the test: the tests' daemons recheck only hourly.)
const SCOPE_CHANGE: Duration = Duration::from_secs(30);

/// Waits until scope `id` is (or is no longer) in the daemon's scope list.
pub fn wait_scope(node: &Node, id: &str, present: bool) {
    let deadline = Instant::now() + SCOPE_CHANGE;
    while node.scopes().contains(id) != present {
        let what = if present { "made" } else { "removed" };
        assert!(Instant::now() < deadline, "scope {id} not {what} within {SCOPE_CHANGE:?}: {}", node.scopes());
        std::thread::sleep(Duration::from_millis(100));
    }
}
