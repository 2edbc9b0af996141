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
// Tests print what they saw (the lab shows it); the attacks need raw syscalls (mmap, pre_exec),
// each in a commented unsafe block.
#![allow(clippy::print_stdout, clippy::print_stderr, unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;
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
    enf.replace_digests(1, &[listed_digest]).expect("allow");
    enf.set_scope(cgroup.id, scope(1, Mode::Enforce)).expect("add scope");

    assert_runs(&listed, Some(&cgroup), "listed binary");
    assert_runs(&renamed, Some(&cgroup), "copy of the listed binary under another name");
    assert_denied(&unlisted, &cgroup, "unlisted binary");
    assert_denied(&busybox(), &cgroup, "/bin/busybox (not in the set)");

    // Removing the scope lifts enforcement for the cgroup.
    enf.remove_scope(cgroup.id).expect("remove scope");
    enf.remove_scope(cgroup.id).expect("removing it again is not an error");
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
    // The shared enforcer's drop counter counts since it was loaded (earlier tests included).
    let dropped_before = enf.dropped_events().expect("stats");
    enf.replace_digests(7, &[listed_digest]).expect("allow");
    enf.set_scope(cgroup.id, scope(7, Mode::Audit)).expect("add scope");

    assert_runs(&listed, Some(&cgroup), "listed binary, audit");
    let quiet = drain_events(&mut enf);
    assert!(quiet.is_empty(), "allowed content must not be reported without report_allowed: {quiet:?}");

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
    assert_eq!(exec.ns_pid, pid, "the lab runs in the initial pid namespace");
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
    assert_eq!(enf.dropped_events().expect("stats"), dropped_before, "events dropped");
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_denial_is_reported_with_cgroup_and_digest() {
    let dir = scratch_dir("event");
    let (unlisted, unlisted_digest) = unique_busybox(&dir, "unlisted");
    let cgroup = Cgroup::new("event");

    let mut enf = attach();
    enf.set_scope(cgroup.id, scope(3, Mode::Enforce)).expect("add scope");
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
    assert_ne!(denial.host_pid, std::process::id(), "the child, not the test");
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_listed_binary_modified_after_loading_is_denied() {
    let dir = scratch_dir("modified");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let cgroup = Cgroup::new("modified");

    let mut enf = attach();
    enf.replace_digests(2, &[listed_digest]).expect("allow");
    enf.set_scope(cgroup.id, scope(2, Mode::Enforce)).expect("add scope");
    assert_runs(&listed, Some(&cgroup), "listed binary before the change");
    // That exec sealed it (vm_enforcer_seal.rs): it cannot be changed in place.
    let err = OpenOptions::new().append(true).open(&listed).expect_err("open a sealed file for append");
    assert_eq!(err.raw_os_error(), Some(26), "ETXTBSY: {err}");

    // A listed copy never run in the scope: same inode, same path, new bytes.
    let (listed, listed_digest) = unique_busybox(&dir, "listed-2");
    enf.replace_digests(2, &[listed_digest]).expect("allow");
    let mut file = OpenOptions::new().append(true).open(&listed).expect("open for append");
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
    enf.set_scope(scoped.id, scope(4, Mode::Enforce)).expect("add scope");

    // Enforcement is live ...
    assert_denied(&unlisted, &scoped, "unlisted binary in the scope");
    // ... but not for the test process's own cgroup or a sibling cgroup.
    assert_runs(&unlisted, None, "unlisted binary from the test's cgroup");
    assert_runs(&unlisted, Some(&sibling), "unlisted binary in a sibling cgroup");
    let events = drain_events(&mut enf);
    assert!(events.iter().all(|e| e.cgroup_id == scoped.id), "events from outside the scope: {events:?}");
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
    enf.replace_digests(6, &[listed_digest]).expect("allow");
    enf.set_scope(top.id, scope(6, Mode::Enforce)).expect("add scope");

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
    enf.set_scope(inner.id, scope(16, Mode::Audit)).expect("add inner scope");
    assert_runs(&unlisted, Some(&inner), "unlisted binary in the inner audit scope");
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
    enf.replace_digests(5, &[runner_digest, listed_lib_digest]).expect("allow");
    enf.set_scope(enforced.id, scope(5, Mode::Enforce)).expect("add scope");
    enf.set_scope(audited.id, scope(5, Mode::Audit)).expect("add scope");

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
    enf.replace_digests(8, &[listed_digest]).expect("allow");
    enf.set_scope(cgroup.id, scope(8, Mode::Audit)).expect("add scope");

    // busybox unshare forks into a new pid namespace, where the child that
    // execs the unlisted binary is pid 1.
    let mut cmd = Command::new(&listed);
    cmd.args(["unshare", "--pid", "--fork"]).arg(&unlisted).arg("true").stdin(Stdio::null());
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

/// An anonymous memory file (memfd, no close-on-exec) holding `bytes`,
/// sealed with F_SEAL_WRITE (an unsealed one is refused whatever its content:
/// see vm_enforcer_seal.rs).
fn memfd_with(bytes: &[u8]) -> File {
    const MFD_ALLOW_SEALING: std::ffi::c_uint = 0x2;
    const F_ADD_SEALS: std::ffi::c_int = 1033;
    const F_SEAL_WRITE: std::ffi::c_int = 0x8;
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new
    // descriptor or -1; a new descriptor is owned by nothing else, so File
    // may take it.
    let file = unsafe {
        let fd = sys::memfd_create(c"imgsign-payload".as_ptr(), MFD_ALLOW_SEALING);
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        File::from_raw_fd(fd)
    };
    (&file).write_all(bytes).expect("fill memfd");
    // SAFETY: fcntl(F_ADD_SEALS) on a descriptor this File owns.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), F_ADD_SEALS, F_SEAL_WRITE) };
    assert_eq!(rc, 0, "F_ADD_SEALS: {}", io::Error::last_os_error());
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
    enf.replace_digests(11, &[listed_digest]).expect("allow");
    enf.set_scope(cgroup.id, Scope { report_allowed: true, ..Scope::new(11, Mode::Enforce) }).expect("add scope");

    match run_memfd(&unlisted, &cgroup) {
        Err(e) if is_denial(&e) => println!("denied memfd exec: {e}"),
        Err(e) => panic!("memfd exec failed, but not with EPERM/EACCES: {e}"),
        Ok(status) => panic!("exec of an unlisted memfd was not denied ({status})"),
    }
    let status = run_memfd(&listed, &cgroup).expect("exec of a memfd with listed content");
    assert!(status.success());

    let events = drain_events(&mut enf);
    println!("events: {events:?}");
    let memfd_path =
        |e: &Event| e.path.as_ref().is_some_and(|p| p.to_string_lossy().starts_with("/memfd:imgsign-payload"));
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
    enf.replace_digests(12, &[listed_digest]).expect("first set");
    enf.set_scope(cgroup.id, scope(12, Mode::Enforce)).expect("add scope");

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
        let mut set: Vec<Digest> =
            (0..300u32).map(|j| sha256(format!("filler {replacements} {j}").as_bytes())).collect();
        set.insert(150, listed_digest);
        if replacements.is_multiple_of(2) {
            enf.replace_digests(scope_id, &set).expect("replace");
        } else {
            let fresh = 1000 + replacements;
            enf.replace_digests(fresh, &set).expect("fill fresh scope id");
            enf.set_scope(cgroup.id, scope(fresh, Mode::Enforce)).expect("switch");
            enf.revoke_digests(scope_id, &current).expect("revoke old");
            scope_id = fresh;
        }
        current = set;
        replacements += 1;
    }
    let failures = runner.join().expect("exec thread");
    println!("{EXECS} execs during {replacements} replacements");
    assert!(failures.is_empty(), "listed binary denied during set replacement: {failures:?}");
    assert!(replacements >= 2, "replacements did not overlap the execs");
    let drops = drain_events(&mut enf);
    assert!(drops.is_empty(), "unexpected decisions reported: {drops:?}");

    // A replacement really replaces: the old content is gone, the new runs.
    enf.replace_digests(scope_id, &[next_digest]).expect("replace");
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
    enf.replace_digests(13, &[sha256(&listed)]).expect("allow");
    enf.set_scope(cgroup.id, scope(13, Mode::Enforce)).expect("add scope");

    // The writer flips the file between the two contents, in place
    // (truncate + write, refused with ETXTBSY while it runs) and by
    // renaming a fresh file onto the path.
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (done, dir, target) = (done.clone(), dir.clone(), target.clone());
        std::thread::spawn(move || {
            let mut flips = 0u32;
            while !done.load(Ordering::SeqCst) {
                let content = if flips.is_multiple_of(2) { &unlisted } else { &listed };
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
        cmd.args(["tail", "-c", &LISTED_MARK.len().to_string(), "/proc/self/exe"])
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
    assert!(unlisted_runs.is_empty(), "unlisted content ran {} times", unlisted_runs.len());
    assert!(listed_runs > 0, "the listed content never ran: no race exercised");
    assert!(refused > 0, "the unlisted content was never tried: no race exercised");
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
    enf.replace_digests(14, &[interp_digest, listed_digest, bad_interp_digest]).expect("allow");
    enf.set_scope(cgroup.id, scope(14, Mode::Enforce)).expect("add scope");

    let run = |path: &Path| {
        let mut cmd = Command::new(path);
        cmd.stdin(Stdio::null());
        in_cgroup(cmd, &cgroup).output()
    };
    let out = run(&listed).expect("listed script through its listed interpreter");
    assert!(out.status.success(), "listed script: {:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "listed-script\n");
    for (path, what) in
        [(&unlisted, "unlisted script, listed interpreter"), (&bad_interp, "listed script, unlisted interpreter")]
    {
        match run(path) {
            Err(e) if is_denial(&e) => println!("{what}: denied: {e}"),
            Err(e) => panic!("{what}: failed, but not with EPERM/EACCES: {e}"),
            Ok(out) => panic!("{what}: not denied ({}; stdout {:?})", out.status, String::from_utf8_lossy(&out.stdout)),
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
    let listed_digests: Vec<Digest> = files.iter().map(|p| sha256(&fs::read(p).expect("read mapped file"))).collect();

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
    enf.replace_digests(15, &listed_digests).expect("allow");
    enf.set_scope(cgroup.id, scope(15, Mode::Enforce)).expect("add scope");

    let run = |exe: &Path, args: &[&std::ffi::OsStr], preload: Option<&Path>| {
        let mut cmd = Command::new(exe);
        cmd.args(args).args(["--list", "--format", "terse"]).stdin(Stdio::null());
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
    assert!(!refused.status.success(), "ld.so ran an unlisted program: {:?}", String::from_utf8_lossy(&refused.stdout));
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
    assert!(stderr.contains("cannot be preloaded"), "ld.so did not refuse the unlisted library: {refused:?}");
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

/// In a child in `cgroup`: maps `file` with `prot`, then asks for
/// `PROT_READ | PROT_EXEC` with mprotect(2), then execs `runner true`.
/// Returns the first error.
fn mprotect_exec_in(cgroup: &Cgroup, file: &Path, prot: std::ffi::c_int, runner: &Path) -> io::Result<ExitStatus> {
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
            let addr = sys::mmap(std::ptr::null_mut(), 4096, prot, sys::MAP_PRIVATE, target.as_raw_fd(), 0);
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
    assert!(mprotect_exec_in(&enforced, &listed, read_only, &runner).expect("mprotect before attach").success());

    let mut enf = attach();
    enf.replace_digests(17, &[runner_digest, listed_digest]).expect("allow");
    enf.set_scope(enforced.id, scope(17, Mode::Enforce)).expect("add scope");
    enf.set_scope(audited.id, scope(17, Mode::Audit)).expect("add scope");

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
    assert!(mprotect_exec_in(&audited, &listed, read_only, &runner).expect("audit").success());
    assert!(mprotect_exec_in(&outside, &listed, read_only, &runner).expect("outside").success());

    let events = drain_events(&mut enf);
    println!("events: {events:?}");
    let mprotect = Hook::FileMprotect;
    assert!(
        events.iter().any(|e| e.hook == mprotect && e.verdict == Verdict::Deny && e.cgroup_id == enforced.id),
        "no mprotect denial event: {events:?}"
    );
    assert!(
        events.iter().any(|e| e.hook == mprotect && e.verdict == Verdict::Audit && e.cgroup_id == audited.id),
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
    enf.replace_digests(18, &[listed_digest]).expect("allow");
    enf.set_scope(one.id, scope(18, Mode::Audit)).expect("add scope");
    enf.set_scope(two.id, scope(18, Mode::Audit)).expect("add scope");

    // In each "container", pid 1 of a pid namespace of its own runs the
    // unlisted binary; both live at once (a dead namespace's inode number
    // is handed out again, so only live ones are told apart by it).
    let children: Vec<_> = [&one, &two]
        .into_iter()
        .map(|cgroup| {
            let mut cmd = Command::new(&listed);
            cmd.args(["unshare", "--pid", "--fork"]).arg(&unlisted).args(["sleep", "2"]).stdin(Stdio::null());
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
            .find(|e| e.hook == Hook::BprmCheck && e.digest == Some(unlisted_digest) && e.cgroup_id == cgroup.id)
            .unwrap_or_else(|| panic!("no exec event from {}: {events:?}", cgroup.path.display()))
    };
    let (a, b) = (exec_in(&one), exec_in(&two));
    println!("one: {a:?}\ntwo: {b:?}");
    assert_eq!((a.ns_pid, b.ns_pid), (1, 1), "both are pid 1 in their namespace");
    assert_ne!(a.pid_ns, b.pid_ns, "told apart by pid namespace");
    assert_ne!(a.host_pid, b.host_pid, "told apart by host pid");
    assert_ne!(a.cgroup_id, b.cgroup_id, "told apart by cgroup");
    fs::remove_dir_all(dir).ok();
}
