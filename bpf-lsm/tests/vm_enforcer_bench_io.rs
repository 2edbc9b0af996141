//! In-VM benchmarks of what the enforcer costs beyond exec: file-heavy work (the untar of a real
//! Debian root file system, and an open/write/close loop), which every `file_open` and
//! `inode_setattr` program sees, and warm execs from an overlayfs root whose lower layer holds
//! the listed binary (a container's rootfs). Each compares, in one boot and interleaved, the
//! task with no program loaded, with the programs loaded but the task in no scope, and the task
//! in an enforcing scope. Run by `bench/enforce.sh` (the lab with `--filter bench`, `-icount`
//! and the Debian image's tar as the read-only disk `/dev/vdb`); prints `BENCH` lines.
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(unsafe_code)]

mod support;
use support::bench::*;
#[allow(unused_imports)]
use support::*;

/// The layer tar `bench/enforce.sh` attaches (the Debian benchmark image's root file system).
const DATA_DISK: &str = "/dev/vdb";
/// Interleaved rounds of each configuration.
const ROUNDS: u32 = 3;
/// Files written per open/write/close sample, and samples per round.
const FILES: u32 = 500;
const LOOP_SAMPLES: u32 = 5;

/// One open(O_CREAT)/write(4 KB)/close per file, `FILES` files in a fresh directory; the
/// directory is removed afterwards, untimed.
fn write_loop(dir: &Path) -> Duration {
    fs::create_dir_all(dir).unwrap();
    let block = [0x5au8; 4096];
    let took = timed(|| {
        for i in 0..FILES {
            let mut file = File::create(dir.join(format!("f{i}"))).expect("create");
            file.write_all(&block).expect("write");
        }
    });
    fs::remove_dir_all(dir).unwrap();
    took
}

/// `tar -xf /dev/vdb -C dir` by `tar` (a busybox copy on the ext4 scratch disk, where the
/// digest cache applies; from this process's cgroup); the tree is removed afterwards, untimed.
/// The one exec per untar is made warm before timing (see the test), so the figure is the cost
/// of the file work, which is what the per-open programs change; exec costs are measured by
/// the exec benchmark.
fn untar(tar: &Path, dir: &Path) -> Duration {
    fs::create_dir_all(dir).unwrap();
    let took = timed(|| {
        let status = Command::new(tar).args(["tar", "-xf", DATA_DISK, "-C"]).arg(dir).status().expect("tar");
        assert!(status.success(), "tar -xf {DATA_DISK}: {status}");
    });
    fs::remove_dir_all(dir).unwrap();
    took
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_bench_file_io() {
    let dir = scratch_dir("bench-io");
    let with_tar = Path::new(DATA_DISK).exists();
    // A copy on ext4: the initramfs's /bin/busybox is on a file system the digest cache does not
    // trust, so every exec of it would be hashed (once at the exec, once at its mapping).
    let tar = dir.join("busybox-tar");
    fs::copy(busybox(), &tar).unwrap();
    fs::set_permissions(&tar, fs::Permissions::from_mode(0o755)).unwrap();
    let busybox_digest = sha256(&fs::read(&tar).unwrap());
    let cgroup = Cgroup::new("bench-io");
    // As in the exec benchmark, this process runs inside the cgroup, which becomes a scope in
    // the enforced configuration: its own opens and its tar child are then judged.
    (&cgroup.procs()).write_all(b"0").expect("enter the cgroup");
    let _ = write_loop(&dir.join("warm"));
    if with_tar {
        let _ = untar(&tar, &dir.join("warm-tar"));
    }
    let mut samples: [Vec<Duration>; 6] = Default::default();
    for round in 0..ROUNDS {
        let work = dir.join(format!("r{round}"));
        samples[0].extend((0..LOOP_SAMPLES).map(|_| write_loop(&work)));
        if with_tar {
            samples[3].push(untar(&tar, &work));
        }
        let mut enf = attach_private();
        enf.replace_digests(60, &[busybox_digest]).expect("allow");
        std::thread::sleep(Duration::from_millis(200));
        samples[1].extend((0..LOOP_SAMPLES).map(|_| write_loop(&work)));
        if with_tar {
            samples[4].push(untar(&tar, &work));
        }
        enf.set_scope(cgroup.id, scope(60, Mode::Enforce)).expect("add scope");
        // The first exec in the scope hashes the binary (a fresh enforcer has an empty cache).
        assert_runs(&tar, None, "warm the tar binary's digest");
        samples[2].extend((0..LOOP_SAMPLES).map(|_| write_loop(&work)));
        if with_tar {
            samples[5].push(untar(&tar, &work));
        }
        drop(enf);
        std::thread::sleep(Duration::from_millis(200));
    }
    let [loop_bare, loop_loaded, loop_scoped, tar_bare, tar_loaded, tar_scoped] = samples;
    let (loop_bare, loop_loaded, loop_scoped) = (stat(loop_bare), stat(loop_loaded), stat(loop_scoped));
    println!(
        "BENCH-IO open/write/close of {FILES} files of 4 KB on ext4, {ROUNDS}x{LOOP_SAMPLES} samples interleaved: \
         bare {loop_bare}; programs loaded, task unscoped {loop_loaded} = {}; task in an enforcing \
         scope {loop_scoped} = {}",
        ratios(loop_loaded, loop_bare),
        ratios(loop_scoped, loop_bare),
    );
    if with_tar {
        let (tar_bare, tar_loaded, tar_scoped) = (stat(tar_bare), stat(tar_loaded), stat(tar_scoped));
        // A block device's size is in 512-byte sectors in sysfs.
        let sectors = fs::read_to_string("/sys/class/block/vdb/size").unwrap_or_default();
        let size = sectors.trim().parse::<u64>().unwrap_or(0) * 512;
        println!(
            "BENCH-UNTAR busybox tar -xf (its exec warm) of the Debian image's root file system ({DATA_DISK}, {} MB) \
             onto ext4, {ROUNDS} rounds interleaved: bare {tar_bare}; programs loaded, task \
             unscoped {tar_loaded} = {}; in an enforcing scope {tar_scoped} = {}",
            size >> 20,
            ratios(tar_loaded, tar_bare),
            ratios(tar_scoped, tar_bare),
        );
    } else {
        println!("BENCH-UNTAR not measured: no {DATA_DISK} (bench/enforce.sh attaches the Debian image's tar)");
    }
    leave_cgroups();
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_bench_overlay_exec() {
    const RUNS: u32 = 20;
    let dir = scratch_dir("bench-ovl");
    let (lower, upper, work, merged) = (dir.join("lower"), dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    let (direct, digest) = unique_busybox(&lower, "ovl-bench");
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    let status = Command::new(busybox())
        .args(["mount", "-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status()
        .expect("mount overlay");
    assert!(status.success(), "mount overlay: {status}");
    let via_overlay = merged.join(direct.file_name().unwrap());
    let cgroup = Cgroup::new("bench-ovl");
    (&cgroup.procs()).write_all(b"0").expect("enter the cgroup");
    let none = || {};
    let _ = exec_times(&via_overlay, 3, none);
    let (mut bare, mut warm, mut direct_bare, mut direct_warm) = (vec![], vec![], vec![], vec![]);
    let (mut hits, mut execs) = (0, 0);
    for _ in 0..ROUNDS {
        bare.extend(exec_times(&via_overlay, RUNS, none));
        direct_bare.extend(exec_times(&direct, RUNS, none));
        let mut enf = attach_private();
        enf.replace_digests(61, &[digest]).expect("allow");
        enf.set_scope(cgroup.id, scope(61, Mode::Enforce)).expect("add scope");
        let _ = exec_times(&via_overlay, 1, none); // the first, cold, exec
        let before = enf.cache_hits().unwrap();
        warm.extend(exec_times(&via_overlay, RUNS, none));
        hits += enf.cache_hits().unwrap() - before;
        execs += RUNS;
        direct_warm.extend(exec_times(&direct, RUNS, none));
        drop(enf);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (bare, warm, direct_bare, direct_warm) = (stat(bare), stat(warm), stat(direct_bare), stat(direct_warm));
    println!(
        "BENCH-OVERLAY fork+exec of a {} KB listed binary through overlayfs (lower on ext4), \
         {ROUNDS}x{RUNS} interleaved: bare {bare}; enforced, warm {warm} = {} ({hits} cache hits \
         in {execs} warm execs); the same file on ext4 directly: bare {direct_bare}, enforced warm \
         {direct_warm} = {}",
        fs::metadata(&direct).unwrap().len() / 1024,
        ratios(warm, bare),
        ratios(direct_warm, direct_bare),
    );
    leave_cgroups();
    let _ = Command::new(busybox()).arg("umount").arg(&merged).status();
    fs::remove_dir_all(dir).ok();
}
