//! In-VM tests of the enforcer's per-inode digest cache: every way of changing a file's content
//! must invalidate it. Run by the kernel lab (`#[ignore]`d on the host).
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// The attacks these tests make need raw syscalls (mmap, truncate, setxattr, pre_exec), each in a commented unsafe block.
#![allow(unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;
// ---------------------------------------------------------------------------
// Per-inode digest cache: each test warms the cache with a listed binary,
// then changes the content in a way that must invalidate it, and checks that
// the next exec of the (now unlisted) content is judged by its new digest.
// Each fails if the corresponding invalidation is missing (checked by
// disabling it once). The scopes AUDIT: in an enforce scope the warm-up
// seals the file (seal.h), and the writes below fail with ETXTBSY
// (vm_enforcer_seal.rs tests that); an audit scope caches the same way but
// never seals, and reports the digest it judged, which is the proof here.
// ---------------------------------------------------------------------------

const ETXTBSY: i32 = 26;

/// A listed file (busybox plus a tag) in an auditing scope, with its bytes.
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
        assert_on_ext4(&dir);
        let (path, digest) = unique_busybox(&dir, &format!("cache-{name}"));
        let (runner, runner_digest) = unique_busybox(&dir, "runner");
        let bytes = fs::read(&path).unwrap();
        let cgroup = Cgroup::new(name);
        let mut enf = attach();
        enf.replace_digests(scope_id, &[digest, runner_digest]).expect("allow");
        enf.set_scope(cgroup.id, scope(scope_id, Mode::Audit)).expect("add scope");
        // The runner's own entry is filled now, so that later fill counts
        // are about the file under test only.
        assert_runs(&runner, Some(&cgroup), "runner");
        assert_runs(&runner, Some(&cgroup), "runner");
        CacheCase { dir, path, bytes, runner, cgroup, enf }
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
        assert!(self.enf.cache_hits().expect("stats") > hits, "{what}: the second exec did not use the cache");
    }

    /// Drops the events reported so far.
    fn forget_events(&mut self) {
        while self.enf.next_event().expect("read event").is_some() {}
    }

    /// Runs the file, whose content is now unlisted: the exec must be judged
    /// by the digest of the file's current content (an audit finding; a
    /// stale cache entry would have served the listed digest, allowed and
    /// not reported). With `etxtbsy_ok`, an exec refused with ETXTBSY (a
    /// writer is open: nothing was judged) is accepted too.
    fn assert_not_run(&mut self, etxtbsy_ok: bool, what: &str) {
        self.forget_events();
        let digest = sha256(&fs::read(&self.path).unwrap());
        match run_true(&self.path, Some(&self.cgroup)) {
            Ok(status) => println!("{what}: ran in the audit scope ({status})"),
            Err(e) if etxtbsy_ok && e.raw_os_error() == Some(ETXTBSY) => {
                println!("{what}: ETXTBSY");
                return;
            }
            Err(e) => panic!("{what}: exec failed in an audit scope: {e}"),
        }
        let events = drain_events(&mut self.enf);
        assert!(
            events.iter().any(|e| e.hook == Hook::BprmCheck && e.verdict == Verdict::Audit && e.digest == Some(digest)),
            "{what}: the exec was not judged by the new content's digest: {events:?}"
        );
    }

    /// Runs the file, whose content is listed again: nothing to report.
    fn assert_listed(&mut self, what: &str) {
        self.forget_events();
        assert_runs(&self.path, Some(&self.cgroup), what);
        let events = drain_events(&mut self.enf);
        assert!(
            !events.iter().any(|e| e.hook == Hook::BprmCheck && e.verdict == Verdict::Audit),
            "{what}: judged unlisted: {events:?}"
        );
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

/// The lab's /tmp is an ext4 disk (tmpfs is never cached): the files here
/// must be on it for these tests to exercise the cache.
fn assert_on_ext4(dir: &Path) {
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs(2) with a NUL-terminated path and a zeroed struct it fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both outlive the call.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statfs {}: {}", dir.display(), io::Error::last_os_error());
    assert_eq!(st.f_type, 0xEF53, "{} is not on ext4 (f_type {:#x})", dir.display(), st.f_type);
}

fn pwrite_all(file: &File, bytes: &[u8], offset: u64) {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset).expect("pwrite");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_write_through_a_new_fd_invalidates() {
    let mut case = CacheCase::new("cache-write", 40);
    case.warm("listed binary");
    let unlisted = case.unlisted_bytes();
    // In place, no truncation: only the open for write can tell.
    let file = OpenOptions::new().write(true).open(&case.path).unwrap();
    pwrite_all(&file, &unlisted[unlisted.len() - 2..], (unlisted.len() - 2) as u64);
    drop(file);
    case.assert_not_run(false, "after write() through an fd opened after the warm-up");
    // And back: the cache now holds the unlisted digest; restoring the
    // listed bytes must make it run again.
    let file = OpenOptions::new().write(true).open(&case.path).unwrap();
    pwrite_all(&file, &case.bytes[case.bytes.len() - 2..], (case.bytes.len() - 2) as u64);
    drop(file);
    case.assert_listed("listed bytes restored");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_writer_opened_before_the_warm_up_is_never_trusted() {
    let mut case = CacheCase::new("cache-early", 41);
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
    pwrite_all(&file, &unlisted[unlisted.len() - 2..], (unlisted.len() - 2) as u64);
    case.assert_not_run(true, "unlisted bytes, writer still open");
    case.forget_events();
    assert!(case.map_exec().expect("map the unlisted file (audit)").success());
    let unlisted_digest = sha256(&fs::read(&case.path).unwrap());
    let events = drain_events(&mut case.enf);
    assert!(
        events
            .iter()
            .any(|e| e.hook == Hook::MmapFile && e.verdict == Verdict::Audit && e.digest == Some(unlisted_digest)),
        "mapping of the unlisted bytes, writer open, not judged by its digest: {events:?}"
    );
    drop(file);
    case.assert_not_run(false, "unlisted bytes written through an fd opened before the warm-up");
    assert_eq!(filled, 0, "the cache was filled while a writer was open");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_truncate_by_path_invalidates() {
    let mut case = CacheCase::new("cache-trunc", 42);
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
    let mut case = CacheCase::new("cache-shmap", 43);
    case.warm("listed binary");
    let len = case.bytes.len();
    let file = OpenOptions::new().read(true).write(true).open(&case.path).unwrap();
    // SAFETY: a fresh shared mapping chosen by the kernel (aliasing no Rust
    // object) of the whole file, written through a raw pointer within its
    // length, then unmapped.
    let addr = unsafe {
        sys::mmap(std::ptr::null_mut(), len, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_SHARED, file.as_raw_fd(), 0)
    };
    assert_ne!(addr, sys::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
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
    case.assert_not_run(false, "after a write through a shared mapping whose fd was closed");
    assert_eq!(filled, 0, "the cache was filled while a writable shared mapping existed");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_rename_onto_the_path_is_another_inode() {
    let mut case = CacheCase::new("cache-rename", 44);
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
    let file = OpenOptions::new().read(true).custom_flags(O_TRUNC).open(&case.path).expect("open O_RDONLY|O_TRUNC");
    drop(file);
    assert_eq!(fs::metadata(&case.path).unwrap().len(), 0, "not truncated");
    // An empty file is judged before any binary handler looks at it. A
    // stale cache entry would let it through to ENOEXEC (and glibc would
    // then try /bin/sh on it: so the proof is the audit event carrying the
    // empty content's digest).
    let result = run_true(&case.path, Some(&case.cgroup));
    let empty = sha256(b"");
    let events = drain_events(&mut case.enf);
    assert!(
        events.iter().any(|e| e.verdict == Verdict::Audit && e.digest == Some(empty)),
        "the truncated (empty) content was not judged by its own digest: {result:?}, {events:?}"
    );
    println!("empty file after O_RDONLY|O_TRUNC: judged by its own digest ({result:?})");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_write_through_a_hard_link_invalidates() {
    let mut case = CacheCase::new("cache-link", 46);
    let link = case.dir.join("other-name");
    fs::hard_link(&case.path, &link).unwrap();
    case.warm("listed binary");
    let unlisted = case.unlisted_bytes();
    let file = OpenOptions::new().write(true).open(&link).unwrap();
    pwrite_all(&file, &unlisted[unlisted.len() - 2..], (unlisted.len() - 2) as u64);
    drop(file);
    case.assert_not_run(false, "after a write through another hard link");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_cache_on_overlayfs_follows_the_real_file() {
    let mut case = CacheCase::new("cache-ovl", 47);
    let (lower, upper, work, merged) =
        (case.dir.join("lower"), case.dir.join("upper"), case.dir.join("work"), case.dir.join("merged"));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    // Two lower files with the listed bytes: one is written behind the
    // overlay, the other through it (a copy-up).
    let (behind, through) = (lower.join("busybox-behind"), lower.join("busybox-through"));
    write_executable(&behind, &case.bytes);
    write_executable(&through, &case.bytes);
    let status = Command::new(busybox())
        .args(["mount", "-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display()))
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
    let unlisted = case.unlisted_bytes();
    let tail = (unlisted.len() - 2) as u64;

    // Warm execs of an overlay file use the cache (keyed on the overlay
    // inode, recorded for its real lower file).
    for name in ["busybox-behind", "busybox-through"] {
        let via_overlay = merged.join(name);
        assert_runs(&via_overlay, Some(&case.cgroup), "listed binary through overlayfs");
        let hits = case.enf.cache_hits().unwrap();
        assert_runs(&via_overlay, Some(&case.cgroup), "listed binary through overlayfs");
        assert!(case.enf.cache_hits().unwrap() > hits, "{name}: the warm exec through overlayfs did not use the cache");
    }

    // A write to the lower file behind the mount (no open of the overlay
    // inode) must be seen: the real file's own write generation.
    let file = OpenOptions::new().write(true).open(&behind).unwrap();
    pwrite_all(&file, &unlisted[unlisted.len() - 2..], tail);
    drop(file);
    let judged = |case: &mut CacheCase, path: &Path, what: &str| {
        case.forget_events();
        assert_runs(path, Some(&case.cgroup), what);
        let digest = sha256(&fs::read(path).unwrap());
        let events = drain_events(&mut case.enf);
        assert!(
            events.iter().any(|e| e.hook == Hook::BprmCheck && e.verdict == Verdict::Audit && e.digest == Some(digest)),
            "{what}: not judged by its new digest: {events:?}"
        );
    };
    judged(&mut case, &merged.join("busybox-behind"), "overlay file after a write to its lower file");

    // A write through the overlay copies the file up: the next exec maps
    // the new upper file and is judged by its bytes.
    let file = OpenOptions::new().write(true).open(merged.join("busybox-through")).unwrap();
    pwrite_all(&file, &unlisted[unlisted.len() - 2..], tail);
    drop(file);
    assert!(upper.join("busybox-through").exists(), "the write did not copy the file up");
    judged(&mut case, &merged.join("busybox-through"), "overlay file after a write through the overlay");
    // Its lower file is unchanged and its digest listed: exec it directly
    // twice and it stays allowed (the copy-up did not poison anything).
    assert_runs(&through, Some(&case.cgroup), "the lower file after the copy-up");
    // And a write to the new upper file behind the mount is seen as well.
    let mut relisted = unlisted.clone();
    let at = relisted.len() - 3;
    relisted[at] ^= 0x01;
    assert_runs(&merged.join("busybox-through"), Some(&case.cgroup), "warm the upper file");
    let file = OpenOptions::new().write(true).open(upper.join("busybox-through")).unwrap();
    pwrite_all(&file, &relisted[at..], at as u64);
    drop(file);
    judged(&mut case, &merged.join("busybox-through"), "overlay file after a write to its upper file");
}
