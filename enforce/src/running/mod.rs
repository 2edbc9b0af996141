//! Tasks already running in a cgroup when it becomes a scope (or when its digest set loses
//! digests, or its mode turns to enforce): the kernel programs judge every exec and executable
//! mapping from the moment the scope is in the kernel, never code that was loaded before. This
//! module closes that gap: it lists the processes of the cgroup and its descendants, reads what
//! code each runs (its executable and its executable file mappings, each opened through `/proc`
//! so a renamed, replaced or deleted path still names the inode that is mapped), hashes it, and
//! reports every process running code the scope does not allow; in enforce mode it kills them.
//!
//! Split as elsewhere in the crate: [`assess`] is the pure decision (tasks with their code's
//! digests, the allowed set, the mode -> findings, each with its action), unit-tested here;
//! [`scan`] reads `/proc` and hashes; [`kill`] sends SIGKILL through a pidfd after checking the
//! pid still names the process that was judged, still in the scope; [`check`] runs the rounds.
//!
//! Ordering (the caller's duty, see `Daemon`): the scan runs after the kernel holds the scope,
//! so anything a task execs or maps after the listing is judged by the kernel; only code loaded
//! before the scope existed is left to the scan. A process forked during the scan inherits its
//! parent's code (a fork loads none): [`check`] reads `cgroup.procs` again after each round and
//! judges the newcomers, until a round finds none. Freezing the cgroup instead (`cgroup.freeze`)
//! would stall the workload while files are hashed and would thaw a cgroup someone else froze;
//! it is the fallback only when [`MAX_ROUNDS`] rounds keep finding new processes (a fork loop).

pub mod kill;
pub mod scan;

use crate::desired::{DesiredState, DigestSet, Privs};
use crate::policy::Mode;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;
use verifier_core::digest::Sha256Digest;

/// Rounds of listing before the cgroup is frozen for a last one.
pub const MAX_ROUNDS: usize = 8;

/// One process as the scan saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22): with the pid, names the
    /// process (a pid can be reused, this pair cannot).
    pub start_time: u64,
    pub comm: String,
    /// Its executable; `None` for a kernel thread or a zombie (no code to judge).
    pub exe: Option<Code>,
    /// Its executable file mappings, one per distinct file, the executable's own left out.
    pub mappings: Vec<Code>,
}

/// One file of code, as a task has it open or mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The path `/proc` shows (may end in " (deleted)"; names the inode only as it was linked).
    pub path: String,
    /// The mapping's address range as in `/proc/PID/maps` (`start-end`); `None` for the
    /// executable.
    pub range: Option<String>,
    pub content: Content,
}

/// What a file of code holds, read through the task's own open file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A file, hashed through `/proc/PID/exe` or `/proc/PID/map_files/RANGE`: the inode the task
    /// runs. `privs` are the file's setuid/setgid bits and capabilities (executable only).
    File { sha256: Sha256Digest, privs: Privs },
    /// A memfd or shared memory: no file anyone signed.
    Memory,
    /// Could not be read (and the task was still there): why.
    Unreadable(String),
}

/// Why a task is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Its executable or a mapped file's digest is not in the scope's set.
    RunningUnlisted,
    /// It runs code from a memfd or shared memory (no signed file).
    RunningUnknownCode,
    /// Its code could not be read, so not judged: treated as unknown, as the kernel treats a file
    /// it cannot hash.
    RunningUnreadable,
    /// Its executable is listed but is setuid/setgid or has file capabilities no signed entry
    /// with that digest has. Reported only: whether the exec gained them is not known afterwards
    /// (a setuid-root file run by root gains nothing), and the kernel judged the exec if it was
    /// in a scope.
    RunningPrivileges,
}

/// What is done about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// SIGKILL (enforce mode).
    Kill,
    /// Reported only (audit mode, or a finding that is not grounds to kill).
    Report,
}

/// One task running code the scope does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: Kind,
    pub host_pid: u32,
    #[serde(skip)]
    pub start_time: u64,
    pub comm: String,
    /// The task's executable, as `/proc` shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The mapping's address range, when the code is a mapping rather than the executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// The file of the finding (the executable or the mapped file).
    pub path: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "verifier_core::digest::bare_hex_opt::serialize"
    )]
    pub sha256: Option<Sha256Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub action: Action,
}

/// The findings about `tasks` in a scope allowing `allowed` in `mode`: one per piece of code
/// not allowed (a task can have several). Tasks in `exempt` are skipped: the runtime's init of a
/// container being created, which runs the runtime's code until it execs the container's
/// entrypoint (an exec the kernel judges). Enforce mode kills for every kind but
/// [`Kind::RunningPrivileges`].
pub fn assess(tasks: &[Task], allowed: &DigestSet, mode: Mode, exempt: &BTreeSet<u32>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for task in tasks.iter().filter(|t| !exempt.contains(&t.pid)) {
        let Some(exe) = &task.exe else { continue };
        let exe_path = Some(exe.path.clone());
        for (code, is_exe) in std::iter::once((exe, true)).chain(task.mappings.iter().map(|m| (m, false))) {
            let (kind, sha256, detail) = match &code.content {
                Content::File { sha256, privs } => match allowed.get(sha256) {
                    None => (Kind::RunningUnlisted, Some(*sha256), None),
                    Some(signed) if is_exe && signed.merge(*privs) != *signed => (
                        Kind::RunningPrivileges,
                        Some(*sha256),
                        Some(
                            "the file is setuid/setgid or has capabilities no signed entry with its digest has".into(),
                        ),
                    ),
                    Some(_) => continue,
                },
                Content::Memory => {
                    (Kind::RunningUnknownCode, None, Some("code mapped from a memfd or shared memory".into()))
                }
                Content::Unreadable(why) => (Kind::RunningUnreadable, None, Some(why.clone())),
            };
            let action = match (mode, kind) {
                (Mode::Enforce, Kind::RunningPrivileges) | (Mode::Audit, _) => Action::Report,
                (Mode::Enforce, _) => Action::Kill,
            };
            findings.push(Finding {
                kind,
                host_pid: task.pid,
                start_time: task.start_time,
                comm: task.comm.clone(),
                exe: exe_path.clone(),
                mapping: code.range.clone(),
                path: code.path.clone(),
                sha256,
                detail,
                action,
            });
        }
    }
    findings
}

/// The scopes of `new` (by cgroup id) whose running tasks must be checked once `new` replaces
/// `old` in the kernel: new scopes, scopes whose set lost a digest or a privilege (what ran
/// under the old set may not be allowed now), and scopes turned from audit to enforce (what was
/// reported may run on). A scope whose set only grew needs nothing: what ran was allowed before.
pub fn to_check(old: &DesiredState, new: &DesiredState) -> Vec<u64> {
    new.scopes
        .iter()
        .filter(|(id, scope)| match old.scope(**id) {
            None => true,
            Some(before) => {
                (before.mode == Mode::Audit && scope.mode == Mode::Enforce)
                    || before.digests.iter().any(|(d, p)| scope.digests.get(d).is_none_or(|now| now.merge(*p) != *now))
            }
        })
        .map(|(id, _)| *id)
        .collect()
}

/// What [`check`] found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// Each finding, with the outcome of its kill when it asked for one (`Err`: why not).
    pub findings: Vec<(Finding, Option<Result<(), String>>)>,
    /// Processes judged.
    pub tasks: usize,
    /// Processes found but not judged: the exempt ([`check`]'s `exempt`).
    pub exempt: usize,
    /// Rounds of listing.
    pub rounds: usize,
    /// Whether the cgroup was frozen for the last round (new processes kept appearing).
    pub froze: bool,
}

/// Lists the processes in `cgroup` and below, judges their code against `allowed`, and kills
/// (enforce mode) those running code not allowed; again for processes that appear meanwhile.
pub fn check(
    cgroup: &Path,
    allowed: &DigestSet,
    mode: Mode,
    exempt: &BTreeSet<u32>,
) -> Result<Report, scan::ScanError> {
    let mut report = Report::default();
    let mut seen = BTreeSet::new();
    let mut hashes = scan::Hashes::default();
    let mut froze = None;
    loop {
        report.rounds += 1;
        let last = report.rounds > MAX_ROUNDS;
        if last && froze.is_none() {
            froze = Some(scan::Freeze::start(cgroup)?);
            report.froze = true;
        }
        // A process is its pid and start time: a pid reused since an earlier round is new.
        let fresh: Vec<u32> = scan::pids(cgroup)?
            .into_iter()
            .filter(|&p| scan::start_time(p).is_ok_and(|start| seen.insert((p, start))))
            .collect();
        if fresh.is_empty() {
            break;
        }
        // The exempt (the runtime's init) are listed, as every process, but their code is not
        // read: `assess` passes them whatever it is (it was the bulk of a container's check:
        // the runtime's own libraries hashed for every container).
        report.exempt += fresh.iter().filter(|p| exempt.contains(p)).count();
        let tasks: Vec<Task> =
            fresh.iter().filter(|p| !exempt.contains(p)).filter_map(|&pid| scan::task(pid, &mut hashes)).collect();
        report.tasks += tasks.len();
        // One kill per process, whatever number of findings it has.
        let mut killed: std::collections::BTreeMap<u32, Result<(), String>> = Default::default();
        for finding in assess(&tasks, allowed, mode, exempt) {
            let outcome = (finding.action == Action::Kill).then(|| {
                killed
                    .entry(finding.host_pid)
                    .or_insert_with(|| {
                        kill::kill(finding.host_pid, finding.start_time, cgroup).map_err(|e| e.to_string())
                    })
                    .clone()
            });
            report.findings.push((finding, outcome));
        }
        if last {
            break;
        }
    }
    drop(froze);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Sha256Digest {
        Sha256Digest([b; 32])
    }

    fn file(path: &str, range: Option<&str>, b: u8) -> Code {
        Code {
            path: path.into(),
            range: range.map(String::from),
            content: Content::File { sha256: d(b), privs: Privs::NONE },
        }
    }

    fn task(pid: u32, exe: Option<Code>, mappings: Vec<Code>) -> Task {
        Task { pid, start_time: 100 + u64::from(pid), comm: format!("t{pid}"), exe, mappings }
    }

    fn allowed(digests: &[u8]) -> DigestSet {
        digests.iter().map(|&b| (d(b), Privs::NONE)).collect()
    }

    #[test]
    fn listed_code_passes_and_unlisted_code_is_killed_in_enforce_mode_only() {
        let tasks = [
            task(1, Some(file("/bin/ok", None, 1)), vec![file("/lib/libok.so", Some("7f00-7f10"), 2)]),
            task(2, Some(file("/tmp/dropped", None, 9)), vec![]),
            task(3, Some(file("/bin/ok", None, 1)), vec![file("/tmp/inject.so", Some("7e00-7e10"), 8)]),
        ];
        let set = allowed(&[1, 2]);
        let found = assess(&tasks, &set, Mode::Enforce, &BTreeSet::new());
        let summary: Vec<_> =
            found.iter().map(|f| (f.host_pid, f.kind, f.path.as_str(), f.mapping.as_deref(), f.action)).collect();
        assert_eq!(
            summary,
            [
                (2, Kind::RunningUnlisted, "/tmp/dropped", None, Action::Kill),
                (3, Kind::RunningUnlisted, "/tmp/inject.so", Some("7e00-7e10"), Action::Kill),
            ]
        );
        assert_eq!(found[1].exe.as_deref(), Some("/bin/ok"), "a mapping's finding names the task's executable");
        assert_eq!((found[0].sha256, found[0].start_time), (Some(d(9)), 102));
        let audited = assess(&tasks, &set, Mode::Audit, &BTreeSet::new());
        assert_eq!(audited.len(), 2);
        assert!(audited.iter().all(|f| f.action == Action::Report), "audit mode never kills: {audited:?}");
    }

    #[test]
    fn memory_code_and_unreadable_code_are_unknown_and_kernel_threads_have_none() {
        let memfd =
            Code { path: "/memfd:x (deleted)".into(), range: Some("1000-2000".into()), content: Content::Memory };
        let gone = Code { path: "/x".into(), range: None, content: Content::Unreadable("EACCES".into()) };
        let tasks =
            [task(1, Some(file("/bin/ok", None, 1)), vec![memfd]), task(2, Some(gone), vec![]), task(3, None, vec![])];
        let found = assess(&tasks, &allowed(&[1]), Mode::Enforce, &BTreeSet::new());
        let kinds: Vec<_> = found.iter().map(|f| (f.host_pid, f.kind, f.action)).collect();
        assert_eq!(
            kinds,
            [(1, Kind::RunningUnknownCode, Action::Kill), (2, Kind::RunningUnreadable, Action::Kill)],
            "and the kernel thread (no executable) is not judged"
        );
    }

    #[test]
    fn privileges_beyond_the_signed_ones_are_reported_not_killed() {
        let setuid = Privs::of_entry(0o4755, None).unwrap();
        let exe = Code { path: "/bin/su".into(), range: None, content: Content::File { sha256: d(1), privs: setuid } };
        let tasks = [task(1, Some(exe), vec![])];
        let found = assess(&tasks, &allowed(&[1]), Mode::Enforce, &BTreeSet::new());
        assert_eq!(
            found.iter().map(|f| (f.kind, f.action)).collect::<Vec<_>>(),
            [(Kind::RunningPrivileges, Action::Report)]
        );
        // Signed setuid: nothing to say.
        let signed: DigestSet = [(d(1), setuid)].into();
        assert!(assess(&tasks, &signed, Mode::Enforce, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn new_narrowed_and_newly_enforcing_scopes_are_checked_and_grown_ones_are_not() {
        use crate::desired::DesiredScope;
        use crate::policy::Profile;
        use std::sync::Arc;
        let scope = |mode, digests: &[u8]| DesiredScope {
            mode,
            remote_fs: false,
            profile: Profile::Default,
            digests: Arc::new(allowed(digests)),
        };
        let state = |scopes: Vec<(u64, DesiredScope)>| DesiredState { scopes: scopes.into_iter().collect() };
        let old = state(vec![
            (1, scope(Mode::Enforce, &[1, 2])),
            (2, scope(Mode::Enforce, &[1, 2])),
            (3, scope(Mode::Audit, &[1])),
            (4, scope(Mode::Enforce, &[1])),
            (5, scope(Mode::Enforce, &[1])),
        ]);
        let setuid = Privs::of_entry(0o4755, None).unwrap();
        let mut fewer_privs = scope(Mode::Enforce, &[1]);
        let mut with_privs = (*fewer_privs.digests).clone();
        with_privs.insert(d(1), setuid);
        let old = DesiredState {
            scopes: old
                .scopes
                .into_iter()
                .chain([(6, DesiredScope { digests: Arc::new(with_privs), ..fewer_privs.clone() })])
                .collect(),
        };
        fewer_privs.mode = Mode::Enforce;
        let new = state(vec![
            (1, scope(Mode::Enforce, &[1, 2, 3])), // grew: nothing
            (2, scope(Mode::Enforce, &[1])),       // lost 2
            (3, scope(Mode::Enforce, &[1])),       // audit -> enforce
            (4, scope(Mode::Audit, &[1])),         // enforce -> audit: nothing
            (6, fewer_privs),                      // lost a privilege
            (7, scope(Mode::Audit, &[])),          // new
        ]);
        assert_eq!(to_check(&old, &new), [2, 3, 6, 7]);
        assert!(to_check(&new, &new).is_empty());
    }

    #[test]
    fn the_runtimes_init_is_exempt_and_nothing_else() {
        let tasks = [
            task(7, Some(file("/usr/bin/runc", None, 5)), vec![]),
            task(8, Some(file("/usr/bin/runc", None, 5)), vec![]),
        ];
        let found = assess(&tasks, &allowed(&[1]), Mode::Enforce, &[7].into());
        assert_eq!(found.iter().map(|f| f.host_pid).collect::<Vec<_>>(), [8]);
    }
}
