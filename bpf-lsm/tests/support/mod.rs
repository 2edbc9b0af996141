//! Helpers shared by the enforcer's in-VM test binaries: busybox copies, cgroups, running
//! children inside a scope, events.
// Test helpers may print what they saw (clippy allows it in #[test] functions, not in helpers).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// The attacks these tests make need raw syscalls (mmap, truncate, setxattr, pre_exec), each in a commented unsafe block.
#![allow(unsafe_code)]
#![allow(dead_code, unused_imports)]

pub mod bench;

pub use std::fs::{self, File, OpenOptions};
pub use std::io::{self, ErrorKind, Write};
pub use std::os::fd::{AsRawFd, FromRawFd};
pub use std::os::unix::ffi::OsStrExt;
pub use std::os::unix::fs::{MetadataExt, PermissionsExt};
pub use std::os::unix::process::CommandExt;
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, ExitStatus, Stdio};
pub use std::time::Duration;

pub use bpf_lsm::enforcer::{self, Enforcer, Event, Hook, Mode, Profile, Reason, Scope, Verdict};
pub use bpf_lsm::Digest;
pub use sha2::{Digest as _, Sha256};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub const EPERM: i32 = 1;
pub const EACCES: i32 = 13;

/// The C library calls the mapping and memfd tests need (std links the C library;
/// declaring them here spares a dependency). x86-64 Linux values.
pub mod sys {
    use std::ffi::{c_int, c_long, c_void};

    pub const PROT_READ: c_int = 0x1;
    pub const PROT_WRITE: c_int = 0x2;
    pub const PROT_EXEC: c_int = 0x4;
    pub const MAP_SHARED: c_int = 0x1;
    pub const MAP_PRIVATE: c_int = 0x2;
    pub const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

    extern "C" {
        pub fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, offset: c_long)
            -> *mut c_void;
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
pub fn busybox() -> PathBuf {
    let path = PathBuf::from("/bin/busybox");
    assert!(path.exists(), "{} missing", path.display());
    path
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// A copy of busybox named `busybox-<tag>` (so it still runs applets) with
/// `tag` appended, giving it a SHA-256 of its own. Returns path and digest.
pub fn unique_busybox(dir: &Path, tag: &str) -> (PathBuf, Digest) {
    let mut bytes = fs::read(busybox()).expect("read busybox");
    bytes.extend_from_slice(format!("\nimgsign-enforcer-{tag}\n").as_bytes());
    let path = dir.join(format!("busybox-{tag}"));
    write_executable(&path, &bytes);
    (path, sha256(&bytes))
}

pub fn write_executable(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).expect("write executable");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgsign-enf-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A cgroup v2 directory made for one test, removed on drop (its processes
/// have exited by then).
pub struct Cgroup {
    pub path: PathBuf,
    pub id: u64,
}

impl Cgroup {
    pub fn new(name: &str) -> Self {
        let path = Path::new(CGROUP_ROOT).join(format!("imgsign-{name}-{}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {} (cgroup2 mounted?): {e}", path.display()));
        let id = enforcer::cgroup_id(&path).expect("stat cgroup");
        Cgroup { path, id }
    }

    /// A child cgroup `name` below this one.
    pub fn child(&self, name: &str) -> Self {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        let id = enforcer::cgroup_id(&path).expect("stat cgroup");
        Cgroup { path, id }
    }

    pub fn procs(&self) -> File {
        OpenOptions::new().write(true).open(self.path.join("cgroup.procs")).expect("open cgroup.procs")
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
pub fn in_cgroup(mut cmd: Command, cgroup: &Cgroup) -> Command {
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
pub fn run_true(path: &Path, cgroup: Option<&Cgroup>) -> io::Result<ExitStatus> {
    let mut cmd = Command::new(path);
    cmd.arg("true").stdin(Stdio::null());
    match cgroup {
        Some(cgroup) => in_cgroup(cmd, cgroup).status(),
        None => cmd.status(),
    }
}

pub fn assert_runs(path: &Path, cgroup: Option<&Cgroup>, what: &str) {
    match run_true(path, cgroup) {
        Ok(status) => assert!(status.success(), "{what}: {} ran but {status}", path.display()),
        Err(e) => panic!("{what}: exec of {} failed: {e}", path.display()),
    }
}

pub fn is_denial(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EPERM | EACCES)) || e.kind() == ErrorKind::PermissionDenied
}

pub fn assert_denied(path: &Path, cgroup: &Cgroup, what: &str) {
    match run_true(path, Some(cgroup)) {
        Err(e) if is_denial(&e) => println!("{what}: denied {}: {e}", path.display()),
        Err(e) => panic!("{what}: exec of {} failed, but not with EPERM/EACCES: {e}", path.display()),
        Ok(status) => panic!("{what}: {} was not denied (ran: {status})", path.display()),
    }
}

/// Maps `file` with `PROT_READ | PROT_EXEC` from a child in `cgroup`, then
/// execs `runner true`. Returns the mmap's error, if it failed.
pub fn mmap_exec_in(cgroup: &Cgroup, file: &Path, runner: &Path) -> io::Result<ExitStatus> {
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

/// Decisions reported within a short time, all of them.
pub fn drain_events(enf: &mut Enforcer) -> Vec<Event> {
    let mut all = enf.poll_events(Duration::from_secs(2)).expect("read events");
    // Let stragglers from the same exec (its mappings) arrive too.
    std::thread::sleep(Duration::from_millis(50));
    while let Some(event) = enf.next_event().expect("read event") {
        all.push(event);
    }
    all
}

/// The inode number of the test process's namespace `kind` ("pid", "mnt").
pub fn ns_inode(kind: &str) -> u32 {
    let ino = fs::metadata(format!("/proc/self/ns/{kind}")).expect("stat namespace").ino();
    u32::try_from(ino).expect("namespace inodes fit in 32 bits")
}

/// A scope on digest set `id` that reports denials and audit findings only.
pub fn scope(id: u32, mode: Mode) -> Scope {
    Scope::new(id, mode)
}

/// Where the in-VM tests share one pinned enforcer.
pub const SHARED_PIN: &str = "/sys/fs/bpf/imgsign-lab-shared";

/// The enforcer most tests use: one pinned under [`SHARED_PIN`], loaded by
/// the first test of a boot and opened by the others, with no scope, no
/// digest set and no pending event left from an earlier test. Loading the
/// programs costs seconds under the lab's emulation, and detaching them as
/// long again: once per boot instead of once per test. Tests about loading,
/// pinning or detaching itself use [`attach_private`].
pub fn attach() -> Enforcer {
    let mut enf = Enforcer::attach_pinned(Path::new(SHARED_PIN)).expect("load (or open) the shared enforcer");
    for (cgroup_id, _) in enf.scopes_in_force().expect("read scopes") {
        enf.remove_scope(cgroup_id).expect("remove an earlier test's scope");
    }
    for scope_id in enf.scope_ids_with_sets().expect("read digest sets") {
        enf.remove_digest_set(scope_id).expect("remove an earlier test's digest set");
    }
    while enf.next_event().expect("read event").is_some() {}
    enf
}

/// An enforcer of this test's own, detached when dropped (benchmarks, and
/// tests of attaching and detaching).
pub fn attach_private() -> Enforcer {
    Enforcer::attach().expect("load and attach the enforcer")
}
