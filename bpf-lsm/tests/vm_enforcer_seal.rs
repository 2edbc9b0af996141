//! In-VM tests of sealed execution (`src/bpf/enforcer/seal.h`): what a scope judged cannot be
//! rewritten or truncated while it stays in memory, files with writers and unsealed memfds do not
//! run, and tmpfs content changed through pinned pages is judged again. Each test performs the
//! attack, which must fail, and a positive twin, which must keep working. Run by the kernel lab
//! (`#[ignore]`d on the host).
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// The attacks these tests make need raw syscalls (fork, mmap, fcntl, io_uring), each in a
// commented unsafe block.
#![allow(unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;

use std::ffi::{c_int, c_uint};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

const ETXTBSY: i32 = 26;
const MFD_ALLOW_SEALING: c_uint = 0x2;
const F_ADD_SEALS: c_int = 1033;
const F_SEAL_WRITE: c_int = 0x8;
const F_SEAL_FUTURE_WRITE: c_int = 0x10;
const O_TRUNC: i32 = 0o1000;
const EOPNOTSUPP: i32 = 95;

use libc::{_exit, fcntl, fork, read, waitpid, write};

/// A scratch directory with a listed runner (a busybox copy) and a cgroup in
/// an enforce scope allowing `extra` digests too.
struct Case {
    dir: PathBuf,
    runner: PathBuf,
    runner_digest: Digest,
    cgroup: Cgroup,
    enf: Enforcer,
}

impl Case {
    fn new(name: &str, scope_id: u32, mode: Mode) -> Self {
        let dir = scratch_dir(name);
        let (runner, runner_digest) = unique_busybox(&dir, "runner");
        let cgroup = Cgroup::new(name);
        let mut enf = attach();
        enf.replace_digests(scope_id, &[runner_digest]).expect("allow");
        enf.set_scope(cgroup.id, scope(scope_id, mode)).expect("add scope");
        Case { dir, runner, runner_digest, cgroup, enf }
    }

    /// Allows `digests` besides the runner in scope `scope_id`.
    fn allow(&mut self, scope_id: u32, digests: &[Digest]) {
        let mut all = vec![self.runner_digest];
        all.extend_from_slice(digests);
        self.enf.replace_digests(scope_id, &all).expect("allow");
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        fs::remove_dir_all(&self.dir).ok();
    }
}

/// Whether an event of `hook` with `reason` (and `verdict`) was reported.
fn reported(events: &[Event], hook: Hook, reason: Reason, verdict: Verdict) -> bool {
    events.iter().any(|e| e.hook == hook && e.reason == reason && e.verdict == verdict)
}

/// Writes `bytes` at `offset` of `path` with busybox dd (conv=notrunc: no
/// truncation, only the open for write) from outside any scope.
fn dd_write(path: &Path, bytes: &[u8], offset: u64, dir: &Path) -> std::process::Output {
    let patch = dir.join("dd-patch");
    fs::write(&patch, bytes).unwrap();
    Command::new(busybox())
        .arg("dd")
        .arg(format!("if={}", patch.display()))
        .arg(format!("of={}", path.display()))
        .args(["bs=1", "conv=notrunc"])
        .arg(format!("seek={offset}"))
        .output()
        .expect("run dd")
}

/// A forked child (no exec) that moved itself into a cgroup and holds a
/// PROT_READ|PROT_EXEC MAP_PRIVATE mapping of a whole file while it lives.
struct MappedChild {
    pid: c_int,
    /// Commands to the child: 'c' compares its mapping with the bytes the
    /// file had at fork and answers 1 (equal) or 0; closing ends it.
    to_child: Option<std::io::PipeWriter>,
    from_child: std::io::PipeReader,
}

impl MappedChild {
    /// Forks; the child maps `path`. Returns the mmap's error if it failed.
    fn spawn(cgroup: &Cgroup, path: &Path) -> io::Result<MappedChild> {
        let expected = fs::read(path).unwrap();
        let len = expected.len();
        let file = File::open(path).unwrap();
        let procs = cgroup.procs();
        let (cmd_rx, cmd_tx) = std::io::pipe().unwrap();
        let (ans_rx, ans_tx) = std::io::pipe().unwrap();
        // The child closes its copies of the parent's ends (else its read of
        // commands would never see the end of input).
        let (parent_tx, parent_rx) = (cmd_tx.as_raw_fd(), ans_rx.as_raw_fd());
        // SAFETY: the test process has threads, so the child only makes
        // async-signal-safe calls (close, write, mmap, read, _exit) on descriptors
        // and memory that existed before the fork, allocates nothing and
        // takes no lock; it never returns into Rust code (it ends with
        // _exit). The mapping is a fresh one chosen by the kernel, compared
        // byte by byte with `expected` (the child's copy of the parent's Vec).
        let pid = unsafe { fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            unsafe {
                libc::close(parent_tx);
                libc::close(parent_rx);
                let zero = b"0";
                if write(procs.as_raw_fd(), zero.as_ptr().cast(), 1) != 1 {
                    _exit(2);
                }
                let addr = sys::mmap(
                    std::ptr::null_mut(),
                    len,
                    sys::PROT_READ | sys::PROT_EXEC,
                    sys::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                );
                // Answer: 0 mapped, else the errno.
                let answer: [u8; 1] = if addr == sys::MAP_FAILED { [*libc::__errno_location() as u8] } else { [0] };
                write(ans_tx.as_raw_fd(), answer.as_ptr().cast(), 1);
                if addr == sys::MAP_FAILED {
                    _exit(0);
                }
                let mut cmd = [0u8; 1];
                while read(cmd_rx.as_raw_fd(), cmd.as_mut_ptr().cast(), 1) == 1 {
                    let mapped = addr as *const u8;
                    let mut equal = 1u8;
                    for (i, b) in expected.iter().enumerate() {
                        if *mapped.add(i) != *b {
                            equal = 0;
                            break;
                        }
                    }
                    write(ans_tx.as_raw_fd(), (&raw const equal).cast(), 1);
                }
                _exit(0);
            }
        }
        drop((cmd_rx, ans_tx, file, procs));
        let mut child = MappedChild { pid, to_child: Some(cmd_tx), from_child: ans_rx };
        let mut answer = [0u8; 1];
        std::io::Read::read_exact(&mut child.from_child, &mut answer).expect("child's mmap answer");
        if answer[0] != 0 {
            return Err(io::Error::from_raw_os_error(answer[0] as i32));
        }
        Ok(child)
    }

    /// Whether the child's mapping still holds the bytes the file had at fork.
    fn mapping_unchanged(&mut self) -> bool {
        std::io::Write::write_all(self.to_child.as_mut().unwrap(), b"c").unwrap();
        let mut answer = [0u8; 1];
        std::io::Read::read_exact(&mut self.from_child, &mut answer).expect("child's answer");
        answer[0] == 1
    }
}

impl Drop for MappedChild {
    fn drop(&mut self) {
        self.to_child.take();
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { waitpid(self.pid, &mut status, 0) };
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_seal_mapped_library_cannot_be_rewritten_while_it_runs() {
    let mut case = Case::new("seal-lib", 70, Mode::Enforce);
    let (lib, lib_digest) = unique_busybox(&case.dir, "lib");
    case.allow(70, &[lib_digest]);
    let bytes = fs::read(&lib).unwrap();
    let mut child = MappedChild::spawn(&case.cgroup, &lib).expect("a listed library maps");

    // The attack: dd rewrites the tag in place, from outside the scope.
    let out = dd_write(&lib, b"X", (bytes.len() - 2) as u64, &case.dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("dd onto the mapped library: {} {stderr}", out.status);
    assert!(!out.status.success(), "dd rewrote a mapped listed library");
    assert!(stderr.contains("Text file busy"), "dd failed, but not with ETXTBSY: {stderr}");
    assert_eq!(fs::read(&lib).unwrap(), bytes, "the library changed");
    let err = OpenOptions::new().write(true).open(&lib).expect_err("open for write of a sealed file");
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");
    assert!(child.mapping_unchanged());

    // The positive twin: a package manager's update (new file, rename over
    // the path) works, the new inode is writable, and the running mapping
    // still holds the old bytes.
    let mut new_bytes = bytes.clone();
    let at = new_bytes.len() - 2;
    new_bytes[at] ^= 0x20;
    let tmp = case.dir.join("lib.new");
    write_executable(&tmp, &new_bytes);
    fs::rename(&tmp, &lib).expect("rename over a sealed file's path");
    assert_eq!(fs::read(&lib).unwrap(), new_bytes);
    OpenOptions::new().write(true).open(&lib).expect("the renamed file is a new, unsealed inode");
    assert!(child.mapping_unchanged(), "the running mapping changed after the rename");
    drop(child);

    let events = drain_events(&mut case.enf);
    assert!(reported(&events, Hook::FileOpen, Reason::Sealed, Verdict::Deny), "no sealed-write event: {events:?}");
    let sealed = events.iter().find(|e| e.reason == Reason::Sealed).unwrap();
    assert_eq!(sealed.scope_id, 0, "the writer was in no scope");
    assert_eq!(sealed.path.as_deref(), Some(lib.as_path()), "{sealed:?}");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_seal_writer_opened_before_the_mapping_is_refused() {
    let mut case = Case::new("seal-writer", 71, Mode::Enforce);
    let (lib, lib_digest) = unique_busybox(&case.dir, "lib");
    case.allow(71, &[lib_digest]);
    // The attack: a writer opened first (it could write after the check).
    let writer = OpenOptions::new().read(true).write(true).open(&lib).unwrap();
    match MappedChild::spawn(&case.cgroup, &lib) {
        Err(e) if is_denial(&e) => println!("executable mapping with a writer open: {e}"),
        Err(e) => panic!("executable mapping with a writer open failed, but not with EPERM/EACCES: {e}"),
        Ok(_) => panic!("a file open for write was mapped executable in an enforce scope"),
    }
    let events = drain_events(&mut case.enf);
    assert!(reported(&events, Hook::MmapFile, Reason::Writers, Verdict::Deny), "no writers denial event: {events:?}");
    // The positive twin: once the writer is gone, the same mapping works
    // (and then the file is sealed).
    drop(writer);
    let child = MappedChild::spawn(&case.cgroup, &lib).expect("the mapping after the writer closed");
    let err = OpenOptions::new().write(true).open(&lib).expect_err("open for write after the mapping");
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");
    drop(child);
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_seal_script_cannot_be_rewritten_while_its_interpreter_runs() {
    let mut case = Case::new("seal-script", 72, Mode::Enforce);
    let (sh, sh_digest) = unique_busybox(&case.dir, "sh");
    let script = case.dir.join("script");
    let text = format!("#!{} sh\nsleep 2\necho script-done\n", sh.display());
    write_executable(&script, text.as_bytes());
    case.allow(72, &[sh_digest, sha256(text.as_bytes())]);

    let mut cmd = Command::new(&script);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let child = in_cgroup(cmd, &case.cgroup).spawn().expect("exec of a listed script");
    std::thread::sleep(Duration::from_millis(500));
    // The attack: the shell re-reads the script by its fd as it goes; a
    // rewrite while it sleeps would run unsigned lines.
    let err = OpenOptions::new().write(true).open(&script).expect_err("open for write of a running script");
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");
    let out = dd_write(&script, b"echo EVIL\n", (text.len() - 19) as u64, &case.dir);
    assert!(!out.status.success(), "dd rewrote a running script");
    // The positive twin: the script ran to its end, unchanged.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "script: {}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "script-done\n");
    assert_eq!(fs::read(&script).unwrap(), text.as_bytes());
    let events = drain_events(&mut case.enf);
    assert!(reported(&events, Hook::FileOpen, Reason::Sealed, Verdict::Deny), "{events:?}");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_seal_truncation_of_an_executed_file_is_refused() {
    let mut case = Case::new("seal-trunc", 73, Mode::Enforce);
    let (bin, digest) = unique_busybox(&case.dir, "bin");
    case.allow(73, &[digest]);
    assert_runs(&bin, Some(&case.cgroup), "listed binary");
    let len = fs::metadata(&bin).unwrap().len();

    // The attack: truncate(2) by path (no open at all)...
    let c_path = std::ffi::CString::new(bin.as_os_str().as_bytes()).unwrap();
    // SAFETY: truncate(2) with a NUL-terminated path that outlives the call.
    let rc = unsafe { sys::truncate(c_path.as_ptr(), 10) };
    let err = io::Error::last_os_error();
    assert_eq!(rc, -1, "truncate(2) of an exec'd file succeeded");
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");
    // ...and open(O_RDONLY | O_TRUNC), which truncates without FMODE_WRITE.
    let err = OpenOptions::new().read(true).custom_flags(O_TRUNC).open(&bin).expect_err("O_RDONLY|O_TRUNC");
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");
    assert_eq!(fs::metadata(&bin).unwrap().len(), len, "the file was truncated");
    let events = drain_events(&mut case.enf);
    assert!(reported(&events, Hook::InodeSetattr, Reason::Sealed, Verdict::Deny), "{events:?}");
    assert!(reported(&events, Hook::FileOpen, Reason::Sealed, Verdict::Deny), "{events:?}");

    // The positive twin: an audit scope never seals; the same file exec'd
    // there can be truncated.
    let mut audit = Case::new("seal-trunc-audit", 74, Mode::Audit);
    let (bin, digest) = unique_busybox(&audit.dir, "bin");
    audit.allow(74, &[digest]);
    assert_runs(&bin, Some(&audit.cgroup), "listed binary, audit scope");
    let c_path = std::ffi::CString::new(bin.as_os_str().as_bytes()).unwrap();
    // SAFETY: as above.
    let rc = unsafe { sys::truncate(c_path.as_ptr(), 10) };
    assert_eq!(rc, 0, "truncate after an exec in an audit scope: {}", io::Error::last_os_error());
}

/// A memfd (sealable, no close-on-exec) holding `bytes`.
fn sealable_memfd(bytes: &[u8]) -> File {
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new
    // descriptor or -1; a new descriptor is owned by nothing else.
    let file = unsafe {
        let fd = sys::memfd_create(c"imgsign-seal".as_ptr(), MFD_ALLOW_SEALING);
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        File::from_raw_fd(fd)
    };
    (&file).write_all(bytes).expect("fill memfd");
    file
}

fn add_seals(memfd: &File, seals: c_int) {
    // SAFETY: fcntl(F_ADD_SEALS) on a descriptor this File owns.
    let rc = unsafe { fcntl(memfd.as_raw_fd(), F_ADD_SEALS, seals) };
    assert_eq!(rc, 0, "F_ADD_SEALS: {}", io::Error::last_os_error());
}

/// Execs the memfd as busybox through /proc/self/fd with `args`, in `cgroup`.
fn memfd_command(memfd: &File, cgroup: &Cgroup, args: &[&str]) -> Command {
    let mut cmd = Command::new(format!("/proc/self/fd/{}", memfd.as_raw_fd()));
    cmd.arg0("busybox").args(args).stdin(Stdio::null());
    in_cgroup(cmd, cgroup)
}

fn assert_memfd_refused(memfd: &File, cgroup: &Cgroup, runner: &Path, what: &str) {
    match memfd_command(memfd, cgroup, &["true"]).status() {
        Err(e) if is_denial(&e) => println!("{what}: exec denied ({e})"),
        other => panic!("{what}: exec was not denied: {other:?}"),
    }
    let path = PathBuf::from(format!("/proc/self/fd/{}", memfd.as_raw_fd()));
    match mmap_exec_in(cgroup, &path, runner) {
        Err(e) if is_denial(&e) => println!("{what}: executable mapping denied ({e})"),
        other => panic!("{what}: executable mapping was not denied: {other:?}"),
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_seal_memfd_must_be_sealed_against_writes() {
    let mut case = Case::new("seal-memfd", 75, Mode::Enforce);
    let bytes = fs::read(busybox()).unwrap();
    case.allow(75, &[sha256(&bytes)]);

    // The attack: listed bytes in an unsealed memfd, changed from the parent
    // once the child runs. It is refused before it runs.
    let unsealed = sealable_memfd(&bytes);
    assert_memfd_refused(&unsealed, &case.cgroup, &case.runner, "unsealed memfd");
    let events = drain_events(&mut case.enf);
    assert!(reported(&events, Hook::BprmCheck, Reason::Memfd, Verdict::Deny), "{events:?}");
    assert!(reported(&events, Hook::MmapFile, Reason::Memfd, Verdict::Deny), "{events:?}");

    // The positive twin: sealed with F_SEAL_WRITE, it runs and maps; the
    // parent's write while it runs fails with EPERM (the memfd seal).
    let sealed = sealable_memfd(&bytes);
    add_seals(&sealed, F_SEAL_WRITE);
    let mut child = memfd_command(&sealed, &case.cgroup, &["sleep", "1"]).spawn().expect("sealed memfd runs");
    std::thread::sleep(Duration::from_millis(200));
    let err = sealed.write_at(b"X", (bytes.len() - 2) as u64).expect_err("write to a sealed memfd");
    assert_eq!(err.raw_os_error(), Some(EPERM), "{err}");
    assert!(child.wait().unwrap().success());
    let path = PathBuf::from(format!("/proc/self/fd/{}", sealed.as_raw_fd()));
    assert!(mmap_exec_in(&case.cgroup, &path, &case.runner).expect("map a sealed memfd").success());
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_seal_memfd_with_a_writable_alias_is_refused() {
    let mut case = Case::new("seal-alias", 76, Mode::Enforce);
    let bytes = fs::read(busybox()).unwrap();
    case.allow(76, &[sha256(&bytes)]);
    let len = bytes.len();

    // The attack: a shared writable mapping made before F_SEAL_FUTURE_WRITE
    // keeps writing after the seal.
    let memfd = sealable_memfd(&bytes);
    // SAFETY: a fresh shared mapping chosen by the kernel (aliasing no Rust
    // object), unmapped below; not written.
    let alias = unsafe {
        sys::mmap(std::ptr::null_mut(), len, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_SHARED, memfd.as_raw_fd(), 0)
    };
    assert_ne!(alias, sys::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
    add_seals(&memfd, F_SEAL_FUTURE_WRITE);
    assert_memfd_refused(&memfd, &case.cgroup, &case.runner, "memfd with a writable alias");
    let events = drain_events(&mut case.enf);
    assert!(reported(&events, Hook::BprmCheck, Reason::Memfd, Verdict::Deny), "{events:?}");
    // SAFETY: the mapping made above, no longer used.
    unsafe { sys::munmap(alias, len) };

    // The positive twin: F_SEAL_WRITE and no mapping runs.
    let sealed = sealable_memfd(&bytes);
    add_seals(&sealed, F_SEAL_WRITE);
    assert!(memfd_command(&sealed, &case.cgroup, &["true"]).status().expect("sealed memfd").success());
    // And so does F_SEAL_FUTURE_WRITE once its alias is gone.
    assert!(memfd_command(&memfd, &case.cgroup, &["true"]).status().expect("memfd, alias gone").success());
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_seal_io_uring_fixed_buffer_write_is_judged_again() {
    use io_uring::{opcode, types, IoUring};

    let mut case = Case::new("seal-uring", 77, Mode::Enforce);
    let mnt = case.dir.join("tmpfs");
    fs::create_dir(&mnt).unwrap();
    let status = Command::new(busybox()).args(["mount", "-t", "tmpfs", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(status.success(), "mount tmpfs: {status}");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new(busybox()).arg("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let (bin, digest) = unique_busybox(&mnt, "uring");
    case.allow(77, &[digest]);
    let bytes = fs::read(&bin).unwrap();
    let len = bytes.len();

    // Set up the pin before the warm-up (afterwards the file is sealed and
    // cannot be opened for write): map it shared and writable, register
    // that memory as an io_uring fixed buffer, unmap, close.
    let mut ring = IoUring::new(4).expect("io_uring_setup");
    let writer = OpenOptions::new().read(true).write(true).open(&bin).unwrap();
    // SAFETY: a fresh shared mapping chosen by the kernel (aliasing no Rust
    // object), never written through; unmapped below.
    let addr = unsafe {
        sys::mmap(std::ptr::null_mut(), len, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_SHARED, writer.as_raw_fd(), 0)
    };
    assert_ne!(addr, sys::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
    let iov = libc::iovec { iov_base: addr, iov_len: len };
    // SAFETY: the buffer is the mapping above; the kernel pins its pages.
    // It is only used by the READ_FIXED below, which writes within it.
    let registered = unsafe { ring.submitter().register_buffers(std::slice::from_ref(&iov)) };
    // SAFETY: the mapping made above; the kernel keeps the pinned pages.
    unsafe { sys::munmap(addr, len) };
    drop(writer);
    if let Err(e) = registered {
        // A kernel that refuses long-term pins of file pages cannot be
        // attacked this way: say so, and check that it is that refusal.
        assert_eq!(e.raw_os_error(), Some(EOPNOTSUPP), "register_buffers of a tmpfs file mapping: {e}");
        println!("this kernel refuses io_uring fixed buffers on a tmpfs file mapping ({e}): no pinned-page write");
        return;
    }

    // Warm-up: two execs in the scope (listed: they run, and seal the file).
    assert_runs(&bin, Some(&case.cgroup), "listed binary on tmpfs");
    assert_runs(&bin, Some(&case.cgroup), "listed binary on tmpfs");
    let err = OpenOptions::new().write(true).open(&bin).expect_err("sealed");
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");

    // The attack: READ_FIXED from a file into the registered buffer writes
    // the tmpfs file's pages: no open, no writer, the seal does not see it.
    let patch = case.dir.join("patch");
    fs::write(&patch, [bytes[len - 2] ^ 0x20]).unwrap();
    let src = File::open(&patch).unwrap();
    let target = (addr as *mut u8).wrapping_add(len - 2);
    let read = opcode::ReadFixed::new(types::Fd(src.as_raw_fd()), target, 1, 0).offset(0).build();
    // SAFETY: the entry points into the registered buffer (within its
    // length); src outlives the wait below.
    unsafe { ring.submission().push(&read).expect("queue READ_FIXED") };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("a completion");
    assert_eq!(cqe.result(), 1, "READ_FIXED into the pinned tmpfs page");
    let now = fs::read(&bin).unwrap();
    assert_ne!(now, bytes, "the pinned page write did not reach the file");
    println!("io_uring fixed-buffer write changed the sealed tmpfs file (not stopped by the seal)");

    // It must be judged by its new bytes: denied, not served from a cache.
    assert_denied(&bin, &case.cgroup, "tmpfs file changed through a pinned page");
    let events = drain_events(&mut case.enf);
    assert!(
        events
            .iter()
            .any(|e| e.hook == Hook::BprmCheck && e.verdict == Verdict::Deny && e.digest == Some(sha256(&now))),
        "the changed file was not judged by its own digest: {events:?}"
    );
}
