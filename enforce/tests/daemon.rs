//! The daemon against a recording kernel: start applies the verified plan; a reload (SIGHUP)
//! applies a valid new policy, and keeps the old plan in force when the new policy is broken,
//! does not verify, or the kernel refuses it, logging the error; events come out as JSON lines
//! carrying the scope's name.

mod support;

use enforce::control::{self, AddScope, ControlServer, Reply, Request};
use enforce::daemon::{Daemon, DaemonError, Notice, Notices};
use enforce::kernel::{Event, Hook, Kernel, KernelError, Reason, ScopeCounters, Verdict};
use enforce::source::{PolicySource, ScopeSource, ScopeSpec, SourceError};
use enforce::{DesiredScope, DesiredState, Mode, Profile, Violation};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::*;
use verifier_core::digest::Sha256Digest;

/// Records every desired state applied; can be told to refuse the next apply; hands out queued
/// events.
#[derive(Default)]
struct Recording {
    applied: Vec<DesiredState>,
    refuse_next: bool,
    events: VecDeque<Event>,
}

impl Kernel for Recording {
    fn apply(&mut self, desired: &DesiredState) -> Result<(), KernelError> {
        if std::mem::take(&mut self.refuse_next) {
            return Err(KernelError::Failed { what: "map update refused".into(), source: "injected failure".into() });
        }
        self.applied.push(desired.clone());
        Ok(())
    }

    fn events(&mut self, _timeout: Duration) -> Result<Vec<Event>, KernelError> {
        Ok(self.events.drain(..).collect())
    }
}

/// Notices the daemon handed out (it prints nothing itself).
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<Notice>>>);

impl Heard {
    fn sink(&self) -> Notices {
        let heard = self.0.clone();
        Box::new(move |n| heard.lock().unwrap().push(n))
    }
    fn all(&self) -> Vec<Notice> {
        self.0.lock().unwrap().clone()
    }
}

/// The one scope of a one-scope desired state.
fn only(desired: &DesiredState) -> &DesiredScope {
    assert_eq!(desired.scopes.len(), 1, "{desired:?}");
    desired.scopes.values().next().unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    cgroup: TestCgroup,
    trust: PathBuf,
    image: String,
    policy: PathBuf,
}

fn setup(name: &str) -> Option<Setup> {
    let cgroup = TestCgroup::new(name)?;
    let dir = tempdir();
    let (written, _) = write_image(&dir.path().join("image"));
    let trust = trust_store(&dir.path().join("trust"), &["a"], 1);
    let image = written.reference();
    let v1 = sign_now(&image, "a", "web", 1, &dir.path().join("v1.json"));
    let policy = write_policy(dir.path(), &one_scope(&trust, &cgroup.path, "audit", &[&v1], None));
    Some(Setup { dir, cgroup, trust, image, policy })
}

fn start(s: &Setup) -> (Daemon<Recording>, Output) {
    start_hearing(s).0
}

fn start_hearing(s: &Setup) -> ((Daemon<Recording>, Output), Heard) {
    let (out, heard) = (Output::default(), Heard::default());
    let policy = PolicySource::open(&s.policy).unwrap();
    let daemon =
        Daemon::start(policy, Recording::default(), Box::new(out.clone()), heard.sink(), SystemTime::now()).unwrap();
    ((daemon, out), heard)
}

#[test]
fn start_applies_the_plan_and_records_its_versions() {
    let Some(s) = setup("start") else { return };
    let (daemon, out) = start(&s);
    assert_eq!(daemon.kernel().applied.len(), 1);
    assert_eq!(only(&daemon.kernel().applied[0]).mode, Mode::Audit);
    assert_eq!(only(&daemon.kernel().applied[0]).digests.len(), 3, "the code and exec-bit files of write_image");
    assert_eq!(daemon.kernel().applied[0].scopes.keys().next(), Some(&daemon.plan().scopes[0].cgroup_id));
    let records = out.records();
    assert_eq!(records[0]["record"], "plan");
    assert_eq!(records[0]["action"], "started");
    assert_eq!(records[0]["scopes"][0]["name"], "web");
    assert_eq!(keys::TrustStore::open(&s.trust).unwrap().highest_version("web"), Some(1));
}

#[test]
fn a_scope_that_does_not_verify_at_start_fails_closed() {
    let Some(s) = setup("refused-start") else { return };
    let unsigned = sign_now(&s.image, "c", "web", 1, &s.dir.path().join("c.json"));
    write_policy(s.dir.path(), &one_scope(&s.trust, &s.cgroup.path, "enforce", &[&unsigned], None));
    let policy = PolicySource::open(&s.policy).unwrap();
    let out = Output::default();
    let heard = Heard::default();
    let daemon = Daemon::start(policy, Recording::default(), Box::new(out.clone()), heard.sink(), SystemTime::now())
        .expect("the node enforces what it can");
    // In the kernel with no digests: nothing runs there, rather than everything.
    let applied = daemon.kernel().applied.last().unwrap();
    let id = enforce::cgroup::cgroup_id(&s.cgroup.path).unwrap();
    assert_eq!((applied.scope(id).unwrap().mode, applied.scope(id).unwrap().digests.len()), (Mode::Enforce, 0));
    assert!(daemon.plan().scopes[0].failed.as_deref().unwrap().contains("c.json"), "{:?}", daemon.plan().scopes[0]);
    let failed = out.records().into_iter().find(|r| r["action"] == "scope-failed").expect("reported");
    assert_eq!(failed["scope"], "web");
    assert!(failed["outcome"].as_str().unwrap().contains("failed closed"), "{failed}");
    assert!(matches!(heard.all().first(), Some(Notice::Failure { action, .. }) if action == "scope-failed"));
    // What never verified is not recorded as accepted.
    assert_eq!(keys::TrustStore::open(&s.trust).unwrap().highest_version("web"), None);
}

#[test]
fn reload_applies_a_valid_new_policy() {
    let Some(s) = setup("reload-ok") else { return };
    let (mut daemon, out) = start(&s);
    // The image gains a file; version 2 is signed; the policy now enforces it.
    let mut layer = testdata::tar::TarWriter::new();
    layer.file("bin/new", 0o755, b"new binary\n");
    let v2_image = testdata::oci::write_layout(
        &s.dir.path().join("image2"),
        "latest",
        &[testdata::oci::Layer::gzip(&layer.finish())],
    )
    .unwrap();
    let v2 = sign_now(&v2_image.reference(), "a", "web", 2, &s.dir.path().join("v2.json"));
    write_policy(s.dir.path(), &one_scope(&s.trust, &s.cgroup.path, "enforce", &[&v2], None));
    daemon.reload(SystemTime::now()).unwrap();
    let applied = &daemon.kernel().applied;
    assert_eq!(applied.len(), 2);
    assert_eq!(only(&applied[1]).mode, Mode::Enforce);
    assert_eq!(*only(&applied[1]).digests, [(digest(b"new binary\n"), enforce::desired::Privs::NONE)].into());
    assert_eq!(daemon.plan().desired(), applied[1]);
    assert_eq!(out.records().last().unwrap()["action"], "reloaded");
    assert_eq!(keys::TrustStore::open(&s.trust).unwrap().highest_version("web"), Some(2));

    // Going back to version 1 is now a rollback: the scope does not verify, so it fails closed
    // (no digests), reported; it does not keep version 2's.
    write_policy(s.dir.path(), &one_scope(&s.trust, &s.cgroup.path, "enforce", &[&s.dir.path().join("v1.json")], None));
    daemon.reload(SystemTime::now()).unwrap();
    assert_eq!(daemon.kernel().applied.len(), 3);
    assert!(daemon.plan().scopes[0].digests.is_empty());
    let failed = out.records().into_iter().find(|r| r["action"] == "scope-failed").expect("reported");
    assert!(failed["error"].as_str().unwrap().contains("rollback"), "{failed}");
}

#[test]
fn a_broken_new_policy_keeps_the_old_plan_and_logs_the_error() {
    let Some(s) = setup("reload-broken") else { return };
    let ((mut daemon, out), heard) = start_hearing(&s);
    let before = daemon.plan().clone();

    // (A policy that parses but whose scope does not verify is applied with that scope failed
    // closed: a_scope_that_stops_verifying_fails_closed_and_the_others_keep_theirs.)
    let broken: [(&str, String); 2] = [
        ("not TOML", "trust = [unclosed".to_string()),
        (
            "unknown field",
            std::fs::read_to_string(&s.policy)
                .unwrap()
                .replace("mode = \"audit\"", "mode = \"audit\"\nallow_all = true"),
        ),
    ];
    for (what, text) in broken {
        std::fs::write(&s.policy, text).unwrap();
        assert!(daemon.reload(SystemTime::now()).is_err(), "{what} was accepted");
        assert_eq!(daemon.plan(), &before, "{what}: the plan in force changed");
        assert_eq!(daemon.kernel().applied.len(), 1, "{what}: something was applied");
        let last = out.records().last().unwrap().clone();
        assert_eq!(last["action"], "reload-failed", "{what}");
        assert!(
            last["error"].as_str().unwrap().contains("policy.toml")
                || last["error"].as_str().unwrap().contains("scope \"web\""),
            "{what}: {last}"
        );
        assert!(last["outcome"].as_str().unwrap().contains("old plan"), "{last}");
        // The caller hears it too (the CLI prints it); the daemon printed nothing itself.
        match heard.all().last() {
            Some(Notice::Failure { action, error, .. }) => {
                assert_eq!(action, "reload-failed");
                assert_eq!(error, last["error"].as_str().unwrap());
            }
            other => panic!("{what}: no failure notice: {other:?}"),
        }
    }
}

#[test]
fn a_kernel_refusing_the_new_plan_gets_the_old_one_back() {
    let Some(s) = setup("reload-kernel") else { return };
    let (mut daemon, out) = start(&s);
    let before = daemon.plan().clone();
    let v2 = sign_now(&s.image, "a", "web", 2, &s.dir.path().join("v2.json"));
    write_policy(s.dir.path(), &one_scope(&s.trust, &s.cgroup.path, "enforce", &[&v2], None));
    daemon_kernel(&mut daemon).refuse_next = true;
    assert!(matches!(daemon.reload(SystemTime::now()), Err(DaemonError::Kernel(_))));
    assert_eq!(daemon.plan(), &before);
    assert_eq!(daemon.kernel().applied.last(), Some(&before.desired()), "the old plan was re-applied");
    let last = out.records().last().unwrap().clone();
    assert_eq!(last["action"], "apply-failed");
    assert!(last["outcome"].as_str().unwrap().contains("re-applied"), "{last}");
    // Not recorded: the trust store still says version 1.
    assert_eq!(keys::TrustStore::open(&s.trust).unwrap().highest_version("web"), Some(1));
}

#[test]
fn run_reloads_on_the_flag_and_streams_events_with_scope_names() {
    let Some(s) = setup("run") else { return };
    let (mut daemon, out) = start(&s);
    let cgroup_id = daemon.plan().scopes[0].cgroup_id;
    let event = Event {
        hook: Hook::Exec,
        verdict: Verdict::Audited,
        reason: Reason::Digest,
        mode: Some(Mode::Audit),
        boot_time_ns: Some(123),
        scope_cgroup_id: cgroup_id,
        scope: None,
        cgroup_id: cgroup_id + 7,
        cgroup: None,
        host_pid: 4242,
        ns_pid: 1,
        pid_ns: Some(4026531836),
        mnt_ns: None,
        comm: "sh".into(),
        path: Some("/tmp/unlisted".into()),
        sha256: Some(Sha256Digest::of(b"unlisted")),
        scope_seq: Some(41),
        scope_counters: Some(ScopeCounters { allowed: 30, denied: 0, audited: 2, dropped: 40, events: 42 }),
    };
    daemon_kernel(&mut daemon).events.push_back(event.clone());
    assert_eq!(daemon.pump_events(Duration::ZERO).unwrap(), 1);
    let record = out.records().last().unwrap().clone();
    assert_eq!(record["record"], "event");
    assert_eq!(record["scope"], "web");
    assert_eq!(record["verdict"], "audited");
    assert_eq!(record["hostPid"], 4242);
    assert_eq!(record["nsPid"], 1);
    assert_eq!(record["cgroupId"], cgroup_id + 7);
    assert_eq!(record["pidNs"], 4026531836u64);
    assert!(record.get("mntNs").is_none(), "unknown fields are left out: {record}");
    // The scope's counters ride on each event: a reader sees 40 of its events were lost.
    assert_eq!(record["scopeSeq"], 41);
    assert_eq!(
        (record["scopeCounters"]["dropped"].as_u64(), record["scopeCounters"]["audited"].as_u64()),
        (Some(40), Some(2))
    );
    assert!(record.get("cgroup").is_none(), "a cgroup id found nowhere has no path: {record}");

    // A task in a child cgroup of the scope: the event names that cgroup's directory.
    let child = s.cgroup.path.join("container-1");
    std::fs::create_dir(&child).unwrap();
    let child_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&child).unwrap());
    let mut in_child = event.clone();
    in_child.cgroup_id = child_id;
    daemon_kernel(&mut daemon).events.push_back(in_child);
    assert_eq!(daemon.pump_events(Duration::ZERO).unwrap(), 1);
    let record = out.records().last().unwrap().clone();
    assert_eq!(record["cgroup"], child.display().to_string().as_str(), "{record}");
    std::fs::remove_dir(&child).unwrap();
    assert!(record["time"].as_str().unwrap().ends_with('Z'));

    // run(): a set reload flag reloads once and is cleared; a set stop flag returns.
    let reload = AtomicBool::new(true);
    let stop = AtomicBool::new(true);
    daemon.run(&reload, &stop).unwrap();
    assert!(reload.load(std::sync::atomic::Ordering::SeqCst), "stop is looked at first");
    let stop_after_one = Arc::new(AtomicBool::new(false));
    let flag = stop_after_one.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    daemon.run(&reload, &stop_after_one).unwrap();
    assert!(!reload.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(daemon.kernel().applied.len(), 2, "the reload applied the (unchanged) policy again");
    assert_eq!(out.records().last().unwrap()["action"], "reloaded");
}

fn daemon_kernel(daemon: &mut Daemon<Recording>) -> &mut Recording {
    daemon.kernel_mut()
}

/// A scope source other than the policy file (as a control socket will be), with fixed scopes.
struct Fixed(Vec<ScopeSpec>);

impl ScopeSource for Fixed {
    fn describe(&self) -> String {
        "fixed scopes".into()
    }
    fn refresh(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    fn scopes(&self) -> Vec<ScopeSpec> {
        self.0.clone()
    }
}

#[test]
fn a_second_scope_source_adds_its_scopes_beside_the_policys() {
    let Some(s) = setup("second-source") else { return };
    let Some(sidecar) = TestCgroup::new("second-source-2") else { return };
    let (mut daemon, out) = start(&s);
    daemon.add_source(Box::new(Fixed(vec![ScopeSpec {
        name: "sidecar".into(),
        cgroup: sidecar.path.clone(),
        mode: Mode::Enforce,
        remote_fs: false,
        profile: Profile::Default,
        on_violation: None,
        container: None,
        bundles: vec![s.dir.path().join("v1.json")],
        image: None,
    }])));
    daemon.rebuild(SystemTime::now(), "reloaded").unwrap();
    let desired = daemon.kernel().applied.last().unwrap().clone();
    assert_eq!(desired.scopes.len(), 2, "{desired:?}");
    let names: Vec<&str> = daemon.plan().scopes.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "sidecar"]);
    let sidecar_id = enforce::cgroup::cgroup_id(&sidecar.path).unwrap();
    assert_eq!(desired.scope(sidecar_id).unwrap().mode, Mode::Enforce);
    // Both scopes draw from the same statement: verified once, one set shared by both.
    let sets: Vec<_> = desired.scopes.values().map(|s| s.digests.clone()).collect();
    assert!(Arc::ptr_eq(&sets[0], &sets[1]), "the digest set is shared");
    assert!(daemon.cache_stats().0 >= 1, "(hits, misses) = {:?}", daemon.cache_stats());
    assert_eq!(out.records().last().unwrap()["scopes"][1]["name"], "sidecar");
}

fn add_request(name: &str, cgroup: &std::path::Path, bundle: PathBuf) -> Request {
    Request::Add(AddScope {
        name: name.into(),
        cgroup: cgroup.to_path_buf(),
        mode: Mode::Enforce,
        profile: Profile::Default,
        remote_fs: false,
        on_violation: None,
        container: None,
        bundles: vec![bundle],
        image: None,
    })
}

/// Sends `request` over the daemon's socket from another thread while the daemon serves it.
fn over_socket(daemon: &mut Daemon<Recording>, socket: &std::path::Path, request: Request) -> Reply {
    let path = socket.to_path_buf();
    let client = std::thread::spawn(move || control::call(&path, &request, Duration::from_secs(20)).unwrap());
    while !client.is_finished() {
        daemon.serve_pending().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    client.join().unwrap()
}

#[test]
fn the_control_socket_adds_and_removes_verified_scopes() {
    let Some(s) = setup("control") else { return };
    let Some(container) = TestCgroup::new("control-2") else { return };
    let (mut daemon, out) = start(&s);
    let socket = s.dir.path().join("run").join("enforce.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600, "root only");
    let bundle = s.dir.path().join("v1.json");

    // Added: verified, in the kernel before the reply, listed as the control socket's.
    let reply = over_socket(&mut daemon, &socket, add_request("c1", &container.path, bundle.clone()));
    assert!(reply.ok, "{reply:?}");
    let desired = daemon.kernel().applied.last().unwrap().clone();
    let id = enforce::cgroup::cgroup_id(&container.path).unwrap();
    assert_eq!(desired.scope(id).unwrap().mode, Mode::Enforce);
    let listed = reply.scopes.iter().find(|l| l.name == "c1").unwrap();
    assert_eq!((listed.origin.as_str(), listed.cgroup_id), ("control", id));
    assert_eq!(out.records().last().unwrap()["action"], "scope-added");

    // A bundle the trust store does not accept: refused, nothing changes in the kernel.
    let applied = daemon.kernel().applied.len();
    let untrusted = sign_now(&s.image, "b", "web", 1, &s.dir.path().join("by-b.json"));
    let reply = over_socket(&mut daemon, &socket, add_request("c2", &container.path, untrusted.clone()));
    assert!(!reply.ok && reply.error.as_deref().unwrap().contains("c1"), "same cgroup as c1: {reply:?}");
    let Some(third) = TestCgroup::new("control-3") else { return };
    let reply = over_socket(&mut daemon, &socket, add_request("c3", &third.path, untrusted));
    assert!(!reply.ok, "{reply:?}");
    assert_eq!(daemon.kernel().applied.len(), applied, "nothing applied for a refused scope");
    assert!(daemon.plan().scopes.iter().all(|s| s.name != "c3"));
    // A later reload does not bring the refused scope back, and keeps c1.
    daemon.reload(SystemTime::now()).unwrap();
    let names: Vec<String> = daemon.plan().scopes.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["web", "c1"]);

    // Names and cgroups of the policy's scopes are not the control socket's to take.
    let reply = over_socket(&mut daemon, &socket, add_request("web", &third.path, bundle.clone()));
    assert!(!reply.ok && reply.error.unwrap().contains("policy"));
    let reply = over_socket(&mut daemon, &socket, add_request("c4", &s.cgroup.path, bundle));
    assert!(!reply.ok && reply.error.unwrap().contains("policy"));

    // Removed: gone from the kernel; the policy's scope cannot be removed here.
    let reply = over_socket(&mut daemon, &socket, Request::Remove { name: "web".into() });
    assert!(!reply.ok, "{reply:?}");
    let reply = over_socket(&mut daemon, &socket, Request::Remove { name: "c1".into() });
    assert!(reply.ok, "{reply:?}");
    assert!(daemon.kernel().applied.last().unwrap().scope(id).is_none());
    let reply = over_socket(&mut daemon, &socket, Request::List);
    assert_eq!(reply.scopes.len(), 1);
    assert_eq!(reply.scopes[0].origin, "policy");
}

/// An added scope is checked alone before anything changes, and the statements of the scopes
/// already in force stay cached: adding a container must not verify every other scope's
/// statement again (seen failing when the check alone ended the cache's plan: each add
/// verified the policy scope's statement anew).
#[test]
fn adding_scopes_verifies_only_the_new_statement() {
    let Some(s) = setup("control-cache") else { return };
    let cgroups: Vec<TestCgroup> = (2..5).filter_map(|i| TestCgroup::new(&format!("control-cache-{i}"))).collect();
    if cgroups.len() < 3 {
        return;
    }
    let (mut daemon, _out) = start(&s);
    let socket = s.dir.path().join("run").join("enforce.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());
    // Another statement than the policy scope's (another image name, same files).
    let other = sign_now(&s.image, "a", "other", 1, &s.dir.path().join("other.json"));
    let mut misses = Vec::new();
    for (i, cgroup) in cgroups.iter().enumerate() {
        let before = daemon.cache_stats().1;
        let reply = over_socket(&mut daemon, &socket, add_request(&format!("c{i}"), &cgroup.path, other.clone()));
        assert!(reply.ok, "{reply:?}");
        misses.push(daemon.cache_stats().1 - before);
    }
    // The first add verifies the new statement and records its image's version in the trust
    // store, whose files are part of every cache key: the next add verifies again the two
    // statements in force. From then on, nothing is verified again.
    assert_eq!(misses[2], 0, "a third container of the same image verifies nothing again: misses per add {misses:?}");
}

#[test]
fn the_control_socket_refuses_what_is_not_a_request() {
    let Some(s) = setup("control-bad") else { return };
    let (mut daemon, _out) = start(&s);
    let socket = s.dir.path().join("enforce.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());
    let path = socket.clone();
    let client = std::thread::spawn(move || {
        use std::io::{BufRead as _, Write as _};
        let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stream.write_all(b"{\"op\":\"format\"}\n").unwrap();
        let mut answer = String::new();
        std::io::BufReader::new(stream).read_line(&mut answer).unwrap();
        answer
    });
    while !client.is_finished() {
        daemon.serve_pending().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let reply: Reply = serde_json::from_str(&client.join().unwrap()).unwrap();
    assert!(!reply.ok && reply.error.unwrap().contains("not a valid request"));
    // A file that is not a socket is not replaced.
    let file = s.dir.path().join("not-a-socket");
    std::fs::write(&file, b"x").unwrap();
    assert!(ControlServer::bind(&file).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn a_control_scope_whose_cgroup_is_gone_is_collected_not_fatal() {
    let Some(s) = setup("control-gone") else { return };
    let Some(second) = TestCgroup::new("control-gone-2") else { return };
    let (mut daemon, out) = start(&s);
    let bundle = s.dir.path().join("v1.json");
    let now = SystemTime::now();
    let gone_path = {
        let Some(ended) = TestCgroup::new("control-gone-1") else { return };
        assert!(daemon.control(add_request("ended", &ended.path, bundle.clone()), now).unwrap().ok);
        ended.path.clone()
    }; // the container's cgroup is removed here, its scope is not
    assert!(!gone_path.exists());
    let reply = daemon.control(add_request("next", &second.path, bundle), now).unwrap();
    assert!(reply.ok, "a gone cgroup blocked the next container: {reply:?}");
    let names: Vec<&str> = reply.scopes.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["web", "next"]);
    let collected = out.records().into_iter().find(|r| r["action"] == "scope-collected").expect("recorded");
    assert_eq!(collected["scope"], "ended");
}

/// An exec event in the scope whose cgroup id is `scope`, with `verdict`.
fn exec_event(scope: u64, verdict: Verdict) -> Event {
    Event {
        hook: Hook::Exec,
        verdict,
        reason: Reason::Digest,
        mode: Some(Mode::Enforce),
        boot_time_ns: None,
        scope_cgroup_id: scope,
        scope: None,
        cgroup_id: scope,
        cgroup: None,
        host_pid: 4242,
        ns_pid: 1,
        pid_ns: None,
        mnt_ns: None,
        comm: "sh".into(),
        path: Some("/tmp/unlisted".into()),
        sha256: Some(Sha256Digest::of(b"unlisted")),
        scope_seq: None,
        scope_counters: None,
    }
}

/// A `sleep` moved into `cgroup`; killed and reaped on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn into(cgroup: &std::path::Path) -> Sleeper {
        let child = std::process::Command::new("sleep").arg("300").spawn().unwrap();
        std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
        Sleeper(child)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cgroup_frozen(cgroup: &std::path::Path) -> bool {
    std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap().lines().any(|l| l == "frozen 1")
}

#[test]
fn a_violation_freezes_or_kills_the_scope_that_asks_for_it() {
    let Some(s) = setup("respond") else { return };
    let (Some(frozen), Some(killed)) = (TestCgroup::new("respond-freeze"), TestCgroup::new("respond-kill")) else {
        return;
    };
    let (mut daemon, out) = start(&s);
    let socket = s.dir.path().join("run").join("enforce.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());
    let bundle = s.dir.path().join("v1.json");
    for (name, cgroup, action) in [("f", &frozen.path, Violation::Freeze), ("k", &killed.path, Violation::Kill)] {
        let Request::Add(mut add) = add_request(name, cgroup, bundle.clone()) else { unreachable!() };
        add.on_violation = Some(action);
        add.container = Some(control::ContainerInfo {
            id: format!("ctr-{name}"),
            image: "oci:/images/web:1".into(),
            digest: "sha256:00".into(),
            name: None,
            pod: None,
            init_pid: None,
        });
        let reply = over_socket(&mut daemon, &socket, Request::Add(add));
        assert!(reply.ok, "{reply:?}");
    }
    let plan = daemon.plan();
    assert_eq!(plan.scopes.iter().find(|s| s.name == "f").unwrap().on_violation, Some(Violation::Freeze));
    let mut in_frozen = Sleeper::into(&frozen.path);
    let mut in_killed = Sleeper::into(&killed.path);
    let frozen_id = enforce::cgroup::cgroup_id(&frozen.path).unwrap();
    let killed_id = enforce::cgroup::cgroup_id(&killed.path).unwrap();
    let web_id = enforce::cgroup::cgroup_id(&s.cgroup.path).unwrap();

    // An allowed exec, and a denial in a scope that asks for no response: nothing is done.
    for event in [exec_event(frozen_id, Verdict::Allowed), exec_event(web_id, Verdict::Denied)] {
        daemon_kernel(&mut daemon).events.push_back(event);
    }
    daemon.pump_events(Duration::ZERO).unwrap();
    assert!(out.records().iter().all(|r| r["record"] != "response"), "{:?}", out.records());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!cgroup_frozen(&frozen.path));
    assert!(in_killed.0.try_wait().unwrap().is_none());

    // A denial in each: the one cgroup frozen, the other's task killed.
    daemon_kernel(&mut daemon).events.push_back(exec_event(frozen_id, Verdict::Denied));
    daemon_kernel(&mut daemon).events.push_back(exec_event(killed_id, Verdict::Denied));
    daemon.pump_events(Duration::ZERO).unwrap();
    let responses: Vec<_> = out.records().into_iter().filter(|r| r["record"] == "response").collect();
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!((responses[0]["scope"].as_str(), responses[0]["action"].as_str()), (Some("f"), Some("freeze")));
    assert_eq!((responses[1]["scope"].as_str(), responses[1]["action"].as_str()), (Some("k"), Some("kill")));
    assert!(responses.iter().all(|r| r.get("error").is_none()), "{responses:?}");
    // The events name the container the runtime registered.
    let denied = out.records().into_iter().find(|r| r["record"] == "event" && r["scope"] == "k").unwrap();
    assert_eq!(
        (denied["container"]["id"].as_str(), denied["container"]["image"].as_str()),
        (Some("ctr-k"), Some("oci:/images/web:1"))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cgroup_frozen(&frozen.path) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(cgroup_frozen(&frozen.path), "the scope's cgroup is frozen");
    use std::os::unix::process::ExitStatusExt as _;
    let status = in_killed.0.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the task in the kill scope got SIGKILL: {status:?}");

    // What a snapshot asks for: the scope's recent records, its event and the response.
    let reply = over_socket(&mut daemon, &socket, Request::Events { name: "f".into() });
    assert!(reply.ok, "{reply:?}");
    let kinds: Vec<_> = reply.events.iter().map(|r| (r["record"].clone(), r["verdict"].clone())).collect();
    assert_eq!(
        kinds,
        [
            ("event".into(), "allowed".into()),
            ("event".into(), "denied".into()),
            ("response".into(), serde_json::Value::Null)
        ]
    );
    let reply = over_socket(&mut daemon, &socket, Request::Events { name: "nope".into() });
    assert!(!reply.ok && reply.error.unwrap().contains("nope"));

    std::fs::write(frozen.path.join("cgroup.freeze"), "0").unwrap();
    let _ = in_frozen.0.kill();
    let _ = in_frozen.0.wait();
}

/// A `[[scope]]` table.
fn scope_table(name: &str, cgroup: &std::path::Path, bundle: &std::path::Path) -> String {
    format!(
        "\n[[scope]]\nname = {name:?}\ncgroup = {:?}\nmode = \"enforce\"\nbundles = [{:?}]\n",
        cgroup.display().to_string(),
        bundle.display().to_string()
    )
}

#[test]
fn a_scope_that_stops_verifying_fails_closed_and_the_others_keep_theirs() {
    let Some(s) = setup("recheck") else { return };
    let (Some(revoked), Some(expiring), Some(broken)) =
        (TestCgroup::new("recheck-rev"), TestCgroup::new("recheck-exp"), TestCgroup::new("recheck-broken"))
    else {
        return;
    };
    let dir = s.dir.path();
    let mut trust = keys::TrustStore::open(&s.trust).unwrap();
    let b = trust.add_key(&testdata::keys::test_key("b").public_key()).unwrap();
    let by_b = sign_now(&s.image, "b", "rev", 1, &dir.join("rev.json"));
    let hour = Duration::from_secs(3600);
    let expires = sign_to(&s.image, &["a"], "exp", 1, SystemTime::now(), hour, &dir.join("exp.json"));
    let fragile = sign_now(&s.image, "a", "broken", 1, &dir.join("broken.json"));
    let text = one_scope(&s.trust, &s.cgroup.path, "enforce", &[&dir.join("v1.json")], None);
    let mut text = text.replacen("events = \"-\"\n", "events = \"-\"\nrecheck_seconds = 1\n", 1);
    for (name, cgroup, bundle) in
        [("rev", &revoked, &by_b), ("exp", &expiring, &expires), ("broken", &broken, &fragile)]
    {
        text.push_str(&scope_table(name, &cgroup.path, bundle));
    }
    write_policy(dir, &text);
    let (mut daemon, out) = start(&s);
    let digests = |d: &Daemon<Recording>| -> Vec<(String, usize)> {
        d.plan().scopes.iter().map(|s| (s.name.clone(), s.digests.len())).collect()
    };
    let full = digests(&daemon)[0].1;
    assert!(full > 0);
    assert!(digests(&daemon).iter().all(|(_, n)| *n == full), "{:?}", digests(&daemon));

    // Key b revoked, the time past one manifest's expiry, one bundle overwritten with garbage:
    // each of those scopes loses its digests on the next recheck, without a reload; web keeps
    // its own.
    trust.revoke(&b).unwrap();
    std::fs::write(&fragile, b"{ not a bundle").unwrap();
    let later = SystemTime::now() + 2 * hour;
    daemon.recheck(later).unwrap();
    assert_eq!(
        digests(&daemon),
        [("web".to_string(), full), ("rev".into(), 0), ("exp".into(), 0), ("broken".into(), 0)]
    );
    let applied = daemon.kernel().applied.last().unwrap();
    assert_eq!(applied.scopes.len(), 4, "the failed scopes stay in the kernel, empty");
    let failed: Vec<_> = out.records().into_iter().filter(|r| r["action"] == "scope-failed").collect();
    let reasons: Vec<(String, String)> =
        failed.iter().map(|r| (r["scope"].as_str().unwrap().into(), r["error"].as_str().unwrap().into())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    let reason = |scope: &str| reasons.iter().find(|(s, _)| s == scope).map(|(_, r)| r.as_str()).unwrap_or("");
    assert!(reason("rev").contains("revoked"), "{reasons:?}");
    assert!(reason("exp").contains("expired"), "{reasons:?}");
    assert!(reason("broken").contains("broken.json"), "{reasons:?}");
    assert_eq!(out.records().last().unwrap()["action"], "rechecked");

    // Nothing changed: a recheck writes nothing and applies nothing new.
    let (records, applies) = (out.records().len(), daemon.kernel().applied.len());
    daemon.recheck(later).unwrap();
    assert_eq!((out.records().len(), daemon.kernel().applied.len() - applies), (records, 1));
    assert_eq!(daemon.kernel().applied.last(), daemon.kernel().applied.get(applies - 1));

    // The bundle restored: the scope verifies again and gets its digests back.
    sign_now(&s.image, "a", "broken", 1, &fragile);
    daemon.recheck(later).unwrap();
    assert_eq!(digests(&daemon)[3], ("broken".into(), full));
    assert!(out.records().iter().any(|r| r["action"] == "scope-restored" && r["scope"] == "broken"));
}

#[test]
fn a_scope_the_kernel_cannot_take_is_refused_not_left_unenforced() {
    // A full digest map (or any refused update) fails the apply: the request is refused, the
    // plan in force is put back, and the caller (`imgsign run --enforce`) runs nothing.
    let Some(s) = setup("control-full") else { return };
    let Some(container) = TestCgroup::new("control-full-2") else { return };
    let (mut daemon, out) = start(&s);
    let socket = s.dir.path().join("run").join("enforce.sock");
    daemon.serve_control(ControlServer::bind(&socket).unwrap());
    let before = daemon.plan().clone();
    daemon_kernel(&mut daemon).refuse_next = true;
    let reply = over_socket(&mut daemon, &socket, add_request("c1", &container.path, s.dir.path().join("v1.json")));
    assert!(!reply.ok && reply.error.as_deref().unwrap().contains("map update refused"), "{reply:?}");
    assert_eq!(daemon.plan(), &before);
    assert_eq!(daemon.kernel().applied.last(), Some(&before.desired()), "the plan in force was put back");
    assert!(out.records().iter().any(|r| r["action"] == "apply-failed"));
    // The next request, with room in the kernel, works.
    let reply = over_socket(&mut daemon, &socket, add_request("c1", &container.path, s.dir.path().join("v1.json")));
    assert!(reply.ok, "{reply:?}");
}

/// A root-owned file of `mode` holding `bytes`, written under a temporary name and renamed in,
/// as a package manager installs one.
fn install(path: &std::path::Path, bytes: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = path.with_extension("dpkg-new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn runtime_helpers_are_hashed_at_start_and_at_every_recheck_and_unfit_ones_are_reported_and_ignored() {
    let Some(s) = setup("helpers") else { return };
    if !rustix::process::geteuid().is_root() {
        return; // helpers must be root's files
    }
    let (runc, crun, youki) = (s.dir.path().join("runc"), s.dir.path().join("crun"), s.dir.path().join("youki"));
    install(&runc, b"runc 1.2.0", 0o755);
    install(&crun, b"crun 1.8", 0o777);
    let v1 = s.dir.path().join("v1.json");
    let text = one_scope(&s.trust, &s.cgroup.path, "enforce", &[&v1], None);
    write_policy(s.dir.path(), &format!("runtime_helpers = [{runc:?}, {crun:?}, {youki:?}]\n{text}"));
    let ((mut daemon, out), heard) = start_hearing(&s);

    let applied = only(daemon.kernel().applied.last().unwrap()).digests.clone();
    assert!(applied.contains_key(&Sha256Digest::of(b"runc 1.2.0")), "the helper's content is allowed");
    assert!(!applied.contains_key(&Sha256Digest::of(b"crun 1.8")), "a file others can write is not");
    assert_eq!(applied.len(), 4, "the image's 3 and the helper");
    let record = out.records().into_iter().find(|r| r["action"] == "runtime-helpers").expect("recorded");
    assert_eq!(record["inForce"][0]["sha256"], Sha256Digest::of(b"runc 1.2.0").oci(), "{record}");
    let ignored = record["ignored"].to_string();
    assert!(ignored.contains("writable by its group or others") && ignored.contains("cannot open"), "{record}");
    let warned: Vec<String> = heard.all().iter().map(|n| n.to_string()).collect();
    assert!(warned.iter().any(|w| w.contains("crun") && w.contains("ignored")), "{warned:?}");
    assert!(warned.iter().any(|w| w.contains("youki")), "{warned:?}");

    // A recheck with nothing changed writes nothing and applies the same.
    let records = out.records().len();
    daemon.recheck(SystemTime::now()).unwrap();
    assert_eq!(out.records().len(), records, "{:?}", &out.records()[records..]);

    // An upgrade (a new file renamed over the path): the next recheck, no SIGHUP, allows the new
    // content and no longer the old.
    install(&runc, b"runc 1.2.1", 0o755);
    daemon.recheck(SystemTime::now()).unwrap();
    let applied = only(daemon.kernel().applied.last().unwrap()).digests.clone();
    assert!(applied.contains_key(&Sha256Digest::of(b"runc 1.2.1")));
    assert!(!applied.contains_key(&Sha256Digest::of(b"runc 1.2.0")), "the old runc's bytes are gone");
    assert!(out.records().iter().any(|r| r["action"] == "rechecked"));
    let listed = daemon.control(Request::List, SystemTime::now()).unwrap();
    let helpers = listed.runtime_helpers.expect("scope ls shows the helpers");
    assert_eq!(helpers.in_force[0].sha256, Sha256Digest::of(b"runc 1.2.1"));
    assert_eq!(helpers.ignored.len(), 2);

    // Gone: reported, and the scope keeps its own set.
    std::fs::remove_file(&runc).unwrap();
    daemon.recheck(SystemTime::now()).unwrap();
    assert_eq!(only(daemon.kernel().applied.last().unwrap()).digests.len(), 3);
}

#[test]
fn a_refused_runtime_program_is_named_a_runtime_helper_with_how_to_allow_it() {
    let Some(s) = setup("helper-hint") else { return };
    let ((mut daemon, out), heard) = start_hearing(&s);
    let id = daemon.plan().scopes[0].cgroup_id;
    let runc =
        Event { comm: "runc:[2:INIT]".into(), path: Some("/usr/sbin/runc".into()), ..exec_event(id, Verdict::Denied) };
    let kernel = daemon_kernel(&mut daemon);
    kernel.events.extend([runc.clone(), runc, exec_event(id, Verdict::Denied)]);
    daemon.pump_events(Duration::ZERO).unwrap();
    let events: Vec<_> = out.records().into_iter().filter(|r| r["record"] == "event").collect();
    assert_eq!(events.len(), 3);
    let hint = events[0]["runtimeHelper"].as_str().expect("the runtime's exec is named");
    assert!(hint.contains("runtime_helpers") && hint.contains("/usr/sbin/runc"), "{hint}");
    assert!(events[2].get("runtimeHelper").is_none(), "an unlisted binary is not a runtime helper");
    let warned = heard.all().iter().filter(|n| n.to_string().contains("runtime_helpers")).count();
    assert_eq!(warned, 1, "warned once per path: {:?}", heard.all());
}
