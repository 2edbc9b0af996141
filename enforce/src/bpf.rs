//! The adapter from [`Kernel`] to `bpf_lsm::enforcer`: the BPF-LSM programs keyed by cgroup id,
//! each scope pointing at a digest set named by a scope id, events from the ring buffer.
//!
//! Replacing a scope's set without a window: the loader adds and revokes digests one by one, so
//! a set changed in place would be a mix of old and new for a moment. Instead a changed set is
//! written complete under a fresh scope id, then one map update switches the cgroup's scope
//! entry to that id (the kernel reads the entry once per decision, so a decision sees the old set
//! or the new one, never a mix). The old set is only retired then, not revoked: the programs copy
//! the scope entry *before* they sleep hashing the file, so a decision that started before the
//! switch looks its digest up under the old id after it. Retired sets are revoked once [`GRACE`]
//! has passed (at the next apply or event poll). A decision that hashes for longer than that
//! finds its set gone and denies: the failure is closed, never open. (The kernel lab showed the
//! need: revoking right after the switch denied a listed binary at almost every reload.)
//! [`transition`] and [`reap`] compute the steps; they are pure and unit-tested.
//!
//! Not yet: `bpf_lsm` does not pin programs and maps, so enforcement lasts as long as the daemon
//! process, and `--status` / `--detach` have nothing to read or unpin ([`status`] and [`detach`]
//! say so).

use crate::kernel::{Event, Hook, Kernel, KernelError, Verdict};
use crate::{Mode, Plan};
use bpf_lsm::enforcer::{self, Enforcer, EnforcerError, Scope};
use bpf_lsm::Digest;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a replaced digest set stays in the kernel after no cgroup points at it any more, for
/// the decisions that read the scope entry before the switch and are still hashing.
pub const GRACE: Duration = Duration::from_secs(5);

const NOT_PINNED: &str = "bpf-lsm does not pin the enforcer's programs and maps yet: they live as long as the `imgsign enforce` daemon, so there is nothing pinned to show or detach (stop the daemon to stop enforcing)";

/// One map update, in the order [`transition`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Add digests to the set of a scope id.
    Allow { scope_id: u32, digests: Vec<Digest> },
    /// Point a cgroup at a scope id (and set its mode), in one map update.
    SetScope { cgroup_id: u64, scope_id: u32, mode: Mode },
    /// Stop enforcing a cgroup.
    RemoveScope { cgroup_id: u64 },
    /// Note that no cgroup points at a scope id any more (no map update; see [`GRACE`]).
    Retire { scope_id: u32 },
    /// Remove digests from the set of a retired scope id.
    Revoke { scope_id: u32, digests: Vec<Digest> },
}

/// What is in the kernel's maps, as far as this adapter put it there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// cgroup id -> (scope id, mode).
    pub scopes: BTreeMap<u64, (u32, Mode)>,
    /// scope id -> digests.
    pub sets: BTreeMap<u32, BTreeSet<Digest>>,
    /// Every scope id handed out -> its cgroup id (to name the scope of late events).
    pub ids: BTreeMap<u32, u64>,
    /// Sets no cgroup points at, and since when.
    pub retired: Vec<(u32, Instant)>,
    next_id: u32,
}

impl Loaded {
    /// Records one op that the kernel carried out at `now`.
    pub fn record(&mut self, op: &Op, now: Instant) {
        match op {
            Op::Allow { scope_id, digests } => {
                self.sets.entry(*scope_id).or_default().extend(digests.iter().copied());
                self.next_id = self.next_id.max(scope_id.wrapping_add(1));
            }
            Op::SetScope { cgroup_id, scope_id, mode } => {
                self.scopes.insert(*cgroup_id, (*scope_id, *mode));
                self.ids.insert(*scope_id, *cgroup_id);
                self.next_id = self.next_id.max(scope_id.wrapping_add(1));
            }
            Op::RemoveScope { cgroup_id } => {
                self.scopes.remove(cgroup_id);
            }
            Op::Retire { scope_id } => self.retired.push((*scope_id, now)),
            Op::Revoke { scope_id, digests } => {
                if let Some(set) = self.sets.get_mut(scope_id) {
                    for d in digests {
                        set.remove(d);
                    }
                    if set.is_empty() {
                        self.sets.remove(scope_id);
                    }
                }
                if !self.sets.contains_key(scope_id) {
                    self.retired.retain(|(id, _)| id != scope_id);
                }
            }
        }
    }

    fn set(&self, scope_id: u32) -> BTreeSet<Digest> {
        self.sets.get(&scope_id).cloned().unwrap_or_default()
    }
}

/// The ops that take the kernel from `loaded` to `plan`: first every new set written complete
/// under a fresh id, then the switches of the cgroups' scope entries, then removals of scopes no
/// longer in the plan, then the retirement of the sets nothing points at (revoked later by
/// [`reap`]). An unchanged scope costs nothing; a mode-only change is one switch.
pub fn transition(loaded: &Loaded, plan: &Plan) -> Vec<Op> {
    let mut allows = Vec::new();
    let mut switches = Vec::new();
    let mut removals = Vec::new();
    let mut retires = Vec::new();
    let mut next_id = loaded.next_id.max(1);
    for scope in &plan.scopes {
        let current = loaded.scopes.get(&scope.cgroup_id).copied();
        match current {
            Some((id, mode)) if loaded.set(id) == scope.digests => {
                if mode != scope.mode {
                    switches.push(Op::SetScope { cgroup_id: scope.cgroup_id, scope_id: id, mode: scope.mode });
                }
            }
            _ => {
                let id = next_id;
                next_id = next_id.wrapping_add(1).max(1);
                allows.push(Op::Allow { scope_id: id, digests: scope.digests.iter().copied().collect() });
                switches.push(Op::SetScope { cgroup_id: scope.cgroup_id, scope_id: id, mode: scope.mode });
                if let Some((old, _)) = current {
                    retires.push(Op::Retire { scope_id: old });
                }
            }
        }
    }
    for (&cgroup_id, &(id, _)) in &loaded.scopes {
        if plan.scope_by_cgroup_id(cgroup_id).is_none() {
            removals.push(Op::RemoveScope { cgroup_id });
            retires.push(Op::Retire { scope_id: id });
        }
    }
    allows.into_iter().chain(switches).chain(removals).chain(retires).collect()
}

/// Revocations of the sets retired at least [`GRACE`] before `now`.
pub fn reap(loaded: &Loaded, now: Instant) -> Vec<Op> {
    loaded
        .retired
        .iter()
        .filter(|(_, since)| now.saturating_duration_since(*since) >= GRACE)
        .map(|&(scope_id, _)| Op::Revoke { scope_id, digests: loaded.set(scope_id).into_iter().collect() })
        .collect()
}

/// The enforcer programs, attached by this process.
pub struct BpfKernel {
    enforcer: Enforcer,
    loaded: Loaded,
}

impl BpfKernel {
    /// Loads and attaches the programs. (`pin_dir` is where they will be pinned once `bpf_lsm`
    /// pins; today they detach when this value is dropped.)
    pub fn open(_pin_dir: &Path) -> Result<Self, KernelError> {
        let enforcer = Enforcer::attach().map_err(|e| failed("loading and attaching the BPF-LSM programs", e))?;
        Ok(BpfKernel { enforcer, loaded: Loaded::default() })
    }

    /// What this adapter has put in the kernel.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    fn run(&mut self, op: &Op) -> Result<(), EnforcerError> {
        match op {
            Op::Allow { scope_id, digests } => self.enforcer.allow_digests(*scope_id, digests),
            Op::SetScope { cgroup_id, scope_id, mode } => {
                self.enforcer.set_scope(*cgroup_id, Scope { id: *scope_id, mode: kernel_mode(*mode), report_allowed: false })
            }
            Op::RemoveScope { cgroup_id } => self.enforcer.remove_scope(*cgroup_id),
            Op::Retire { .. } => Ok(()),
            Op::Revoke { scope_id, digests } => self.enforcer.revoke_digests(*scope_id, digests),
        }
    }

    fn run_all(&mut self, ops: Vec<Op>) -> Result<(), KernelError> {
        for op in ops {
            self.run(&op).map_err(|e| failed(&format!("{op:?}"), e))?;
            self.loaded.record(&op, Instant::now());
        }
        Ok(())
    }
}

impl Kernel for BpfKernel {
    fn apply(&mut self, plan: &Plan) -> Result<(), KernelError> {
        self.run_all(reap(&self.loaded, Instant::now()))?;
        self.run_all(transition(&self.loaded, plan))
    }

    fn events(&mut self, timeout: Duration) -> Result<Vec<Event>, KernelError> {
        self.run_all(reap(&self.loaded, Instant::now()))?;
        let events = self.enforcer.poll_events(timeout).map_err(|e| failed("reading events", e))?;
        Ok(events.into_iter().map(|e| convert(e, &self.loaded.ids)).collect())
    }
}

/// An event of the loader in the daemon's terms; the scope's cgroup comes from the scope id.
pub fn convert(e: enforcer::Event, ids: &BTreeMap<u32, u64>) -> Event {
    Event {
        hook: match e.hook {
            enforcer::Hook::BprmCheck => Hook::Exec,
            enforcer::Hook::MmapFile => Hook::Mmap,
            enforcer::Hook::Unknown(_) => Hook::Unknown,
        },
        verdict: match e.verdict {
            enforcer::Verdict::Allow => Verdict::Allowed,
            enforcer::Verdict::Deny => Verdict::Denied,
            enforcer::Verdict::Audit => Verdict::Audited,
            enforcer::Verdict::Unknown(_) => Verdict::Unknown,
        },
        mode: e.mode.map(|m| match m {
            enforcer::Mode::Enforce => Mode::Enforce,
            enforcer::Mode::Audit => Mode::Audit,
        }),
        scope_cgroup_id: ids.get(&e.scope_id).copied().unwrap_or(e.cgroup_id),
        scope: None,
        cgroup_id: e.cgroup_id,
        host_pid: e.host_pid,
        ns_pid: e.ns_pid,
        pid_ns: None,
        mnt_ns: None,
        comm: e.comm,
        path: None,
        sha256: e.digest.map(hex::encode),
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
    pub pin_dir: String,
    /// (cgroup id, mode, number of digests) per scope in the kernel.
    pub scopes: Vec<(u64, Mode, usize)>,
}

/// Reads what is pinned under `pin_dir`.
pub fn status(_pin_dir: &Path) -> Result<Status, KernelError> {
    Err(KernelError::Unavailable(NOT_PINNED.into()))
}

/// Unpins the programs and maps under `pin_dir`: enforcement stops.
pub fn detach(_pin_dir: &Path) -> Result<(), KernelError> {
    Err(KernelError::Unavailable(NOT_PINNED.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ScopePlan;
    use std::path::PathBuf;

    fn scope(cgroup_id: u64, mode: Mode, digests: &[u8]) -> ScopePlan {
        ScopePlan {
            name: format!("s{cgroup_id}"),
            cgroup: PathBuf::from(format!("/sys/fs/cgroup/s{cgroup_id}")),
            cgroup_id,
            mode,
            digests: digests.iter().map(|&b| [b; 32]).collect(),
            manifests: Vec::new(),
        }
    }

    fn plan(scopes: Vec<ScopePlan>) -> Plan {
        Plan { policy: "/p.toml".into(), pin_dir: "/sys/fs/bpf/imgsign".into(), scopes, versions: BTreeMap::new() }
    }

    /// Applies `plan` to `loaded` the way the kernel would, checking after every op that each
    /// cgroup of the old or the new plan points at a complete set: the old one or the new one.
    fn apply(loaded: &mut Loaded, plan: &Plan) -> Vec<Op> {
        let t0 = Instant::now();
        // Whatever was retired by the last apply has had its grace period.
        for op in reap(loaded, t0 + GRACE) {
            loaded.record(&op, t0);
        }
        let before: BTreeMap<u64, (u32, BTreeSet<Digest>)> = loaded.scopes.iter().map(|(&c, &(id, _))| (c, (id, loaded.set(id)))).collect();
        let ops = transition(loaded, plan);
        for op in &ops {
            loaded.record(op, t0);
            for (&cgroup, &(id, _)) in &loaded.scopes {
                let now = loaded.set(id);
                let old = before.get(&cgroup).map(|(_, set)| set);
                let new = plan.scope_by_cgroup_id(cgroup).map(|s| &s.digests);
                assert!(Some(&now) == old || Some(&now) == new, "after {op:?} cgroup {cgroup} sees a set that is neither the old nor the new one");
            }
        }
        for s in &plan.scopes {
            let (id, mode) = loaded.scopes[&s.cgroup_id];
            assert_eq!((loaded.set(id), mode), (s.digests.clone(), s.mode));
        }
        assert_eq!(loaded.scopes.len(), plan.scopes.len(), "scopes not in the plan are gone");
        // A decision that read the old entry before the switch still finds the old set whole.
        for (id, set) in before.values() {
            assert_eq!(&loaded.set(*id), set, "set {id} changed before its grace period");
        }
        // Nothing to reap before the grace period; afterwards, only sets in use are left.
        assert!(reap(loaded, t0 + GRACE / 2).is_empty());
        let mut reaped = loaded.clone();
        for op in reap(&reaped.clone(), t0 + GRACE) {
            reaped.record(&op, t0 + GRACE);
        }
        let referenced: BTreeSet<u32> = reaped.scopes.values().map(|&(id, _)| id).collect();
        assert!(reaped.sets.keys().all(|id| referenced.contains(id)), "orphan sets left: {:?}", reaped.sets.keys());
        assert!(reaped.retired.is_empty());
        ops
    }

    #[test]
    fn first_plan_writes_sets_before_pointing_cgroups_at_them() {
        let mut loaded = Loaded::default();
        let ops = apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1, 2]), scope(11, Mode::Audit, &[3])]));
        assert!(matches!(ops[..], [Op::Allow { .. }, Op::Allow { .. }, Op::SetScope { .. }, Op::SetScope { .. }]), "{ops:?}");
    }

    #[test]
    fn reload_swaps_changed_sets_under_fresh_ids_and_leaves_the_rest() {
        let mut loaded = Loaded::default();
        apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1, 2]), scope(11, Mode::Audit, &[3]), scope(12, Mode::Audit, &[4])]));
        let old_id = loaded.scopes[&10].0;
        // 10: new set; 11: unchanged; 12: mode only; 13: new scope.
        let next = plan(vec![scope(10, Mode::Enforce, &[2, 5]), scope(11, Mode::Audit, &[3]), scope(12, Mode::Enforce, &[4]), scope(13, Mode::Enforce, &[6])]);
        let ops = apply(&mut loaded, &next);
        assert_ne!(loaded.scopes[&10].0, old_id);
        let id11 = loaded.scopes[&11].0;
        assert!(!ops.iter().any(|op| matches!(op, Op::SetScope { cgroup_id: 11, .. })), "{ops:?}");
        assert!(!ops.iter().any(|op| matches!(op, Op::Allow { scope_id, .. } | Op::Retire { scope_id } if *scope_id == id11)), "{ops:?}");
        assert!(ops.contains(&Op::SetScope { cgroup_id: 12, scope_id: loaded.scopes[&12].0, mode: Mode::Enforce }));
        assert!(ops.contains(&Op::Retire { scope_id: old_id }));
        assert_eq!(reap(&loaded, Instant::now() + GRACE), vec![Op::Revoke { scope_id: old_id, digests: vec![[1; 32], [2; 32]] }]);
        // The same plan again: nothing to do.
        assert!(transition(&loaded, &next).is_empty());
    }

    #[test]
    fn scopes_left_out_are_removed_then_their_sets_revoked() {
        let mut loaded = Loaded::default();
        apply(&mut loaded, &plan(vec![scope(10, Mode::Enforce, &[1]), scope(11, Mode::Enforce, &[2])]));
        let ops = apply(&mut loaded, &plan(vec![scope(11, Mode::Enforce, &[2])]));
        assert!(matches!(ops[..], [Op::RemoveScope { cgroup_id: 10 }, Op::Retire { .. }]), "{ops:?}");
    }

    #[test]
    fn events_name_the_scope_cgroup_through_the_scope_id() {
        let mut ids = BTreeMap::new();
        ids.insert(7, 1234);
        let raw = enforcer::Event {
            cgroup_id: 1234,
            host_pid: 99,
            ns_pid: 1,
            scope_id: 7,
            mode: Some(enforcer::Mode::Enforce),
            hook: enforcer::Hook::MmapFile,
            verdict: enforcer::Verdict::Deny,
            hash_ret: 4,
            comm: "ld.so".into(),
            digest: Some([0xab; 32]),
        };
        let event = convert(raw, &ids);
        assert_eq!((event.hook, event.verdict, event.mode), (Hook::Mmap, Verdict::Denied, Some(Mode::Enforce)));
        assert_eq!((event.scope_cgroup_id, event.cgroup_id, event.host_pid, event.ns_pid), (1234, 1234, 99, 1));
        assert_eq!(event.sha256.as_deref(), Some(&*"ab".repeat(32)));
    }
}
