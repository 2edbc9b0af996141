//! In-VM tests of the per-scope counters (issue 11): each scope counts its decisions and the
//! events it lost to a full ring buffer, and numbers its events, so a reader sees the gap a
//! flood in one scope leaves, and another scope's counters are untouched by it.
// Tests print what they saw (the lab shows it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;
#[allow(unused_imports)]
use support::*;

/// Runs `sh -c script` with the listed busybox in `cgroup` and waits for it.
fn shell_in(listed: &Path, cgroup: &Cgroup, script: &str) {
    let mut cmd = Command::new(listed);
    cmd.args(["sh", "-c", script]).stdin(Stdio::null()).stderr(Stdio::null());
    let status = in_cgroup(cmd, cgroup).status().expect("run the listed shell");
    assert!(status.success(), "{script}: {status}");
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_enforcer_counters_count_drops_per_scope_and_number_events() {
    let dir = scratch_dir("counters");
    let (listed, listed_digest) = unique_busybox(&dir, "listed");
    let (unlisted, _) = unique_busybox(&dir, "unlisted");
    let flooded = Cgroup::new("counters-flooded");
    let quiet = Cgroup::new("counters-quiet");

    // Its own enforcer: the flood must not fill the shared one's ring buffer for later tests.
    let mut enf = attach_private();
    enf.replace_digests(31, &[listed_digest]).expect("allow");
    let mut reporting = scope(31, Mode::Enforce);
    reporting.report_allowed = true;
    enf.set_scope(flooded.id, reporting).expect("add the flooded scope");
    enf.set_scope(quiet.id, scope(31, Mode::Enforce)).expect("add the quiet scope");
    let zero = enforcer::ScopeStats::default();
    assert_eq!(enf.scope_stats(quiet.id).expect("read counters"), Some(zero), "no decision yet");

    // The quiet scope: one allowed exec (counted, not reported) and one denied.
    assert_runs(&listed, Some(&quiet), "listed binary in the quiet scope");
    assert_denied(&unlisted, &quiet, "unlisted binary in the quiet scope");
    let quiet_before = enf.scope_stats(quiet.id).expect("read counters").expect("counters exist");
    // Allowed: the exec and the loader's mapping of the binary; one denial, its one event.
    assert!(quiet_before.allowed >= 1, "{quiet_before:?}");
    assert_eq!((quiet_before.denied, quiet_before.events, quiet_before.dropped), (1, 1, 0), "{quiet_before:?}");

    // The flood: far more denied execs (one event each, 400 bytes) than the 1 MiB ring holds,
    // nobody reading meanwhile.
    let execs = 4000;
    shell_in(
        &listed,
        &flooded,
        &format!("i=0; while [ $i -lt {execs} ]; do {} true; i=$((i+1)); done; true", unlisted.display()),
    );
    let flooded_stats = enf.scope_stats(flooded.id).expect("read counters").expect("counters exist");
    let quiet_after = enf.scope_stats(quiet.id).expect("read counters").expect("counters exist");
    println!("flooded: {flooded_stats:?}\nquiet: {quiet_after:?}");
    assert_eq!(flooded_stats.denied, execs, "every refused exec is counted, delivered or not");
    assert!(flooded_stats.dropped > 0, "the flood overflowed the ring: {flooded_stats:?}");
    assert_eq!(quiet_after, quiet_before, "the flood left the other scope's counters alone");
    assert!(enf.dropped_events().expect("stats") >= flooded_stats.dropped);

    // What was delivered: the flooded scope's events numbered 0, 1, 2... with no gap (the ring
    // was full only at the end), then the quiet scope's one.
    let mut events = Vec::new();
    while let Some(event) = enf.next_event().expect("read event") {
        events.push(event);
    }
    let quiet_events: Vec<_> = events.iter().filter(|e| e.scope_cgroup_id == quiet.id).collect();
    let flooded_events: Vec<_> = events.iter().filter(|e| e.scope_cgroup_id == flooded.id).collect();
    assert_eq!(quiet_events.len(), 1, "{quiet_events:?}");
    let quiet_stats = quiet_events[0].scope_stats.expect("events carry the counters");
    assert_eq!((quiet_events[0].scope_seq, quiet_stats.dropped), (Some(0), 0));
    let delivered = flooded_events.len() as u64;
    assert_eq!(delivered + flooded_stats.dropped, flooded_stats.events, "every event is delivered or counted dropped");
    for (n, e) in flooded_events.iter().enumerate() {
        assert_eq!(e.scope_seq, Some(n as u64), "events arrive numbered in order until the ring is full");
    }
    // The next event shows the gap: its number skips every dropped one, and it carries the drops.
    assert_denied(&unlisted, &flooded, "after the flood");
    let next = drain_events(&mut enf);
    let next = next.iter().find(|e| e.scope_cgroup_id == flooded.id).expect("an event after the flood");
    let (next_seq, next_stats) = (next.scope_seq.expect("numbered"), next.scope_stats.expect("counted"));
    assert_eq!(next_seq, flooded_stats.events, "the number after the gap");
    let last_delivered = flooded_events.last().and_then(|e| e.scope_seq).map_or(0, |s| s + 1);
    assert_eq!(next_seq - last_delivered, flooded_stats.dropped, "the gap is the drops");
    assert_eq!(next_stats.dropped, flooded_stats.dropped);
    assert!(next_stats.allowed >= 1, "the listed shell's exec and mappings are counted");
    fs::remove_dir_all(dir).ok();
}
