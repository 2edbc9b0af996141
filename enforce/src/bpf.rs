//! The adapter from [`Kernel`] to `bpf_lsm::enforcer`: scopes keyed by cgroup id (a scope covers
//! its cgroup's subtree), each with a scope id naming its digest set; decisions from the ring
//! buffer. Digests are [`Sha256Digest`]s up to the enforcer call in `BpfKernel::run`, the one
//! place they become the kernel's byte form.
//!
//! Each cgroup keeps one scope id for the daemon's lifetime. A changed set is replaced with
//! `Enforcer::replace_digests`, which fills a fresh set, repoints the scope in one map update and
//! then deletes the old pairs; the kernel programs look again when a lookup misses, so a decision
//! racing with a reload sees the old set or the new one, never a mix or nothing (the argument is
//! in `enforcer.bpf.c`). A scope dropped from the policy is removed at once, but its set is only
//! forgotten after [`GRACE`] (at the next apply or event poll), for decisions still hashing under
//! the scope entry they read before the removal. [`transition`] and [`reap`] compute the map
//! updates; they are pure and unit-tested.
//!
//! The programs and maps are pinned under the policy's `pin_dir`, so enforcement outlives the
//! daemon (a crash or SIGKILL included); a new daemon takes over what is pinned there, and what
//! was in force stays in force until its first desired state is applied. The digests of the sets it finds
//! are not read back: each of those sets is replaced whole by that first apply. [`status`] reads
//! what is pinned, [`detach`] unpins it.

use crate::desired::{DesiredState, DigestSet, Privs};
use crate::kernel::{Event, Hook, Kernel, KernelError, Reason, ScopeCounters, Verdict};
use crate::{Mode, Profile};
use bpf_lsm::enforcer::{self, Enforcer, EnforcerError, Scope};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use verifier_core::digest::Sha256Digest;

/// How long the digest set of a removed scope stays in the kernel, for decisions that read the
/// scope entry before the removal and are still hashing.
pub const GRACE: Duration = Duration::from_secs(5);

/// One step, in the order [`transition`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Make these digests (with their privileges) the whole set of a scope id, atomically.
    Replace { scope_id: u32, digests: Vec<(Sha256Digest, Privs)> },
    /// Point a cgroup at a scope id (and set its mode, profile and remote-fs opt-in), in one map
    /// update.
    SetScope { cgroup_id: u64, scope_id: u32, mode: Mode, profile: Profile, remote_fs: bool },
    /// Stop enforcing a cgroup.
    RemoveScope { cgroup_id: u64 },
    /// Note that no cgroup points at a scope id any more (no map update; see [`GRACE`]).
    Retire { scope_id: u32 },
    /// Empty and forget the set of a retired scope id.
    Forget { scope_id: u32 },
}

impl std::fmt::Display for Op {
    /// What the op does, short enough for an error message (no digests).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Replace { scope_id, digests } => {
                write!(f, "writing the digest set of scope id {scope_id} ({} digest(s))", digests.len())
            }
            Op::SetScope { cgroup_id, scope_id, .. } => {
                write!(f, "making cgroup id {cgroup_id} a scope (scope id {scope_id})")
            }
            Op::RemoveScope { cgroup_id } => write!(f, "removing the scope of cgroup id {cgroup_id}"),
            Op::Retire { scope_id } => write!(f, "retiring the digest set of scope id {scope_id}"),
            Op::Forget { scope_id } => write!(f, "forgetting the digest set of scope id {scope_id}"),
        }
    }
}

/// What is in the kernel's maps, as far as this adapter put it there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// cgroup id -> (scope id, mode, profile, remote-fs opt-in).
    pub scopes: BTreeMap<u64, (u32, Mode, Profile, bool)>,
    /// scope id -> digests.
    pub sets: BTreeMap<u32, DigestSet>,
    /// Sets no cgroup points at, and since when.
    pub retired: Vec<(u32, Instant)>,
    /// Scope ids found in force when taking over a pinned enforcer, whose digests were not read:
    /// the next apply replaces their sets whole.
    pub unknown: BTreeSet<u32>,
    next_id: u32,
}

impl Loaded {
    /// What a pinned enforcer holds, from its scope entries (cgroup id, scope id, mode, profile,
    /// remote-fs opt-in).
    pub fn taken_over(scopes: impl IntoIterator<Item = (u64, u32, Mode, Profile, bool)>) -> Self {
        let mut loaded = Loaded::default();
        for (cgroup_id, scope_id, mode, profile, remote_fs) in scopes {
            loaded.scopes.insert(cgroup_id, (scope_id, mode, profile, remote_fs));
            loaded.unknown.insert(scope_id);
            loaded.next_id = loaded.next_id.max(scope_id.wrapping_add(1));
        }
        loaded
    }

    /// Records one op that the kernel carried out at `now`.
    pub fn record(&mut self, op: &Op, now: Instant) {
        match op {
            Op::Replace { scope_id, digests } => {
                self.sets.insert(*scope_id, digests.iter().copied().collect());
                self.unknown.remove(scope_id);
                self.next_id = self.next_id.max(scope_id.wrapping_add(1));
            }
            Op::SetScope { cgroup_id, scope_id, mode, profile, remote_fs } => {
                self.scopes.insert(*cgroup_id, (*scope_id, *mode, *profile, *remote_fs));
                self.next_id = self.next_id.max(scope_id.wrapping_add(1));
            }
            Op::RemoveScope { cgroup_id } => {
                self.scopes.remove(cgroup_id);
            }
            Op::Retire { scope_id } => self.retired.push((*scope_id, now)),
            Op::Forget { scope_id } => {
                self.sets.remove(scope_id);
                self.unknown.remove(scope_id);
                self.retired.retain(|(id, _)| id != scope_id);
            }
        }
    }

    fn set(&self, scope_id: u32) -> DigestSet {
        self.sets.get(&scope_id).cloned().unwrap_or_default()
    }
}

/// The steps that take the kernel from `loaded` to `desired`: every new or changed set written
/// (cgroups that want the same digests share one scope id and one set in the kernel, so a
/// hundred containers of one image cost one set), then the cgroups' scope entries set (new
/// scopes, a scope id, mode or profile change), then removals of scopes no longer desired and
/// the retirement of sets no cgroup points at any more (forgotten later by [`reap`]). A set
/// changes in place only when every cgroup pointing at it wants the change; otherwise the
/// cgroups that want it move to a fresh scope id. An unchanged scope costs nothing.
pub fn transition(loaded: &Loaded, desired: &DesiredState) -> Vec<Op> {
    // Cgroups wanting equal digest sets (the same statement's set is one Arc).
    let mut groups: Vec<(&DigestSet, Vec<u64>)> = Vec::new();
    for (&cgroup_id, scope) in &desired.scopes {
        let set: &DigestSet = &scope.digests;
        match groups.iter_mut().find(|(g, _)| std::ptr::eq(*g, set) || *g == set) {
            Some((_, members)) => members.push(cgroup_id),
            None => groups.push((set, vec![cgroup_id])),
        }
    }
    let group_of: BTreeMap<u64, usize> =
        groups.iter().enumerate().flat_map(|(i, (_, members))| members.iter().map(move |&c| (c, i))).collect();
    // Whether every cgroup that points at `id` now is in group `index` (so its set may change).
    let only_group = |id: u32, index: usize| {
        loaded.scopes.iter().filter(|(_, s)| s.0 == id).all(|(c, _)| group_of.get(c) == Some(&index))
    };

    let mut next_id = loaded.next_id.max(1);
    let mut taken = BTreeSet::new();
    let mut replaces = Vec::new();
    let mut assigned: BTreeMap<u64, u32> = BTreeMap::new();
    for (index, (set, members)) in groups.iter().enumerate() {
        let current: Vec<u32> = members.iter().filter_map(|c| loaded.scopes.get(c).map(|s| s.0)).collect();
        let unchanged = current
            .iter()
            .copied()
            .find(|id| !taken.contains(id) && !loaded.unknown.contains(id) && loaded.set(*id) == **set);
        let id = match unchanged {
            Some(id) => id,
            None => {
                let id = current.iter().copied().find(|&id| !taken.contains(&id) && only_group(id, index));
                let id = id.unwrap_or_else(|| {
                    let fresh = next_id;
                    next_id = next_id.wrapping_add(1).max(1);
                    fresh
                });
                let digests = set.iter().map(|(d, p)| (*d, *p)).collect();
                replaces.push(Op::Replace { scope_id: id, digests });
                id
            }
        };
        taken.insert(id);
        assigned.extend(members.iter().map(|&c| (c, id)));
    }

    let mut switches = Vec::new();
    for (&cgroup_id, scope) in &desired.scopes {
        let id = assigned[&cgroup_id];
        let wanted = (id, scope.mode, scope.profile, scope.remote_fs);
        if loaded.scopes.get(&cgroup_id) != Some(&wanted) {
            let (mode, profile, remote_fs) = (scope.mode, scope.profile, scope.remote_fs);
            switches.push(Op::SetScope { cgroup_id, scope_id: id, mode, profile, remote_fs });
        }
    }
    let removals: Vec<Op> = loaded
        .scopes
        .keys()
        .filter(|c| desired.scope(**c).is_none())
        .map(|&cgroup_id| Op::RemoveScope { cgroup_id })
        .collect();
    // Every set in the kernel that no cgroup will point at is retired once: those of removed
    // scopes, and one written for a scope whose own entry the kernel then refused (a full
    // `enf_scopes`), which no cgroup ever pointed at.
    let retired: BTreeSet<u32> = loaded.retired.iter().map(|(id, _)| *id).collect();
    let in_kernel: BTreeSet<u32> = loaded
        .scopes
        .values()
        .map(|s| s.0)
        .chain(loaded.unknown.iter().copied())
        .chain(loaded.sets.keys().copied())
        .collect();
    let retires = in_kernel
        .into_iter()
        .filter(|id| !taken.contains(id) && !retired.contains(id))
        .map(|scope_id| Op::Retire { scope_id });
    replaces.into_iter().chain(switches).chain(removals).chain(retires).collect()
}

/// The sets retired at least [`GRACE`] before `now`, to forget.
pub fn reap(loaded: &Loaded, now: Instant) -> Vec<Op> {
    loaded
        .retired
        .iter()
        .filter(|(_, since)| now.saturating_duration_since(*since) >= GRACE)
        .map(|&(scope_id, _)| Op::Forget { scope_id })
        .collect()
}

/// The enforcer programs, pinned under a bpffs directory.
pub struct BpfKernel {
    enforcer: Enforcer,
    loaded: Loaded,
}

impl BpfKernel {
    /// Loads, attaches and pins the programs and maps under `pin_dir`, or takes over the enforcer
    /// already pinned there (what is in force stays in force).
    pub fn open(pin_dir: &Path) -> Result<Self, KernelError> {
        let mut enforcer = Enforcer::attach_pinned(pin_dir).map_err(|e| {
            let mut what = format!("loading, attaching and pinning the BPF-LSM programs under {}", pin_dir.display());
            // Some kernels list `bpf` as an active LSM yet refuse every LSM program with EPERM
            // before the verifier runs (seen on this project's development VMs).
            if crate::verified::error_chain(&e).contains("Operation not permitted") {
                what.push_str(
                    " (the kernel refused an LSM program although `bpf` is an active LSM: a lockdown or \
                     kernel policy forbids BPF-LSM programs here; the kernel lab runs them in Debian's kernels)",
                );
            }
            failed(&what, e)
        })?;
        let in_force = enforcer.scopes_in_force().map_err(|e| failed("reading the scopes in force", e))?;
        let loaded = Loaded::taken_over(in_force.into_iter().map(|(cgroup_id, scope)| {
            (cgroup_id, scope.id, mode_of(scope.mode), profile_of(scope.profile), scope.remote_fs)
        }));
        Ok(BpfKernel { enforcer, loaded })
    }

    /// What this adapter has put in the kernel.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    fn run(&mut self, op: &Op) -> Result<(), EnforcerError> {
        match op {
            Op::Replace { scope_id, digests } => {
                let entries: Vec<(bpf_lsm::Digest, Privs)> = digests.iter().map(|(d, p)| (d.0, *p)).collect();
                self.enforcer.replace_entries(*scope_id, &entries)
            }
            Op::SetScope { cgroup_id, scope_id, mode, profile, remote_fs } => {
                let mut scope = Scope::new(*scope_id, kernel_mode(*mode));
                scope.profile = kernel_profile(*profile);
                scope.remote_fs = *remote_fs;
                self.enforcer.set_scope(*cgroup_id, scope)
            }
            Op::RemoveScope { cgroup_id } => self.enforcer.remove_scope(*cgroup_id),
            Op::Retire { .. } => Ok(()),
            Op::Forget { scope_id } => self.enforcer.remove_digest_set(*scope_id),
        }
    }

    fn run_all(&mut self, ops: Vec<Op>) -> Result<(), KernelError> {
        for op in ops {
            self.run(&op).map_err(|e| failed(&op.to_string(), e))?;
            self.loaded.record(&op, Instant::now());
        }
        Ok(())
    }
}

impl Kernel for BpfKernel {
    fn apply(&mut self, desired: &DesiredState) -> Result<(), KernelError> {
        self.run_all(reap(&self.loaded, Instant::now()))?;
        self.run_all(transition(&self.loaded, desired))
    }

    fn events(&mut self, timeout: Duration) -> Result<Vec<Event>, KernelError> {
        self.run_all(reap(&self.loaded, Instant::now()))?;
        let events = self.enforcer.poll_events(timeout).map_err(|e| failed("reading events", e))?;
        Ok(events.into_iter().map(convert).collect())
    }

    fn scope_counters(&self, cgroup_id: u64) -> Option<ScopeCounters> {
        self.enforcer.scope_stats(cgroup_id).ok().flatten().map(counters)
    }
}

fn counters(s: enforcer::ScopeStats) -> ScopeCounters {
    ScopeCounters { allowed: s.allowed, denied: s.denied, audited: s.audited, dropped: s.dropped, events: s.events }
}

/// A decision of the kernel programs in the daemon's terms.
pub fn convert(e: enforcer::Event) -> Event {
    Event {
        hook: match e.hook {
            enforcer::Hook::BprmCheck => Hook::Exec,
            enforcer::Hook::MmapFile => Hook::Mmap,
            enforcer::Hook::FileMprotect => Hook::Mprotect,
            enforcer::Hook::FileOpen => Hook::Open,
            enforcer::Hook::InodeSetattr => Hook::Truncate,
            enforcer::Hook::Ptrace => Hook::Ptrace,
            enforcer::Hook::AnonInode => Hook::AnonInode,
            enforcer::Hook::Bpf => Hook::Bpf,
            enforcer::Hook::KernelLoad => Hook::KernelLoad,
            enforcer::Hook::TaskAlloc => Hook::Clone,
            enforcer::Hook::Creds => Hook::Creds,
            enforcer::Hook::Pin => Hook::Pin,
            enforcer::Hook::Unknown(_) => Hook::Unknown,
        },
        reason: match e.reason {
            enforcer::Reason::Digest => Reason::Digest,
            enforcer::Reason::Writers => Reason::Writers,
            enforcer::Reason::Sealed => Reason::Sealed,
            enforcer::Reason::Memfd => Reason::Memfd,
            enforcer::Reason::WriteExec => Reason::WriteExec,
            enforcer::Reason::Patch => Reason::Patch,
            enforcer::Reason::Strict => Reason::Strict,
            enforcer::Reason::RemoteFs => Reason::RemoteFs,
            enforcer::Reason::Privilege => Reason::Privilege,
            enforcer::Reason::Escape => Reason::Escape,
            enforcer::Reason::SelfProtection => Reason::SelfProtection,
            enforcer::Reason::KernelLoad => Reason::KernelLoad,
            enforcer::Reason::Mprotect => Reason::Mprotect,
            enforcer::Reason::Unknown(_) => Reason::Unknown,
        },
        verdict: match e.verdict {
            enforcer::Verdict::Allow => Verdict::Allowed,
            enforcer::Verdict::Deny => Verdict::Denied,
            enforcer::Verdict::Audit => Verdict::Audited,
            enforcer::Verdict::Unknown(_) => Verdict::Unknown,
        },
        mode: e.mode.map(mode_of),
        boot_time_ns: Some(e.time_ns),
        scope_cgroup_id: e.scope_cgroup_id,
        scope: None,
        cgroup_id: e.cgroup_id,
        cgroup: None,
        host_pid: e.host_pid,
        ns_pid: e.ns_pid,
        pid_ns: Some(e.pid_ns.into()),
        mnt_ns: Some(e.mnt_ns.into()),
        comm: e.comm,
        path: e.path.map(|p| p.to_string_lossy().into_owned()),
        sha256: e.digest.map(Sha256Digest),
        scope_seq: e.scope_seq,
        scope_counters: e.scope_stats.map(counters),
    }
}

fn mode_of(mode: enforcer::Mode) -> Mode {
    match mode {
        enforcer::Mode::Enforce => Mode::Enforce,
        enforcer::Mode::Audit => Mode::Audit,
    }
}

fn profile_of(profile: enforcer::Profile) -> Profile {
    match profile {
        enforcer::Profile::Default => Profile::Default,
        enforcer::Profile::Strict => Profile::Strict,
    }
}

fn kernel_profile(profile: Profile) -> enforcer::Profile {
    match profile {
        Profile::Default => enforcer::Profile::Default,
        Profile::Strict => enforcer::Profile::Strict,
    }
}

fn kernel_mode(mode: Mode) -> enforcer::Mode {
    match mode {
        Mode::Enforce => enforcer::Mode::Enforce,
        Mode::Audit => enforcer::Mode::Audit,
    }
}

fn failed(what: &str, e: EnforcerError) -> KernelError {
    KernelError::Failed { what: what.to_string(), source: Box::new(e) }
}

/// What is pinned under a pin directory.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pin_dir: PathBuf,
    /// Whether an enforcer is pinned there (if not, nothing else is filled in).
    pub pinned: bool,
    /// Which layout and build of the programs are pinned (`layout 2 (build 06eace36744d)`;
    /// `layout 1 (no identity)` for builds before identities).
    pub programs: Option<String>,
    pub scopes: Vec<ScopeStatus>,
    /// Events the kernel dropped because the ring buffer was full.
    pub dropped_events: u64,
}

/// One scope in force.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeStatus {
    pub cgroup_id: u64,
    pub scope_id: u32,
    pub mode: Mode,
    pub profile: Profile,
    pub digests: usize,
    /// Its counters (absent when the pinned programs predate them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<ScopeCounters>,
}

/// Reads what is pinned under `pin_dir` (without changing it).
pub fn status(pin_dir: &Path) -> Result<Status, KernelError> {
    let mut status = Status {
        pin_dir: pin_dir.to_path_buf(),
        pinned: Enforcer::is_pinned(pin_dir),
        programs: None,
        scopes: Vec::new(),
        dropped_events: 0,
    };
    if !status.pinned {
        return Ok(status);
    }
    let identity = Enforcer::pinned_identity(pin_dir)
        .map_err(|e| failed(&format!("reading the identity pinned under {}", pin_dir.display()), e))?;
    status.programs = Some(identity.map_or_else(|| "layout 1 (no identity)".to_string(), |id| id.to_string()));
    // Read only: registering as the owner would take the pins from the daemon.
    let mut enforcer = Enforcer::inspect_pinned(pin_dir)
        .map_err(|e| failed(&format!("opening the enforcer pinned under {}", pin_dir.display()), e))?;
    for (cgroup_id, scope) in enforcer.scopes_in_force().map_err(|e| failed("reading the scopes in force", e))? {
        let digests = enforcer.digest_count(scope.id).map_err(|e| failed("counting digests", e))?;
        status.scopes.push(ScopeStatus {
            cgroup_id,
            scope_id: scope.id,
            mode: mode_of(scope.mode),
            profile: profile_of(scope.profile),
            digests,
            counters: enforcer.scope_stats(cgroup_id).map_err(|e| failed("reading scope counters", e))?.map(counters),
        });
    }
    status.dropped_events = enforcer.dropped_events().map_err(|e| failed("reading the dropped-event counter", e))?;
    Ok(status)
}

/// Unpins the enforcer under `pin_dir`; returns whether one was pinned there. Enforcement ends
/// once no process holds the programs (a running daemon still does).
pub fn detach(pin_dir: &Path) -> Result<bool, KernelError> {
    let pinned = Enforcer::is_pinned(pin_dir);
    Enforcer::unpin(pin_dir).map_err(|e| failed(&format!("unpinning {}", pin_dir.display()), e))?;
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DesiredScope;
    use std::sync::Arc;

    fn d(b: u8) -> Sha256Digest {
        Sha256Digest([b; 32])
    }

    /// Digests without privileges, as a Replace carries them.
    fn plain(digests: &[Sha256Digest]) -> Vec<(Sha256Digest, Privs)> {
        digests.iter().map(|d| (*d, Privs::NONE)).collect()
    }

    fn scope(cgroup_id: u64, mode: Mode, digests: &[u8]) -> (u64, DesiredScope) {
        let digests = Arc::new(digests.iter().map(|&b| (d(b), Privs::NONE)).collect());
        (cgroup_id, DesiredScope { mode, profile: Profile::Default, remote_fs: false, digests })
    }

    fn strict(scope: (u64, DesiredScope)) -> (u64, DesiredScope) {
        (scope.0, DesiredScope { profile: Profile::Strict, ..scope.1 })
    }

    fn plan(scopes: Vec<(u64, DesiredScope)>) -> DesiredState {
        DesiredState { scopes: scopes.into_iter().collect() }
    }

    /// Applies `plan` to `loaded` the way the kernel would (after the grace period of whatever
    /// the last apply retired), checking after every op that each cgroup points at a complete
    /// set, the old one or the new one, and at the end that the kernel holds the plan.
    fn apply(loaded: &mut Loaded, plan: &DesiredState) -> Vec<Op> {
        let t0 = Instant::now();
        for op in reap(loaded, t0 + GRACE) {
            loaded.record(&op, t0);
        }
        let before: BTreeMap<u64, DigestSet> =
            loaded.scopes.iter().map(|(&c, &(id, ..))| (c, loaded.set(id))).collect();
        let ops = transition(loaded, plan);
        for op in &ops {
            loaded.record(op, t0);
            for (&cgroup, &(id, ..)) in &loaded.scopes {
                let now = loaded.set(id);
                let new = plan.scope(cgroup).map(|s| &*s.digests);
                assert!(
                    Some(&now) == before.get(&cgroup) || Some(&now) == new,
                    "after {op:?} cgroup {cgroup} sees a set that is neither the old nor the new one"
                );
            }
        }
        for (cgroup_id, s) in &plan.scopes {
            let (id, mode, profile, remote_fs) = loaded.scopes[cgroup_id];
            assert_eq!(
                (loaded.set(id), mode, profile, remote_fs),
                ((*s.digests).clone(), s.mode, s.profile, s.remote_fs)
            );
        }
        assert_eq!(loaded.scopes.len(), plan.scopes.len(), "scopes not in the plan are gone");
        assert!(reap(loaded, t0 + GRACE / 2).is_empty(), "nothing is forgotten before the grace period");
        let mut reaped = loaded.clone();
        for op in reap(loaded, t0 + GRACE) {
            reaped.record(&op, t0 + GRACE);
        }
        let referenced: BTreeSet<u32> = reaped.scopes.values().map(|&(id, ..)| id).collect();
        assert!(reaped.sets.keys().all(|id| referenced.contains(id)), "orphan sets left: {:?}", reaped.sets.keys());
        ops
    }

    #[test]
    fn first_plan_fills_sets_before_pointing_cgroups_at_them() {
        let mut loaded = Loaded::default();
        let ops = apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1, 2]), scope(11, Mode::Audit, &[3])]));
        assert!(
            matches!(ops[..], [Op::Replace { .. }, Op::Replace { .. }, Op::SetScope { .. }, Op::SetScope { .. }]),
            "{ops:?}"
        );
        assert_ne!(loaded.scopes[&10].0, loaded.scopes[&11].0, "one scope id per cgroup");
    }

    #[test]
    fn cgroups_wanting_one_set_share_it_and_a_change_moves_only_those_that_want_it() {
        let mut loaded = Loaded::default();
        // Three containers of one image (one Arc, as a statement's set is), one of another.
        let image = scope(10, Mode::Enforce, &[1, 2]).1.digests;
        let of_image = |c: u64| (c, DesiredScope { digests: image.clone(), ..scope(c, Mode::Enforce, &[]).1 });
        let ops =
            apply(&mut loaded, &plan(vec![of_image(10), of_image(11), of_image(12), scope(13, Mode::Audit, &[3])]));
        assert_eq!(ops.iter().filter(|op| matches!(op, Op::Replace { .. })).count(), 2, "{ops:?}");
        let id = |l: &Loaded, c: u64| l.scopes[&c].0;
        assert!(id(&loaded, 10) == id(&loaded, 11) && id(&loaded, 11) == id(&loaded, 12));
        assert_ne!(id(&loaded, 10), id(&loaded, 13));
        assert_eq!(loaded.sets.len(), 2, "one set in the kernel per distinct digest set");
        let shared = id(&loaded, 10);

        // 11 moves to a new version: only it moves, to a fresh id; the others' set is untouched.
        let ops = apply(
            &mut loaded,
            &plan(vec![of_image(10), scope(11, Mode::Enforce, &[1, 2, 5]), of_image(12), scope(13, Mode::Audit, &[3])]),
        );
        let fresh = id(&loaded, 11);
        assert_ne!(fresh, shared);
        assert_eq!(
            ops,
            vec![
                Op::Replace { scope_id: fresh, digests: plain(&[d(1), d(2), d(5)]) },
                Op::SetScope {
                    cgroup_id: 11,
                    scope_id: fresh,
                    mode: Mode::Enforce,
                    profile: Profile::Default,
                    remote_fs: false
                },
            ]
        );
        // An equal set from another Arc joins the shared one without a write.
        let ops = apply(
            &mut loaded,
            &plan(vec![
                of_image(10),
                scope(11, Mode::Enforce, &[1, 2, 5]),
                of_image(12),
                scope(13, Mode::Audit, &[3]),
                scope(14, Mode::Enforce, &[1, 2]),
            ]),
        );
        assert!(matches!(ops[..], [Op::SetScope { cgroup_id: 14, scope_id, .. }] if scope_id == shared), "{ops:?}");

        // Every container of the image gone: their set is retired, once, and no other.
        let ops = apply(&mut loaded, &plan(vec![scope(11, Mode::Enforce, &[1, 2, 5]), scope(13, Mode::Audit, &[3])]));
        assert_eq!(
            ops,
            vec![
                Op::RemoveScope { cgroup_id: 10 },
                Op::RemoveScope { cgroup_id: 12 },
                Op::RemoveScope { cgroup_id: 14 },
                Op::Retire { scope_id: shared },
            ]
        );
    }

    #[test]
    fn reload_replaces_changed_sets_in_place_and_leaves_the_rest() {
        let mut loaded = Loaded::default();
        apply(
            &mut loaded,
            &plan(vec![scope(10, Mode::Enforce, &[1, 2]), scope(11, Mode::Audit, &[3]), scope(12, Mode::Audit, &[4])]),
        );
        let ids = loaded.scopes.clone();
        // 10: new set; 11: unchanged; 12: mode only; 13: new scope.
        let next = plan(vec![
            scope(10, Mode::Enforce, &[2, 5]),
            scope(11, Mode::Audit, &[3]),
            scope(12, Mode::Enforce, &[4]),
            scope(13, Mode::Enforce, &[6]),
        ]);
        let ops = apply(&mut loaded, &next);
        let id = |c: u64| loaded.scopes[&c].0;
        assert_eq!((id(10), id(11), id(12)), (ids[&10].0, ids[&11].0, ids[&12].0), "scope ids are stable");
        assert_eq!(
            ops,
            vec![
                Op::Replace { scope_id: id(10), digests: plain(&[d(2), d(5)]) },
                Op::Replace { scope_id: id(13), digests: plain(&[d(6)]) },
                Op::SetScope {
                    cgroup_id: 12,
                    scope_id: id(12),
                    mode: Mode::Enforce,
                    profile: Profile::Default,
                    remote_fs: false
                },
                Op::SetScope {
                    cgroup_id: 13,
                    scope_id: id(13),
                    mode: Mode::Enforce,
                    profile: Profile::Default,
                    remote_fs: false
                },
            ]
        );
        // The same plan again: nothing to do.
        assert!(transition(&loaded, &next).is_empty());
    }

    #[test]
    fn a_profile_change_re_sets_the_scope_and_keeps_its_set() {
        let mut loaded = Loaded::default();
        apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1]), scope(11, Mode::Enforce, &[2])]));
        let id = loaded.scopes[&10].0;
        // 10 becomes strict (same digests): one SetScope, no Replace; 11 is untouched.
        let ops =
            apply(&mut loaded, &plan(vec![strict(scope(10, Mode::Enforce, &[1])), scope(11, Mode::Enforce, &[2])]));
        assert_eq!(
            ops,
            vec![Op::SetScope {
                cgroup_id: 10,
                scope_id: id,
                mode: Mode::Enforce,
                profile: Profile::Strict,
                remote_fs: false
            }]
        );
        assert_eq!(loaded.scopes[&10], (id, Mode::Enforce, Profile::Strict, false));
        // And back to the default profile.
        let ops = apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1]), scope(11, Mode::Enforce, &[2])]));
        assert_eq!(
            ops,
            vec![Op::SetScope {
                cgroup_id: 10,
                scope_id: id,
                mode: Mode::Enforce,
                profile: Profile::Default,
                remote_fs: false
            }]
        );
        // A new strict scope is set strict from the start.
        let ops = apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1]), strict(scope(12, Mode::Audit, &[3]))]));
        let new = loaded.scopes[&12].0;
        assert!(ops.contains(&Op::SetScope {
            cgroup_id: 12,
            scope_id: new,
            mode: Mode::Audit,
            profile: Profile::Strict,
            remote_fs: false
        }));
    }

    #[test]
    fn remote_fs_changes_are_one_scope_entry_update_and_keep_the_set() {
        let mut loaded = Loaded::default();
        apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1])]));
        let id = loaded.scopes[&10].0;
        let mut opted_in = scope(10, Mode::Enforce, &[1]);
        opted_in.1.remote_fs = true;
        let set = |remote_fs| Op::SetScope {
            cgroup_id: 10,
            scope_id: id,
            mode: Mode::Enforce,
            profile: Profile::Default,
            remote_fs,
        };
        let ops = apply(&mut loaded, &plan(vec![opted_in.clone()]));
        assert_eq!(ops, vec![set(true)]);
        assert!(transition(&loaded, &plan(vec![opted_in])).is_empty(), "unchanged: nothing to do");
        let ops = apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1])]));
        assert_eq!(ops, vec![set(false)]);
        // A taken-over enforcer's opt-in is what its scope entry says.
        let mut taken = Loaded::taken_over([(10, 3, Mode::Enforce, Profile::Default, true)]);
        let ops = apply(&mut taken, &plan(vec![scope(10, Mode::Enforce, &[1])]));
        assert_eq!(
            ops,
            vec![
                Op::Replace { scope_id: 3, digests: plain(&[d(1)]) },
                Op::SetScope {
                    cgroup_id: 10,
                    scope_id: 3,
                    mode: Mode::Enforce,
                    profile: Profile::Default,
                    remote_fs: false
                }
            ]
        );
    }

    #[test]
    fn a_strict_scope_found_pinned_keeps_its_profile_until_the_plan_says_otherwise() {
        let loaded = Loaded::taken_over([(10, 3, Mode::Enforce, Profile::Strict, false)]);
        let ops = transition(&loaded, &plan(vec![strict(scope(10, Mode::Enforce, &[1]))]));
        assert_eq!(ops, vec![Op::Replace { scope_id: 3, digests: plain(&[d(1)]) }], "the profile is already in force");
        let ops = transition(&loaded, &plan(vec![scope(10, Mode::Enforce, &[1])]));
        assert_eq!(
            ops[1],
            Op::SetScope {
                cgroup_id: 10,
                scope_id: 3,
                mode: Mode::Enforce,
                profile: Profile::Default,
                remote_fs: false
            }
        );
    }

    #[test]
    fn a_set_written_for_a_scope_the_kernel_refused_is_retired_not_left() {
        // The new scope's set is written, then the kernel refuses its cgroup's entry (a full
        // enf_scopes): the daemon puts the old plan back, which must not leave that set behind.
        let mut loaded = Loaded::default();
        let old = plan(vec![scope(10, Mode::Enforce, &[1])]);
        apply(&mut loaded, &old);
        let ops = transition(&loaded, &plan(vec![scope(10, Mode::Enforce, &[1]), scope(11, Mode::Enforce, &[2])]));
        let Op::Replace { scope_id: orphan, .. } = ops[0] else { panic!("{ops:?}") };
        assert!(matches!(ops[1], Op::SetScope { cgroup_id: 11, .. }), "{ops:?}");
        loaded.record(&ops[0], Instant::now());
        // apply() also checks that no set is left that no cgroup points at.
        let ops = apply(&mut loaded, &old);
        assert_eq!(ops, vec![Op::Retire { scope_id: orphan }]);
        assert!(transition(&loaded, &old).is_empty(), "retired once");
        let text = Op::Replace { scope_id: 3, digests: plain(&[d(1), d(2)]) }.to_string();
        assert_eq!(text, "writing the digest set of scope id 3 (2 digest(s))");
    }

    #[test]
    fn scopes_left_out_are_removed_and_their_sets_forgotten_after_the_grace_period() {
        let mut loaded = Loaded::default();
        apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1]), scope(11, Mode::Enforce, &[2])]));
        let gone = loaded.scopes[&10].0;
        let ops = apply(&mut loaded, &plan(vec![scope(11, Mode::Enforce, &[2])]));
        assert_eq!(ops, vec![Op::RemoveScope { cgroup_id: 10 }, Op::Retire { scope_id: gone }]);
        assert_eq!(loaded.set(gone), [(d(1), Privs::NONE)].into(), "kept for decisions in flight");
        assert_eq!(reap(&loaded, Instant::now() + GRACE), vec![Op::Forget { scope_id: gone }]);
    }

    #[test]
    fn a_taken_over_enforcer_has_every_set_replaced_and_stale_scopes_removed() {
        let mut loaded = Loaded::taken_over([
            (10, 3, Mode::Enforce, Profile::Default, false),
            (11, 4, Mode::Audit, Profile::Strict, true),
        ]);
        // Even an empty set is replaced: what the kernel holds for scope 3 is not known.
        let ops = transition(&loaded, &plan(vec![scope(10, Mode::Enforce, &[])]));
        assert_eq!(
            ops,
            vec![
                Op::Replace { scope_id: 3, digests: plain(&[]) },
                Op::RemoveScope { cgroup_id: 11 },
                Op::Retire { scope_id: 4 }
            ]
        );
        apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[]), scope(12, Mode::Audit, &[1])]));
        assert_eq!(loaded.scopes[&12].0, 5, "fresh ids after the ones found");
        assert_eq!(loaded.unknown, [4].into(), "only the retired scope, forgotten after the grace period");
    }

    #[test]
    fn decisions_become_events_with_the_whole_fingerprint() {
        let decision = enforcer::Event {
            cgroup_id: 1235,
            host_pid: 99,
            ns_pid: 1,
            scope_id: 7,
            mode: Some(enforcer::Mode::Enforce),
            hook: enforcer::Hook::MmapFile,
            verdict: enforcer::Verdict::Deny,
            reason: enforcer::Reason::Writers,
            hash_ret: 4,
            comm: "ld.so".into(),
            digest: Some([0xab; 32]),
            time_ns: 5_000_000,
            scope_cgroup_id: 1234,
            pid_ns: 4026532000,
            mnt_ns: 4026532001,
            path: Some("/tmp/unlisted.so".into()),
            scope_seq: Some(6),
            scope_stats: Some(enforcer::ScopeStats { allowed: 1, denied: 2, audited: 0, dropped: 3, events: 7 }),
        };
        let event = convert(decision.clone());
        assert_eq!((event.hook, event.verdict, event.mode), (Hook::Mmap, Verdict::Denied, Some(Mode::Enforce)));
        assert_eq!(event.reason, Reason::Writers);
        assert_eq!((event.scope_cgroup_id, event.cgroup_id, event.host_pid, event.ns_pid), (1234, 1235, 99, 1));
        assert_eq!(
            (event.pid_ns, event.mnt_ns, event.boot_time_ns),
            (Some(4026532000), Some(4026532001), Some(5_000_000))
        );
        assert_eq!(event.path.as_deref(), Some("/tmp/unlisted.so"));
        assert_eq!(event.sha256, Some(Sha256Digest([0xab; 32])));
        assert_eq!(
            (event.scope_seq, event.scope_counters),
            (Some(6), Some(ScopeCounters { allowed: 1, denied: 2, audited: 0, dropped: 3, events: 7 }))
        );
        let mut mprotect = decision;
        mprotect.hook = enforcer::Hook::FileMprotect;
        assert_eq!(convert(mprotect).hook, Hook::Mprotect);
    }
}
