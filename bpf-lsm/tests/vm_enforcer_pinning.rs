//! In-VM test of pinned enforcement: programs and maps pinned under bpffs keep enforcing after
//! the process that loaded them is killed, a new process takes them over (with the events kept
//! meanwhile), and unpinning ends enforcement. Split from `vm_enforcer.rs`, whose conventions it
//! follows (root in a BPF-LSM kernel, run by `cargo xtask lab`, one test per process).
// Tests print what they saw (the lab shows it); `support` needs unsafe for pre_exec.
#![allow(clippy::print_stdout, clippy::print_stderr, unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;

/// Unpins the enforcer under a directory when dropped (a failing test must
/// not leave enforcement behind for the next one in the same boot).
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = Enforcer::unpin(&self.0);
    }
}

const PIN_DIR_ENV: &str = "IMGSIGN_ENF_PIN_DIR";
const READY: &str = "IMGSIGN-DAEMON-READY";

/// Not a lab test (its name does not start with `vm_`): the stand-in daemon
/// that `vm_enforcer_pinned_enforcement_outlives_the_loader` runs as a child
/// process and kills. Without its environment it does nothing.
#[test]
#[ignore = "helper process of vm_enforcer_pinned_enforcement_outlives_the_loader"]
fn helper_pinned_daemon() {
    let Ok(dir) = std::env::var(PIN_DIR_ENV) else {
        return;
    };
    let cgroup_id: u64 = std::env::var("IMGSIGN_ENF_CGROUP").unwrap().parse().unwrap();
    let digest: Digest = hex::decode(std::env::var("IMGSIGN_ENF_DIGEST").unwrap()).unwrap().try_into().unwrap();
    let mut enf = Enforcer::attach_pinned(Path::new(&dir)).expect("attach pinned");
    enf.replace_digests(21, &[digest]).expect("allow");
    enf.set_scope(cgroup_id, scope(21, Mode::Enforce)).expect("add scope");
    println!("{READY}");
    io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_pinned_enforcement_outlives_the_loader() {
    use std::io::BufRead;

    let dir = scratch_dir("pinned");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, unlisted_digest) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("pinned");
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/imgsign-test-{}", std::process::id()));
    let _guard = PinGuard(pin_dir.clone());

    // A "daemon" process pins the enforcer, sets the scope up, and is killed
    // with SIGKILL.
    let mut daemon = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_pinned_daemon", "--nocapture"])
        .env(PIN_DIR_ENV, &pin_dir)
        .env("IMGSIGN_ENF_CGROUP", cgroup.id.to_string())
        .env("IMGSIGN_ENF_DIGEST", hex::encode(listed_digest))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let stdout = io::BufReader::new(daemon.stdout.take().unwrap());
    let ready = stdout.lines().map_while(Result::ok).any(|line| line.contains(READY));
    assert!(ready, "the daemon exited before it was ready");
    daemon.kill().expect("SIGKILL the daemon");
    let status = daemon.wait().expect("reap the daemon");
    println!("daemon ended: {status}");
    assert!(Enforcer::is_pinned(&pin_dir));

    // Nothing holds the programs but their pins: still enforced.
    assert_runs(&listed, Some(&cgroup), "listed binary, daemon dead");
    assert_denied(&unlisted, &cgroup, "unlisted binary, daemon dead");

    // A new process takes over what is in force.
    let mut enf = Enforcer::open_pinned(&pin_dir).expect("open pinned");
    assert_eq!(enf.scopes_in_force().expect("scopes"), vec![(cgroup.id, Scope::new(21, Mode::Enforce))]);
    assert_eq!(enf.digest_count(21).expect("count"), 1);
    // The denial made while no process held the ring buffer waited in it.
    let events = drain_events(&mut enf);
    assert!(
        events
            .iter()
            .any(|e| e.verdict == Verdict::Deny && e.cgroup_id == cgroup.id && e.digest == Some(unlisted_digest)),
        "the denial made while the daemon was dead was not kept: {events:?}"
    );
    enf.replace_digests(21, &[listed_digest, unlisted_digest]).expect("replace through the pins");
    assert_runs(&unlisted, Some(&cgroup), "unlisted binary after it was allowed");
    drop(enf);

    // attach_pinned on a pinned enforcer opens it rather than loading another.
    let mut again = Enforcer::attach_pinned(&pin_dir).expect("attach pinned again");
    assert_eq!(again.digest_count(21).expect("count"), 2);
    again.replace_digests(21, &[listed_digest]).expect("replace");
    assert_denied(&unlisted, &cgroup, "unlisted binary, set narrowed again");
    drop(again);

    // Unpinning ends enforcement.
    Enforcer::unpin(&pin_dir).expect("unpin");
    assert!(!pin_dir.exists(), "pin directory left behind");
    // The links go when their pins do, but each program's detach waits for
    // an RCU grace period (tasks-trace for the sleepable ones): give a loaded
    // emulated kernel up to 20 s.
    let mut ran = false;
    for _ in 0..400 {
        if run_true(&unlisted, Some(&cgroup)).is_ok_and(|s| s.success()) {
            ran = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ran, "still enforced after unpin");
    fs::remove_dir_all(dir).ok();
}
