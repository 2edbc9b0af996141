//! In-VM tests of the enforcer (issue 4): per-cgroup scopes, digest sets,
//! enforce and audit modes, the exec and executable-mapping hooks, events.
//!
//! Every test needs root in a kernel with BPF-LSM active and a cgroup v2
//! hierarchy at /sys/fs/cgroup, so each is `#[ignore]`d on the host;
//! `cargo xtask lab` boots Debian kernels under QEMU and runs them there,
//! one test per process (`--ignored --exact`).
//!
//! Each test creates its own cgroup, makes it a scope, and runs children
//! that move themselves into it between fork and exec, so the exec itself is
//! judged by the scope while the test process stays outside.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use bpf_lsm::enforcer::{self, Decision, Enforcer, Hook, Mode, Scope, Verdict};
use bpf_lsm::Digest;
use sha2::{Digest as _, Sha256};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const EPERM: i32 = 1;
const EACCES: i32 = 13;

/// The C library calls the mapping and memfd tests need (std links the C library;
/// declaring them here spares a dependency). x86-64 Linux values.
mod sys {
    use std::ffi::{c_int, c_long, c_void};

    pub const PROT_READ: c_int = 0x1;
    pub const PROT_WRITE: c_int = 0x2;
    pub const PROT_EXEC: c_int = 0x4;
    pub const MAP_SHARED: c_int = 0x1;
    pub const MAP_PRIVATE: c_int = 0x2;
    pub const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

    extern "C" {
        pub fn mmap(
            addr: *mut c_void,
            len: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            offset: c_long,
        ) -> *mut c_void;
        pub fn munmap(addr: *mut c_void, len: usize) -> c_int;
        pub fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int;
        pub fn memfd_create(name: *const std::ffi::c_char, flags: std::ffi::c_uint) -> c_int;
        pub fn truncate(path: *const std::ffi::c_char, len: c_long) -> c_int;
        pub fn setxattr(
            path: *const std::ffi::c_char,
            name: *const std::ffi::c_char,
            value: *const c_void,
            size: usize,
            flags: c_int,
        ) -> c_int;
    }
}

/// The static multi-call binary the lab puts in the initramfs.
fn busybox() -> PathBuf {
    let path = PathBuf::from("/bin/busybox");
    assert!(path.exists(), "{} missing", path.display());
    path
}

fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// A copy of busybox named `busybox-<tag>` (so it still runs applets) with
/// `tag` appended, giving it a SHA-256 of its own. Returns path and digest.
fn unique_busybox(dir: &Path, tag: &str) -> (PathBuf, Digest) {
    let mut bytes = fs::read(busybox()).expect("read busybox");
    bytes.extend_from_slice(format!("\nimgsign-enforcer-{tag}\n").as_bytes());
    let path = dir.join(format!("busybox-{tag}"));
    write_executable(&path, &bytes);
    (path, sha256(&bytes))
}

fn write_executable(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).expect("write executable");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgsign-enf-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A cgroup v2 directory made for one test, removed on drop (its processes
/// have exited by then).
struct Cgroup {
    path: PathBuf,
    id: u64,
}

impl Cgroup {
    fn new(name: &str) -> Self {
        let path = Path::new(CGROUP_ROOT).join(format!("imgsign-{name}-{}", std::process::id()));
        fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("create cgroup {} (cgroup2 mounted?): {e}", path.display()));
        let id = enforcer::cgroup_id(&path).expect("stat cgroup");
        Cgroup { path, id }
    }

    /// A child cgroup `name` below this one.
    fn child(&self, name: &str) -> Self {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        let id = enforcer::cgroup_id(&path).expect("stat cgroup");
        Cgroup { path, id }
    }

    fn procs(&self) -> File {
        OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.procs"))
            .expect("open cgroup.procs")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Deepest first: a cgroup with children cannot be removed.
        let mut path = self.path.as_path();
        while path.starts_with(CGROUP_ROOT) && path != Path::new(CGROUP_ROOT) {
            if fs::remove_dir(path).is_err() {
                break;
            }
            path = path.parent().unwrap();
        }
    }
}

/// A command whose child moves itself into `cgroup` after fork, before exec.
fn in_cgroup(mut cmd: Command, cgroup: &Cgroup) -> Command {
    let procs = cgroup.procs();
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // a write(2) on a file descriptor opened in the parent, with a borrowed
    // byte string: no allocation, no lock, async-signal-safe.
    unsafe {
        cmd.pre_exec(move || (&procs).write_all(b"0"));
    }
    cmd
}

/// Runs `path true` (busybox's `true` applet) in `cgroup` (or, with `None`,
/// where the test runs).
fn run_true(path: &Path, cgroup: Option<&Cgroup>) -> io::Result<ExitStatus> {
    let mut cmd = Command::new(path);
    cmd.arg("true").stdin(Stdio::null());
    match cgroup {
        Some(cgroup) => in_cgroup(cmd, cgroup).status(),
        None => cmd.status(),
    }
}

fn assert_runs(path: &Path, cgroup: Option<&Cgroup>, what: &str) {
    match run_true(path, cgroup) {
        Ok(status) => assert!(
            status.success(),
            "{what}: {} ran but {status}",
            path.display()
        ),
        Err(e) => panic!("{what}: exec of {} failed: {e}", path.display()),
    }
}

fn is_denial(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EPERM | EACCES)) || e.kind() == ErrorKind::PermissionDenied
}

fn assert_denied(path: &Path, cgroup: &Cgroup, what: &str) {
    match run_true(path, Some(cgroup)) {
        Err(e) if is_denial(&e) => println!("{what}: denied {}: {e}", path.display()),
        Err(e) => panic!(
            "{what}: exec of {} failed, but not with EPERM/EACCES: {e}",
            path.display()
        ),
        Ok(status) => panic!("{what}: {} was not denied (ran: {status})", path.display()),
    }
}

/// Maps `file` with `PROT_READ | PROT_EXEC` from a child in `cgroup`, then
/// execs `runner true`. Returns the mmap's error, if it failed.
fn mmap_exec_in(cgroup: &Cgroup, file: &Path, runner: &Path) -> io::Result<ExitStatus> {
    let target = File::open(file).expect("open file to map");
    let mut cmd = Command::new(runner);
    cmd.arg("true").stdin(Stdio::null());
    let mut cmd = in_cgroup(cmd, cgroup);
    // SAFETY: runs in the forked child before exec, after the move into the
    // cgroup. It makes mmap(2)/munmap(2) syscalls on a descriptor opened in
    // the parent and reads errno: no allocation, no lock. The mapping is a
    // fresh one chosen by the kernel (addr NULL), so it aliases no Rust
    // object, and it is unmapped before returning.
    unsafe {
        cmd.pre_exec(move || {
            let addr = sys::mmap(
                std::ptr::null_mut(),
                4096,
                sys::PROT_READ | sys::PROT_EXEC,
                sys::MAP_PRIVATE,
                target.as_raw_fd(),
                0,
            );
            if addr == sys::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            sys::munmap(addr, 4096);
            Ok(())
        });
    }
    cmd.status()
}

/// A reported decision with all its fields side by side.
#[derive(Debug)]
#[allow(dead_code)] // Debug output reads every field
struct Seen {
    cgroup_id: u64,
    scope_cgroup_id: u64,
    host_pid: u32,
    ns_pid: u32,
    pid_ns: u32,
    mnt_ns: u32,
    scope_id: u32,
    mode: Option<Mode>,
    hook: Hook,
    verdict: Verdict,
    comm: String,
    digest: Option<Digest>,
    path: Option<PathBuf>,
    time_ns: u64,
}

impl From<Decision> for Seen {
    fn from(d: Decision) -> Self {
        Seen {
            cgroup_id: d.event.cgroup_id,
            scope_cgroup_id: d.scope_cgroup_id,
            host_pid: d.event.host_pid,
            ns_pid: d.event.ns_pid,
            pid_ns: d.pid_ns,
            mnt_ns: d.mnt_ns,
            scope_id: d.event.scope_id,
            mode: d.event.mode,
            hook: d.event.hook,
            verdict: d.event.verdict,
            comm: d.event.comm,
            digest: d.event.digest,
            path: d.path,
            time_ns: d.time_ns,
        }
    }
}

/// Decisions reported within a short time, all of them.
fn drain_events(enf: &mut Enforcer) -> Vec<Seen> {
    let mut all = enf
        .poll_decisions(Duration::from_secs(2))
        .expect("read events");
    // Let stragglers from the same exec (its mappings) arrive too.
    std::thread::sleep(Duration::from_millis(50));
    while let Some(decision) = enf.next_decision().expect("read event") {
        all.push(decision);
    }
    all.into_iter().map(Seen::from).collect()
}

/// The inode number of the test process's namespace `kind` ("pid", "mnt").
fn ns_inode(kind: &str) -> u32 {
    let ino = fs::metadata(format!("/proc/self/ns/{kind}"))
        .expect("stat namespace")
        .ino();
    u32::try_from(ino).expect("namespace inodes fit in 32 bits")
}

fn attach() -> Enforcer {
    Enforcer::attach().expect("load and attach the enforcer")
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_enforce_allows_listed_content_under_any_name_and_denies_the_rest() {
    let dir = scratch_dir("enforce");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    // Another directory and name (busybox needs a name starting with
    // "busybox" to take the applet from its first argument).
    fs::create_dir(dir.join("elsewhere")).expect("mkdir");
    let renamed = dir.join("elsewhere/busybox-renamed-copy");
    fs::copy(&listed, &renamed).expect("copy");
    let (unlisted, _) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("enforce");

    // Without the enforcer, the unlisted binary runs in the cgroup.
    assert_runs(&unlisted, Some(&cgroup), "before attach");

    let mut enf = attach();
    enf.allow_digests(1, &[listed_digest]).expect("allow");
    enf.add_scope(cgroup.id, 1, Mode::Enforce)
        .expect("add scope");

    assert_runs(&listed, Some(&cgroup), "listed binary");
    assert_runs(
        &renamed,
        Some(&cgroup),
        "copy of the listed binary under another name",
    );
    assert_denied(&unlisted, &cgroup, "unlisted binary");
    assert_denied(&busybox(), &cgroup, "/bin/busybox (not in the set)");

    // Removing the scope lifts enforcement for the cgroup.
    enf.remove_scope(cgroup.id).expect("remove scope");
    enf.remove_scope(cgroup.id)
        .expect("removing it again is not an error");
    assert_runs(&unlisted, Some(&cgroup), "after remove_scope");
    drop(enf);
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_audit_allows_unlisted_and_reports_it() {
    let dir = scratch_dir("audit");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, unlisted_digest) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("audit");

    let mut enf = attach();
    enf.allow_digests(7, &[listed_digest]).expect("allow");
    enf.add_scope(cgroup.id, 7, Mode::Audit).expect("add scope");

    assert_runs(&listed, Some(&cgroup), "listed binary, audit");
    let quiet = drain_events(&mut enf);
    assert!(
        quiet.is_empty(),
        "allowed content must not be reported without report_allowed: {quiet:?}"
    );

    let mut child = in_cgroup(
        {
            let mut c = Command::new(&unlisted);
            c.arg("true").stdin(Stdio::null());
            c
        },
        &cgroup,
    )
    .spawn()
    .expect("audit mode must let the unlisted binary run");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());

    let events = drain_events(&mut enf);
    println!("events: {events:?}");
    let exec = events
        .iter()
        .find(|e| e.hook == Hook::BprmCheck)
        .unwrap_or_else(|| panic!("no exec event for the unlisted binary: {events:?}"));
    assert_eq!(exec.verdict, Verdict::Audit);
    assert_eq!(exec.mode, Some(Mode::Audit));
    assert_eq!(exec.cgroup_id, cgroup.id, "event cgroup id");
    assert_eq!(exec.scope_id, 7);
    assert_eq!(exec.digest, Some(unlisted_digest), "event digest");
    assert_eq!(exec.host_pid, pid, "event host pid");
    assert_eq!(
        exec.ns_pid, pid,
        "the lab runs in the initial pid namespace"
    );
    assert!(!exec.comm.is_empty());
    assert_eq!(exec.scope_cgroup_id, cgroup.id);
    assert_eq!(exec.path.as_deref(), Some(unlisted.as_path()), "event path");
    assert_eq!(exec.pid_ns, ns_inode("pid"), "pid namespace inode");
    assert_eq!(exec.mnt_ns, ns_inode("mnt"), "mount namespace inode");
    assert!(exec.time_ns > 0);
    // The loader maps the binary's code: reported by the mapping hook too.
    assert!(
        events.iter().any(|e| e.hook == Hook::MmapFile
            && e.verdict == Verdict::Audit
            && e.digest == Some(unlisted_digest)
            && e.host_pid == pid),
        "no mmap_file audit event for the unlisted binary: {events:?}"
    );
    assert_eq!(enf.dropped_events().expect("stats"), 0);
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_denial_is_reported_with_cgroup_and_digest() {
    let dir = scratch_dir("event");
    let (unlisted, unlisted_digest) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("event");

    let mut enf = attach();
    enf.add_scope(cgroup.id, 3, Mode::Enforce)
        .expect("add scope");
    assert_denied(&unlisted, &cgroup, "unlisted binary, empty set");

    let events = drain_events(&mut enf);
    println!("events: {events:?}");
    let denial = events
        .iter()
        .find(|e| e.hook == Hook::BprmCheck && e.verdict == Verdict::Deny)
        .unwrap_or_else(|| panic!("no exec denial event: {events:?}"));
    assert_eq!(denial.cgroup_id, cgroup.id, "event cgroup id");
    assert_eq!(denial.digest, Some(unlisted_digest), "event digest");
    assert_eq!(denial.scope_id, 3);
    assert_eq!(denial.mode, Some(Mode::Enforce));
    assert_ne!(
        denial.host_pid,
        std::process::id(),
        "the child, not the test"
    );
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_listed_binary_modified_after_loading_is_denied() {
    let dir = scratch_dir("modified");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let cgroup = Cgroup::new("modified");

    let mut enf = attach();
    enf.allow_digests(2, &[listed_digest]).expect("allow");
    enf.add_scope(cgroup.id, 2, Mode::Enforce)
        .expect("add scope");
    assert_runs(&listed, Some(&cgroup), "listed binary before the change");

    // Same inode, same path, new bytes.
    let mut file = OpenOptions::new()
        .append(true)
        .open(&listed)
        .expect("open for append");
    file.write_all(b"tampered\n").expect("append");
    drop(file);
    assert_denied(&listed, &cgroup, "listed binary after an in-place append");

    // Restoring the listed bytes makes it run again: the decision follows
    // the content at each exec.
    let bytes = fs::read(&listed).unwrap();
    let original = &bytes[..bytes.len() - b"tampered\n".len()];
    assert_eq!(sha256(original), listed_digest);
    fs::write(&listed, original).expect("restore");
    assert_runs(&listed, Some(&cgroup), "listed binary restored");
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_tasks_outside_scopes_are_untouched() {
    let dir = scratch_dir("outside");
    let (unlisted, _) = unique_busybox(&dir, "unlisted");
    let scoped = Cgroup::new("outside-scoped");
    let sibling = Cgroup::new("outside-sibling");

    let mut enf = attach();
    enf.add_scope(scoped.id, 4, Mode::Enforce)
        .expect("add scope");

    // Enforcement is live ...
    assert_denied(&unlisted, &scoped, "unlisted binary in the scope");
    // ... but not for the test process's own cgroup or a sibling cgroup.
    assert_runs(&unlisted, None, "unlisted binary from the test's cgroup");
    assert_runs(
        &unlisted,
        Some(&sibling),
        "unlisted binary in a sibling cgroup",
    );
    let events = drain_events(&mut enf);
    assert!(
        events.iter().all(|e| e.cgroup_id == scoped.id),
        "events from outside the scope: {events:?}"
    );
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_scope_covers_its_cgroup_subtree() {
    let dir = scratch_dir("subtree");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, unlisted_digest) = unique_busybox(&dir, "unlisted");
    let top = Cgroup::new("subtree");
    let nested = top.child("a").child("b");
    let inner = top.child("inner");

    let mut enf = attach();
    enf.allow_digests(6, &[listed_digest]).expect("allow");
    enf.add_scope(top.id, 6, Mode::Enforce).expect("add scope");

    // A task two levels below the scope's cgroup is in the scope: moving
    // into a child cgroup does not escape enforcement.
    assert_runs(&listed, Some(&nested), "listed binary in a nested cgroup");
    assert_denied(&unlisted, &nested, "unlisted binary in a nested cgroup");
    let events = drain_events(&mut enf);
    let denial = events
        .iter()
        .find(|e| e.hook == Hook::BprmCheck && e.digest == Some(unlisted_digest))
        .unwrap_or_else(|| panic!("no exec event from the nested cgroup: {events:?}"));
    assert_eq!(denial.cgroup_id, nested.id, "the task's own cgroup");
    assert_eq!(denial.scope_cgroup_id, top.id, "the scope's cgroup");
    assert_eq!(denial.scope_id, 6);

    // The nearest scope wins: an audit scope inside the enforcing one.
    enf.add_scope(inner.id, 16, Mode::Audit)
        .expect("add inner scope");
    assert_runs(
        &unlisted,
        Some(&inner),
        "unlisted binary in the inner audit scope",
    );
    assert_denied(&unlisted, &nested, "unlisted binary still denied beside it");
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.verdict == Verdict::Audit
            && e.cgroup_id == inner.id
            && e.scope_cgroup_id == inner.id
            && e.scope_id == 16),
        "no audit event from the inner scope: {events:?}"
    );
    drop((nested, inner));
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_executable_mapping_of_unlisted_file_is_denied() {
    let dir = scratch_dir("mmap");
    let (runner, runner_digest) = unique_busybox(&dir, "runner");
    let (listed_lib, listed_lib_digest) = unique_busybox(&dir, "listed-lib");
    let (unlisted_lib, unlisted_digest) = unique_busybox(&dir, "unlisted-lib");
    let enforced = Cgroup::new("mmap-enforce");
    let audited = Cgroup::new("mmap-audit");

    let mut enf = attach();
    enf.allow_digests(5, &[runner_digest, listed_lib_digest])
        .expect("allow");
    enf.add_scope(enforced.id, 5, Mode::Enforce)
        .expect("add scope");
    enf.add_scope(audited.id, 5, Mode::Audit)
        .expect("add scope");

    let ok = mmap_exec_in(&enforced, &listed_lib, &runner).expect("mmap of a listed file");
    assert!(ok.success());
    match mmap_exec_in(&enforced, &unlisted_lib, &runner) {
        Err(e) if is_denial(&e) => println!("denied PROT_EXEC mapping: {e}"),
        Err(e) => panic!("mmap failed, but not with EPERM/EACCES: {e}"),
        Ok(status) => panic!("PROT_EXEC mapping of an unlisted file was allowed ({status})"),
    }
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::MmapFile
            && e.verdict == Verdict::Deny
            && e.cgroup_id == enforced.id
            && e.digest == Some(unlisted_digest)),
        "no mmap_file denial event: {events:?}"
    );

    let audit = mmap_exec_in(&audited, &unlisted_lib, &runner).expect("audit allows the mapping");
    assert!(audit.success());
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::MmapFile
            && e.verdict == Verdict::Audit
            && e.cgroup_id == audited.id
            && e.digest == Some(unlisted_digest)),
        "no mmap_file audit event: {events:?}"
    );

    // A mapping without PROT_EXEC is not judged: reading an unlisted file
    // works in the enforcing scope (busybox cat maps nothing executable).
    let out = in_cgroup(
        {
            let mut c = Command::new(&runner);
            c.args(["cat"]).arg(&unlisted_lib).stdout(Stdio::null());
            c
        },
        &enforced,
    )
    .status()
    .expect("read an unlisted file");
    assert!(out.success());
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_event_carries_the_namespaced_pid() {
    let dir = scratch_dir("pidns");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, unlisted_digest) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("pidns");

    let mut enf = attach();
    enf.allow_digests(8, &[listed_digest]).expect("allow");
    enf.add_scope(cgroup.id, 8, Mode::Audit).expect("add scope");

    // busybox unshare forks into a new pid namespace, where the child that
    // execs the unlisted binary is pid 1.
    let mut cmd = Command::new(&listed);
    cmd.args(["unshare", "--pid", "--fork"])
        .arg(&unlisted)
        .arg("true")
        .stdin(Stdio::null());
    let status = in_cgroup(cmd, &cgroup).status().expect("run unshare");
    assert!(status.success(), "unshare ... true: {status}");

    let events = drain_events(&mut enf);
    println!("events: {events:?}");
    let exec = events
        .iter()
        .find(|e| e.hook == Hook::BprmCheck && e.digest == Some(unlisted_digest))
        .unwrap_or_else(|| panic!("no exec event for the unlisted binary: {events:?}"));
    assert_eq!(exec.verdict, Verdict::Audit);
    assert_eq!(exec.ns_pid, 1, "pid in the new pid namespace");
    assert_ne!(exec.pid_ns, ns_inode("pid"), "a pid namespace of its own");
    assert_ne!(exec.pid_ns, 0);
    assert_eq!(exec.mnt_ns, ns_inode("mnt"), "the same mount namespace");
    assert_ne!(exec.host_pid, 1, "pid in the initial pid namespace");
    assert_eq!(exec.cgroup_id, cgroup.id);
    fs::remove_dir_all(dir).ok();
}

/// An anonymous memory file (memfd, no close-on-exec) holding `bytes`.
fn memfd_with(bytes: &[u8]) -> File {
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new
    // descriptor or -1; a new descriptor is owned by nothing else, so File
    // may take it.
    let file = unsafe {
        let fd = sys::memfd_create(c"imgsign-payload".as_ptr(), 0);
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        File::from_raw_fd(fd)
    };
    (&file).write_all(bytes).expect("fill memfd");
    file
}

/// Runs the memfd's content as busybox `true` through /proc/self/fd (the
/// kernel opens the memfd itself, as `fexecve` does) in `cgroup`.
fn run_memfd(memfd: &File, cgroup: &Cgroup) -> io::Result<ExitStatus> {
    let mut cmd = Command::new(format!("/proc/self/fd/{}", memfd.as_raw_fd()));
    cmd.arg0("busybox").arg("true").stdin(Stdio::null());
    in_cgroup(cmd, cgroup).status()
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_memfd_exec_is_judged_by_content() {
    let listed_bytes = fs::read(busybox()).expect("read busybox");
    let listed_digest = sha256(&listed_bytes);
    let mut unlisted_bytes = listed_bytes.clone();
    unlisted_bytes.extend_from_slice(b"\nimgsign-memfd-payload\n");
    let unlisted_digest = sha256(&unlisted_bytes);
    let cgroup = Cgroup::new("memfd");

    let listed = memfd_with(&listed_bytes);
    let unlisted = memfd_with(&unlisted_bytes);
    // Without a scope, both run (the memfd route itself works).
    assert!(run_memfd(&unlisted, &cgroup).expect("memfd exec").success());

    let mut enf = attach();
    enf.allow_digests(11, &[listed_digest]).expect("allow");
    enf.set_scope(
        cgroup.id,
        Scope {
            id: 11,
            mode: Mode::Enforce,
            report_allowed: true,
        },
    )
    .expect("add scope");

    match run_memfd(&unlisted, &cgroup) {
        Err(e) if is_denial(&e) => println!("denied memfd exec: {e}"),
        Err(e) => panic!("memfd exec failed, but not with EPERM/EACCES: {e}"),
        Ok(status) => panic!("exec of an unlisted memfd was not denied ({status})"),
    }
    let status = run_memfd(&listed, &cgroup).expect("exec of a memfd with listed content");
    assert!(status.success());

    let events = drain_events(&mut enf);
    println!("events: {events:?}");
    let memfd_path = |e: &Seen| {
        e.path
            .as_ref()
            .is_some_and(|p| p.to_string_lossy().starts_with("/memfd:imgsign-payload"))
    };
    assert!(
        events.iter().any(|e| e.hook == Hook::BprmCheck
            && e.verdict == Verdict::Deny
            && e.digest == Some(unlisted_digest)
            && memfd_path(e)),
        "no denial event for the memfd: {events:?}"
    );
    // report_allowed: the allowed exec is reported too.
    assert!(
        events.iter().any(|e| e.hook == Hook::BprmCheck
            && e.verdict == Verdict::Allow
            && e.digest == Some(listed_digest)
            && memfd_path(e)),
        "no allow event for the listed memfd: {events:?}"
    );
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_digest_set_replacement_never_denies_a_listed_binary() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const EXECS: usize = 40;
    let dir = scratch_dir("replace");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (next, next_digest) = unique_busybox(&dir, "next");
    let cgroup = Arc::new(Cgroup::new("replace"));

    let mut enf = attach();
    enf.replace_digests(12, &[listed_digest])
        .expect("first set");
    enf.add_scope(cgroup.id, 12, Mode::Enforce)
        .expect("add scope");

    // One thread execs the listed binary in a loop while this one replaces
    // the scope's set over and over with sets that all hold it (plus filler,
    // so each replacement takes a while).
    let done = Arc::new(AtomicBool::new(false));
    let runner = {
        let (done, cgroup, listed) = (done.clone(), cgroup.clone(), listed.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            for i in 0..EXECS {
                match run_true(&listed, Some(&cgroup)) {
                    Ok(status) if status.success() => {}
                    Ok(status) => failures.push(format!("exec {i}: {status}")),
                    Err(e) => failures.push(format!("exec {i}: {e}")),
                }
            }
            done.store(true, Ordering::SeqCst);
            failures
        })
    };
    // Both ways of replacing: the same scope id with a new set
    // (replace_digests), and a fresh scope id the cgroup is switched to,
    // then the old scope's digests revoked.
    let (mut replacements, mut scope_id, mut current) = (0u32, 12u32, vec![listed_digest]);
    while !done.load(Ordering::SeqCst) {
        let mut set: Vec<Digest> = (0..300u32)
            .map(|j| sha256(format!("filler {replacements} {j}").as_bytes()))
            .collect();
        set.insert(150, listed_digest);
        if replacements.is_multiple_of(2) {
            enf.replace_digests(scope_id, &set).expect("replace");
        } else {
            let fresh = 1000 + replacements;
            enf.allow_digests(fresh, &set).expect("fill fresh scope id");
            enf.add_scope(cgroup.id, fresh, Mode::Enforce)
                .expect("switch");
            enf.revoke_digests(scope_id, &current).expect("revoke old");
            scope_id = fresh;
        }
        current = set;
        replacements += 1;
    }
    let failures = runner.join().expect("exec thread");
    println!("{EXECS} execs during {replacements} replacements");
    assert!(
        failures.is_empty(),
        "listed binary denied during set replacement: {failures:?}"
    );
    assert!(replacements >= 2, "replacements did not overlap the execs");
    let drops = drain_events(&mut enf);
    assert!(drops.is_empty(), "unexpected decisions reported: {drops:?}");

    // A replacement really replaces: the old content is gone, the new runs.
    enf.replace_digests(scope_id, &[next_digest])
        .expect("replace");
    assert_denied(&listed, &cgroup, "binary dropped from the set");
    assert_runs(&next, Some(&cgroup), "binary added by the replacement");
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_rewrite_race_never_runs_unlisted_content() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const EXECS: usize = 60;
    // Same length, so a marker read from the end of the running executable
    // tells which content the kernel actually ran.
    const LISTED_MARK: &str = "\nimgsign-race-LISTED\n";
    const UNLISTED_MARK: &str = "\nimgsign-race-UNLIST\n";
    let base = fs::read(busybox()).expect("read busybox");
    let listed = [&base[..], LISTED_MARK.as_bytes()].concat();
    let unlisted = [&base[..], UNLISTED_MARK.as_bytes()].concat();
    let dir = scratch_dir("race");
    let target = dir.join("busybox-race");
    write_executable(&target, &listed);
    let cgroup = Cgroup::new("race");

    let mut enf = attach();
    enf.allow_digests(13, &[sha256(&listed)]).expect("allow");
    enf.add_scope(cgroup.id, 13, Mode::Enforce)
        .expect("add scope");

    // The writer flips the file between the two contents, in place
    // (truncate + write, refused with ETXTBSY while it runs) and by
    // renaming a fresh file onto the path.
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (done, dir, target) = (done.clone(), dir.clone(), target.clone());
        std::thread::spawn(move || {
            let mut flips = 0u32;
            while !done.load(Ordering::SeqCst) {
                let content = if flips.is_multiple_of(2) {
                    &unlisted
                } else {
                    &listed
                };
                if flips % 4 < 2 {
                    let _ = fs::write(&target, content);
                } else {
                    let tmp = dir.join("next");
                    write_executable(&tmp, content);
                    let _ = fs::rename(&tmp, &target);
                }
                flips += 1;
            }
            flips
        })
    };

    let (mut listed_runs, mut refused, mut unlisted_runs) = (0, 0, Vec::new());
    for i in 0..EXECS {
        let mut cmd = Command::new(&target);
        cmd.args([
            "tail",
            "-c",
            &LISTED_MARK.len().to_string(),
            "/proc/self/exe",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
        match in_cgroup(cmd, &cgroup).output() {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                if text == UNLISTED_MARK {
                    unlisted_runs.push(i);
                } else if text == LISTED_MARK {
                    listed_runs += 1;
                }
            }
            Err(e) if is_denial(&e) => refused += 1,
            Err(_) => {} // ETXTBSY, ENOEXEC of a half-written file, ...
        }
    }
    done.store(true, Ordering::SeqCst);
    let flips = writer.join().expect("writer");
    println!(
        "{EXECS} execs, {flips} flips: {listed_runs} listed runs, {refused} refused, \
         unlisted runs at {unlisted_runs:?}"
    );
    assert!(
        unlisted_runs.is_empty(),
        "unlisted content ran {} times",
        unlisted_runs.len()
    );
    assert!(
        listed_runs > 0,
        "the listed content never ran: no race exercised"
    );
    assert!(
        refused > 0,
        "the unlisted content was never tried: no race exercised"
    );
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_scripts_need_a_listed_script_and_a_listed_interpreter() {
    let dir = scratch_dir("script");
    let (interp, interp_digest) = unique_busybox(&dir, "interp");
    let (unlisted_interp, _) = unique_busybox(&dir, "unlisted-interp");
    let script = |name: &str, interp: &Path, text: &str| {
        let bytes = format!("#!{} sh\necho {text}\n", interp.display()).into_bytes();
        let path = dir.join(name);
        write_executable(&path, &bytes);
        (path, sha256(&bytes))
    };
    let (listed, listed_digest) = script("listed.sh", &interp, "listed-script");
    let (unlisted, _) = script("unlisted.sh", &interp, "unlisted-script");
    let (bad_interp, bad_interp_digest) = script("bad-interp.sh", &unlisted_interp, "x");
    let cgroup = Cgroup::new("script");

    let mut enf = attach();
    enf.allow_digests(14, &[interp_digest, listed_digest, bad_interp_digest])
        .expect("allow");
    enf.add_scope(cgroup.id, 14, Mode::Enforce)
        .expect("add scope");

    let run = |path: &Path| {
        let mut cmd = Command::new(path);
        cmd.stdin(Stdio::null());
        in_cgroup(cmd, &cgroup).output()
    };
    let out = run(&listed).expect("listed script through its listed interpreter");
    assert!(out.status.success(), "listed script: {:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "listed-script\n");
    for (path, what) in [
        (&unlisted, "unlisted script, listed interpreter"),
        (&bad_interp, "listed script, unlisted interpreter"),
    ] {
        match run(path) {
            Err(e) if is_denial(&e) => println!("{what}: denied: {e}"),
            Err(e) => panic!("{what}: failed, but not with EPERM/EACCES: {e}"),
            Ok(out) => panic!(
                "{what}: not denied ({}; stdout {:?})",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            ),
        }
    }
    fs::remove_dir_all(dir).ok();
}

/// Every file the test process maps executable (itself, the dynamic
/// loader, its libraries), by path, from /proc/self/maps.
fn own_executable_files() -> Vec<PathBuf> {
    let maps = fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    let mut files: Vec<PathBuf> = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    files.sort();
    files.dedup();
    files
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_loader_and_preload_tricks_are_denied_at_the_mapping() {
    let dir = scratch_dir("ldso");
    let files = own_executable_files();
    println!("executable mappings of the test: {files:?}");
    let ld_so = files
        .iter()
        .find(|p| p.to_string_lossy().contains("ld-linux"))
        .expect("the test binary is dynamic: ld.so mapped")
        .clone();
    let lib = files
        .iter()
        .find(|p| p.to_string_lossy().contains("libgcc_s") || p.to_string_lossy().contains("libc."))
        .expect("a shared library mapped")
        .clone();
    let listed_digests: Vec<Digest> = files
        .iter()
        .map(|p| sha256(&fs::read(p).expect("read mapped file")))
        .collect();

    // A listed program (the test binary, same bytes) and an unlisted one
    // (same program, one more byte), a listed and an unlisted library.
    let me = fs::read(std::env::current_exe().expect("current_exe")).expect("read self");
    let program = dir.join("program");
    write_executable(&program, &me);
    let unlisted_program = dir.join("unlisted-program");
    write_executable(&unlisted_program, &[&me[..], b"\n"].concat());
    let lib_bytes = fs::read(&lib).expect("read library");
    let listed_lib = dir.join("listed.so");
    fs::write(&listed_lib, &lib_bytes).unwrap();
    let unlisted_lib = dir.join("unlisted.so");
    let unlisted_lib_bytes = [&lib_bytes[..], b"\nimgsign-preload\n"].concat();
    fs::write(&unlisted_lib, &unlisted_lib_bytes).unwrap();
    let cgroup = Cgroup::new("ldso");

    let mut enf = attach();
    enf.allow_digests(15, &listed_digests).expect("allow");
    enf.add_scope(cgroup.id, 15, Mode::Enforce)
        .expect("add scope");

    let run = |exe: &Path, args: &[&std::ffi::OsStr], preload: Option<&Path>| {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .args(["--list", "--format", "terse"])
            .stdin(Stdio::null());
        if let Some(lib) = preload {
            cmd.env("LD_PRELOAD", lib);
        }
        in_cgroup(cmd, &cgroup).output().expect("spawn")
    };

    // ld.so /path/program: the exec is of ld.so (listed); the program is
    // only mapped, so the mapping hook is what judges it.
    let ok = run(&ld_so, &[program.as_os_str()], None);
    assert!(ok.status.success(), "ld.so listed program: {ok:?}");
    let refused = run(&ld_so, &[unlisted_program.as_os_str()], None);
    assert!(
        !refused.status.success(),
        "ld.so ran an unlisted program: {:?}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let unlisted_program_digest = sha256(&fs::read(&unlisted_program).unwrap());
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::MmapFile
            && e.verdict == Verdict::Deny
            && e.digest == Some(unlisted_program_digest)),
        "no mapping denial for `ld.so unlisted-program`: {events:?}"
    );

    // LD_PRELOAD: ld.so cannot map an unlisted library; it says so and
    // runs the program without it. A listed library preloads silently.
    let preloaded = run(&program, &[], Some(&listed_lib));
    assert!(preloaded.status.success(), "{preloaded:?}");
    assert!(
        !String::from_utf8_lossy(&preloaded.stderr).contains("cannot be preloaded"),
        "listed library refused: {preloaded:?}"
    );
    let refused = run(&program, &[], Some(&unlisted_lib));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    println!("LD_PRELOAD of an unlisted library: {stderr}");
    assert!(
        stderr.contains("cannot be preloaded"),
        "ld.so did not refuse the unlisted library: {refused:?}"
    );
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::MmapFile
            && e.verdict == Verdict::Deny
            && e.digest == Some(sha256(&unlisted_lib_bytes))
            && e.path.as_deref() == Some(unlisted_lib.as_path())),
        "no mapping denial for the preloaded library: {events:?}"
    );
    fs::remove_dir_all(dir).ok();
}

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
    let cgroup_id: u64 = std::env::var("IMGSIGN_ENF_CGROUP")
        .unwrap()
        .parse()
        .unwrap();
    let digest: Digest = hex::decode(std::env::var("IMGSIGN_ENF_DIGEST").unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let mut enf = Enforcer::attach_pinned(Path::new(&dir)).expect("attach pinned");
    enf.allow_digests(21, &[digest]).expect("allow");
    enf.add_scope(cgroup_id, 21, Mode::Enforce)
        .expect("add scope");
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
        .args([
            "--ignored",
            "--exact",
            "helper_pinned_daemon",
            "--nocapture",
        ])
        .env(PIN_DIR_ENV, &pin_dir)
        .env("IMGSIGN_ENF_CGROUP", cgroup.id.to_string())
        .env("IMGSIGN_ENF_DIGEST", hex::encode(listed_digest))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let stdout = io::BufReader::new(daemon.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(READY));
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
    assert_eq!(
        enf.scopes_in_force().expect("scopes"),
        vec![(
            cgroup.id,
            Scope {
                id: 21,
                mode: Mode::Enforce,
                report_allowed: false
            }
        )]
    );
    assert_eq!(enf.digest_count(21).expect("count"), 1);
    // The denial made while no process held the ring buffer waited in it.
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.verdict == Verdict::Deny
            && e.cgroup_id == cgroup.id
            && e.digest == Some(unlisted_digest)),
        "the denial made while the daemon was dead was not kept: {events:?}"
    );
    enf.replace_digests(21, &[listed_digest, unlisted_digest])
        .expect("replace through the pins");
    assert_runs(
        &unlisted,
        Some(&cgroup),
        "unlisted binary after it was allowed",
    );
    drop(enf);

    // attach_pinned on a pinned enforcer opens it rather than loading another.
    let mut again = Enforcer::attach_pinned(&pin_dir).expect("attach pinned again");
    assert_eq!(again.digest_count(21).expect("count"), 2);
    again
        .replace_digests(21, &[listed_digest])
        .expect("replace");
    assert_denied(&unlisted, &cgroup, "unlisted binary, set narrowed again");
    drop(again);

    // Unpinning ends enforcement.
    Enforcer::unpin(&pin_dir).expect("unpin");
    assert!(!pin_dir.exists(), "pin directory left behind");
    let mut ran = false;
    for _ in 0..40 {
        if run_true(&unlisted, Some(&cgroup)).is_ok_and(|s| s.success()) {
            ran = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ran, "still enforced after unpin");
    fs::remove_dir_all(dir).ok();
}

/// Wall time of each of `runs` fork+execs of `path true` from this process
/// (every exec must succeed), with `before` run ahead of each, untimed.
fn exec_times(path: &Path, runs: u32, mut before: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|i| {
            before();
            let started = std::time::Instant::now();
            match run_true(path, None) {
                Ok(status) if status.success() => {}
                other => panic!("exec {i} of {} failed: {other:?}", path.display()),
            }
            started.elapsed()
        })
        .collect()
}

/// Moves this process back to the root cgroup (so test cgroups can go).
fn leave_cgroups() {
    fs::write(Path::new(CGROUP_ROOT).join("cgroup.procs"), b"0").expect("leave the cgroup");
}

/// Loads an IMA policy that measures execs of files owned by uid 4242 and
/// appraises execs of files owned by uid 4243 (so no other file in the lab
/// is affected). Without CONFIG_IMA_WRITE_POLICY the policy can be written
/// once per boot: only this test writes it.
fn load_ima_policy() -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .open("/sys/kernel/security/ima/policy")?;
    f.write_all(b"measure func=BPRM_CHECK fowner=4242\nappraise func=BPRM_CHECK fowner=4243\n")
}

/// Sets `security.ima` to a SHA-256 hash (IMA_XATTR_DIGEST_NG, 0x04, then
/// the algorithm, HASH_ALGO_SHA256 = 4, then the digest).
fn set_ima_hash(path: &Path, digest: &Digest) -> io::Result<()> {
    let mut value = vec![0x04u8, 0x04];
    value.extend_from_slice(digest);
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated path and name and a value buffer of the given
    // size, all alive for the call.
    let rc = unsafe {
        sys::setxattr(
            c_path.as_ptr(),
            c"security.ima".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Median and 10th percentile of a sample, with its size. The 10th
/// percentile is reported too because the lab's vCPUs are emulated threads
/// of a shared host: preemption of the emulator only ever adds time, so the
/// low end of the sample is the steadier view of the kernel's own cost.
#[derive(Clone, Copy)]
struct Stat {
    median: Duration,
    p10: Duration,
}

fn stat(mut times: Vec<Duration>) -> Stat {
    times.sort();
    Stat {
        median: times[times.len() / 2],
        p10: times[times.len() / 10],
    }
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} ms (p10 {:.2} ms)",
            self.median.as_secs_f64() * 1e3,
            self.p10.as_secs_f64() * 1e3
        )
    }
}

/// "A.AAx (p10 B.BBx)": the ratios of `a` to `b`.
fn ratios(a: Stat, b: Stat) -> String {
    format!(
        "{:.2}x (p10 {:.2}x)",
        a.median.as_secs_f64() / b.median.as_secs_f64(),
        a.p10.as_secs_f64() / b.p10.as_secs_f64()
    )
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_bench_exec_latency() {
    // Rounds of each configuration, interleaved, so that drift over the
    // boot and load on the host hit all of them alike.
    const ROUNDS: u32 = 5;
    const RUNS: u32 = 20;
    let dir = scratch_dir("bench");
    let (small, small_digest) = unique_busybox(&dir, "small");
    // A 20 MB listed binary: busybox with padding after its last segment.
    let mut big_bytes = fs::read(busybox()).unwrap();
    big_bytes.resize(20 << 20, 0x5a);
    let big = dir.join("busybox-big");
    write_executable(&big, &big_bytes);
    let big_digest = sha256(&big_bytes);
    let cgroup = Cgroup::new("bench");
    let none = || {};
    // An open for write before an exec invalidates the file's cache entry,
    // so that exec hashes (as every exec did before the cache).
    let invalidate = || drop(OpenOptions::new().write(true).open(&small).unwrap());

    // The whole benchmark runs inside the cgroup, so the loop is a plain
    // fork+exec (no cgroup move per child, which costs an RCU grace period
    // and would dilute every ratio). Once the cgroup is a scope this process
    // is enforced too; it only forks, execs listed files and loads programs.
    (&cgroup.procs()).write_all(b"0").expect("enter the cgroup");
    let _ = exec_times(&small, 3, none); // warm the page cache
    let (mut bare, mut unscoped, mut cold, mut warm) = (vec![], vec![], vec![], vec![]);
    let (mut big_bare, mut big_first, mut big_warm) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        bare.extend(exec_times(&small, RUNS, none));
        big_bare.extend(exec_times(&big, 3, none));
        let mut enf = attach();
        enf.allow_digests(30, &[small_digest, big_digest])
            .expect("allow");
        std::thread::sleep(Duration::from_millis(200));
        unscoped.extend(exec_times(&small, RUNS, none));
        enf.add_scope(cgroup.id, 30, Mode::Enforce)
            .expect("add scope");
        cold.extend(exec_times(&small, RUNS, invalidate));
        let _ = exec_times(&small, 1, none); // fills the cache
        let hits = enf.cache_hits().unwrap();
        warm.extend(exec_times(&small, RUNS, none));
        assert!(
            enf.cache_hits().unwrap() >= hits + u64::from(RUNS),
            "warm execs did not use the cache"
        );
        big_first.extend(exec_times(&big, 1, none));
        let hits = enf.cache_hits().unwrap();
        big_warm.extend(exec_times(&big, 3, none));
        assert!(
            enf.cache_hits().unwrap() >= hits + 3,
            "the second exec of the 20 MB binary did not use the cache"
        );
        assert_eq!(enf.dropped_events().expect("stats"), 0);
        drop(enf);
        // Detaching leaves RCU work behind: let it settle before timing.
        std::thread::sleep(Duration::from_millis(200));
    }
    let (bare, unscoped, cold, warm) = (stat(bare), stat(unscoped), stat(cold), stat(warm));
    let (big_bare, big_first, big_warm) = (stat(big_bare), stat(big_first), stat(big_warm));

    // Emulated (TCG) kernels exaggerate hashing against everything else:
    // read the cold ratios as an upper bound, not as the cost on hardware.
    println!(
        "BENCH fork+exec of a {} KB listed binary, {ROUNDS}x{RUNS} execs each, interleaved: \
         bare {bare}; enforcer loaded, task unscoped {unscoped} = {}; enforced cold (hash \
         every exec) {cold} = {}; enforced warm cache {warm} = {}",
        fs::metadata(&small).unwrap().len() / 1024,
        ratios(unscoped, bare),
        ratios(cold, bare),
        ratios(warm, bare),
    );
    println!(
        "BENCH-20MB listed binary: bare {big_bare} ({ROUNDS}x3); enforced first exec \
         {big_first} ({ROUNDS}) = {}; enforced warm {big_warm} ({ROUNDS}x3) = {}",
        ratios(big_first, big_bare),
        ratios(big_warm, big_bare),
    );

    // The peer: the same loop under IMA (no BPF program attached now), on
    // copies owned by the uids the policy names.
    let measured = dir.join("busybox-ima-measure");
    let appraised = dir.join("busybox-ima-appraise");
    fs::copy(&small, &measured).unwrap();
    fs::copy(&small, &appraised).unwrap();
    std::os::unix::fs::chown(&measured, Some(4242), None).unwrap();
    std::os::unix::fs::chown(&appraised, Some(4243), None).unwrap();
    if let Err(e) = set_ima_hash(&appraised, &small_digest) {
        println!("BENCH-IMA not measured: setxattr security.ima: {e}");
        leave_cgroups();
        return;
    }
    if let Err(e) = load_ima_policy() {
        println!("BENCH-IMA not measured: no IMA policy could be loaded: {e}");
        leave_cgroups();
        return;
    }
    // Appraisal must refuse a file whose hash does not match, or it is not
    // appraising at all.
    let wrong = dir.join("busybox-ima-wrong");
    fs::copy(&small, &wrong).unwrap();
    std::os::unix::fs::chown(&wrong, Some(4243), None).unwrap();
    set_ima_hash(&wrong, &[0u8; 32]).expect("setxattr");
    let refused = run_true(&wrong, None);
    assert!(
        matches!(&refused, Err(e) if is_denial(e)),
        "IMA appraisal let a file with a wrong hash run: {refused:?}"
    );
    let (mut bare2, mut measure, mut appraise) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        bare2.extend(exec_times(&small, RUNS, none));
        measure.extend(exec_times(&measured, RUNS, none));
        appraise.extend(exec_times(&appraised, RUNS, none));
    }
    let (bare2, measure, appraise) = (stat(bare2), stat(measure), stat(appraise));
    let logged = fs::read_to_string("/sys/kernel/security/ima/ascii_runtime_measurements")
        .unwrap_or_default()
        .contains("busybox-ima-measure");
    println!(
        "BENCH-IMA same loop, no BPF program, {ROUNDS}x{RUNS} interleaved: bare {bare2}; \
         IMA measure func=BPRM_CHECK {measure} = {} (in the measurement list: {logged}); \
         IMA appraise func=BPRM_CHECK, security.ima sha256 hash {appraise} = {} (a wrong \
         hash is refused)",
        ratios(measure, bare2),
        ratios(appraise, bare2),
    );
    leave_cgroups();
    fs::remove_dir_all(dir).ok();
}

/// In a child in `cgroup`: maps `file` with `prot`, then asks for
/// `PROT_READ | PROT_EXEC` with mprotect(2), then execs `runner true`.
/// Returns the first error.
fn mprotect_exec_in(
    cgroup: &Cgroup,
    file: &Path,
    prot: std::ffi::c_int,
    runner: &Path,
) -> io::Result<ExitStatus> {
    let target = File::open(file).expect("open file to map");
    let mut cmd = Command::new(runner);
    cmd.arg("true").stdin(Stdio::null());
    let mut cmd = in_cgroup(cmd, cgroup);
    // SAFETY: runs in the forked child before exec, after the move into the
    // cgroup: mmap(2), mprotect(2) and munmap(2) on a fresh mapping chosen by
    // the kernel (aliasing no Rust object) of a descriptor opened in the
    // parent, and errno reads; no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            let addr = sys::mmap(
                std::ptr::null_mut(),
                4096,
                prot,
                sys::MAP_PRIVATE,
                target.as_raw_fd(),
                0,
            );
            if addr == sys::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let rc = sys::mprotect(addr, 4096, sys::PROT_READ | sys::PROT_EXEC);
            let err = io::Error::last_os_error();
            sys::munmap(addr, 4096);
            if rc != 0 {
                return Err(err);
            }
            Ok(())
        });
    }
    cmd.status()
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_mprotect_cannot_make_a_file_mapping_executable() {
    let dir = scratch_dir("mprotect");
    let (runner, runner_digest) = unique_busybox(&dir, "runner");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let enforced = Cgroup::new("mprotect-enforce");
    let audited = Cgroup::new("mprotect-audit");
    let outside = Cgroup::new("mprotect-outside");
    let read_only = sys::PROT_READ;
    let read_exec = sys::PROT_READ | sys::PROT_EXEC;

    // Before the enforcer, the trick works.
    assert!(mprotect_exec_in(&enforced, &listed, read_only, &runner)
        .expect("mprotect before attach")
        .success());

    let mut enf = attach();
    enf.allow_digests(17, &[runner_digest, listed_digest])
        .expect("allow");
    enf.add_scope(enforced.id, 17, Mode::Enforce)
        .expect("add scope");
    enf.add_scope(audited.id, 17, Mode::Audit)
        .expect("add scope");

    // Mapped readable only, so never checked: mprotect may not add exec,
    // even for content that happens to be listed.
    match mprotect_exec_in(&enforced, &listed, read_only, &runner) {
        Err(e) if is_denial(&e) => println!("denied mprotect(PROT_EXEC): {e}"),
        Err(e) => panic!("failed, but not with EPERM/EACCES: {e}"),
        Ok(status) => panic!("mprotect made a file mapping executable ({status})"),
    }
    // Mapped executable (checked by mmap_file): asking again is no change.
    assert!(mprotect_exec_in(&enforced, &listed, read_exec, &runner)
        .expect("mprotect of a checked executable mapping")
        .success());
    // Audit lets it through and reports it; outside any scope it is untouched.
    assert!(mprotect_exec_in(&audited, &listed, read_only, &runner)
        .expect("audit")
        .success());
    assert!(mprotect_exec_in(&outside, &listed, read_only, &runner)
        .expect("outside")
        .success());

    let events = drain_events(&mut enf);
    println!("events: {events:?}");
    let mprotect = Hook::Unknown(enforcer::HOOK_FILE_MPROTECT_RAW);
    assert!(
        events.iter().any(|e| e.hook == mprotect
            && e.verdict == Verdict::Deny
            && e.cgroup_id == enforced.id),
        "no mprotect denial event: {events:?}"
    );
    assert!(
        events.iter().any(|e| e.hook == mprotect
            && e.verdict == Verdict::Audit
            && e.cgroup_id == audited.id),
        "no mprotect audit event: {events:?}"
    );
    assert!(events.iter().all(|e| e.cgroup_id != outside.id));
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_events_tell_apart_containers_sharing_a_namespaced_pid() {
    let dir = scratch_dir("twins");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, unlisted_digest) = unique_busybox(&dir, "unlisted");
    let one = Cgroup::new("twin-one");
    let two = Cgroup::new("twin-two");

    let mut enf = attach();
    enf.allow_digests(18, &[listed_digest]).expect("allow");
    enf.add_scope(one.id, 18, Mode::Audit).expect("add scope");
    enf.add_scope(two.id, 18, Mode::Audit).expect("add scope");

    // In each "container", pid 1 of a pid namespace of its own runs the
    // unlisted binary; both live at once (a dead namespace's inode number
    // is handed out again, so only live ones are told apart by it).
    let children: Vec<_> = [&one, &two]
        .into_iter()
        .map(|cgroup| {
            let mut cmd = Command::new(&listed);
            cmd.args(["unshare", "--pid", "--fork"])
                .arg(&unlisted)
                .args(["sleep", "2"])
                .stdin(Stdio::null());
            in_cgroup(cmd, cgroup).spawn().expect("run unshare")
        })
        .collect();
    for mut child in children {
        let status = child.wait().expect("wait");
        assert!(status.success(), "unshare ... sleep: {status}");
    }

    let events = drain_events(&mut enf);
    let exec_in = |cgroup: &Cgroup| {
        events
            .iter()
            .find(|e| {
                e.hook == Hook::BprmCheck
                    && e.digest == Some(unlisted_digest)
                    && e.cgroup_id == cgroup.id
            })
            .unwrap_or_else(|| panic!("no exec event from {}: {events:?}", cgroup.path.display()))
    };
    let (a, b) = (exec_in(&one), exec_in(&two));
    println!("one: {a:?}\ntwo: {b:?}");
    assert_eq!(
        (a.ns_pid, b.ns_pid),
        (1, 1),
        "both are pid 1 in their namespace"
    );
    assert_ne!(a.pid_ns, b.pid_ns, "told apart by pid namespace");
    assert_ne!(a.host_pid, b.host_pid, "told apart by host pid");
    assert_ne!(a.cgroup_id, b.cgroup_id, "told apart by cgroup");
    fs::remove_dir_all(dir).ok();
}

// ---------------------------------------------------------------------------
// Per-inode digest cache: each test warms the cache with a listed binary,
// then changes the content in a way that must invalidate it, and checks that
// the next exec of the (now unlisted) content is denied. Each fails if the
// corresponding invalidation is missing (checked by disabling it once).
// ---------------------------------------------------------------------------

const ETXTBSY: i32 = 26;

/// A listed file (busybox plus a tag) in an enforcing scope, with its bytes.
struct CacheCase {
    dir: PathBuf,
    path: PathBuf,
    bytes: Vec<u8>,
    runner: PathBuf,
    cgroup: Cgroup,
    enf: Enforcer,
}

impl CacheCase {
    fn new(name: &str, scope_id: u32) -> Self {
        let dir = scratch_dir(name);
        let (path, digest) = unique_busybox(&dir, &format!("cache-{name}"));
        let (runner, runner_digest) = unique_busybox(&dir, "runner");
        let bytes = fs::read(&path).unwrap();
        let cgroup = Cgroup::new(name);
        let mut enf = attach();
        enf.allow_digests(scope_id, &[digest, runner_digest])
            .expect("allow");
        enf.add_scope(cgroup.id, scope_id, Mode::Enforce)
            .expect("add scope");
        // The runner's own entry is filled now, so that later fill counts
        // are about the file under test only.
        assert_runs(&runner, Some(&cgroup), "runner");
        assert_runs(&runner, Some(&cgroup), "runner");
        CacheCase {
            dir,
            path,
            bytes,
            runner,
            cgroup,
            enf,
        }
    }

    /// The listed bytes with the byte before the final newline changed: same
    /// length, still a runnable busybox, not listed.
    fn unlisted_bytes(&self) -> Vec<u8> {
        let mut b = self.bytes.clone();
        let at = b.len() - 2;
        b[at] ^= 0x20;
        b
    }

    /// Runs the listed binary twice and checks that the second exec took
    /// its digest from the cache.
    fn warm(&self, what: &str) {
        assert_runs(&self.path, Some(&self.cgroup), what);
        let hits = self.enf.cache_hits().expect("stats");
        assert_runs(&self.path, Some(&self.cgroup), what);
        assert!(
            self.enf.cache_hits().expect("stats") > hits,
            "{what}: the second exec did not use the cache"
        );
    }

    /// Runs the file, which must not run: it must be denied (or, with
    /// `etxtbsy_ok`, refused with ETXTBSY).
    fn assert_not_run(&self, etxtbsy_ok: bool, what: &str) -> i32 {
        match run_true(&self.path, Some(&self.cgroup)) {
            Err(e) if is_denial(&e) => {
                println!("{what}: denied ({e})");
                e.raw_os_error().unwrap_or(0)
            }
            Err(e) if etxtbsy_ok && e.raw_os_error() == Some(ETXTBSY) => {
                println!("{what}: ETXTBSY");
                ETXTBSY
            }
            Err(e) => panic!("{what}: exec failed, but not with EPERM/EACCES: {e}"),
            Ok(status) => panic!("{what}: unlisted content ran ({status})"),
        }
    }

    /// Maps the file PROT_EXEC from a child in the scope (which judges, and
    /// may fill the cache, without exec's write denial).
    fn map_exec(&self) -> io::Result<ExitStatus> {
        mmap_exec_in(&self.cgroup, &self.path, &self.runner)
    }
}

impl Drop for CacheCase {
    fn drop(&mut self) {
        fs::remove_dir_all(&self.dir).ok();
    }
}

fn pwrite_all(file: &File, bytes: &[u8], offset: u64) {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset).expect("pwrite");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_write_through_a_new_fd_invalidates() {
    let case = CacheCase::new("cache-write", 40);
    case.warm("listed binary");
    let unlisted = case.unlisted_bytes();
    // In place, no truncation: only the open for write can tell.
    let file = OpenOptions::new().write(true).open(&case.path).unwrap();
    pwrite_all(
        &file,
        &unlisted[unlisted.len() - 2..],
        (unlisted.len() - 2) as u64,
    );
    drop(file);
    case.assert_not_run(
        false,
        "after write() through an fd opened after the warm-up",
    );
    // And back: the cache now holds the unlisted digest; restoring the
    // listed bytes must make it run again.
    let file = OpenOptions::new().write(true).open(&case.path).unwrap();
    pwrite_all(
        &file,
        &case.bytes[case.bytes.len() - 2..],
        (case.bytes.len() - 2) as u64,
    );
    drop(file);
    assert_runs(&case.path, Some(&case.cgroup), "listed bytes restored");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_writer_opened_before_the_warm_up_is_never_trusted() {
    let case = CacheCase::new("cache-early", 41);
    let unlisted = case.unlisted_bytes();
    // The writer exists before anything is cached...
    let file = OpenOptions::new().write(true).open(&case.path).unwrap();
    // ...so exec is refused while it is open (ETXTBSY), if this kernel
    // denies write access during exec; either way no cache is filled.
    let fills = case.enf.cache_fills().unwrap();
    match run_true(&case.path, Some(&case.cgroup)) {
        Err(e) if e.raw_os_error() == Some(ETXTBSY) => println!("exec with a writer open: ETXTBSY"),
        Ok(status) if status.success() => {
            println!("exec with a writer open: ran (no ETXTBSY here)")
        }
        other => panic!("exec of the listed binary with a writer open: {other:?}"),
    }
    // A PROT_EXEC mapping is judged (listed: allowed) but must not fill the
    // cache while a writer exists: the writer writes without a new open.
    assert!(case.map_exec().expect("map the listed file").success());
    let filled = case.enf.cache_fills().unwrap() - fills;
    pwrite_all(
        &file,
        &unlisted[unlisted.len() - 2..],
        (unlisted.len() - 2) as u64,
    );
    case.assert_not_run(true, "unlisted bytes, writer still open");
    match case.map_exec() {
        Err(e) if is_denial(&e) => println!("mapping of the unlisted bytes, writer open: denied"),
        other => panic!("PROT_EXEC mapping of the unlisted bytes: {other:?}"),
    }
    drop(file);
    case.assert_not_run(
        false,
        "unlisted bytes written through an fd opened before the warm-up",
    );
    assert_eq!(filled, 0, "the cache was filled while a writer was open");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_truncate_by_path_invalidates() {
    let case = CacheCase::new("cache-trunc", 42);
    case.warm("listed binary");
    // truncate(2) by path takes write access without any open: cutting
    // the tag leaves plain busybox, which runs but is not listed.
    let busybox_len = fs::metadata(busybox()).unwrap().len();
    let c_path = std::ffi::CString::new(case.path.as_os_str().as_bytes()).unwrap();
    // SAFETY: truncate(2) with a NUL-terminated path that outlives the call.
    let rc = unsafe { sys::truncate(c_path.as_ptr(), busybox_len as std::ffi::c_long) };
    assert_eq!(rc, 0, "truncate: {}", io::Error::last_os_error());
    case.assert_not_run(false, "after truncate(2) by path");
    // Rewrite through a second open: first back to the listed bytes (the
    // cache holds the truncated content's digest now), then warm, then to
    // unlisted bytes.
    let mut file = OpenOptions::new().append(true).open(&case.path).unwrap();
    file.write_all(&case.bytes[busybox_len as usize..]).unwrap();
    drop(file);
    case.warm("listed bytes rewritten after the truncation");
    let unlisted = case.unlisted_bytes();
    let file = OpenOptions::new().write(true).open(&case.path).unwrap();
    pwrite_all(&file, &unlisted[busybox_len as usize..], busybox_len);
    drop(file);
    case.assert_not_run(false, "after a rewrite through a second open");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_shared_writable_mapping_invalidates() {
    let case = CacheCase::new("cache-shmap", 43);
    case.warm("listed binary");
    let len = case.bytes.len();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&case.path)
        .unwrap();
    // SAFETY: a fresh shared mapping chosen by the kernel (aliasing no Rust
    // object) of the whole file, written through a raw pointer within its
    // length, then unmapped.
    let addr = unsafe {
        sys::mmap(
            std::ptr::null_mut(),
            len,
            sys::PROT_READ | sys::PROT_WRITE,
            sys::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        addr,
        sys::MAP_FAILED,
        "mmap: {}",
        io::Error::last_os_error()
    );
    drop(file); // the mapping keeps the file (and its write access) alive
                // The mapping exists before the cache is warmed again (its open bumped
                // the generation already): the mapping of the listed bytes must not
                // fill the cache.
    let fills = case.enf.cache_fills().unwrap();
    match run_true(&case.path, Some(&case.cgroup)) {
        Err(e) if e.raw_os_error() == Some(ETXTBSY) => {
            println!("exec with a shared writable mapping: ETXTBSY")
        }
        Ok(status) if status.success() => {
            println!("exec with a shared writable mapping: ran (no ETXTBSY here)")
        }
        other => panic!("exec of the listed binary with a shared writable mapping: {other:?}"),
    }
    assert!(case.map_exec().expect("map the listed file").success());
    let filled = case.enf.cache_fills().unwrap() - fills;
    // SAFETY: within the mapping's length.
    unsafe { *(addr as *mut u8).add(len - 2) ^= 0x20 };
    // SAFETY: the mapping made above, of `len` bytes, no longer used.
    unsafe { sys::munmap(addr, len) };
    case.assert_not_run(
        false,
        "after a write through a shared mapping whose fd was closed",
    );
    assert_eq!(
        filled, 0,
        "the cache was filled while a writable shared mapping existed"
    );
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_rename_onto_the_path_is_another_inode() {
    let case = CacheCase::new("cache-rename", 44);
    case.warm("listed binary");
    let tmp = case.dir.join("replacement");
    write_executable(&tmp, &case.unlisted_bytes());
    fs::rename(&tmp, &case.path).unwrap();
    case.assert_not_run(false, "after rename of an unlisted file onto the path");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_read_only_open_with_o_trunc_invalidates() {
    use std::os::unix::fs::OpenOptionsExt;
    const O_TRUNC: i32 = 0o1000;
    let mut case = CacheCase::new("cache-rdtrunc", 45);
    case.warm("listed binary");
    // open(O_RDONLY | O_TRUNC) truncates without FMODE_WRITE (on 6.2+
    // through file_truncate, not path_truncate).
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_TRUNC)
        .open(&case.path)
        .expect("open O_RDONLY|O_TRUNC");
    drop(file);
    assert_eq!(fs::metadata(&case.path).unwrap().len(), 0, "not truncated");
    // An empty file is judged before any binary handler looks at it. A
    // stale cache entry would let it through to ENOEXEC (and glibc would
    // then try /bin/sh on it, which is unlisted here and denied: so the
    // proof is the denial event carrying the empty content's digest).
    let result = run_true(&case.path, Some(&case.cgroup));
    let empty = sha256(b"");
    let events = drain_events(&mut case.enf);
    assert!(
        events
            .iter()
            .any(|e| e.verdict == Verdict::Deny && e.digest == Some(empty)),
        "the truncated (empty) content was not judged by its own digest: {result:?}, {events:?}"
    );
    println!("empty file after O_RDONLY|O_TRUNC: denied by its own digest ({result:?})");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_write_through_a_hard_link_invalidates() {
    let case = CacheCase::new("cache-link", 46);
    let link = case.dir.join("other-name");
    fs::hard_link(&case.path, &link).unwrap();
    case.warm("listed binary");
    let unlisted = case.unlisted_bytes();
    let file = OpenOptions::new().write(true).open(&link).unwrap();
    pwrite_all(
        &file,
        &unlisted[unlisted.len() - 2..],
        (unlisted.len() - 2) as u64,
    );
    drop(file);
    case.assert_not_run(false, "after a write through another hard link");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_is_not_used_on_overlayfs() {
    let case = CacheCase::new("cache-ovl", 47);
    let (lower, upper, work, merged) = (
        case.dir.join("lower"),
        case.dir.join("upper"),
        case.dir.join("work"),
        case.dir.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let lower_file = lower.join("busybox-ovl");
    write_executable(&lower_file, &case.bytes);
    let status = Command::new(busybox())
        .args(["mount", "-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ))
        .arg(&merged)
        .status()
        .expect("mount overlay");
    assert!(status.success(), "mount overlay: {status}");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new(busybox()).arg("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(merged.clone());
    let via_overlay = merged.join("busybox-ovl");
    assert_runs(
        &via_overlay,
        Some(&case.cgroup),
        "listed binary through overlayfs",
    );
    let hits = case.enf.cache_hits().unwrap();
    assert_runs(
        &via_overlay,
        Some(&case.cgroup),
        "listed binary through overlayfs",
    );
    assert_eq!(
        case.enf.cache_hits().unwrap(),
        hits,
        "an overlayfs file was served from the cache"
    );
    // Why: a write to the lower file changes what the overlay shows without
    // any open of the overlay inode.
    let unlisted = case.unlisted_bytes();
    let file = OpenOptions::new().write(true).open(&lower_file).unwrap();
    pwrite_all(
        &file,
        &unlisted[unlisted.len() - 2..],
        (unlisted.len() - 2) as u64,
    );
    drop(file);
    match run_true(&via_overlay, Some(&case.cgroup)) {
        Err(e) if is_denial(&e) => println!("overlay file after a write to its lower file: denied"),
        other => panic!("overlay file after a write to its lower file: {other:?}"),
    }
}
