//! In-VM tests of the enforcer's guard (`enforcer/guard.h`, sticky scopes in `enforcer/scope.h`):
//! a task in an enforce scope cannot leave its scope (a write to another cgroup's
//! `cgroup.procs`, `clone3(CLONE_INTO_CGROUP)`) nor touch the enforcer (the pins, `bpf()`), nor
//! load kernel code (modules). Each test makes the real attack from inside a scope and checks a
//! positive twin that must keep working. Run by `cargo xtask lab` (root in a BPF-LSM kernel).
// Tests print what they saw (the lab shows it); the attacks need raw syscalls in pre_exec, each in
// a commented unsafe block.
#![allow(clippy::print_stdout, clippy::print_stderr, unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;

use std::ffi::{c_int, c_long, c_void, CString};

/// The raw syscalls these attacks make (x86-64 numbers).
mod raw {
    use std::ffi::{c_int, c_long};

    pub const SYS_BPF: c_long = 321;
    pub const SYS_INIT_MODULE: c_long = 175;
    pub const SYS_FINIT_MODULE: c_long = 313;
    pub const SYS_CLONE3: c_long = 435;
    pub const BPF_OBJ_GET: c_long = 7;
    pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    pub const SIGCHLD: u64 = 17;

    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
    #[repr(C)]
    #[derive(Default)]
    pub struct CloneArgs {
        pub flags: u64,
        pub pidfd: u64,
        pub child_tid: u64,
        pub parent_tid: u64,
        pub exit_signal: u64,
        pub stack: u64,
        pub stack_size: u64,
        pub tls: u64,
        pub set_tid: u64,
        pub set_tid_size: u64,
        pub cgroup: u64,
    }

    extern "C" {
        pub fn syscall(number: c_long, ...) -> c_long;
        pub fn _exit(status: c_int) -> !;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    }
}

/// An enforcer with one enforce scope on `cgroup` allowing `listed` only.
fn enforce(enf: &mut Enforcer, cgroup: &Cgroup, id: u32, listed: &[Digest]) {
    enf.replace_digests(id, listed).expect("allow the listed binaries");
    enf.set_scope(cgroup.id, scope(id, Mode::Enforce)).expect("add the scope");
}

/// Runs `shell sh -c script` in `cgroup`; its exit code.
fn sh_in(shell: &Path, cgroup: &Cgroup, script: &str) -> i32 {
    let mut cmd = Command::new(shell);
    cmd.args(["sh", "-c", script]).stdin(Stdio::null());
    let status = in_cgroup(cmd, cgroup).status().expect("run the shell");
    status.code().unwrap_or(-1)
}

fn has_event(events: &[Event], hook: Hook, reason: Reason, verdict: Verdict) -> bool {
    events.iter().any(|e| e.hook == hook && e.reason == reason && e.verdict == verdict)
}

/// Runs `runner true` in `cgroup` after `attack` ran in the child (after its move into the
/// cgroup, before the exec). The attack's error, if it returned one, is the spawn's error.
fn attack_in<F>(cgroup: &Cgroup, runner: &Path, attack: F) -> io::Result<ExitStatus>
where
    F: FnMut() -> io::Result<()> + Send + Sync + 'static,
{
    let mut cmd = Command::new(runner);
    cmd.arg("true").stdin(Stdio::null());
    let mut cmd = in_cgroup(cmd, cgroup);
    // SAFETY: the closure runs in the forked child before exec; each attack
    // below makes raw syscalls on memory it owns and reads errno only.
    unsafe {
        cmd.pre_exec(attack);
    }
    cmd.status()
}

fn errno_of(result: &io::Result<ExitStatus>) -> Option<i32> {
    result.as_ref().err().and_then(io::Error::raw_os_error)
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_guard_cgroup_procs_escape_stays_scoped() {
    let dir = scratch_dir("guard-escape");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, _) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("guard-escape");
    let mut enf = attach();
    enforce(&mut enf, &cgroup, 71, &[listed_digest]);

    // The attack: a listed shell in the scope moves itself to the root
    // cgroup, checks it is there, then runs an unlisted binary (fork+exec)
    // and execs one (exec from the escaped shell itself).
    let script = format!(
        "echo $$ > {root}/cgroup.procs || exit 10; read l < /proc/self/cgroup; [ \"$l\" = 0::/ ] || exit 11; \
         {listed} true || exit 12; {unlisted} true && exit 13; exec {unlisted} true",
        root = CGROUP_ROOT,
        listed = listed.display(),
        unlisted = unlisted.display()
    );
    let code = sh_in(&listed, &cgroup, &script);
    assert_ne!(code, 10, "the shell could not move itself to the root cgroup");
    assert_ne!(code, 11, "the shell did not end in the root cgroup");
    assert_ne!(code, 12, "a listed binary was refused after the move");
    assert_ne!(code, 13, "an unlisted binary ran after the shell left its scope");
    assert_ne!(code, 0, "the escaped shell exec'd an unlisted binary");
    println!("escaped shell: unlisted binaries refused (exit {code})");
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::BprmCheck
            && e.reason == Reason::Escape
            && e.verdict == Verdict::Deny
            && e.scope_cgroup_id == cgroup.id
            && e.cgroup_id == 1),
        "no escape denial naming the scope from the root cgroup: {events:?}"
    );
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_guard_moves_within_a_scope_keep_working() {
    let dir = scratch_dir("guard-move");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, _) = unique_busybox(&dir, "unlisted");
    // One scope on a subtree (moves between its children), and two sibling
    // cgroups sharing one digest set (moves between scopes of the same set).
    let top = Cgroup::new("guard-move");
    let (a, b) = (top.child("a"), top.child("b"));
    let sibling1 = Cgroup::new("guard-move-s1");
    let sibling2 = Cgroup::new("guard-move-s2");
    let mut enf = attach();
    enforce(&mut enf, &top, 72, &[listed_digest]);
    enf.set_scope(sibling1.id, scope(72, Mode::Enforce)).expect("scope");
    enf.set_scope(sibling2.id, scope(72, Mode::Enforce)).expect("scope");

    for (from, to) in [(&a, &b), (&sibling1, &sibling2)] {
        let script = format!(
            "echo $$ > {to}/cgroup.procs || exit 10; {listed} true || exit 12; {unlisted} true && exit 13; exit 0",
            to = to.path.display(),
            listed = listed.display(),
            unlisted = unlisted.display()
        );
        let code = sh_in(&listed, from, &script);
        assert_eq!(code, 0, "move {} -> {}: exit {code}", from.path.display(), to.path.display());
    }
    let events = drain_events(&mut enf);
    assert!(
        !events.iter().any(|e| e.verdict == Verdict::Deny && e.reason != Reason::Digest),
        "a move within the scope was taken for an escape: {events:?}"
    );
    drop(enf);
    fs::remove_dir_all(dir).ok();
}

/// clone3 with `flags` (and the root cgroup's descriptor) from the child,
/// whose own child exits at once; the error if clone3 failed.
fn clone3_attack(flags: u64) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let root = File::open(CGROUP_ROOT).expect("open the root cgroup");
    move || {
        let args =
            raw::CloneArgs { flags, exit_signal: raw::SIGCHLD, cgroup: root.as_raw_fd() as u64, ..Default::default() };
        // SAFETY: clone3 with a valid, fully initialised clone_args of the
        // size given; no CLONE_VM, so the new process is a copy that exits
        // at once with _exit (no destructor, no lock); the caller waits for
        // it.
        let pid = unsafe { raw::syscall(raw::SYS_CLONE3, &args as *const raw::CloneArgs, size_of::<raw::CloneArgs>()) };
        if pid == 0 {
            // SAFETY: the new process ends here without returning.
            unsafe { raw::_exit(0) }
        }
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut status: c_int = 0;
        // SAFETY: waits for the process just created; `status` is a valid out pointer.
        unsafe { raw::waitpid(pid as c_int, &mut status, 0) };
        Ok(())
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_guard_clone_into_cgroup_refused() {
    let dir = scratch_dir("guard-clone3");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let cgroup = Cgroup::new("guard-clone3");
    let mut enf = attach();
    enforce(&mut enf, &cgroup, 73, &[listed_digest]);

    // The twin: a plain clone3 (a fork) from the scope keeps working.
    let plain = attack_in(&cgroup, &listed, clone3_attack(0));
    assert!(matches!(&plain, Ok(s) if s.success()), "plain clone3 from the scope failed: {plain:?}");
    // The attack: clone3 into the root cgroup.
    let into = attack_in(&cgroup, &listed, clone3_attack(raw::CLONE_INTO_CGROUP));
    assert_eq!(errno_of(&into), Some(EPERM), "clone3(CLONE_INTO_CGROUP) from the scope was not refused: {into:?}");
    let events = drain_events(&mut enf);
    assert!(
        has_event(&events, Hook::TaskAlloc, Reason::Escape, Verdict::Deny),
        "no task_alloc escape event: {events:?}"
    );
    // Outside any scope it is not refused.
    let root = Cgroup::new("guard-clone3-out");
    let outside = attack_in(&root, &listed, clone3_attack(raw::CLONE_INTO_CGROUP));
    assert!(matches!(&outside, Ok(s) if s.success()), "clone3 into a cgroup outside any scope failed: {outside:?}");
    fs::remove_dir_all(dir).ok();
}

/// A fresh bpffs instance mounted on a scratch directory (its own super
/// block, so nothing else pinned is at stake), unmounted on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount(name: &str) -> Self {
        let path = scratch_dir(name).join("bpffs");
        fs::create_dir_all(&path).unwrap();
        let status = Command::new(busybox()).args(["mount", "-t", "bpf", "bpf"]).arg(&path).status().unwrap();
        assert!(status.success(), "mount bpffs on {}: {status}", path.display());
        Bpffs(path)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Enforcer::unpin(&self.0.join("imgsign"));
        let _ = Command::new(busybox()).arg("umount").arg(&self.0).status();
    }
}

const UNPIN_ENV: &str = "IMGSIGN_GUARD_UNPIN";

/// Not a lab test (its name does not start with `vm_`): `imgsign enforce
/// --detach` in miniature, a process other than the owner that unpins.
/// Without its environment it does nothing.
#[test]
#[ignore = "helper process of vm_enforcer_guard_pins_refused_but_to_the_owner"]
fn helper_guard_unpin() {
    if let Ok(dir) = std::env::var(UNPIN_ENV) {
        Enforcer::unpin(Path::new(&dir)).expect("unpin from another process");
    }
}

const INSPECT_ENV: &str = "IMGSIGN_GUARD_INSPECT";

/// Not a lab test: `imgsign enforce --status` in miniature, a process that
/// reads the pinned enforcer. Without its environment it does nothing.
#[test]
#[ignore = "helper process of vm_enforcer_guard_pins_refused_but_to_the_owner"]
fn helper_guard_inspect() {
    if let Ok(dir) = std::env::var(INSPECT_ENV) {
        let mut enf = Enforcer::inspect_pinned(Path::new(&dir)).expect("inspect from another process");
        enf.scopes_in_force().expect("read the scopes");
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_guard_pins_refused_but_to_the_owner() {
    let dir = scratch_dir("guard-pins");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, _) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("guard-pins");
    let bpffs = Bpffs::mount("guard-pins");
    let pin_dir = bpffs.0.join("imgsign");
    let mut enf = Enforcer::attach_pinned(&pin_dir).expect("attach pinned");
    enforce(&mut enf, &cgroup, 74, &[listed_digest]);
    let link = pin_dir.join("link_enf_bprm_check");
    assert!(link.exists());

    // From the scope: rm of a link, rm -rf of the directory, mv.
    let script = format!(
        "rm -f {link}; rm -rf {pins}; mv {link} {pins}/moved; exit 0",
        link = link.display(),
        pins = pin_dir.display()
    );
    assert_eq!(sh_in(&listed, &cgroup, &script), 0);
    assert!(link.exists() && Enforcer::is_pinned(&pin_dir), "a scoped task removed the pins");
    // Outside every scope, a process that is not the owner: rm, mv, umount.
    let rm = Command::new(busybox()).args(["rm", "-f"]).arg(&link).status().unwrap();
    let mv = Command::new(busybox()).arg("mv").arg(&link).arg(bpffs.0.join("moved")).status().unwrap();
    let umount = Command::new(busybox()).arg("umount").arg(&bpffs.0).status().unwrap();
    println!("non-owner outside the scope: rm {rm}, mv {mv}, umount {umount}");
    assert!(link.exists() && Enforcer::is_pinned(&pin_dir), "a process other than the owner removed the pins");
    assert!(!umount.success(), "a process other than the owner unmounted the pins' bpffs");
    // A reader (`enforce --status`) does not take the pins from their
    // owner: the owner can still rename one (and back) after it looked.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_guard_inspect", "--nocapture"])
        .env(INSPECT_ENV, &pin_dir)
        .stdin(Stdio::null())
        .status()
        .expect("run the inspecting process");
    assert!(status.success(), "inspect from another process: {status}");
    let renamed = pin_dir.join("renamed-by-owner");
    fs::rename(&link, &renamed).expect("the owner renames a pin after a reader opened the enforcer");
    fs::rename(&renamed, &link).expect("the owner renames it back");
    // Enforcement is still in force.
    drop(enf);
    assert_runs(&listed, Some(&cgroup), "listed binary");
    assert_denied(&unlisted, &cgroup, "unlisted binary, after the attempts");
    let mut enf = Enforcer::open_pinned(&pin_dir).expect("take over");
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::Pin
            && e.reason == Reason::SelfProtection
            && e.verdict == Verdict::Deny
            && e.scope_cgroup_id == cgroup.id),
        "no pin refusal reported from the scope: {events:?}"
    );
    assert!(
        events.iter().any(|e| e.hook == Hook::Pin && e.verdict == Verdict::Deny && e.scope_cgroup_id == 0),
        "no pin refusal reported from outside the scopes: {events:?}"
    );
    drop(enf);

    // Another process unpins (as `imgsign enforce --detach` does): it
    // registers itself as the owner first.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_guard_unpin", "--nocapture"])
        .env(UNPIN_ENV, &pin_dir)
        .stdin(Stdio::null())
        .status()
        .expect("run the unpinning process");
    assert!(status.success(), "unpin from another process: {status}");
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
    drop(bpffs);
    fs::remove_dir_all(dir).ok();
}

/// bpf(BPF_OBJ_GET) of `path` from the child; the error if it failed.
fn obj_get_attack(path: &Path) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    move || {
        // union bpf_attr for BPF_OBJ_GET: pathname (u64), bpf_fd, file_flags; the rest zero.
        let mut attr = [0u64; 16];
        attr[0] = path.as_ptr() as u64;
        // SAFETY: bpf() with a zeroed attribute buffer of the size given and a
        // NUL-terminated path that outlives the call.
        let fd = unsafe {
            raw::syscall(raw::SYS_BPF, raw::BPF_OBJ_GET, attr.as_mut_ptr().cast::<c_void>(), size_of_val(&attr))
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_guard_bpf_refused_in_scope() {
    let dir = scratch_dir("guard-bpf");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let cgroup = Cgroup::new("guard-bpf");
    let outside = Cgroup::new("guard-bpf-out");
    let bpffs = Bpffs::mount("guard-bpf");
    let pin_dir = bpffs.0.join("imgsign");
    let mut enf = Enforcer::attach_pinned(&pin_dir).expect("attach pinned");
    enforce(&mut enf, &cgroup, 75, &[listed_digest]);
    let map = pin_dir.join("enf_allowed");

    // The twin: outside every scope, another process opens the pinned map.
    let got = attack_in(&outside, &listed, obj_get_attack(&map));
    assert!(matches!(&got, Ok(s) if s.success()), "BPF_OBJ_GET outside any scope failed: {got:?}");
    // The attack: a scoped task opens the pinned digest set (to add a digest).
    let got = attack_in(&cgroup, &listed, obj_get_attack(&map));
    assert_eq!(errno_of(&got), Some(EPERM), "bpf(BPF_OBJ_GET) from the scope was not refused: {got:?}");
    let events = drain_events(&mut enf);
    assert!(
        has_event(&events, Hook::Bpf, Reason::SelfProtection, Verdict::Deny),
        "no bpf() refusal reported: {events:?}"
    );
    drop(enf);
    drop(bpffs);
    fs::remove_dir_all(dir).ok();
}

/// A kernel module staged by the lab (`/lab/modules/NN-name.ko`): overlay,
/// loaded at boot on both kernels.
fn staged_module() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/lab/modules")
        .expect("/lab/modules")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ko"))
        .collect();
    found.sort();
    found
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-overlay.ko"))
        .or(found.first())
        .cloned()
        .expect("a staged .ko")
}

/// finit_module (with `by_fd`) or init_module of `module` from the child;
/// the error if it failed.
fn module_attack(module: &Path, by_fd: bool) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let file = File::open(module).expect("open the module");
    let bytes = fs::read(module).expect("read the module");
    move || {
        let empty = c"";
        // SAFETY: finit_module on a descriptor opened in the parent, or
        // init_module on a buffer owned by the closure with its length; both
        // with a NUL-terminated (empty) parameter string.
        let rc: c_long = unsafe {
            if by_fd {
                raw::syscall(raw::SYS_FINIT_MODULE, file.as_raw_fd(), empty.as_ptr(), 0)
            } else {
                raw::syscall(raw::SYS_INIT_MODULE, bytes.as_ptr(), bytes.len(), empty.as_ptr())
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_guard_module_load_refused_in_scope() {
    let dir = scratch_dir("guard-module");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let cgroup = Cgroup::new("guard-module");
    let outside = Cgroup::new("guard-module-out");
    let module = staged_module();
    let mut enf = attach();
    enforce(&mut enf, &cgroup, 76, &[listed_digest]);

    for by_fd in [true, false] {
        let call = if by_fd { "finit_module" } else { "init_module" };
        let got = attack_in(&cgroup, &listed, module_attack(&module, by_fd));
        assert_eq!(
            errno_of(&got),
            Some(EPERM),
            "{call} of {} from the scope was not refused: {got:?}",
            module.display()
        );
        // The twin: outside any scope imgsign does not refuse it (the module
        // is loaded already: EEXIST).
        let got = attack_in(&outside, &listed, module_attack(&module, by_fd));
        println!("{call} of {} outside the scopes: {got:?}", module.display());
        assert_ne!(errno_of(&got), Some(EPERM), "{call} outside any scope was refused");
    }
    let events = drain_events(&mut enf);
    let refused = events
        .iter()
        .filter(|e| e.hook == Hook::KernelLoad && e.reason == Reason::KernelLoad && e.verdict == Verdict::Deny)
        .count();
    assert!(refused >= 2, "module loads from the scope not reported: {events:?}");
    assert!(
        events.iter().all(|e| e.hook != Hook::KernelLoad || e.scope_cgroup_id == cgroup.id),
        "a module load outside the scopes was reported: {events:?}"
    );
    fs::remove_dir_all(dir).ok();
}
