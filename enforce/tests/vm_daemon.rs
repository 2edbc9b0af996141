//! In-VM tests of the daemon on the real enforcer: a signed policy's digests reach the kernel
//! through the `bpf_lsm::enforcer` adapter, listed content runs and unlisted content is denied in
//! the scope's cgroup, events name the scope and carry the process fingerprint, and reloads under
//! a loop of execs replace digest sets without a single spurious denial of a listed binary;
//! enforcement is pinned, outlives the daemon, is taken over by the next one, and ends on detach.
//!
//! Each test needs root in a kernel with BPF-LSM active, cgroup v2 at /sys/fs/cgroup, bpffs and
//! securityfs mounted and a static `/bin/busybox`, so each is `#[ignore]`d on the host. The kernel
//! lab runs `vm_*` targets of the packages it lists (`xtask/src/lab/testbins.rs`); this one runs
//! there once `enforce` is in that list.
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// Unsafe only for `pre_exec`: the child joins the scope cgroup between fork and exec.
#![allow(unsafe_code)]

mod support;

use enforce::bpf::BpfKernel;
use enforce::daemon::{Daemon, DaemonError};
use enforce::source::PolicySource;
use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::*;

const EPERM: i32 = 1;
const EACCES: i32 = 13;

/// A copy of the static busybox named `busybox-<tag>` with `tag` appended: a content of its own.
fn unique_busybox(dir: &Path, tag: &str) -> PathBuf {
    let mut bytes = fs::read("/bin/busybox").expect("read /bin/busybox");
    bytes.extend_from_slice(format!("\nimgsign-enforce-{tag}\n").as_bytes());
    let path = dir.join(format!("busybox-{tag}"));
    fs::write(&path, &bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A `dir:` image holding copies of `files`, signed as `name` version 1; returns the bundle.
fn signed_dir(root: &Path, name: &str, files: &[&Path]) -> PathBuf {
    let image = root.join(format!("image-{name}"));
    fs::create_dir_all(&image).unwrap();
    for file in files {
        fs::copy(file, image.join(file.file_name().unwrap())).unwrap();
    }
    sign_now(&format!("dir:{}", image.display()), "a", name, 1, &root.join(format!("{name}.json")))
}

/// Runs `path true` in `cgroup` (the child moves itself there between fork and exec).
fn run_true(path: &Path, cgroup: &Path) -> io::Result<std::process::ExitStatus> {
    let procs = OpenOptions::new().write(true).open(cgroup.join("cgroup.procs")).expect("open cgroup.procs");
    let mut cmd = Command::new(path);
    cmd.arg("true").stdin(Stdio::null());
    // SAFETY: runs in the forked child before exec: one write(2) on a descriptor opened in the
    // parent, with a borrowed byte string; no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || (&procs).write_all(b"0"));
    }
    cmd.status()
}

fn runs(path: &Path, cgroup: &Path) -> bool {
    match run_true(path, cgroup) {
        Ok(status) => status.success(),
        Err(e) if matches!(e.raw_os_error(), Some(EPERM | EACCES)) || e.kind() == ErrorKind::PermissionDenied => false,
        Err(e) => panic!("exec of {} failed, but not with EPERM/EACCES: {e}", path.display()),
    }
}

/// Starts the daemon on `kernel` with the policy at `path`, notices dropped (the tests read the
/// JSON records).
fn start(path: &Path, kernel: BpfKernel, out: Box<dyn Write + Send>) -> Result<Daemon<BpfKernel>, DaemonError> {
    let policy = PolicySource::open(path).expect("read the policy");
    Daemon::start(policy, kernel, out, Box::new(|_| {}), SystemTime::now())
}

#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output {
    fn records(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

struct Lab {
    dir: tempfile::TempDir,
    cgroup: TestCgroup,
    trust: PathBuf,
    /// Each test pins under its own directory and unpins it at the end.
    pin_dir: PathBuf,
}

fn lab(name: &str) -> Lab {
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/imgsign-{name}"));
    let found = enforce::capability::check(&pin_dir);
    assert!(found.ok(), "this kernel cannot run the enforcer: {:?}", found.missing);
    let cgroup = TestCgroup::new(name).expect("cgroup v2 under /sys/fs/cgroup");
    let dir = tempdir();
    let trust = trust_store(&dir.path().join("trust"), &["a"], 1);
    Lab { dir, cgroup, trust, pin_dir }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = enforce::bpf::detach(&self.pin_dir);
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by the kernel lab"]
fn vm_daemon_enforces_a_signed_policy_and_reports_denials() {
    let lab = lab("vm-enforce");
    let listed = unique_busybox(lab.dir.path(), "listed");
    let unlisted = unique_busybox(lab.dir.path(), "unlisted");
    let bundle = signed_dir(lab.dir.path(), "web", &[&listed]);
    let policy = write_policy(lab.dir.path(), &one_scope(&lab.trust, &lab.cgroup.path, "enforce", &[&bundle], None));
    assert!(runs(&unlisted, &lab.cgroup.path), "before the daemon, anything runs");

    let out = Output::default();
    let kernel = BpfKernel::open(&lab.pin_dir).expect("attach the enforcer");
    let mut daemon = start(&policy, kernel, Box::new(out.clone())).expect("start");
    assert!(runs(&listed, &lab.cgroup.path), "the listed binary is denied");
    assert!(!runs(&unlisted, &lab.cgroup.path), "the unlisted binary ran");

    daemon.pump_events(Duration::from_secs(2)).unwrap();
    let denied: Vec<_> =
        out.records().into_iter().filter(|r| r["record"] == "event" && r["verdict"] == "denied").collect();
    assert!(!denied.is_empty(), "no denial event: {:?}", out.records());
    let event = &denied[0];
    assert_eq!(event["scope"], "web");
    assert_eq!(event["cgroup"], lab.cgroup.path.display().to_string().as_str(), "{event}");
    assert_eq!(event["cgroupId"], daemon.plan().scopes[0].cgroup_id);
    assert!(event["hostPid"].as_u64().unwrap() > 0);
    let unlisted_hex = testdata::sha256_hex(&fs::read(&unlisted).unwrap());
    assert_eq!(event["sha256"], unlisted_hex.as_str());
    assert_eq!(event["scopeCgroupId"], daemon.plan().scopes[0].cgroup_id);
    assert_eq!(event["path"], unlisted.display().to_string().as_str());
    assert!(event["pidNs"].as_u64().unwrap() > 0 && event["mntNs"].as_u64().unwrap() > 0, "{event}");
    assert!(event["bootTimeNs"].as_u64().unwrap() > 0, "{event}");

    drop(daemon);
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by the kernel lab"]
fn vm_daemon_reloads_under_a_loop_of_execs_without_spurious_denials() {
    let lab = lab("vm-reload");
    let listed = unique_busybox(lab.dir.path(), "listed");
    let extra = unique_busybox(lab.dir.path(), "extra");
    // Two policies that both list `listed`; only the second lists `extra`.
    let a = signed_dir(lab.dir.path(), "set-a", &[&listed]);
    let b = signed_dir(lab.dir.path(), "set-b", &[&listed, &extra]);
    let text_a = one_scope(&lab.trust, &lab.cgroup.path, "enforce", &[&a], None);
    let text_b = one_scope(&lab.trust, &lab.cgroup.path, "enforce", &[&b], None);
    let policy = write_policy(lab.dir.path(), &text_a);

    let kernel = BpfKernel::open(&lab.pin_dir).expect("attach the enforcer");
    let mut daemon = start(&policy, kernel, Box::new(Output::default())).expect("start");
    assert!(!runs(&extra, &lab.cgroup.path), "extra ran under set a");

    let stop = Arc::new(AtomicBool::new(false));
    let (runs_ok, denials) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let looper = {
        let (stop, runs_ok, denials) = (stop.clone(), runs_ok.clone(), denials.clone());
        let (listed, cgroup) = (listed.clone(), lab.cgroup.path.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if runs(&listed, &cgroup) { &runs_ok } else { &denials }.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    for round in 0..10 {
        let (text, extra_listed) = if round % 2 == 0 { (&text_b, true) } else { (&text_a, false) };
        fs::write(&policy, text).unwrap();
        daemon.reload(SystemTime::now()).expect("reload");
        assert_eq!(runs(&extra, &lab.cgroup.path), extra_listed, "round {round}: the new set is not the one in force");
    }
    stop.store(true, Ordering::SeqCst);
    looper.join().unwrap();
    println!("listed binary ran {} times during 10 reloads", runs_ok.load(Ordering::SeqCst));
    assert!(runs_ok.load(Ordering::SeqCst) > 0);
    assert_eq!(denials.load(Ordering::SeqCst), 0, "a listed binary was denied during a reload");
    let loaded = daemon.kernel().loaded();
    assert_eq!(loaded.sets.len(), 1, "one set per scope, replaced in place: {:?}", loaded.sets.keys());
    assert!(runs(&listed, &lab.cgroup.path), "the listed binary after the reloads");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by the kernel lab"]
fn vm_daemon_enforcement_outlives_the_daemon_until_detached() {
    let lab = lab("vm-pinned");
    let listed = unique_busybox(lab.dir.path(), "listed");
    let unlisted = unique_busybox(lab.dir.path(), "unlisted");
    let bundle = signed_dir(lab.dir.path(), "web", &[&listed]);
    let policy = write_policy(lab.dir.path(), &one_scope(&lab.trust, &lab.cgroup.path, "enforce", &[&bundle], None));
    let cgroup_id = enforce::cgroup::cgroup_id(&lab.cgroup.path).unwrap();
    assert!(!enforce::bpf::status(&lab.pin_dir).unwrap().pinned);

    let kernel = BpfKernel::open(&lab.pin_dir).expect("attach and pin");
    let daemon = start(&policy, kernel, Box::new(Output::default())).expect("start");
    drop(daemon); // the daemon is gone (its process would have exited or been killed)
    assert!(!runs(&unlisted, &lab.cgroup.path), "enforcement ended with the daemon");
    assert!(runs(&listed, &lab.cgroup.path));
    let status = enforce::bpf::status(&lab.pin_dir).unwrap();
    assert!(status.pinned);
    assert_eq!(status.scopes.len(), 1);
    assert_eq!(
        (status.scopes[0].cgroup_id, status.scopes[0].mode, status.scopes[0].digests),
        (cgroup_id, enforce::Mode::Enforce, 1)
    );

    // A new daemon takes over; its first plan (audit now) replaces what it found.
    fs::write(&policy, one_scope(&lab.trust, &lab.cgroup.path, "audit", &[&bundle], None)).unwrap();
    let out = Output::default();
    let kernel = BpfKernel::open(&lab.pin_dir).expect("take over");
    assert_eq!(kernel.loaded().scopes.len(), 1, "the scope in force was found");
    let mut daemon = start(&policy, kernel, Box::new(out.clone())).expect("start again");
    assert!(runs(&unlisted, &lab.cgroup.path), "audit mode denied");
    daemon.pump_events(Duration::from_secs(2)).unwrap();
    assert!(
        out.records().iter().any(|r| r["record"] == "event" && r["verdict"] == "audited" && r["scope"] == "web"),
        "{:?}",
        out.records()
    );
    assert_eq!(enforce::bpf::status(&lab.pin_dir).unwrap().scopes[0].mode, enforce::Mode::Audit);

    // Back to enforce, then detach: once unpinned and released, nothing is enforced.
    fs::write(&policy, one_scope(&lab.trust, &lab.cgroup.path, "enforce", &[&bundle], None)).unwrap();
    daemon.reload(SystemTime::now()).unwrap();
    assert!(!runs(&unlisted, &lab.cgroup.path));
    drop(daemon);
    assert!(enforce::bpf::detach(&lab.pin_dir).unwrap());
    // The kernel releases the programs asynchronously once their last link is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !runs(&unlisted, &lab.cgroup.path) {
        assert!(std::time::Instant::now() < deadline, "still enforcing 10 s after detach");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!enforce::bpf::status(&lab.pin_dir).unwrap().pinned);
    assert!(!enforce::bpf::detach(&lab.pin_dir).unwrap(), "a second detach finds nothing");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by the kernel lab"]
fn vm_daemon_control_socket_scopes_a_new_cgroup_before_its_first_exec() {
    use enforce::control::{self, AddScope, ControlServer, Request};
    let lab = lab("vm-control");
    let listed = unique_busybox(lab.dir.path(), "listed");
    let unlisted = unique_busybox(lab.dir.path(), "unlisted");
    let web = signed_dir(lab.dir.path(), "web", &[&listed]);
    let policy = write_policy(lab.dir.path(), &one_scope(&lab.trust, &lab.cgroup.path, "enforce", &[&web], None));
    let kernel = BpfKernel::open(&lab.pin_dir).expect("attach the enforcer");
    let mut daemon = start(&policy, kernel, Box::new(Output::default())).expect("start");
    let socket = lab.dir.path().join("enforce.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());

    // A container's cgroup, made after the daemon started: unscoped until it is added.
    let container = TestCgroup::new("vm-control-ctr").expect("cgroup");
    let bundle = signed_dir(lab.dir.path(), "ctr", &[&unlisted]);
    assert!(runs(&listed, &container.path), "an unscoped cgroup runs anything");
    let request = Request::Add(AddScope {
        name: "ctr".into(),
        cgroup: container.path.clone(),
        mode: enforce::Mode::Enforce,
        profile: enforce::Profile::Default,
        remote_fs: false,
        on_violation: None,
        container: None,
        bundles: vec![bundle],
        image: None,
    });
    let path = socket.clone();
    let client = std::thread::spawn(move || control::call(&path, &request, Duration::from_secs(60)).unwrap());
    while !client.is_finished() {
        daemon.serve_pending().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let reply = client.join().unwrap();
    assert!(reply.ok, "{reply:?}");
    // The reply came after the kernel had it: the very next exec is judged by the new scope.
    assert!(runs(&unlisted, &container.path), "the container's own signed binary is denied");
    assert!(!runs(&listed, &container.path), "a binary not in the container's manifest ran");
    // The policy's scope is untouched.
    assert!(runs(&listed, &lab.cgroup.path) && !runs(&unlisted, &lab.cgroup.path));
    drop(daemon);
}

/// The message of `e` and of every error under it.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by the kernel lab"]
fn vm_daemon_upgrade_replaces_an_older_build_and_refuses_an_unknown_layout() {
    use bpf_lsm::enforcer::{Build, Enforcer, Mode, Scope};
    let lab = lab("vm-upgrade");
    let listed = unique_busybox(lab.dir.path(), "listed");
    let unlisted = unique_busybox(lab.dir.path(), "unlisted");
    let bundle = signed_dir(lab.dir.path(), "web", &[&listed]);
    let policy = write_policy(lab.dir.path(), &one_scope(&lab.trust, &lab.cgroup.path, "enforce", &[&bundle], None));
    let cgroup_id = enforce::cgroup::cgroup_id(&lab.cgroup.path).unwrap();

    // What the previous build's daemon left pinned: its programs (another build of the same
    // layout) and the scope it applied.
    let mut old = Enforcer::attach_pinned_build(&lab.pin_dir, Build::test_variant()).expect("pin the older build");
    let hex = testdata::sha256_hex(&fs::read(&listed).unwrap());
    let listed_digest: bpf_lsm::Digest =
        std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
    old.replace_digests(7, &[listed_digest]).unwrap();
    old.set_scope(cgroup_id, Scope::new(7, Mode::Enforce)).unwrap();
    drop(old);
    let old_programs: Vec<u32> =
        Enforcer::pinned_links(&lab.pin_dir).unwrap().into_iter().map(|l| l.program_id).collect();
    assert!(!runs(&unlisted, &lab.cgroup.path) && runs(&listed, &lab.cgroup.path), "the older build enforces");

    // This build's daemon starts: it replaces the older programs, finds the scope in force.
    let kernel = BpfKernel::open(&lab.pin_dir).expect("take over the older build");
    assert_eq!(kernel.loaded().scopes.len(), 1, "the scope in force was found");
    let daemon = start(&policy, kernel, Box::new(Output::default())).expect("start");
    assert_eq!(Enforcer::pinned_identity(&lab.pin_dir).unwrap(), Some(Build::embedded().identity()));
    let programs = Enforcer::pinned_links(&lab.pin_dir).unwrap();
    assert!(programs.iter().all(|l| !old_programs.contains(&l.program_id)), "an older program is still pinned");
    assert!(!runs(&unlisted, &lab.cgroup.path) && runs(&listed, &lab.cgroup.path), "this build enforces");
    let status = enforce::bpf::status(&lab.pin_dir).unwrap();
    assert_eq!(status.scopes.len(), 1);
    assert_eq!(status.programs, Some(Build::embedded().identity().to_string()));
    drop(daemon);

    // Pins of a layout this build does not know (no identity, a map layout 1 never had): the
    // next daemon refuses to start, naming what it found, and the pins keep enforcing.
    drop(Enforcer::open_pinned(&lab.pin_dir).expect("become the owner"));
    fs::rename(lab.pin_dir.join("enf_identity"), lab.pin_dir.join("enf_counters")).unwrap();
    let err = match BpfKernel::open(&lab.pin_dir) {
        Err(e) => chain(&e),
        Ok(_) => panic!("an unknown pinned layout was taken over"),
    };
    println!("refused: {err}");
    assert!(err.contains("refusing to take over") && err.contains("enf_counters"), "{err}");
    assert!(enforce::bpf::status(&lab.pin_dir).is_err(), "an unknown layout's maps were read");
    assert_eq!(Enforcer::pinned_links(&lab.pin_dir).unwrap(), programs, "the refused pins changed");
    assert!(!runs(&unlisted, &lab.cgroup.path) && runs(&listed, &lab.cgroup.path), "still enforcing");
}
