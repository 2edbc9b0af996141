//! In-VM tests of upgrades (issue 11): a pinned enforcer of another build is replaced by this
//! build's programs without a gap (an exec loop in a scoped cgroup never sees an unlisted exec
//! run nor a listed one denied), state kept in the old programs' maps (the seals) survives the
//! switch, the legacy layout (pins without an identity) is taken over, and a layout this build
//! does not know is refused and left enforcing. "The previous build" is
//! `Build::test_variant()`: the same C source compiled with another `ENF_SET_ATTEMPTS`, so its
//! programs really differ from the embedded ones (a real previous release's object is not what
//! runs here). Conventions of `vm_enforcer.rs` (root in a BPF-LSM kernel, `cargo xtask lab`).
// Tests print what they saw (the lab shows it); `support` needs unsafe for pre_exec.
#![allow(clippy::print_stdout, clippy::print_stderr, unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aya::maps::{Array, Map, MapData};
use bpf_lsm::abi::{self, EnfIdentity};
use bpf_lsm::enforcer::takeover::READABLE_LAYOUTS;
use bpf_lsm::enforcer::{Build, EnforcerError, Takeover};

const ETXTBSY: i32 = 26;

/// Unpins the enforcer under a directory when dropped.
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = Enforcer::unpin(&self.0);
    }
}

fn pin_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/imgsign-upgrade-{name}-{}", std::process::id()))
}

/// The old build, pinned, enforcing `listed` only in `cgroup`.
fn pin_old_build(dir: &Path, cgroup: &Cgroup, listed: Digest) {
    let mut old = Enforcer::attach_pinned_build(dir, Build::test_variant()).expect("pin the old build");
    assert_eq!(old.takeover(), Some(&Takeover::Fresh));
    old.replace_digests(41, &[listed]).expect("allow the listed binary");
    old.set_scope(cgroup.id, scope(41, Mode::Enforce)).expect("add the scope");
    assert_eq!(Enforcer::pinned_identity(dir).expect("identity"), Some(Build::test_variant().identity()));
    assert_ne!(Build::test_variant().identity(), Build::embedded().identity());
}

fn program_ids(dir: &Path) -> BTreeSet<u32> {
    Enforcer::pinned_links(dir).expect("read the pinned links").into_iter().map(|l| l.program_id).collect()
}

/// Waits until none of `old` is loaded any more (a detach waits for RCU grace periods).
fn assert_unloaded(old: &BTreeSet<u32>) {
    let mut left = BTreeSet::new();
    for _ in 0..400 {
        left = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| old.contains(id))
            .collect();
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("programs of the old build still loaded after the switch: {left:?}");
}

/// Writes `identity` into the pinned `enf_identity` (as a newer build, or a forger, would).
fn write_identity(dir: &Path, layout: u32, build: Digest) {
    let mut map = Map::from_map_data(MapData::from_pin(dir.join("enf_identity")).expect("open enf_identity"))
        .expect("enf_identity is a map");
    let mut array: Array<&mut MapData, EnfIdentity> = Array::try_from(&mut map).expect("an array");
    array.set(0, EnfIdentity { layout, pad: 0, build }, 0).expect("write the identity");
}

/// A write open of `path` must fail with ETXTBSY: the file was judged, its seal holds.
fn assert_sealed(path: &Path, what: &str) {
    match OpenOptions::new().write(true).open(path) {
        Err(e) if e.raw_os_error() == Some(ETXTBSY) => println!("{what}: write refused: {e}"),
        Err(e) => panic!("{what}: write open of {} failed, but not with ETXTBSY: {e}", path.display()),
        Ok(_) => panic!("{what}: {} could be opened for write: the seal was lost", path.display()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ran,
    Failed,
    Denied,
    Error,
}

/// One exec of the loop: when, which binary, what happened.
#[derive(Debug)]
struct Exec {
    at: Instant,
    listed: bool,
    outcome: Outcome,
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_upgrade_replaces_programs_under_an_exec_loop() {
    let dir = scratch_dir("upgrade-loop");
    let (listed, listed_digest) = unique_busybox(&dir, "upgrade-listed");
    let (unlisted, _) = unique_busybox(&dir, "upgrade-unlisted");
    let cgroup = Cgroup::new("upgrade-loop");
    let pins = pin_dir("loop");
    let _guard = PinGuard(pins.clone());
    pin_old_build(&pins, &cgroup, listed_digest);
    // Judged (and sealed) by the old build only.
    assert_runs(&listed, Some(&cgroup), "listed binary under the old build");
    assert_denied(&unlisted, &cgroup, "unlisted binary under the old build");
    // A task bound to the scope by the old build (its sticky scope), which waits, with no
    // decision and no fork, until after the switch, then leaves the cgroup and runs the
    // unlisted binary (`read`, `echo` and `exec` are shell builtins: nothing new records it).
    let script = format!(
        "read go; echo $$ > {root}/cgroup.procs; exec {unlisted} true",
        root = CGROUP_ROOT,
        unlisted = unlisted.display()
    );
    let mut escaper = {
        let mut cmd = Command::new(&listed);
        cmd.args(["sh", "-c", &script]).stdin(Stdio::piped());
        in_cgroup(cmd, &cgroup).spawn().expect("start the task that escapes later")
    };
    let old = program_ids(&pins);

    // The exec loop: a listed and an unlisted exec in turn, from children in the scope.
    let stop = Arc::new(AtomicBool::new(false));
    let looper = {
        let (stop, listed, unlisted) = (stop.clone(), listed.clone(), unlisted.clone());
        let cgroup_path = cgroup.path.clone();
        std::thread::spawn(move || {
            let procs = cgroup_path.join("cgroup.procs");
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for (path, is_listed) in [(&listed, true), (&unlisted, false)] {
                    let procs = OpenOptions::new().write(true).open(&procs).expect("open cgroup.procs");
                    let mut cmd = Command::new(path);
                    cmd.arg("true").stdin(Stdio::null());
                    let fd = procs.as_raw_fd();
                    // SAFETY: runs in the forked child before exec; only write(2) on an fd
                    // opened in the parent, with a stack buffer: async-signal-safe.
                    unsafe {
                        cmd.pre_exec(move || {
                            let pid = b"0\n";
                            if libc::write(fd, pid.as_ptr().cast(), pid.len()) < 0 {
                                return Err(io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let outcome = match cmd.status() {
                        Ok(status) if status.success() => Outcome::Ran,
                        Ok(_) => Outcome::Failed,
                        Err(e) if is_denial(&e) => Outcome::Denied,
                        Err(_) => Outcome::Error,
                    };
                    seen.push(Exec { at: Instant::now(), listed: is_listed, outcome });
                }
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    // The switch: this build takes over the old build's pins.
    let start = Instant::now();
    let mut enf = Enforcer::attach_pinned(&pins).expect("replace the old build");
    let end = Instant::now();
    println!("replacement took {:?}", end - start);
    assert_eq!(enf.takeover(), Some(&Takeover::Replace { from: abi::ENF_PIN_LAYOUT, adopt_state: false }));
    assert_unloaded(&old);
    let after = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let seen = looper.join().expect("the exec loop");

    let bad: Vec<&Exec> =
        seen.iter().filter(|e| e.outcome != if e.listed { Outcome::Ran } else { Outcome::Denied }).collect();
    let during = |listed: bool| seen.iter().filter(|e| e.listed == listed && e.at >= start && e.at <= after).count();
    println!(
        "exec loop: {} execs, {} listed and {} unlisted between the start of the switch and the old programs' unload",
        seen.len(),
        during(true),
        during(false)
    );
    assert!(bad.is_empty(), "execs with the wrong outcome: {bad:?}");
    assert!(during(true) > 0 && during(false) > 0, "the loop did not run during the switch");

    // Only the new programs are attached, through the same pin names.
    let new = program_ids(&pins);
    assert!(new.is_disjoint(&old), "old programs still pinned: {:?}", new.intersection(&old).collect::<Vec<_>>());
    assert_eq!(new.len(), old.len());
    assert_eq!(Enforcer::pinned_identity(&pins).expect("identity"), Some(Build::embedded().identity()));
    // The state in force came along: scopes, sets, and the seal the old build set.
    assert_eq!(enf.scopes_in_force().expect("scopes"), vec![(cgroup.id, scope(41, Mode::Enforce))]);
    assert_eq!(enf.digest_count(41).expect("count"), 1);
    assert_sealed(&listed, "listed binary judged by the old build, after the switch");
    escaper.stdin.take().expect("its stdin").write_all(b"go\n").expect("let the task escape");
    let escaped = escaper.wait().expect("wait for the escaping task");
    println!("task bound by the old build, moved out after the switch, exec of the unlisted binary: {escaped}");
    assert!(!escaped.success(), "a task bound to the scope by the old build escaped it after the switch");
    assert_runs(&listed, Some(&cgroup), "listed binary under the new build");
    assert_denied(&unlisted, &cgroup, "unlisted binary under the new build");
    // The new build is the one pinned now: taking over again reuses it.
    drop(enf);
    let again = Enforcer::attach_pinned(&pins).expect("take over again");
    assert_eq!(again.takeover(), Some(&Takeover::Reuse));
    assert_eq!(program_ids(&pins), new);
    drop(again);
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_upgrade_refuses_an_unknown_layout_and_takes_over_the_legacy_one() {
    let dir = scratch_dir("upgrade-layout");
    let (listed, listed_digest) = unique_busybox(&dir, "layout-listed");
    let (unlisted, _) = unique_busybox(&dir, "layout-unlisted");
    let cgroup = Cgroup::new("upgrade-layout");
    let pins = pin_dir("layout");
    let _guard = PinGuard(pins.clone());
    pin_old_build(&pins, &cgroup, listed_digest);
    let links = Enforcer::pinned_links(&pins).expect("links");
    let old_build = Build::test_variant().identity().build;

    // A newer layout (as a later build would pin it): refused, untouched, still enforcing.
    let newer = abi::ENF_PIN_LAYOUT + 1;
    write_identity(&pins, newer, old_build);
    let refused = |what: &str| {
        let err = match Enforcer::attach_pinned(&pins) {
            Err(e) => e,
            Ok(enf) => panic!("{what}: taken over ({:?})", enf.takeover()),
        };
        println!("{what}: {err}");
        assert!(matches!(err, EnforcerError::UnknownLayout { .. }), "{what}: {err:?}");
        assert_eq!(Enforcer::pinned_links(&pins).expect("links"), links, "{what}: the pins changed");
        assert_runs(&listed, Some(&cgroup), what);
        assert_denied(&unlisted, &cgroup, what);
        err.to_string()
    };
    let message = refused("newer layout");
    let known = READABLE_LAYOUTS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    assert!(
        message.contains(&format!("layout {newer}")) && message.contains(&format!("reads layouts {known}")),
        "{message}"
    );
    assert!(Enforcer::open_pinned(&pins).is_err(), "a newer layout's maps were opened");
    assert!(Enforcer::inspect_pinned(&pins).is_err(), "a newer layout's maps were inspected");

    // Pins without an identity that are not the legacy set (here: a map it never had).
    write_identity(&pins, abi::ENF_PIN_LAYOUT, old_build);
    drop(Enforcer::open_pinned(&pins).expect("become the owner"));
    fs::rename(pins.join("enf_identity"), pins.join("enf_counters")).expect("rename the identity away");
    let message = refused("pins without an identity");
    assert!(message.contains("not of layout 1:") && message.contains("enf_counters"), "{message}");

    // Exactly the legacy pins (layout 1 left the seals and sticky scopes unpinned): taken over,
    // the old programs' seals adopted.
    for name in ["enf_counters", "enf_seals", "enf_task_scope", "enf_scope_stats"] {
        match fs::remove_file(pins.join(name)) {
            Err(e) if e.kind() != ErrorKind::NotFound => panic!("remove {name} as the owner: {e}"),
            _ => {}
        }
    }
    assert_eq!(Enforcer::pinned_identity(&pins).expect("identity"), None);
    let old = program_ids(&pins);
    let enf = Enforcer::attach_pinned(&pins).expect("take over the legacy layout");
    assert_eq!(enf.takeover(), Some(&Takeover::Replace { from: abi::ENF_PIN_LAYOUT_LEGACY, adopt_state: true }));
    assert_unloaded(&old);
    assert!(program_ids(&pins).is_disjoint(&old));
    assert_eq!(Enforcer::pinned_identity(&pins).expect("identity"), Some(Build::embedded().identity()));
    assert_sealed(&listed, "listed binary judged by the legacy build, after the switch");
    assert_runs(&listed, Some(&cgroup), "listed binary after the legacy takeover");
    assert_denied(&unlisted, &cgroup, "unlisted binary after the legacy takeover");
    drop(enf);
    fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_upgrade_recovers_an_interrupted_replacement() {
    let dir = scratch_dir("upgrade-recover");
    let (listed, listed_digest) = unique_busybox(&dir, "recover-listed");
    let (unlisted, _) = unique_busybox(&dir, "recover-unlisted");
    let cgroup = Cgroup::new("upgrade-recover");
    let pins = pin_dir("recover");
    let _guard = PinGuard(pins.clone());
    pin_old_build(&pins, &cgroup, listed_digest);
    let old = program_ids(&pins);
    let staged_names = |pins: &Path| -> Vec<String> {
        let names = fs::read_dir(pins).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.ends_with("__new")).collect()
    };

    // A replacement that died before its commit: both builds attached; the next start of the
    // old build undoes it (the staged programs go) and keeps its own.
    drop(Enforcer::stage_pinned_build(&pins, Build::embedded()).expect("stage this build"));
    let staged = program_ids(&pins);
    assert!(staged.len() > old.len() && !staged_names(&pins).is_empty());
    assert_denied(&unlisted, &cgroup, "unlisted binary with both builds attached");
    assert_runs(&listed, Some(&cgroup), "listed binary with both builds attached");
    let enf = Enforcer::attach_pinned_build(&pins, Build::test_variant()).expect("start the old build again");
    assert_eq!(enf.takeover(), Some(&Takeover::Reuse));
    drop(enf);
    assert!(staged_names(&pins).is_empty(), "staged pins left: {:?}", staged_names(&pins));
    assert_eq!(program_ids(&pins), old);
    assert_unloaded(&staged.difference(&old).copied().collect());
    assert_eq!(Enforcer::pinned_identity(&pins).expect("identity"), Some(Build::test_variant().identity()));

    // One that died right after its commit (the identity renamed, no link yet): the next start
    // finishes it, and only this build's programs stay.
    drop(Enforcer::stage_pinned_build(&pins, Build::embedded()).expect("stage this build again"));
    fs::rename(pins.join("enf_identity__new"), pins.join("enf_identity")).expect("commit by hand, as the owner");
    let enf = Enforcer::attach_pinned(&pins).expect("start this build");
    assert_eq!(enf.takeover(), Some(&Takeover::Reuse));
    assert!(staged_names(&pins).is_empty(), "staged pins left: {:?}", staged_names(&pins));
    assert!(program_ids(&pins).is_disjoint(&old));
    assert_unloaded(&old);
    assert_eq!(Enforcer::pinned_identity(&pins).expect("identity"), Some(Build::embedded().identity()));
    assert_denied(&unlisted, &cgroup, "unlisted binary after the recovery");
    assert_runs(&listed, Some(&cgroup), "listed binary after the recovery");
    drop(enf);
    fs::remove_dir_all(dir).ok();
}
