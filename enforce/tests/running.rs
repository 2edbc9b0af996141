//! Tasks already running in a cgroup when it becomes a scope (issue 11), on real processes in
//! real cgroup v2 directories of the host: an unlisted running binary is reported and, in
//! enforce mode, killed; a listed one is left alone; audit mode reports without killing; a
//! binary renamed over or deleted after its exec is judged by the inode it runs, not by what its
//! path names now; a kill never reaches a process that left the scope or a reused pid; and the
//! daemon checks a scope added over its control socket before it answers, sparing the runtime's
//! init it names.

mod support;

use enforce::control::{self, AddScope, ContainerInfo, ControlServer, Request};
use enforce::daemon::Daemon;
use enforce::desired::{DigestSet, Privs};
use enforce::kernel::{Event, Kernel, KernelError};
use enforce::running::{self, kill, Action, Kind};
use enforce::source::PolicySource;
use enforce::{DesiredState, Mode, Profile};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, SystemTime};
use support::*;
use verifier_core::digest::Sha256Digest;

/// A copy of the host's static busybox named `busybox-<tag>` (so it still runs applets), with
/// `tag` appended so it has a digest of its own.
fn busybox_copy(dir: &Path, tag: &str) -> (PathBuf, Sha256Digest) {
    let mut bytes = std::fs::read("/bin/busybox").expect("these tests need the static /bin/busybox (busybox-static)");
    bytes.extend_from_slice(format!("\nimgsign-running-{tag}\n").as_bytes());
    let path = dir.join(format!("busybox-{tag}"));
    write_executable(&path, &bytes);
    (path, Sha256Digest::of(&bytes))
}

fn write_executable(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Spawns a program this test process has just written. Another test thread's fork can hold
/// the file's write descriptor for a moment (until its child execs), and exec then fails with
/// ETXTBSY: tried again for up to a second.
fn spawn_written(cmd: &mut Command) -> Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10))
            }
            spawned => return spawned.unwrap(),
        }
    }
    panic!("{cmd:?} stayed busy (ETXTBSY) for a second");
}

/// `binary sleep 300` moved into `cgroup` (after its exec: it is running when the check comes);
/// killed and reaped on drop.
struct Running(Child);

impl Running {
    fn start(binary: &Path, cgroup: &Path) -> Running {
        let child = spawn_written(Command::new(binary).args(["sleep", "300"]).stdin(Stdio::null()));
        std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
        let running = Running(child);
        running.wait_exec(binary);
        running
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits until the child has exec'd `binary` (its /proc/PID/exe names it).
    fn wait_exec(&self, binary: &Path) {
        for _ in 0..500 {
            if std::fs::read_link(format!("/proc/{}/exe", self.pid())).is_ok_and(|p| p == binary) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("{} did not exec {}", self.pid(), binary.display());
    }

    /// Whether it was killed by SIGKILL (waits for it up to 10 s); false if it is still running.
    fn killed(&mut self) -> bool {
        for _ in 0..1000 {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.signal() == Some(9);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn set(digests: &[Sha256Digest]) -> DigestSet {
    digests.iter().map(|d| (*d, Privs::NONE)).collect()
}

#[test]
fn an_unlisted_running_binary_is_killed_in_enforce_mode_and_a_listed_one_is_not() {
    let Some(cgroup) = TestCgroup::new("running-enforce") else { return };
    let child = cgroup.path.join("nested");
    std::fs::create_dir(&child).unwrap();
    let dir = tempdir();
    let (listed, listed_digest) = busybox_copy(dir.path(), "listed");
    let (unlisted, unlisted_digest) = busybox_copy(dir.path(), "unlisted");
    let mut ok = Running::start(&listed, &cgroup.path);
    // In a descendant cgroup: the scope covers its subtree.
    let mut bad = Running::start(&unlisted, &child);

    let report = running::check(&cgroup.path, &set(&[listed_digest]), Mode::Enforce, &BTreeSet::new()).expect("check");
    assert_eq!(report.tasks, 2, "{report:?}");
    assert_eq!(report.findings.len(), 1, "{report:?}");
    let (finding, outcome) = &report.findings[0];
    assert_eq!((finding.kind, finding.host_pid, finding.action), (Kind::RunningUnlisted, bad.pid(), Action::Kill));
    assert_eq!(finding.sha256, Some(unlisted_digest));
    assert_eq!(finding.exe.as_deref(), Some(unlisted.to_str().unwrap()));
    assert_eq!(outcome, &Some(Ok(())), "{report:?}");
    assert!(bad.killed(), "the unlisted binary got SIGKILL");
    assert!(ok.alive(), "the listed one runs on");
    drop((ok, bad));
    std::fs::remove_dir(&child).ok();
}

#[test]
fn audit_mode_reports_a_running_unlisted_binary_without_killing_it() {
    let Some(cgroup) = TestCgroup::new("running-audit") else { return };
    let dir = tempdir();
    let (unlisted, unlisted_digest) = busybox_copy(dir.path(), "audited");
    let mut bad = Running::start(&unlisted, &cgroup.path);
    let report = running::check(&cgroup.path, &set(&[]), Mode::Audit, &BTreeSet::new()).expect("check");
    let found: Vec<_> =
        report.findings.iter().map(|(f, o)| (f.host_pid, f.kind, f.sha256, f.action, o.clone())).collect();
    assert_eq!(found, [(bad.pid(), Kind::RunningUnlisted, Some(unlisted_digest), Action::Report, None)]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(bad.alive(), "audit mode kills nothing");
}

#[test]
fn a_binary_replaced_or_deleted_after_its_exec_is_judged_by_the_inode_it_runs() {
    let Some(cgroup) = TestCgroup::new("running-renamed") else { return };
    let dir = tempdir();
    let (listed, listed_digest) = busybox_copy(dir.path(), "listed");
    let (victim, victim_digest) = busybox_copy(dir.path(), "victim");
    let (gone, gone_digest) = busybox_copy(dir.path(), "gone");
    let mut renamed = Running::start(&victim, &cgroup.path);
    let mut deleted = Running::start(&gone, &cgroup.path);
    // The attacker's move: the listed binary renamed over the path the unlisted one runs from,
    // and the other unlisted binary unlinked. The paths now name listed content, or nothing.
    let decoy = dir.path().join("decoy");
    std::fs::copy(&listed, &decoy).unwrap();
    std::fs::rename(&decoy, &victim).unwrap();
    std::fs::remove_file(&gone).unwrap();
    assert_eq!(Sha256Digest::of(&std::fs::read(&victim).unwrap()), listed_digest, "the path names listed bytes now");

    let report = running::check(&cgroup.path, &set(&[listed_digest]), Mode::Enforce, &BTreeSet::new()).expect("check");
    let mut found: Vec<_> = report.findings.iter().map(|(f, o)| (f.host_pid, f.sha256, o.clone())).collect();
    found.sort();
    let mut want =
        vec![(renamed.pid(), Some(victim_digest), Some(Ok(()))), (deleted.pid(), Some(gone_digest), Some(Ok(())))];
    want.sort();
    assert_eq!(found, want, "{report:?}");
    assert!(report.findings.iter().any(|(f, _)| f.path.ends_with(" (deleted)")), "{report:?}");
    assert!(renamed.killed() && deleted.killed());
}

#[test]
fn a_fileless_program_run_from_a_memfd_is_unknown_code_and_killed() {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let Some(cgroup) = TestCgroup::new("running-memfd") else { return };
    // The payload: busybox bytes nobody signed, in a memfd (no path on any file system), run
    // through /proc/self/fd by a child that inherits the descriptor.
    let memfd = rustix::fs::memfd_create("payload", rustix::fs::MemfdFlags::empty()).unwrap();
    let mut bytes = std::fs::read("/bin/busybox").unwrap();
    bytes.extend_from_slice(b"\nfileless\n");
    std::fs::File::from(memfd.try_clone().unwrap()).write_all(&bytes).unwrap();
    let child = Command::new(format!("/proc/self/fd/{}", memfd.as_raw_fd()))
        .arg0("busybox")
        .args(["sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(cgroup.path.join("cgroup.procs"), child.id().to_string()).unwrap();
    let mut fileless = Running(child);
    for _ in 0..500 {
        let exe = std::fs::read_link(format!("/proc/{}/exe", fileless.pid())).unwrap_or_default();
        if exe.to_string_lossy().starts_with("/memfd:payload") {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(memfd);

    let report = running::check(&cgroup.path, &set(&[]), Mode::Enforce, &BTreeSet::new()).expect("check");
    let found: Vec<_> = report.findings.iter().map(|(f, o)| (f.host_pid, f.kind, f.sha256, o.clone())).collect();
    assert_eq!(found, [(fileless.pid(), Kind::RunningUnknownCode, None, Some(Ok(())))], "{report:?}");
    assert!(report.findings[0].0.path.starts_with("/memfd:payload"), "{report:?}");
    assert!(fileless.killed());
}

#[test]
fn a_kill_reaches_only_the_judged_process_still_in_the_scope() {
    let Some(scope) = TestCgroup::new("running-kill") else { return };
    let Some(elsewhere) = TestCgroup::new("running-kill-elsewhere") else { return };
    let dir = tempdir();
    let (binary, _) = busybox_copy(dir.path(), "target");
    let mut moved = Running::start(&binary, &elsewhere.path);
    let start = running::scan::start_time(moved.pid()).unwrap();
    // Judged in the scope, then moved out before the kill: spared, and the error says why.
    match kill::kill(moved.pid(), start, &scope.path) {
        Err(kill::KillError::Moved { .. }) => {}
        other => panic!("a process outside the scope must not be killed: {other:?}"),
    }
    // The pid now names another process (another start time): spared.
    std::fs::write(scope.path.join("cgroup.procs"), moved.pid().to_string()).unwrap();
    match kill::kill(moved.pid(), start + 1, &scope.path) {
        Err(kill::KillError::Reused { .. }) => {}
        other => panic!("a reused pid must not be killed: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(moved.alive());
    kill::kill(moved.pid(), start, &scope.path).expect("the judged process, in the scope");
    assert!(moved.killed());
}

/// A kernel that takes every plan and has no events.
struct Quiet;

impl Kernel for Quiet {
    fn apply(&mut self, _desired: &DesiredState) -> Result<(), KernelError> {
        Ok(())
    }
    fn events(&mut self, _timeout: Duration) -> Result<Vec<Event>, KernelError> {
        Ok(Vec::new())
    }
}

#[test]
fn the_daemon_checks_a_container_scope_before_answering_and_spares_the_runtimes_init() {
    let Some(policy_cgroup) = TestCgroup::new("running-daemon-policy") else { return };
    let Some(container) = TestCgroup::new("running-daemon-ctr") else { return };
    let dir = tempdir();
    let (written, _) = write_image(&dir.path().join("image"));
    let trust = trust_store(&dir.path().join("trust"), &["a"], 1);
    let bundle = sign_now(&written.reference(), "a", "web", 1, &dir.path().join("v1.json"));
    let policy = write_policy(dir.path(), &one_scope(&trust, &policy_cgroup.path, "audit", &[&bundle], None));
    let out = Output::default();
    let mut daemon = Daemon::start(
        PolicySource::open(&policy).unwrap(),
        Quiet,
        Box::new(out.clone()),
        Box::new(|_| {}),
        SystemTime::now(),
    )
    .unwrap();
    let socket = dir.path().join("enforce.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());

    // The runtime's init (about to exec the entrypoint) and a process that should not be there.
    let (runtime, _) = busybox_copy(dir.path(), "runtime-init");
    let (intruder, intruder_digest) = busybox_copy(dir.path(), "intruder");
    let mut init = Running::start(&runtime, &container.path);
    let mut bad = Running::start(&intruder, &container.path);
    let add = Request::Add(AddScope {
        name: "ctr".into(),
        cgroup: container.path.clone(),
        mode: Mode::Enforce,
        profile: Profile::Default,
        remote_fs: false,
        on_violation: None,
        container: Some(ContainerInfo {
            id: "c0ffee".into(),
            image: written.reference(),
            digest: "sha256:00".into(),
            name: Some("web-1".into()),
            pod: None,
            init_pid: Some(init.pid()),
        }),
        bundles: vec![bundle],
        image: None,
    });
    let path = socket.clone();
    let client = std::thread::spawn(move || control::call(&path, &add, Duration::from_secs(30)).unwrap());
    while !client.is_finished() {
        daemon.serve_pending().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let reply = client.join().unwrap();
    assert!(reply.ok, "{reply:?}");
    // Judged and killed before the reply: the runtime starts the container only after the check.
    assert!(out.records().iter().any(|r| r["kind"] == "running-unlisted" && r["killed"] == true));
    assert!(bad.killed());
    assert!(init.alive(), "the runtime's init named in the request is spared");

    let records = out.records();
    let event = records.iter().find(|r| r["kind"] == "running-unlisted").unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(event["record"], "event");
    assert_eq!(event["hostPid"], bad.pid());
    assert_eq!(event["sha256"], intruder_digest.hex());
    assert_eq!((event["verdict"].as_str(), event["killed"].as_bool()), (Some("denied"), Some(true)));
    assert_eq!((event["scope"].as_str(), event["container"]["id"].as_str()), (Some("ctr"), Some("c0ffee")));
    assert_eq!(event["container"]["name"], "web-1");
    let checked = records.iter().find(|r| r["action"] == "running-checked" && r["scope"] == "ctr").unwrap();
    // The init is listed but its code is not read (assess spares it whatever it runs).
    assert_eq!(
        (checked["tasks"].as_u64(), checked["exempt"].as_u64(), checked["findings"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    // The policy's own scope (empty cgroup) was checked at start.
    assert!(records.iter().any(|r| r["action"] == "running-checked" && r["scope"] == "web"));
}
