//! Issue 11 in the kernel lab, with the real `imgsign enforce`: processes already running in a
//! cgroup when it becomes a scope are checked before the control socket answers (an unlisted
//! binary killed, the listed one left running, the finding an event naming the scope); the
//! kernel's own decisions then carry the scope's counters, which `scope ls` and
//! `enforce --status --json` show too.
//!
//! Run by `cargo xtask lab`; ignored on the host, whose kernel refuses BPF-LSM programs.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::node::Node;
use support::*;

const WORK: &str = "/tmp/vm-running";

/// `binary sleep 300` moved into `cgroup` after its exec (outside any scope); killed on drop.
struct Running(Child);

impl Running {
    fn start(binary: &Path, cgroup: &Path) -> Running {
        let child = Command::new(binary).args(["sleep", "300"]).stdin(Stdio::null()).spawn().unwrap();
        fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
        Running(child)
    }

    /// The signal that ended it, waiting up to 30 s; `None` if it still runs.
    fn signal(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.signal();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_running_unlisted_tasks_are_killed_when_their_cgroup_becomes_a_scope() {
    let node = Node::start(Path::new(WORK), "running", "");
    let cgroup = Path::new("/sys/fs/cgroup/vm-running-ctr");
    let _ = fs::create_dir(cgroup);
    let unlisted = node.work.join("busybox-unlisted");
    let mut bytes = busybox();
    bytes.extend_from_slice(b"\nnot signed\n");
    fs::write(&unlisted, bytes).unwrap();
    fs::set_permissions(&unlisted, fs::Permissions::from_mode(0o755)).unwrap();
    let mut listed = Running::start(Path::new("/bin/busybox"), cgroup);
    let mut intruder = Running::start(&unlisted, cgroup);
    // Both have exec'd before the scope exists: the kernel never judged them.
    std::thread::sleep(Duration::from_millis(500));

    let r = run(imgsign()
        .args(["enforce", "scope", "--socket"])
        .arg(&node.socket)
        .args(["add", "ctr", "--cgroup"])
        .arg(cgroup)
        .arg("--bundle")
        .arg(&node.bundle));
    r.code(0);
    // The check ran before the answer: the finding is already recorded.
    let events = node.events();
    let finding = events
        .iter()
        .find(|e| e["kind"] == "running-unlisted")
        .unwrap_or_else(|| panic!("no running-unlisted record when the add was answered:\n{}", node.events_text()));
    assert_eq!(finding["hostPid"], intruder.0.id(), "{finding}");
    assert_eq!((finding["scope"].as_str(), finding["killed"].as_bool()), (Some("ctr"), Some(true)), "{finding}");
    assert_eq!(intruder.signal(), Some(9), "the unlisted binary got SIGKILL");
    assert_eq!(listed.0.try_wait().unwrap(), None, "the listed busybox runs on");

    // From now on the kernel judges: an exec of the unlisted binary is refused, and the event
    // carries the scope's counters and its number among the scope's events.
    let out = Command::new("/bin/busybox")
        .args(["sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$1\" true"])
        .arg(cgroup)
        .arg(&unlisted)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "the unlisted binary ran in the scope");
    node.wait_for(
        || node.events().iter().any(|e| e["scope"] == "ctr" && e["verdict"] == "denied" && e["hook"] == "exec"),
        "the kernel's denial",
    );
    let denied = node.events().into_iter().find(|e| e["scope"] == "ctr" && e["hook"] == "exec").unwrap();
    assert!(denied["scopeSeq"].is_u64(), "{denied}");
    assert!(denied["scopeCounters"]["denied"].as_u64() >= Some(1), "{denied}");
    assert_eq!(denied["scopeCounters"]["dropped"], 0, "{denied}");
    let listing = node.scopes();
    assert!(listing.contains("denied") && listing.contains("dropped"), "scope ls shows the counters: {listing}");
    let status = run(imgsign().args(["enforce", "--status", "--json", "--policy"]).arg(&node.policy));
    status.code(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let counted = status["scopes"].as_array().unwrap().iter().any(|s| s["counters"]["denied"].as_u64() >= Some(1));
    assert!(counted, "enforce --status --json shows the counters: {status}");
    drop((listed, intruder));
    let _ = fs::remove_dir(cgroup);
}
