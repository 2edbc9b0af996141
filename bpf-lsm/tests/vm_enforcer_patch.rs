//! In-VM tests of "no code patching from inside a scope" and of the strict profile
//! (`src/bpf/enforcer/patch.h`): `/proc/PID/mem` opened for write (a native patcher, and `sh`
//! with `dd` alone as DDexec does), ptrace attach and `PTRACE_TRACEME`, `userfaultfd`, W+X file
//! mappings and write added to an executable file mapping; under `Profile::Strict` also
//! anonymous executable memory (a JIT) and io_uring. Each attack runs from a child process
//! in an enforce scope and must fail there, and succeed outside any scope (so the attack is
//! real); the positive twins (reading another task's status, a plain executable mapping of a
//! listed file, a JIT and io_uring under the default profile) must keep working. Conventions
//! of `vm_enforcer.rs` (root in a BPF-LSM kernel, run by `cargo xtask lab`).
// Tests print what they saw (the lab shows it); the attacks are raw syscalls in pre_exec.
#![allow(clippy::print_stdout, clippy::print_stderr, unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;

use std::ffi::{c_int, c_long, c_void};
use std::os::unix::process::ExitStatusExt;

/// The system calls these attacks make beyond `support::sys` (x86-64 Linux values).
mod raw {
    use std::ffi::{c_char, c_int, c_long, c_void};

    pub const O_RDWR: c_int = 0o2;
    pub const O_CLOEXEC: c_int = 0o2000000;
    pub const MAP_ANONYMOUS: c_int = 0x20;
    pub const SYS_PTRACE: c_long = 101;
    pub const SYS_USERFAULTFD: c_long = 323;
    pub const SYS_IO_URING_SETUP: c_long = 425;
    pub const PTRACE_TRACEME: c_long = 0;
    pub const PTRACE_POKETEXT: c_long = 4;
    pub const PTRACE_GETREGS: c_long = 12;
    pub const PTRACE_DETACH: c_long = 17;
    pub const PTRACE_SEIZE: c_long = 0x4206;
    /// `_IO(0xAA, 0x00)`: a new userfaultfd from `/dev/userfaultfd`.
    pub const USERFAULTFD_IOC_NEW: u64 = 0xAA00;
    /// Index of `rip` in `struct user_regs_struct` (27 u64 fields).
    pub const REG_RIP: usize = 16;
    pub const USER_REGS_LEN: usize = 27;

    extern "C" {
        pub fn syscall(number: c_long, ...) -> c_long;
        pub fn open(path: *const c_char, flags: c_int, ...) -> c_int;
        pub fn close(fd: c_int) -> c_int;
        pub fn pwrite(fd: c_int, buf: *const c_void, count: usize, offset: i64) -> isize;
        pub fn ioctl(fd: c_int, request: u64, ...) -> c_int;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    }
}

/// `mov eax, 42; ret`: the "unsigned code" every attack tries to run.
const CODE: [u8; 6] = [0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3];
/// The errno a child reports when the attack went through but its code did not return 42.
const WRONG_RESULT: i32 = 8; // ENOEXEC

/// A listed busybox copy, the enforcer with it listed as set 70, and a cgroup in an enforce
/// scope with `profile`.
struct Setup {
    dir: PathBuf,
    runner: PathBuf,
    enf: Enforcer,
    scoped: Cgroup,
}

fn setup(name: &str, profile: Profile) -> Setup {
    let dir = scratch_dir(name);
    let (runner, runner_digest) = unique_busybox(&dir, "runner");
    let scoped = Cgroup::new(&format!("{name}-scoped"));
    let mut enf = attach();
    enf.replace_digests(70, &[runner_digest]).expect("allow the runner");
    let mut scope = scope(70, Mode::Enforce);
    scope.profile = profile;
    enf.set_scope(scoped.id, scope).expect("add scope");
    Setup { dir, runner, enf, scoped }
}

impl Drop for Setup {
    fn drop(&mut self) {
        fs::remove_dir_all(&self.dir).ok();
    }
}

/// Runs `attack` in a child (in `cgroup`, or where the test runs) after fork, then execs
/// `runner true`. The attack's error (its errno), if any, is what this returns.
fn attack_in(
    cgroup: Option<&Cgroup>,
    runner: &Path,
    attack: impl FnMut() -> io::Result<()> + Send + Sync + 'static,
) -> io::Result<ExitStatus> {
    let mut cmd = Command::new(runner);
    cmd.arg("true").stdin(Stdio::null());
    let mut cmd = match cgroup {
        Some(cgroup) => in_cgroup(cmd, cgroup),
        None => cmd,
    };
    // SAFETY: the closure runs in the forked child before exec (after the
    // move into the cgroup). Every attack below makes only raw syscalls on
    // memory it mapped itself or on stack buffers, and reports errno: no
    // allocation, no lock.
    unsafe {
        cmd.pre_exec(attack);
    }
    cmd.status()
}

/// Asserts the attack was refused with EPERM (`what` names it).
fn assert_refused(result: io::Result<ExitStatus>, what: &str) {
    match result {
        Err(e) if e.raw_os_error() == Some(EPERM) => println!("{what}: refused: {e}"),
        Err(e) => panic!("{what}: failed, but not with EPERM: {e}"),
        Ok(status) => panic!("{what}: was not refused ({status})"),
    }
}

/// Asserts the attack went through and the child then ran `true`.
fn assert_works(result: io::Result<ExitStatus>, what: &str) {
    match result {
        Ok(status) => assert!(status.success(), "{what}: went through but the child ended {status}"),
        Err(e) => panic!("{what}: failed: {e}"),
    }
}

/// Whether some event from `cgroup` has this hook, reason and verdict.
fn has_event(events: &[Event], cgroup: &Cgroup, hook: Hook, reason: Reason, verdict: Verdict) -> bool {
    events.iter().any(|e| e.cgroup_id == cgroup.id && e.hook == hook && e.reason == reason && e.verdict == verdict)
}

/// In the child: calls the code at `addr` and reports whether it returned 42.
///
/// # Safety
/// `addr` must be executable memory holding [`CODE`].
unsafe fn call_code(addr: *mut c_void) -> io::Result<()> {
    // SAFETY: the caller guarantees `addr` holds CODE (a C-ABI function
    // taking nothing and returning 42 in eax).
    let f: extern "C" fn() -> c_int = unsafe { std::mem::transmute(addr) };
    if f() == 42 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(WRONG_RESULT))
    }
}

/// The native patcher: maps the listed `file` `PROT_READ | PROT_EXEC` (allowed: listed), opens
/// `/proc/self/mem` read-write, writes [`CODE`] over the mapped code page and calls it.
fn patch_through_proc_self_mem(file: &Path) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let target = File::open(file).expect("open file to map");
    move || {
        // SAFETY: (in the forked child) a fresh private mapping chosen by the
        // kernel, aliasing no Rust object; the path is a static C string; the
        // write goes to that mapping only, and call_code runs it after CODE
        // was written there.
        unsafe {
            let len = 4096;
            let addr = sys::mmap(
                std::ptr::null_mut(),
                len,
                sys::PROT_READ | sys::PROT_EXEC,
                sys::MAP_PRIVATE,
                target.as_raw_fd(),
                0,
            );
            if addr == sys::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let fd = raw::open(c"/proc/self/mem".as_ptr(), raw::O_RDWR | raw::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = raw::pwrite(fd, CODE.as_ptr().cast(), CODE.len(), addr as i64);
            let err = io::Error::last_os_error();
            raw::close(fd);
            if n != CODE.len() as isize {
                return Err(err);
            }
            call_code(addr)
        }
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_native_patcher_cannot_write_proc_self_mem() {
    let mut s = setup("patch-mem", Profile::Default);
    let outside = Cgroup::new("patch-mem-outside");

    // Outside any scope the patcher runs its own code in a listed file's mapping.
    assert_works(attack_in(Some(&outside), &s.runner, patch_through_proc_self_mem(&s.runner)), "outside");
    // In the scope the mapping is allowed (listed) but /proc/self/mem is not opened for write.
    assert_refused(attack_in(Some(&s.scoped), &s.runner, patch_through_proc_self_mem(&s.runner)), "in scope");

    let events = drain_events(&mut s.enf);
    println!("events: {events:?}");
    assert!(
        has_event(&events, &s.scoped, Hook::FileOpen, Reason::Patch, Verdict::Deny),
        "no /proc/self/mem denial event: {events:?}"
    );
    assert!(events.iter().all(|e| e.cgroup_id != outside.id), "events from outside: {events:?}");
}

/// `busybox sh -c '... exec busybox dd if=PAYLOAD of=/proc/$$/mem bs=1 seek=ADDR conv=notrunc'`,
/// with ADDR the start of the shell's first executable mapping: `exec` makes dd the same process
/// (so the ptrace hook never sees it) and dd writes over its own code (busybox is static and not
/// PIE: dd's code is where the shell's was). Returns dd's status and stderr.
fn ddexec(runner: &Path, payload: &Path, cgroup: &Cgroup) -> (ExitStatus, String) {
    let bb = runner.display();
    let script = format!(
        "a=$({bb} grep -m1 ' r-xp ' /proc/$$/maps); a=${{a%%-*}}; \
         exec {bb} dd if={} of=/proc/$$/mem bs=1 seek=$((0x$a)) conv=notrunc",
        payload.display()
    );
    let mut cmd = Command::new(runner);
    cmd.args(["sh", "-c", &script]).stdin(Stdio::null());
    let out = in_cgroup(cmd, cgroup).output().expect("run sh");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_sh_and_dd_cannot_write_proc_mem() {
    let mut s = setup("patch-dd", Profile::Default);
    let outside = Cgroup::new("patch-dd-outside");
    let payload = s.dir.join("payload");
    fs::write(&payload, CODE).expect("write payload");

    // Outside any scope dd writes the payload into its own code (FOLL_FORCE).
    let (status, stderr) = ddexec(&s.runner, &payload, &outside);
    println!("outside: {status}: {stderr}");
    assert!(status.success() && stderr.contains("6+0 records out"), "dd into /proc/$$/mem outside: {status} {stderr}");

    let (status, stderr) = ddexec(&s.runner, &payload, &s.scoped);
    println!("in scope: {status}: {stderr}");
    assert!(!status.success(), "dd wrote into its own code in the scope: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "dd failed, but not with EPERM: {stderr}");

    let events = drain_events(&mut s.enf);
    assert!(
        has_event(&events, &s.scoped, Hook::FileOpen, Reason::Patch, Verdict::Deny),
        "no /proc/PID/mem denial event: {events:?}"
    );
}

/// `PTRACE_SEIZE` of `pid` (the tracer then execs, which ends the tracing).
fn seize(pid: u32) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    move || {
        // SAFETY: ptrace(2) with integer arguments only.
        let rc = unsafe { raw::syscall(raw::SYS_PTRACE, raw::PTRACE_SEIZE, pid as c_long, 0 as c_long, 0 as c_long) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A child (in `cgroup`, or where the test runs) asks `PTRACE_TRACEME` and execs `runner true`;
/// this process, its tracer, then writes `exit(42)` at the child's first instruction and lets
/// it go. Returns the child's exit code, or the error of its `PTRACE_TRACEME`.
fn traceme_and_patch(cgroup: Option<&Cgroup>, runner: &Path) -> io::Result<i32> {
    let mut cmd = Command::new(runner);
    cmd.arg("true").stdin(Stdio::null());
    let mut cmd = match cgroup {
        Some(cgroup) => in_cgroup(cmd, cgroup),
        None => cmd,
    };
    // SAFETY: runs in the forked child before exec: one ptrace(2) with
    // integer arguments and an errno read.
    unsafe {
        cmd.pre_exec(|| {
            if raw::syscall(raw::SYS_PTRACE, raw::PTRACE_TRACEME, 0 as c_long, 0 as c_long, 0 as c_long) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as c_int;
    // The child is reaped here, not through `child` (dropping a Child does not wait).
    let mut status: c_int = 0;
    let mut regs = [0u64; raw::USER_REGS_LEN];
    // exit(42): mov edi, 42; mov eax, 60; syscall; and nops.
    let exit42: [u8; 16] = [0xbf, 0x2a, 0, 0, 0, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05, 0x90, 0x90, 0x90, 0x90];
    // SAFETY: waitpid(2) into a local int, then ptrace(2) on our own traced,
    // stopped child: GETREGS into a local array of user_regs_struct's size,
    // POKETEXT of two words (integers), DETACH; then waitpid(2) again.
    unsafe {
        if raw::waitpid(pid, &mut status, 0) != pid {
            return Err(io::Error::last_os_error());
        }
        // Stopped by the SIGTRAP of its exec (WIFSTOPPED, WSTOPSIG == 5).
        assert_eq!(status & 0xffff, 0x057f, "child not stopped at exec: status {status:#x}");
        let rc =
            raw::syscall(raw::SYS_PTRACE, raw::PTRACE_GETREGS, pid as c_long, 0 as c_long, regs.as_mut_ptr() as c_long);
        assert_eq!(rc, 0, "PTRACE_GETREGS: {}", io::Error::last_os_error());
        let rip = regs[raw::REG_RIP];
        for (i, word) in exit42.chunks(8).enumerate() {
            let word = u64::from_le_bytes(word.try_into().unwrap());
            let rc = raw::syscall(
                raw::SYS_PTRACE,
                raw::PTRACE_POKETEXT,
                pid as c_long,
                (rip + 8 * i as u64) as c_long,
                word as c_long,
            );
            assert_eq!(rc, 0, "PTRACE_POKETEXT: {}", io::Error::last_os_error());
        }
        let rc = raw::syscall(raw::SYS_PTRACE, raw::PTRACE_DETACH, pid as c_long, 0 as c_long, 0 as c_long);
        assert_eq!(rc, 0, "PTRACE_DETACH: {}", io::Error::last_os_error());
        if raw::waitpid(pid, &mut status, 0) != pid {
            return Err(io::Error::last_os_error());
        }
    }
    assert_eq!(status & 0x7f, 0, "child killed by a signal: status {status:#x}");
    Ok((status >> 8) & 0xff)
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_ptrace_attach_and_traceme_are_refused() {
    let mut s = setup("patch-ptrace", Profile::Default);
    let outside = Cgroup::new("patch-ptrace-outside");
    // The sibling to attach to, in the scope too.
    let mut sleeper = Command::new(&s.runner);
    sleeper.args(["sleep", "30"]).stdin(Stdio::null());
    let mut sleeper = in_cgroup(sleeper, &s.scoped).spawn().expect("run sleep");
    let sibling = sleeper.id();

    // Attach to a sibling: works outside any scope, refused in it.
    assert_works(attack_in(Some(&outside), &s.runner, seize(sibling)), "PTRACE_SEIZE outside");
    assert_refused(attack_in(Some(&s.scoped), &s.runner, seize(sibling)), "PTRACE_SEIZE in scope");

    // PTRACE_TRACEME then exec: outside, the tracer rewrites the exec'd code (exit 42 instead of
    // `true`); in the scope the child cannot offer itself.
    assert_eq!(traceme_and_patch(Some(&outside), &s.runner).expect("PTRACE_TRACEME outside"), 42);
    match traceme_and_patch(Some(&s.scoped), &s.runner) {
        Err(e) if e.raw_os_error() == Some(EPERM) => println!("PTRACE_TRACEME in scope: refused: {e}"),
        other => panic!("PTRACE_TRACEME in scope was not refused with EPERM: {other:?}"),
    }

    // Reads (PTRACE_MODE_READ) keep working: another task's status, ps.
    let mut cat = Command::new(&s.runner);
    cat.args(["cat", &format!("/proc/{sibling}/status")]).stdin(Stdio::null());
    let out = in_cgroup(cat, &s.scoped).output().expect("run cat");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("State:"),
        "reading /proc/{sibling}/status in the scope: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ps = Command::new(&s.runner);
    ps.arg("ps").stdin(Stdio::null());
    let out = in_cgroup(ps, &s.scoped).output().expect("run ps");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sleep 30"),
        "ps in the scope: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    sleeper.kill().ok();
    sleeper.wait().ok();
    let events = drain_events(&mut s.enf);
    println!("events: {events:?}");
    assert!(has_event(&events, &s.scoped, Hook::Ptrace, Reason::Patch, Verdict::Deny), "no ptrace denial: {events:?}");
    assert!(events.iter().all(|e| e.cgroup_id != outside.id), "events from outside: {events:?}");
}

/// userfaultfd(2), and `USERFAULTFD_IOC_NEW` on `/dev/userfaultfd` if `dev` (the device exists).
fn new_userfaultfd(dev: bool) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    move || {
        // SAFETY: userfaultfd(2), open(2) of a static C string, ioctl(2) with
        // an integer argument and close(2) of the descriptors made here.
        unsafe {
            let fd = raw::syscall(raw::SYS_USERFAULTFD, raw::O_CLOEXEC as c_long);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            raw::close(fd as c_int);
            if dev {
                let dev = raw::open(c"/dev/userfaultfd".as_ptr(), raw::O_RDWR | raw::O_CLOEXEC);
                if dev < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = raw::ioctl(dev, raw::USERFAULTFD_IOC_NEW, raw::O_CLOEXEC as c_long);
                let err = io::Error::last_os_error();
                raw::close(dev);
                if fd < 0 {
                    return Err(err);
                }
                raw::close(fd);
            }
        }
        Ok(())
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_userfaultfd_is_refused() {
    let mut s = setup("patch-uffd", Profile::Default);
    let outside = Cgroup::new("patch-uffd-outside");
    let dev = Path::new("/dev/userfaultfd").exists();
    println!("/dev/userfaultfd exists: {dev}");

    assert_works(attack_in(Some(&outside), &s.runner, new_userfaultfd(dev)), "userfaultfd outside");
    assert_refused(attack_in(Some(&s.scoped), &s.runner, new_userfaultfd(false)), "userfaultfd(2) in scope");
    if dev {
        // The syscall is refused first: check the device path on its own.
        let only_dev = move || {
            // SAFETY: open(2) of a static C string, ioctl(2) with an integer
            // argument, close(2) of the descriptors made here.
            unsafe {
                let dev = raw::open(c"/dev/userfaultfd".as_ptr(), raw::O_RDWR | raw::O_CLOEXEC);
                if dev < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = raw::ioctl(dev, raw::USERFAULTFD_IOC_NEW, raw::O_CLOEXEC as c_long);
                let err = io::Error::last_os_error();
                raw::close(dev);
                if fd < 0 {
                    return Err(err);
                }
                raw::close(fd);
            }
            Ok(())
        };
        assert_refused(attack_in(Some(&s.scoped), &s.runner, only_dev), "/dev/userfaultfd in scope");
    }

    let events = drain_events(&mut s.enf);
    println!("events: {events:?}");
    assert!(
        has_event(&events, &s.scoped, Hook::AnonInode, Reason::Patch, Verdict::Deny),
        "no userfaultfd denial: {events:?}"
    );
}

/// Maps the listed `file` with `prot` (private), then, if `then` is not 0, mprotect(2)s it to
/// `then`, writes [`CODE`] and calls it.
fn map_file(file: &Path, prot: c_int, then: c_int) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let target = File::open(file).expect("open file to map");
    move || {
        // SAFETY: (in the forked child) a fresh private mapping chosen by the
        // kernel, aliasing no Rust object; CODE is written into it only once
        // it is writable, and called only once it holds CODE and is
        // executable.
        unsafe {
            let len = 4096;
            let addr = sys::mmap(std::ptr::null_mut(), len, prot, sys::MAP_PRIVATE, target.as_raw_fd(), 0);
            if addr == sys::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if then != 0 {
                if sys::mprotect(addr, len, then) != 0 {
                    return Err(io::Error::last_os_error());
                }
                std::ptr::copy_nonoverlapping(CODE.as_ptr(), addr.cast::<u8>(), CODE.len());
                return call_code(addr);
            }
            sys::munmap(addr, len);
        }
        Ok(())
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_write_exec_file_mappings_are_refused() {
    let mut s = setup("patch-wx", Profile::Default);
    let outside = Cgroup::new("patch-wx-outside");
    let (r, w, x) = (sys::PROT_READ, sys::PROT_WRITE, sys::PROT_EXEC);
    let runner = s.runner.clone();

    // W+X mapping of a listed file: works outside, refused in the scope.
    assert_works(attack_in(Some(&outside), &runner, map_file(&runner, r | w | x, 0)), "W+X mmap outside");
    assert_refused(attack_in(Some(&s.scoped), &runner, map_file(&runner, r | w | x, 0)), "W+X mmap in scope");
    // Write added to an executable mapping, then code written and run: outside it returns 42.
    assert_works(attack_in(Some(&outside), &runner, map_file(&runner, r | x, r | w | x)), "mprotect +W outside");
    assert_refused(attack_in(Some(&s.scoped), &runner, map_file(&runner, r | x, r | w | x)), "mprotect +W in scope");
    // A plain executable mapping of the listed file keeps working in the scope.
    assert_works(attack_in(Some(&s.scoped), &runner, map_file(&runner, r | x, 0)), "R+X mmap in scope");

    let events = drain_events(&mut s.enf);
    println!("events: {events:?}");
    assert!(
        has_event(&events, &s.scoped, Hook::MmapFile, Reason::WriteExec, Verdict::Deny),
        "no W+X mmap denial: {events:?}"
    );
    assert!(
        has_event(&events, &s.scoped, Hook::FileMprotect, Reason::WriteExec, Verdict::Deny),
        "no mprotect denial: {events:?}"
    );
    assert!(events.iter().all(|e| e.cgroup_id != outside.id), "events from outside: {events:?}");
}

/// A JIT: anonymous memory mapped `first`, [`CODE`] written, mprotect(2) to `PROT_READ |
/// PROT_EXEC` (skipped if `first` is already executable), called.
fn jit(first: c_int) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    move || {
        // SAFETY: (in the forked child) a fresh anonymous mapping chosen by
        // the kernel, aliasing no Rust object; CODE is written while it is
        // writable and called once it is executable.
        unsafe {
            let len = 4096;
            let addr = sys::mmap(std::ptr::null_mut(), len, first, sys::MAP_PRIVATE | raw::MAP_ANONYMOUS, -1, 0);
            if addr == sys::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if first & sys::PROT_WRITE != 0 {
                std::ptr::copy_nonoverlapping(CODE.as_ptr(), addr.cast::<u8>(), CODE.len());
            }
            if first & sys::PROT_EXEC == 0 && sys::mprotect(addr, len, sys::PROT_READ | sys::PROT_EXEC) != 0 {
                return Err(io::Error::last_os_error());
            }
            if first & sys::PROT_WRITE == 0 {
                // Mapped executable but never written: nothing to call.
                sys::munmap(addr, len);
                return Ok(());
            }
            call_code(addr)
        }
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_jit_runs_by_default_and_not_under_strict() {
    let mut s = setup("patch-jit", Profile::Default);
    let strict = Cgroup::new("patch-jit-strict");
    let mut scope = scope(70, Mode::Enforce);
    scope.profile = Profile::Strict;
    s.enf.set_scope(strict.id, scope).expect("add strict scope");
    let (r, w, x) = (sys::PROT_READ, sys::PROT_WRITE, sys::PROT_EXEC);

    // RW, write, RX, call: 42 under the default profile.
    assert_works(attack_in(Some(&s.scoped), &s.runner, jit(r | w)), "JIT in the default profile");
    // A JIT mapping its memory writable and executable at once keeps working there too.
    assert_works(attack_in(Some(&s.scoped), &s.runner, jit(r | w | x)), "W+X JIT in the default profile");
    // Under strict: the mprotect, and anonymous PROT_EXEC mappings, are refused.
    assert_refused(attack_in(Some(&strict), &s.runner, jit(r | w)), "JIT mprotect under strict");
    assert_refused(attack_in(Some(&strict), &s.runner, jit(r | x)), "anonymous R+X mmap under strict");
    assert_refused(attack_in(Some(&strict), &s.runner, jit(r | w | x)), "anonymous W+X mmap under strict");
    // Exec still works under strict (the runner is listed).
    assert_runs(&s.runner, Some(&strict), "exec under strict");

    let events = drain_events(&mut s.enf);
    println!("events: {events:?}");
    assert!(
        has_event(&events, &strict, Hook::FileMprotect, Reason::Strict, Verdict::Deny),
        "no strict mprotect denial: {events:?}"
    );
    assert!(
        has_event(&events, &strict, Hook::MmapFile, Reason::Strict, Verdict::Deny),
        "no strict mmap denial: {events:?}"
    );
    assert!(events.iter().all(|e| e.cgroup_id != s.scoped.id), "events from the default scope: {events:?}");
}

/// io_uring_setup(2) with one entry; the ring is closed again.
fn io_uring() -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    || {
        // struct io_uring_params: 120 bytes, zeroed asks for defaults.
        let mut params = [0u8; 120];
        // SAFETY: io_uring_setup(2) filling a local buffer of the size of
        // struct io_uring_params, then close(2) of the descriptor it made.
        unsafe {
            let fd = raw::syscall(raw::SYS_IO_URING_SETUP, 1 as c_long, params.as_mut_ptr() as c_long);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            raw::close(fd as c_int);
        }
        Ok(())
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_io_uring_works_by_default_and_not_under_strict() {
    let mut s = setup("patch-uring", Profile::Default);
    let strict = Cgroup::new("patch-uring-strict");
    let mut scope = scope(70, Mode::Enforce);
    scope.profile = Profile::Strict;
    s.enf.set_scope(strict.id, scope).expect("add strict scope");

    assert_works(attack_in(Some(&s.scoped), &s.runner, io_uring()), "io_uring in the default profile");
    assert_refused(attack_in(Some(&strict), &s.runner, io_uring()), "io_uring under strict");

    let events = drain_events(&mut s.enf);
    println!("events: {events:?}");
    assert!(
        has_event(&events, &strict, Hook::AnonInode, Reason::Strict, Verdict::Deny),
        "no io_uring denial: {events:?}"
    );
}

/// A copy of busybox (named `busybox-<tag>`, so applets still run) whose PT_GNU_STACK asks for
/// an executable stack (flags RWX). Returns path and digest.
fn exec_stack_busybox(dir: &Path, tag: &str) -> (PathBuf, Digest) {
    const PT_GNU_STACK: u32 = 0x6474_e551;
    let mut bytes = fs::read(busybox()).expect("read busybox");
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(&bytes, 0x36), u16_at(&bytes, 0x38));
    let phdr = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&at| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == PT_GNU_STACK)
        .expect("busybox has a PT_GNU_STACK header");
    bytes[phdr + 4..phdr + 8].copy_from_slice(&7u32.to_le_bytes()); // PF_R | PF_W | PF_X
    bytes.extend_from_slice(format!("\nimgsign-enforcer-{tag}\n").as_bytes());
    let path = dir.join(format!("busybox-{tag}"));
    write_executable(&path, &bytes);
    (path, sha256(&bytes))
}

/// The `[stack]` line of `/proc/self/maps` as `execstack grep` sees it, in `cgroup`.
fn stack_of(execstack: &Path, cgroup: &Cgroup) -> io::Result<std::process::Output> {
    let mut cmd = Command::new(execstack);
    cmd.args(["grep", "\\[stack\\]", "/proc/self/maps"]).stdin(Stdio::null());
    in_cgroup(cmd, cgroup).output()
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_patch_executable_stack_is_killed_under_strict() {
    let mut s = setup("patch-stack", Profile::Default);
    let (execstack, execstack_digest) = exec_stack_busybox(&s.dir, "execstack");
    let mut digests = vec![execstack_digest];
    digests.push(sha256(&fs::read(&s.runner).expect("read runner")));
    s.enf.replace_digests(70, &digests).expect("allow both");
    let strict = Cgroup::new("patch-stack-strict");
    let mut scope = scope(70, Mode::Enforce);
    scope.profile = Profile::Strict;
    s.enf.set_scope(strict.id, scope).expect("add strict scope");

    // Under the default profile the listed binary runs, with an executable stack (the attack
    // surface strict closes).
    let out = stack_of(&execstack, &s.scoped).expect("run in the default scope");
    let line = String::from_utf8_lossy(&out.stdout);
    println!("default profile: {} {line}", out.status);
    assert!(out.status.success() && line.contains(" rwxp "), "no executable stack: {line}");
    // Under strict it is killed before it runs; a binary with a plain stack still runs.
    let out = stack_of(&execstack, &strict).expect("run in the strict scope");
    println!("strict: {} {}", out.status, String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.signal(), Some(9), "not killed by SIGKILL: {}", out.status);
    assert!(out.stdout.is_empty(), "it ran: {}", String::from_utf8_lossy(&out.stdout));
    assert_runs(&s.runner, Some(&strict), "plain stack under strict");

    let events = drain_events(&mut s.enf);
    println!("events: {events:?}");
    assert!(
        has_event(&events, &strict, Hook::BprmCheck, Reason::Strict, Verdict::Deny),
        "no executable-stack event: {events:?}"
    );
    assert!(events.iter().all(|e| e.cgroup_id != s.scoped.id), "events from the default scope: {events:?}");
}
