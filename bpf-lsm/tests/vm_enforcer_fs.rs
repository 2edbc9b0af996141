//! In-VM tests of which file a decision is about: overlayfs' real file (the one a mapping runs)
//! and remote file systems (a minimal FUSE server in the test serves one content to the hash and
//! another to a later read). Run by the kernel lab (`#[ignore]`d on the host).
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// The attacks these tests make need raw syscalls (mmap, mount, pre_exec, /dev/fuse), each in a commented unsafe block.
#![allow(unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;

use std::ffi::{c_char, c_int, c_ulong, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

extern "C" {
    fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    fn umount2(target: *const c_char, flags: c_int) -> c_int;
}
const MNT_DETACH: c_int = 2;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Lazily unmounts a mount point on drop.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let c = cstr(&self.0);
        // SAFETY: umount2(2) with a NUL-terminated path that outlives the call.
        unsafe { umount2(c.as_ptr(), MNT_DETACH) };
    }
}

/// Maps `fd` (already open in the parent) `PROT_READ | PROT_EXEC` from a
/// child in `cgroup`, then execs `runner true`. Returns the mmap's error.
fn mmap_fd_exec_in(cgroup: &Cgroup, fd: &File, runner: &Path) -> io::Result<ExitStatus> {
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new(runner);
    cmd.arg("true").stdin(Stdio::null());
    let mut cmd = in_cgroup(cmd, cgroup);
    // SAFETY: runs in the forked child before exec, after the move into the
    // cgroup. It makes mmap(2)/munmap(2) syscalls on a descriptor the parent
    // keeps open and reads errno: no allocation, no lock. The mapping is a
    // fresh one chosen by the kernel (addr NULL), aliasing no Rust object,
    // unmapped before returning.
    unsafe {
        cmd.pre_exec(move || {
            let addr = sys::mmap(std::ptr::null_mut(), 4096, sys::PROT_READ | sys::PROT_EXEC, sys::MAP_PRIVATE, raw, 0);
            if addr == sys::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            sys::munmap(addr, 4096);
            Ok(())
        });
    }
    cmd.status()
}

/// The first `len` bytes a private read-only mapping of `fd` shows.
fn mapped_bytes(fd: &File, len: usize) -> Vec<u8> {
    // SAFETY: a fresh private read-only mapping chosen by the kernel (aliasing
    // no Rust object), read within `len` bytes (the file is longer), then
    // unmapped.
    unsafe {
        let addr = sys::mmap(std::ptr::null_mut(), len, sys::PROT_READ, sys::MAP_PRIVATE, fd.as_raw_fd(), 0);
        assert_ne!(addr, sys::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
        let bytes = std::slice::from_raw_parts(addr as *const u8, len).to_vec();
        sys::munmap(addr, len);
        bytes
    }
}

// ---------------------------------------------------------------------------
// Overlayfs: the decision is about the real file that is mapped.
// ---------------------------------------------------------------------------

struct Overlay {
    dir: PathBuf,
    lower: PathBuf,
    merged: PathBuf,
}

impl Overlay {
    fn new(name: &str) -> Self {
        let dir = scratch_dir(name);
        let (lower, upper, work, merged) = (dir.join("lower"), dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&lower, &upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let status = Command::new(busybox())
            .args(["mount", "-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .status()
            .expect("mount overlay");
        assert!(status.success(), "mount overlay: {status}");
        Overlay { dir, lower, merged }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let c = cstr(&self.merged);
        // SAFETY: umount2(2) with a NUL-terminated path that outlives the call.
        unsafe { umount2(c.as_ptr(), MNT_DETACH) };
        fs::remove_dir_all(&self.dir).ok();
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_fs_overlay_old_fd_after_copy_up_is_judged_on_the_mapped_lower() {
    let ovl = Overlay::new("fs-ovl-copyup");
    let (runner, runner_digest) = unique_busybox(&ovl.dir, "fs-ovl-runner");
    // The lower file: bytes nobody listed. The upper (after the copy-up):
    // listed bytes of the same length.
    let mut unlisted = fs::read(busybox()).unwrap();
    unlisted.extend_from_slice(b"\nimgsign-fs-ovl-lower\n");
    let mut listed = unlisted.clone();
    let at = listed.len() - 3;
    listed[at] ^= 0x20;
    write_executable(&ovl.lower.join("busybox-lib"), &unlisted);
    // A positive twin: a listed lower file, never copied up.
    let (twin, twin_digest) = unique_busybox(&ovl.lower, "fs-ovl-twin");
    let twin = ovl.merged.join(twin.file_name().unwrap());

    let cgroup = Cgroup::new("fs-ovl-copyup");
    let mut enf = attach();
    enf.replace_digests(60, &[sha256(&listed), runner_digest, twin_digest]).expect("allow");
    enf.set_scope(cgroup.id, scope(60, Mode::Enforce)).expect("add scope");

    let via = ovl.merged.join("busybox-lib");
    // 1. An fd opened while the file is only in the lower layer.
    let old = File::open(&via).expect("open the overlay file");
    // 2. The copy-up: an open for write through the overlay, then other bytes.
    fs::write(&via, &listed).expect("copy up and rewrite through the overlay");
    // What the old fd maps is the lower (its real file), while a read through
    // the overlay shows the upper: the premise of the attack, on this kernel.
    assert_eq!(mapped_bytes(&old, 64), unlisted[..64], "the old fd does not map the lower");
    let tail = listed.len() - 16..listed.len();
    assert_eq!(
        mapped_bytes(&File::open(&via).unwrap(), listed.len())[tail.clone()],
        listed[tail],
        "a new fd does not map the upper"
    );

    // 3. PROT_EXEC through the old fd: the mapping would run the lower's
    // bytes, which are not listed. A hash of the overlay file reads the
    // (listed) upper: deciding on it would allow this.
    match mmap_fd_exec_in(&cgroup, &old, &runner) {
        Err(e) if is_denial(&e) => println!("PROT_EXEC of the old fd (maps the lower): denied"),
        other => panic!("PROT_EXEC of the old fd after the copy-up was not denied: {other:?}"),
    }
    let events = drain_events(&mut enf);
    assert!(
        events
            .iter()
            .any(|e| e.hook == Hook::MmapFile && e.verdict == Verdict::Deny && e.digest != Some(sha256(&listed))),
        "no denial about the mapped file: {events:?}"
    );

    // Positive twins: a new fd maps the upper (listed); a listed lower file
    // that was never copied up maps and runs through an fd opened earlier.
    let new = File::open(&via).unwrap();
    assert!(mmap_fd_exec_in(&cgroup, &new, &runner).expect("map the listed upper").success());
    let early = File::open(&twin).unwrap();
    assert!(mmap_fd_exec_in(&cgroup, &early, &runner).expect("map the listed lower").success());
    assert_runs(&twin, Some(&cgroup), "listed lower binary through the overlay");
    assert_runs(&via, Some(&cgroup), "listed upper binary through the overlay");
}

// ---------------------------------------------------------------------------
// FUSE: a minimal server (raw /dev/fuse protocol) whose file changes its
// content at every open, as a malicious server (or a network file system
// another machine writes to) can do between the hash and the page fault.
// ---------------------------------------------------------------------------

mod fuse {
    use super::*;
    use std::io::Read;

    const FUSE_LOOKUP: u32 = 1;
    const FUSE_FORGET: u32 = 2;
    const FUSE_GETATTR: u32 = 3;
    const FUSE_OPEN: u32 = 14;
    const FUSE_READ: u32 = 15;
    const FUSE_STATFS: u32 = 17;
    const FUSE_RELEASE: u32 = 18;
    const FUSE_GETXATTR: u32 = 22;
    const FUSE_FLUSH: u32 = 25;
    const FUSE_INIT: u32 = 26;
    const FUSE_INTERRUPT: u32 = 36;
    const FUSE_BATCH_FORGET: u32 = 42;
    const ENOENT: i32 = 2;
    const ENOSYS: i32 = 38;
    const FILE_NODE: u64 = 2;
    pub const FILE_NAME: &str = "busybox-fuse";

    /// A mounted FUSE file system serving one file, [`FILE_NAME`], whose content
    /// alternates between `contents[0]` and `contents[1]` at every open
    /// (direct_io off: reads go through the page cache, which FUSE drops
    /// at each open since the server does not ask to keep it).
    pub struct Server {
        pub mnt: PathBuf,
        pub opens: Arc<AtomicU64>,
        _unmount: Unmount,
    }

    fn u32le(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn u64le(v: &mut Vec<u8>, x: u64) {
        v.extend_from_slice(&x.to_le_bytes());
    }

    /// struct fuse_attr (88 bytes).
    fn attr(v: &mut Vec<u8>, ino: u64, size: u64, mode: u32) {
        for x in [ino, size, size.div_ceil(512), 0, 0, 0] {
            u64le(v, x);
        }
        for x in [0, 0, 0, mode, 1, 0, 0, 0, 4096, 0] {
            u32le(v, x);
        }
    }

    fn reply(dev: &File, unique: u64, error: i32, payload: &[u8]) {
        let mut out = Vec::with_capacity(16 + payload.len());
        u32le(&mut out, (16 + payload.len()) as u32);
        out.extend_from_slice(&error.to_le_bytes());
        u64le(&mut out, unique);
        out.extend_from_slice(payload);
        // One write per reply, as /dev/fuse requires. A failure means the
        // request was interrupted or the connection is gone: nothing to do.
        let _ = (&*dev).write(&out);
    }

    impl Server {
        pub fn mount(dir: &Path, contents: [Vec<u8>; 2]) -> Server {
            assert_eq!(contents[0].len(), contents[1].len());
            let mnt = dir.join("fuse");
            fs::create_dir_all(&mnt).unwrap();
            let dev = OpenOptions::new().read(true).write(true).open("/dev/fuse").expect("open /dev/fuse");
            let opts = CString::new(format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd())).unwrap();
            let (src, fstype, target) =
                (CString::new("imgsign-fuse").unwrap(), CString::new("fuse").unwrap(), cstr(&mnt));
            // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
            let rc =
                unsafe { mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, opts.as_ptr() as *const c_void) };
            assert_eq!(rc, 0, "mount fuse: {}", io::Error::last_os_error());
            let opens = Arc::new(AtomicU64::new(0));
            let counter = opens.clone();
            std::thread::spawn(move || serve(dev, contents, counter));
            Server { mnt: mnt.clone(), opens, _unmount: Unmount(mnt) }
        }

        pub fn file(&self) -> PathBuf {
            self.mnt.join(FILE_NAME)
        }
    }

    fn serve(dev: File, contents: [Vec<u8>; 2], opens: Arc<AtomicU64>) {
        let size = contents[0].len() as u64;
        let mut buf = vec![0u8; 1 << 21];
        loop {
            let n = match (&dev).read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(2) => continue, // ENOENT: request aborted
                Err(_) => return,                                  // unmounted
            };
            if n < 40 {
                continue;
            }
            let r32 = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
            let r64 = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
            let (opcode, unique, node) = (r32(4), r64(8), r64(16));
            let body = &buf[40..n];
            let mut out = Vec::new();
            match opcode {
                FUSE_INIT => {
                    // struct fuse_init_out: 7.31, no flags, max_write 128 KiB.
                    u32le(&mut out, 7);
                    u32le(&mut out, 31);
                    u32le(&mut out, u32::from_le_bytes(body[8..12].try_into().unwrap()));
                    u32le(&mut out, 0);
                    out.extend_from_slice(&16u16.to_le_bytes());
                    out.extend_from_slice(&12u16.to_le_bytes());
                    u32le(&mut out, 128 * 1024);
                    u32le(&mut out, 1);
                    out.resize(64, 0);
                    reply(&dev, unique, 0, &out);
                }
                FUSE_LOOKUP => {
                    let name = body.split(|&b| b == 0).next().unwrap_or_default();
                    if node == 1 && name == FILE_NAME.as_bytes() {
                        // struct fuse_entry_out, no caching of entry or attributes.
                        for x in [FILE_NODE, 1, 0, 0] {
                            u64le(&mut out, x);
                        }
                        u32le(&mut out, 0);
                        u32le(&mut out, 0);
                        attr(&mut out, FILE_NODE, size, 0o100755);
                        reply(&dev, unique, 0, &out);
                    } else {
                        reply(&dev, unique, -ENOENT, &[]);
                    }
                }
                FUSE_GETATTR => {
                    u64le(&mut out, 0);
                    u32le(&mut out, 0);
                    u32le(&mut out, 0);
                    if node == 1 {
                        attr(&mut out, 1, 0, 0o40755);
                    } else {
                        attr(&mut out, FILE_NODE, size, 0o100755);
                    }
                    reply(&dev, unique, 0, &out);
                }
                FUSE_OPEN => {
                    // The file handle says which content this open is served.
                    let fh = opens.fetch_add(1, Ordering::SeqCst) % 2;
                    u64le(&mut out, fh);
                    u32le(&mut out, 0); // no FOPEN_DIRECT_IO, no FOPEN_KEEP_CACHE
                    u32le(&mut out, 0);
                    reply(&dev, unique, 0, &out);
                }
                FUSE_READ => {
                    let (fh, offset, len) = (
                        u64::from_le_bytes(body[0..8].try_into().unwrap()),
                        u64::from_le_bytes(body[8..16].try_into().unwrap()),
                        u32::from_le_bytes(body[16..20].try_into().unwrap()),
                    );
                    let content = &contents[(fh % 2) as usize];
                    let start = (offset as usize).min(content.len());
                    let end = (start + len as usize).min(content.len());
                    reply(&dev, unique, 0, &content[start..end]);
                }
                FUSE_STATFS => {
                    // struct fuse_kstatfs (80 bytes): overlayfs asks when stacking on it.
                    for x in [1024, 0, 0, 16, 0] {
                        u64le(&mut out, x);
                    }
                    for x in [4096, 255, 4096, 0] {
                        u32le(&mut out, x);
                    }
                    out.resize(80, 0);
                    reply(&dev, unique, 0, &out);
                }
                FUSE_RELEASE | FUSE_FLUSH => reply(&dev, unique, 0, &[]),
                FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => {} // no reply
                FUSE_GETXATTR => reply(&dev, unique, -ENOSYS, &[]),
                _ => reply(&dev, unique, -ENOSYS, &[]),
            }
        }
    }
}

/// A FUSE server serving a listed busybox and an unlisted variant, an
/// enforcing scope, and a listed runner on ext4.
struct FuseCase {
    dir: PathBuf,
    server: fuse::Server,
    listed: Vec<u8>,
    runner: PathBuf,
    cgroup: Cgroup,
    enf: Enforcer,
}

impl FuseCase {
    fn new(name: &str, scope_id: u32, remote_fs: bool) -> Self {
        let dir = scratch_dir(name);
        let (runner, runner_digest) = unique_busybox(&dir, "fs-fuse-runner");
        let mut listed = fs::read(busybox()).unwrap();
        listed.extend_from_slice(format!("\nimgsign-{name}\n").as_bytes());
        let mut other = listed.clone();
        let at = other.len() - 3;
        other[at] ^= 0x20;
        let server = fuse::Server::mount(&dir, [listed.clone(), other]);
        let cgroup = Cgroup::new(name);
        let mut enf = attach();
        enf.replace_digests(scope_id, &[sha256(&listed), runner_digest]).expect("allow");
        let mut s = scope(scope_id, Mode::Enforce);
        s.remote_fs = remote_fs;
        enf.set_scope(cgroup.id, s).expect("add scope");
        FuseCase { dir, server, listed, runner, cgroup, enf }
    }
}

impl Drop for FuseCase {
    fn drop(&mut self) {
        let c = cstr(&self.server.mnt);
        // SAFETY: umount2(2) with a NUL-terminated path that outlives the call.
        unsafe { umount2(c.as_ptr(), MNT_DETACH) };
        fs::remove_dir_all(&self.dir).ok();
    }
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_fs_fuse_exec_and_mapping_are_refused_without_remote_fs() {
    let mut case = FuseCase::new("fs-fuse-refused", 61, false);
    let file = case.server.file();
    // Outside the scope the file runs: the server works, and its first
    // content is the listed one.
    assert_eq!(fs::read(&file).expect("read through FUSE"), case.listed, "first open: listed bytes");
    assert_runs(&file, None, "the FUSE file outside any scope");
    // In the scope: refused whatever it serves (two execs: both contents).
    for round in 0..2 {
        assert_denied(&file, &case.cgroup, &format!("exec from FUSE, round {round}"));
    }
    let fd = File::open(&file).unwrap();
    match mmap_fd_exec_in(&case.cgroup, &fd, &case.runner) {
        Err(e) if is_denial(&e) => println!("PROT_EXEC mapping of a FUSE file: denied"),
        other => panic!("PROT_EXEC mapping of a FUSE file was not denied: {other:?}"),
    }
    let events = drain_events(&mut case.enf);
    for hook in [Hook::BprmCheck, Hook::MmapFile] {
        assert!(
            events.iter().any(|e| e.hook == hook && e.verdict == Verdict::Deny && e.reason == Reason::RemoteFs),
            "no {hook:?} denial with reason RemoteFs: {events:?}"
        );
    }
    assert!(
        !events.iter().any(|e| e.reason == Reason::RemoteFs && e.verdict != Verdict::Deny),
        "a remote-fs decision that was not a denial: {events:?}"
    );
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_fs_fuse_with_remote_fs_is_judged_by_digest() {
    let mut case = FuseCase::new("fs-fuse-allowed", 62, true);
    let file = case.server.file();
    // The server alternates its content at every open: with the scope's
    // opt-in, each exec is judged by the digest of what that open served.
    let (mut ran, mut denied) = (0, 0);
    for _ in 0..4 {
        match run_true(&file, Some(&case.cgroup)) {
            Ok(status) if status.success() => ran += 1,
            Err(e) if is_denial(&e) => denied += 1,
            other => panic!("exec from FUSE with remote_fs: {other:?}"),
        }
    }
    println!("remote_fs scope: {ran} execs of the listed content ran, {denied} of the other were denied");
    assert!(case.server.opens.load(Ordering::SeqCst) >= 4, "the server was not asked to open the file");
    assert!(ran > 0 && denied > 0, "expected both contents to be served and judged: ran {ran}, denied {denied}");
    let events = drain_events(&mut case.enf);
    assert!(
        events.iter().any(|e| e.verdict == Verdict::Deny && e.reason == Reason::Digest && e.hash_ret == 4),
        "the other content was not refused by its digest: {events:?}"
    );
    assert!(
        !events.iter().any(|e| e.reason == Reason::RemoteFs),
        "a remote-fs refusal in an opted-in scope: {events:?}"
    );
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_fs_overlay_over_fuse_counts_as_remote() {
    let mut case = FuseCase::new("fs-fuse-ovl", 63, false);
    // An overlay whose lower layer is the FUSE mount: the real file is on FUSE.
    let (upper, work, merged) = (case.dir.join("upper"), case.dir.join("work"), case.dir.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let opts =
        format!("lowerdir={},upperdir={},workdir={}", case.server.mnt.display(), upper.display(), work.display());
    let status = Command::new(busybox())
        .args(["mount", "-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .expect("mount overlay");
    assert!(status.success(), "mount overlay over FUSE: {status}");
    let _unmount = Unmount(merged.clone());
    let via = merged.join(fuse::FILE_NAME);
    assert_runs(&via, None, "the FUSE file through the overlay, outside any scope");
    assert_denied(&via, &case.cgroup, "exec of a FUSE file through an overlay");
    let events = drain_events(&mut case.enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::BprmCheck && e.verdict == Verdict::Deny && e.reason == Reason::RemoteFs),
        "no exec denial with reason RemoteFs: {events:?}"
    );
}
