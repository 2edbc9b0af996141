//! `imgsign runtime` under Debian's containerd 1.6 (`ctr run --runc-binary WRAPPER`), as root on
//! this host: a containerd of the test's own (root, state, sockets in a temp dir, no CRI)
//! imports the images as oci-archives (`skopeo copy`); the signed real image runs, the same
//! image with one file changed in containerd's snapshot after the import and an image nobody
//! signed are refused, with the reason in ctr's error (the shim reads it from the runtime's
//! JSON log).

#[path = "support/runtime.rs"]
mod runtime_support;
mod support;

use runtime_support::{layer_files, root_or_skip, signed_real, unsigned_image, Node};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{run, tempdir, Run};
use testdata::real::paths;

struct Containerd {
    dir: tempfile::TempDir,
    node: Node,
    daemon: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempdir();
        let d = dir.path();
        let node = Node::new(d, "run-unenforced", false);
        let config = d.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
                d.join("root"),
                d.join("state"),
                d.join("c.sock"),
                d.join("t.sock"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian package containerd) runs");
        let c = Containerd { dir, node, daemon };
        let deadline = Instant::now() + Duration::from_secs(20);
        while run(c.ctr().args(["version"])).code != Some(0) {
            assert!(Instant::now() < deadline, "containerd did not come up: {}", c.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(self.dir.path().join("c.sock")).stdin(Stdio::null());
        c
    }

    /// The runtime's state root, as `--runc-root` gives it (containerd passes `--root`).
    fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// `skopeo copy REF oci-archive:FILE:NAME`, `ctr images import FILE` (unpacked).
    fn import(&self, reference: &str, name: &str) {
        let archive = self.dir.path().join(format!("{}.tar", name.replace(['/', ':'], "_")));
        let dest = format!("oci-archive:{}:{name}", archive.display());
        let out = Command::new("skopeo").args(["copy", "--quiet", reference, &dest]).output().unwrap();
        assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
        run(self.ctr().args(["images", "import"]).arg(&archive)).code(0);
    }

    /// `ctr run --rm --runc-binary WRAPPER --runc-root ROOT IMAGE ID ARGS`.
    fn run(&self, image: &str, id: &str, args: &[&str]) -> Run {
        let mut c = self.ctr();
        c.args(["run", "--rm", "--runc-binary"]).arg(&self.node.wrapper);
        c.arg("--runc-root").arg(self.runtime_root()).args([image, id]).args(args);
        run(&mut c)
    }

    #[track_caller]
    fn assert_clean(&self) {
        let r = run(self.ctr().args(["containers", "ls", "-q"]));
        r.code(0);
        assert_eq!(r.stdout.trim(), "", "containerd still lists containers");
        // The shim passes `--root <runc-root>/<namespace>`.
        let left: Vec<_> = std::fs::read_dir(self.runtime_root().join("default"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "runtime state left: {left:?}");
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // The overlay snapshotter's mounts are the shim's and gone with each container; the
        // snapshots themselves are plain directories, removed with the temp dir.
    }
}

const SIGNED: &str = "docker.io/imgsign/signed:1";

#[test]
fn containerd_runs_the_signed_image() {
    if !root_or_skip("containerd_runs_the_signed_image") {
        return;
    }
    let ctd = Containerd::start();
    ctd.import(&signed_real().0.oci_ref(), SIGNED);
    let r = ctd.run(SIGNED, "signed", &["/bin/sh", "-c", "echo ok"]);
    r.code(0);
    assert_eq!(r.stdout, "ok\n");
    let r = ctd.run(SIGNED, "seven", &["/bin/sh", "-c", "exit 7"]);
    r.code(7);
    ctd.assert_clean();
}

#[test]
fn containerd_refuses_the_signed_image_with_a_file_changed_after_the_import() {
    if !root_or_skip("containerd_refuses_the_signed_image_with_a_file_changed_after_the_import") {
        return;
    }
    let ctd = Containerd::start();
    ctd.import(&signed_real().0.oci_ref(), SIGNED);
    let snapshots = ctd.dir.path().join("root/io.containerd.snapshotter.v1.overlayfs/snapshots");
    let copies = layer_files(&snapshots, "fs", paths::PLAIN_FILE);
    assert!(!copies.is_empty(), "{} not found in containerd's snapshots", paths::PLAIN_FILE);
    for copy in &copies {
        std::fs::write(copy, "NAME=tampered\n").unwrap();
    }
    let r = ctd.run(SIGNED, "tampered", &["/bin/sh", "-c", "echo ok"]);
    assert_ne!(r.code, Some(0), "a tampered image ran:\n{}", r.all());
    assert!(!r.stdout.contains("ok"), "the container's process ran: {}", r.stdout);
    r.says("imgsign refused container").says(paths::PLAIN_FILE);
    ctd.assert_clean();
}

#[test]
fn containerd_refuses_an_unsigned_image() {
    if !root_or_skip("containerd_refuses_an_unsigned_image") {
        return;
    }
    let ctd = Containerd::start();
    let name = "docker.io/imgsign/unsigned:1";
    ctd.import(unsigned_image(), name);
    let r = ctd.run(name, "unsigned", &["/bin/sh", "-c", "echo ok"]);
    assert_ne!(r.code, Some(0), "an unsigned image ran:\n{}", r.all());
    assert!(!r.stdout.contains("ok"), "the container's process ran: {}", r.stdout);
    r.says("imgsign refused container").says("signed manifest");
    ctd.assert_clean();
    assert!(Path::new(&ctd.node.policy).is_file());
}
