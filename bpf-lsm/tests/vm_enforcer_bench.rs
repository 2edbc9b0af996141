//! In-VM benchmark of the enforcer: fork+exec latency of a listed binary bare, with the enforcer
//! loaded but the task unscoped, enforced cold and with a warm digest cache, and under IMA
//! measurement and appraisal (the peer); first exec of a 20 MB binary. Run by the kernel lab
//! (`#[ignore]`d on the host); prints `BENCH` lines.
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// The attacks these tests make need raw syscalls (mmap, truncate, setxattr, pre_exec), each in a commented unsafe block.
#![allow(unsafe_code)]

mod support;
use support::bench::*;
#[allow(unused_imports)]
use support::*;

/// Loads an IMA policy that measures execs of files owned by uid 4242 and
/// appraises execs of files owned by uid 4243 (so no other file in the lab
/// is affected). Without CONFIG_IMA_WRITE_POLICY the policy can be written
/// once per boot: only this test writes it.
fn load_ima_policy() -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open("/sys/kernel/security/ima/policy")?;
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
    let rc = unsafe { sys::setxattr(c_path.as_ptr(), c"security.ima".as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
    // A fresh copy renamed onto the path before an exec is a new inode with
    // no cache entry, so that exec hashes (as every exec did before the
    // cache). (An open for write of the exec'd file would fail: the exec in
    // the scope sealed it.)
    let small_bytes = fs::read(&small).unwrap();
    let fresh = dir.join("busybox-small.next");
    let invalidate = || {
        write_executable(&fresh, &small_bytes);
        fs::rename(&fresh, &small).unwrap();
    };

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
        let mut enf = attach_private();
        enf.replace_digests(30, &[small_digest, big_digest]).expect("allow");
        std::thread::sleep(Duration::from_millis(200));
        unscoped.extend(exec_times(&small, RUNS, none));
        enf.set_scope(cgroup.id, scope(30, Mode::Enforce)).expect("add scope");
        cold.extend(exec_times(&small, RUNS, invalidate));
        let _ = exec_times(&small, 1, none); // fills the cache
        let hits = enf.cache_hits().unwrap();
        warm.extend(exec_times(&small, RUNS, none));
        assert!(enf.cache_hits().unwrap() >= hits + u64::from(RUNS), "warm execs did not use the cache");
        big_first.extend(exec_times(&big, 1, none));
        let hits = enf.cache_hits().unwrap();
        big_warm.extend(exec_times(&big, 3, none));
        assert!(enf.cache_hits().unwrap() >= hits + 3, "the second exec of the 20 MB binary did not use the cache");
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
    assert!(matches!(&refused, Err(e) if is_denial(e)), "IMA appraisal let a file with a wrong hash run: {refused:?}");
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
