//! The node daemon's loop, independent of any real kernel: assemble the plan from the scope
//! sources, apply its desired state, stream events as JSON lines, and on a reload request build
//! the new plan completely before applying it. A source that fails to refresh or a plan that
//! fails to verify leaves the old plan in force; the failure is recorded in the output and
//! handed to the caller's [`Notices`] (the daemon itself prints nothing). Once a plan is applied
//! its versions are recorded in the trust store, so an older manifest cannot come back with a
//! later reload.
//!
//! Signals are the caller's business ([`crate::node::Node`] installs them): the loop polls two
//! flags (reload, stop) that a signal handler sets. Scopes can also be added and removed at run
//! time through the control socket ([`crate::control`], [`Daemon::control`]): each request
//! rebuilds the plan with it, so it is verified like the policy's scopes, and a request whose
//! scope does not verify changes nothing.
//!
//! The policy's runtime helpers ([`crate::helpers`]) are hashed at start, on reload and at every
//! recheck, and their digests added to every scope that verified ([`Plan::add_helpers`]); a
//! change of their content (a package upgrade) is applied like any other change of the plan. A
//! refused exec or mapping of what looks like a runtime's own program gets a `runtimeHelper`
//! note in its event saying how to allow it, and a warning once per path.

use crate::control::{AddScope, ControlServer, ListedScope, Reply, Request};
use crate::desired::DesiredState;
use crate::helpers::{self, Helpers};
use crate::kernel::{Event, Kernel, KernelError, Verdict};
use crate::plan::{self, Plan, PlanError};
use crate::source::ScopeSpec;
use crate::source::{PolicySource, ScopeSource, SourceError};
use crate::timing::Phases;
use crate::verified::StatementCache;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// How deep below a scope's cgroup a task's cgroup is looked for, to name it in events.
const CGROUP_SEARCH_DEPTH: usize = 8;

/// How long one wait for events lasts before the flags are looked at again.
pub const POLL: Duration = Duration::from_millis(200);
/// While a control socket is served, the loop waits on the socket (a runtime's request is
/// answered at once) this long at a time, reading events between waits.
const CONTROL_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("applying the plan to the kernel")]
    Kernel(#[source] KernelError),
    #[error("writing to the event output")]
    Output(#[source] std::io::Error),
}

/// Something the operator should hear about, besides the JSON records: the caller decides
/// where it goes (the CLI prints it on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The plan is in force, but something around it failed.
    Warning(String),
    /// A reload, an apply or an event read failed; `outcome` says what is in force now.
    Failure { action: String, error: String, outcome: String },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Warning(text) => write!(f, "warning: {text}"),
            Notice::Failure { action, error, outcome } => write!(f, "{action}: {error}; {outcome}"),
        }
    }
}

/// Where [`Notice`]s go.
pub type Notices = Box<dyn FnMut(Notice) + Send>;

/// The running daemon: its scope sources, the kernel it drives, the plan in force.
pub struct Daemon<K: Kernel> {
    policy: PolicySource,
    /// Sources besides the policy file (none yet; a control socket is meant to be one).
    sources: Vec<Box<dyn ScopeSource + Send>>,
    cache: StatementCache,
    /// The trust store of the plan in force (where its versions are recorded).
    trust: PathBuf,
    kernel: K,
    plan: Plan,
    out: Box<dyn Write + Send>,
    notices: Notices,
    /// Cgroup directories found for cgroup ids seen in events.
    cgroup_paths: std::collections::HashMap<u64, Option<PathBuf>>,
    /// Scopes added through the control socket, by name (kept across reloads).
    control_scopes: BTreeMap<String, ScopeSpec>,
    control: Option<ControlServer>,
    /// The last [`RECENT_PER_SCOPE`] event and response records of each scope, by name.
    recent: BTreeMap<String, VecDeque<serde_json::Value>>,
    /// Scopes in force fail-closed (or left out), with why: reported when they change.
    failed: BTreeMap<String, String>,
    /// The runtime helpers as last hashed (what every verified scope allows besides its set).
    helpers: Helpers,
    /// Paths of refused runtime programs already warned about (once each).
    hinted: BTreeSet<String>,
    /// Whether each control request writes a `timing` record of its phases ([`Daemon::set_timing`]).
    timing: bool,
    /// The phases of the control request being handled, when timing.
    phases: Option<Phases>,
}

/// How many records of each scope the daemon keeps for [`Request::Events`].
const RECENT_PER_SCOPE: usize = 256;

impl<K: Kernel> Daemon<K> {
    /// Builds the plan from the policy's scopes as of `now` and applies it. Any failure here is
    /// fatal: there is no earlier plan to keep.
    pub fn start(
        policy: PolicySource,
        mut kernel: K,
        out: Box<dyn Write + Send>,
        notices: Notices,
        now: SystemTime,
    ) -> Result<Self, DaemonError> {
        let mut cache = StatementCache::default();
        // A scope that does not verify fails closed, reported; it does not keep the others
        // (and the node) unenforced.
        let (mut plan, failures) = plan::assemble_each(policy.policy(), &policy.scopes(), &mut cache, now)?;
        let found = helpers::hash(&policy.policy().runtime_helpers);
        plan.add_helpers(&found.in_force);
        kernel.apply(&plan.desired()).map_err(DaemonError::Kernel)?;
        let mut daemon = Daemon {
            trust: policy.policy().trust.clone(),
            policy,
            sources: Vec::new(),
            cache,
            kernel,
            plan,
            out,
            notices,
            cgroup_paths: Default::default(),
            control_scopes: BTreeMap::new(),
            control: None,
            recent: BTreeMap::new(),
            failed: BTreeMap::new(),
            helpers: Helpers::default(),
            hinted: BTreeSet::new(),
            timing: false,
            phases: None,
        };
        daemon.report_helpers(found)?;
        daemon.report_failures(&failures)?;
        daemon.after_apply("started")?;
        // Scopes restored or loaded at start: whatever already runs in them is checked.
        daemon.check_running(&DesiredState::default())?;
        Ok(daemon)
    }

    /// The plan in force.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The policy file as last read.
    pub fn policy(&self) -> &PolicySource {
        &self.policy
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// How many statements were taken from the verification cache, and how many verified.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Adds a scope source beside the policy file; its scopes count from the next rebuild.
    pub fn add_source(&mut self, source: Box<dyn ScopeSource + Send>) {
        self.sources.push(source);
    }

    /// Re-reads every source (SIGHUP) and rebuilds: see [`Daemon::rebuild`]. A source that fails
    /// to refresh keeps the old plan in force; the error is logged and returned.
    pub fn reload(&mut self, now: SystemTime) -> Result<(), DaemonError> {
        let refreshed = std::iter::once(&mut self.policy as &mut dyn ScopeSource)
            .chain(self.sources.iter_mut().map(|s| s.as_mut() as &mut dyn ScopeSource))
            .try_for_each(|s| s.refresh());
        if let Err(e) = refreshed {
            let e = DaemonError::Source(e);
            self.log_failure("reload-failed", &e, "the old plan stays in force")?;
            return Err(e);
        }
        self.refresh_helpers()?;
        self.rebuild(now, "reloaded")
    }

    /// Builds the plan from what the sources want now and applies it, each scope on its own: a
    /// scope whose bundles do not verify (any more) fails closed and is reported, the others
    /// are applied. When no plan can be made (the trust store is unreadable) or the kernel
    /// refuses it, the old plan stays in force (re-applied if the kernel refused the new one
    /// half way) and the error is logged; it is returned too, for callers that want it.
    pub fn rebuild(&mut self, now: SystemTime, action: &str) -> Result<(), DaemonError> {
        self.rebuild_quietly(now).and_then(|changed| match changed {
            Some(_) => {
                self.after_apply(action)?;
                self.mark("record-versions");
                Ok(())
            }
            None => Ok(()),
        })
    }

    /// Verifies every scope again as of `now` (expiry, revocation, bundles changed on disk) and
    /// applies what changed: what the daemon does every `recheck_seconds` of the policy, so a
    /// revoked key or an expired manifest loses its digests without a SIGHUP. Writes a plan
    /// record (`rechecked`) only when something changed.
    /// The runtime helpers are hashed again first, so a helper upgraded in place takes effect.
    pub fn recheck(&mut self, now: SystemTime) -> Result<(), DaemonError> {
        self.refresh_helpers()?;
        match self.rebuild_quietly(now)? {
            Some(true) => self.after_apply("rechecked"),
            _ => Ok(()),
        }
    }

    /// [`Daemon::rebuild`] without its plan record: `Some(changed)` once applied, `changed`
    /// saying whether the desired state or a scope's failure differs from before.
    fn rebuild_quietly(&mut self, now: SystemTime) -> Result<Option<bool>, DaemonError> {
        self.collect_gone_scopes()?;
        self.mark("collect-gone");
        let mut specs = self.fixed_scopes();
        specs.extend(self.control_scopes.values().cloned());
        let assembled = plan::assemble_each(self.policy.policy(), &specs, &mut self.cache, now);
        self.mark("assemble");
        let (mut plan, failures) = match assembled {
            Ok(built) => built,
            Err(e) => {
                let e = DaemonError::Plan(e);
                self.log_failure("reload-failed", &e, "the old plan stays in force")?;
                return Err(e);
            }
        };
        plan.add_helpers(&self.helpers.in_force);
        let applied = self.kernel.apply(&plan.desired());
        self.mark("apply");
        if let Err(e) = applied {
            let e = DaemonError::Kernel(e);
            let restored = self.kernel.apply(&self.plan.desired());
            let kept = match &restored {
                Ok(()) => "the old plan was re-applied and stays in force".to_string(),
                Err(again) => format!("re-applying the old plan failed too: {}", chain(again)),
            };
            self.log_failure("apply-failed", &e, &kept)?;
            return Err(e);
        }
        let before = self.plan.desired();
        let changed = plan.desired() != before;
        self.plan = plan;
        self.trust = self.policy.policy().trust.clone();
        let failures_changed = self.report_failures(&failures)?;
        self.mark("report");
        self.check_running(&before)?;
        self.mark("check-running");
        Ok(Some(changed || failures_changed))
    }

    /// The runtime helpers in force (as last hashed) and those ignored.
    pub fn helpers(&self) -> &Helpers {
        &self.helpers
    }

    /// Hashes the policy's runtime helpers again (the next rebuild applies them).
    fn refresh_helpers(&mut self) -> Result<(), DaemonError> {
        let found = helpers::hash(&self.policy.policy().runtime_helpers);
        self.report_helpers(found)
    }

    /// Takes `found` as the helpers in force; when they differ from before, writes a plan record
    /// (`runtime-helpers`: the digests in force, the paths ignored and why) and warns about each
    /// path newly ignored.
    fn report_helpers(&mut self, found: Helpers) -> Result<(), DaemonError> {
        if found == self.helpers {
            return Ok(());
        }
        for ignored in found.ignored.iter().filter(|i| !self.helpers.ignored.contains(i)) {
            (self.notices)(Notice::Warning(format!(
                "{}; no scope allows it (the other helpers and every scope are in force)",
                ignored.reason
            )));
        }
        self.write(&json!({"record": "plan", "action": "runtime-helpers", "time": now_rfc3339(),
            "inForce": found.in_force, "ignored": found.ignored}))?;
        self.helpers = found;
        Ok(())
    }

    /// Records each scope that fails (anew, or for another reason) and each that verifies
    /// again; returns whether anything did.
    fn report_failures(&mut self, failures: &[plan::ScopeFailure]) -> Result<bool, DaemonError> {
        let now: BTreeMap<String, (String, bool)> =
            failures.iter().map(|f| (f.scope.clone(), (chain(&f.error), f.fail_closed))).collect();
        let mut changed = false;
        for (scope, (error, closed)) in &now {
            if self.failed.get(scope) == Some(error) {
                continue;
            }
            changed = true;
            let outcome = if *closed {
                "failed closed: the scope holds no digests, so every exec and executable mapping in it is denied \
                 (reported in audit mode) until its bundles verify again"
            } else {
                "left out: its cgroup is not one the enforcer can scope (gone?)"
            };
            (self.notices)(Notice::Failure {
                action: "scope-failed".into(),
                error: error.clone(),
                outcome: outcome.into(),
            });
            self.write(&json!({"record": "plan", "action": "scope-failed", "time": now_rfc3339(), "scope": scope,
                "error": error, "outcome": outcome}))?;
        }
        let restored: Vec<String> = self.failed.keys().filter(|s| !now.contains_key(*s)).cloned().collect();
        for scope in restored {
            changed = true;
            self.write(&json!({"record": "plan", "action": "scope-restored", "time": now_rfc3339(), "scope": scope}))?;
        }
        self.failed = now.into_iter().map(|(scope, (error, _))| (scope, error)).collect();
        Ok(changed)
    }

    /// The desired state in force (what the kernel was last given successfully).
    pub fn desired(&self) -> DesiredState {
        self.plan.desired()
    }

    /// Waits up to `timeout` for events and writes each as a JSON line; returns how many.
    pub fn pump_events(&mut self, timeout: Duration) -> Result<usize, DaemonError> {
        let events = match self.kernel.events(timeout) {
            Ok(events) => events,
            Err(e) => {
                self.log_failure("events-failed", &DaemonError::Kernel(e), "still enforcing; events may be lost")?;
                std::thread::sleep(timeout);
                return Ok(0);
            }
        };
        let n = events.len();
        for mut event in events {
            let scope = self.plan.scope_by_cgroup_id(event.scope_cgroup_id);
            if event.scope.is_none() {
                event.scope = scope.map(|s| s.name.clone());
            }
            if event.cgroup.is_none() {
                let root = scope.map(|s| s.cgroup.clone());
                event.cgroup = self
                    .cgroup_paths
                    .entry(event.cgroup_id)
                    .or_insert_with(|| {
                        root.and_then(|r| crate::cgroup::find_below(&r, event.cgroup_id, CGROUP_SEARCH_DEPTH))
                    })
                    .as_ref()
                    .map(|p| p.display().to_string());
            }
            let mut record = serde_json::to_value(EventRecord { record: "event", time: now_rfc3339(), event: &event })
                .expect("events serialise");
            if let Some(container) = scope.and_then(|s| s.container.as_ref()) {
                record["container"] = serde_json::to_value(container).expect("containers serialise");
            }
            if let Some(hint) = self.helper_hint(&event) {
                record["runtimeHelper"] = hint.into();
            }
            self.write(&record)?;
            self.remember(event.scope.as_deref(), record);
            self.respond_to(&event)?;
        }
        Ok(n)
    }

    /// Runs until `stop` is set: streams events, reloads when `reload` was set (and clears it),
    /// rechecks every scope every `recheck_seconds`, answers control requests between event
    /// waits.
    pub fn run(&mut self, reload: &AtomicBool, stop: &AtomicBool) -> Result<(), DaemonError> {
        let mut next_recheck = std::time::Instant::now() + self.policy.policy().recheck;
        while !stop.load(Ordering::SeqCst) {
            if reload.swap(false, Ordering::SeqCst) {
                // Logged by reload; the old plan stays in force.
                let _ = self.reload(SystemTime::now());
            }
            if std::time::Instant::now() >= next_recheck {
                // Logged by the rebuild when it fails; failing scopes are reported there.
                let _ = self.recheck(SystemTime::now());
                next_recheck = std::time::Instant::now() + self.policy.policy().recheck;
            }
            self.serve_pending()?;
            if self.control.is_none() {
                self.pump_events(POLL)?;
            } else if self.pump_events(Duration::ZERO)? == 0 {
                if let Some(control) = &self.control {
                    control.wait(CONTROL_POLL);
                }
            }
        }
        Ok(())
    }

    /// With `on`, each control request writes a `timing` record (its phases, in ms) to the
    /// output once answered: where a runtime's wait goes.
    pub fn set_timing(&mut self, on: bool) {
        self.timing = on;
    }

    /// Ends phase `name` of the control request being timed, if any.
    fn mark(&mut self, name: &'static str) {
        if let Some(phases) = &mut self.phases {
            phases.mark(name);
        }
    }

    /// Answers control requests on `server` from now on (in [`Daemon::run`]).
    pub fn serve_control(&mut self, server: ControlServer) {
        self.control = Some(server);
    }

    /// Answers every control request waiting on the socket.
    pub fn serve_pending(&mut self) -> Result<(), DaemonError> {
        while let Some(pending) = self.control.as_ref().and_then(ControlServer::accept) {
            self.phases = self.timing.then(Phases::start);
            let cache_before = self.cache.stats();
            let (op, scope) = match &pending.request {
                Ok(Request::Add(add)) => ("add", Some(add.name.clone())),
                Ok(Request::Remove { name }) => ("remove", Some(name.clone())),
                Ok(Request::List) => ("list", None),
                Ok(Request::Events { name }) => ("events", Some(name.clone())),
                Err(_) => ("invalid", None),
            };
            let reply = match pending.request.clone() {
                Ok(request) => self.control(request, SystemTime::now())?,
                Err(error) => Reply::refused(error),
            };
            pending.reply(&reply);
            self.mark("reply");
            if let Some(phases) = self.phases.take() {
                let (hits, misses) = self.cache.stats();
                let mut record = json!({"record": "timing", "time": now_rfc3339(), "request": op, "scope": scope,
                    "ok": reply.ok, "statementCache": {"hits": hits - cache_before.0, "misses": misses - cache_before.1}});
                if let (Some(record), serde_json::Value::Object(more)) = (record.as_object_mut(), phases.to_json()) {
                    record.extend(more);
                }
                self.write(&record)?;
            }
        }
        Ok(())
    }

    /// Carries out one control request; the reply comes after the kernel has the new plan, or
    /// after the plan in force was kept (the reason is in the reply and the output).
    pub fn control(&mut self, request: Request, now: SystemTime) -> Result<Reply, DaemonError> {
        match request {
            Request::List => Ok(self.listed()),
            Request::Events { name } => {
                if self.plan.scopes.iter().all(|s| s.name != name) {
                    return Ok(Reply::refused(format!("no scope {name:?} is in force")));
                }
                let events = self.recent.get(&name).map(|r| r.iter().cloned().collect()).unwrap_or_default();
                Ok(Reply { ok: true, events, ..Reply::default() })
            }
            Request::Add(add) => {
                let spec = match self.check_add(add) {
                    Ok(spec) => spec,
                    Err(reason) => return Ok(Reply::refused(reason)),
                };
                self.mark("check-request");
                // A scope asked for must verify before anything changes (a running scope that
                // stops verifying fails closed instead; a request is simply refused).
                if let Err(e) = plan::verify_scope(self.policy.policy(), &spec, &mut self.cache, now) {
                    return Ok(Reply::refused(chain(&e)));
                }
                self.mark("verify-alone");
                let name = spec.name.clone();
                let before = self.control_scopes.insert(name.clone(), spec);
                let restore = |d: &mut Self, before: Option<ScopeSpec>| match before {
                    Some(old) => drop(d.control_scopes.insert(name.clone(), old)),
                    None => drop(d.control_scopes.remove(&name)),
                };
                let reply = self.rebuild_for_control(now, "scope-added", |d| restore(d, before.clone()))?;
                if let Some(error) = self.failed.get(&name).cloned() {
                    // Verified alone but not beside the others (an older version of an image
                    // another scope runs newer): refused, and the plan is rebuilt without it.
                    restore(self, before);
                    self.rebuild(now, "scope-refused")?;
                    return Ok(Reply::refused(error));
                }
                Ok(reply)
            }
            Request::Remove { name } => {
                let Some(old) = self.control_scopes.remove(&name) else {
                    return Ok(Reply::refused(format!(
                        "no scope {name:?} was added through the control socket (policy scopes are changed in the policy)"
                    )));
                };
                self.recent.remove(&name);
                self.rebuild_for_control(now, "scope-removed", |d| drop(d.control_scopes.insert(name, old)))
            }
        }
    }

    /// Forgets control scopes whose cgroup directory is gone (the container ended without
    /// removing its scope): one such scope must not make every later rebuild fail. Each is
    /// recorded. (Policy scopes are the operator's: a missing cgroup there still fails.)
    fn collect_gone_scopes(&mut self) -> Result<(), DaemonError> {
        let gone: Vec<String> = self
            .control_scopes
            .values()
            .filter(
                |s| matches!(std::fs::symlink_metadata(&s.cgroup), Err(e) if e.kind() == std::io::ErrorKind::NotFound),
            )
            .map(|s| s.name.clone())
            .collect();
        for name in gone {
            let spec = self.control_scopes.remove(&name).expect("listed above");
            self.write(&json!({"record": "plan", "action": "scope-collected", "time": now_rfc3339(),
                "scope": name, "cgroup": spec.cgroup, "reason": "its cgroup is gone"}))?;
        }
        Ok(())
    }

    /// Rebuilds after a control change; on failure undoes the change (`undo`) and refuses.
    fn rebuild_for_control(
        &mut self,
        now: SystemTime,
        action: &str,
        undo: impl FnOnce(&mut Self),
    ) -> Result<Reply, DaemonError> {
        match self.rebuild(now, action) {
            Ok(()) => Ok(self.listed()),
            Err(DaemonError::Output(e)) => Err(DaemonError::Output(e)),
            Err(e) => {
                undo(self);
                Ok(Reply::refused(chain(&e)))
            }
        }
    }

    /// A control request's scope, checked as the policy checks its own; the reason otherwise.
    fn check_add(&self, add: AddScope) -> Result<ScopeSpec, String> {
        if !crate::policy::valid_scope_name(&add.name) {
            return Err(format!("scope name {:?}: must be 1 to 64 letters, digits, '-', '_' or '.'", add.name));
        }
        if !add.cgroup.is_absolute() {
            return Err(format!("cgroup {}: must be an absolute path of a cgroup v2 directory", add.cgroup.display()));
        }
        // No bundles: discovered in the registry when the image is a registry reference.
        let discovers = add.bundles.is_empty() && add.image.as_deref().is_some_and(|i| i.starts_with("docker://"));
        if (add.bundles.is_empty() && !discovers) || add.bundles.iter().any(|b| !b.is_absolute()) {
            return Err(
                "bundles: at least one, each an absolute path (or none, with an image docker://... whose attached bundles are discovered)"
                    .into(),
            );
        }
        for fixed in self.fixed_scopes() {
            if fixed.name == add.name {
                return Err(format!("scope {:?} is defined by the policy", add.name));
            }
            if fixed.cgroup == add.cgroup {
                return Err(format!("cgroup {} is the policy's scope {:?}", add.cgroup.display(), fixed.name));
            }
        }
        if let Some(other) = self.control_scopes.values().find(|s| s.cgroup == add.cgroup && s.name != add.name) {
            return Err(format!("cgroup {} is already scope {:?}", add.cgroup.display(), other.name));
        }
        let image = match add.image.as_deref() {
            None => None,
            Some(text) => {
                let image: verifier_core::source::ImageRef =
                    text.parse().map_err(|e| format!("image {text:?}: {e}"))?;
                // Registry images are reached as the policy says (the client gives no credentials).
                Some(image.with_registry_access(self.policy.policy().registry.clone()))
            }
        };
        Ok(ScopeSpec {
            name: add.name,
            cgroup: add.cgroup,
            mode: add.mode,
            remote_fs: add.remote_fs,
            profile: add.profile,
            on_violation: add.on_violation,
            container: add.container,
            bundles: add.bundles,
            image,
        })
    }

    /// The policy's scopes and the other sources' (not the control socket's).
    fn fixed_scopes(&self) -> Vec<ScopeSpec> {
        let mut specs = self.policy.scopes();
        specs.extend(self.sources.iter().flat_map(|s| s.scopes()));
        specs
    }

    /// Every scope in force, as a reply.
    fn listed(&self) -> Reply {
        let scopes = self
            .plan
            .scopes
            .iter()
            .map(|s| ListedScope {
                name: s.name.clone(),
                cgroup: s.cgroup.clone(),
                cgroup_id: s.cgroup_id,
                mode: s.mode,
                profile: s.profile,
                digests: s.digests.len(),
                origin: if self.control_scopes.contains_key(&s.name) { "control" } else { "policy" }.into(),
                counters: self.kernel.scope_counters(s.cgroup_id),
            })
            .collect();
        Reply { ok: true, scopes, runtime_helpers: Some(self.helpers.clone()), ..Reply::default() }
    }

    /// The note for a refused (or audited) exec or mapping, by digest, of what looks like a
    /// container runtime's own program ([`helpers::refusal_hint`]); warned about once per path.
    fn helper_hint(&mut self, event: &Event) -> Option<String> {
        if !matches!(event.verdict, Verdict::Denied | Verdict::Audited) || event.reason != crate::kernel::Reason::Digest
        {
            return None;
        }
        if event.sha256.is_some_and(|d| self.helpers.in_force.iter().any(|h| h.sha256 == d)) {
            return None; // a helper refused in a scope that failed closed: that scope's report says why
        }
        let hint = helpers::refusal_hint(event.path.as_deref(), &event.comm, &self.helpers)?;
        let path = event.path.clone().unwrap_or_else(|| event.comm.clone());
        if self.hinted.insert(path) {
            let scope = event.scope.as_deref().unwrap_or("?");
            (self.notices)(Notice::Warning(format!("scope {scope}: {hint}")));
        }
        Some(hint)
    }

    /// A violation (denied, or audited in audit mode) in a scope that asks for a response: its
    /// cgroup is frozen or killed, and the outcome recorded next to the event.
    fn respond_to(&mut self, event: &Event) -> Result<(), DaemonError> {
        if !matches!(event.verdict, Verdict::Denied | Verdict::Audited) {
            return Ok(());
        }
        let Some(scope) = self.plan.scope_by_cgroup_id(event.scope_cgroup_id) else { return Ok(()) };
        let Some(action) = scope.on_violation else { return Ok(()) };
        let (name, cgroup) = (scope.name.clone(), scope.cgroup.clone());
        let mut record = json!({"record": "response", "time": now_rfc3339(), "scope": name, "cgroup": cgroup,
            "action": action, "hostPid": event.host_pid});
        if let Err(e) = crate::cgroup::respond(&cgroup, action) {
            // A cgroup removed since the event (its tasks ended) needs no response.
            record["error"] = format!("cannot {action} {}: {e}", cgroup.display()).into();
        }
        self.write(&record)?;
        self.remember(Some(&name), record);
        Ok(())
    }

    /// Checks the tasks already running in each scope that the kernel now holds anew, with fewer
    /// digests, or in enforce mode where it audited (see [`crate::running::to_check`]), `before`
    /// being what the kernel held until now: one `event` record per finding (kind
    /// `running-...`; in enforce mode the process is killed, and the record says whether), and
    /// a `plan` record `running-checked` per scope. Runs after the kernel has the scope (what
    /// runs or maps anything later is the kernel's to judge) and before a control request is
    /// answered, so the runtime starts the container only after its cgroup was checked. A scope
    /// that fails closed is not checked: its bundles stopped verifying, which is no evidence
    /// against what runs (every new exec in it is refused meanwhile).
    fn check_running(&mut self, before: &DesiredState) -> Result<(), DaemonError> {
        let after = self.plan.desired();
        for cgroup_id in crate::running::to_check(before, &after) {
            let Some(scope) = self.plan.scope_by_cgroup_id(cgroup_id) else { continue };
            if scope.failed.is_some() || self.failed.contains_key(&scope.name) {
                continue;
            }
            let (name, cgroup, mode, digests) =
                (scope.name.clone(), scope.cgroup.clone(), scope.mode, scope.digests.clone());
            let container = scope.container.clone();
            let exempt = container.as_ref().and_then(|c| c.init_pid).into_iter().collect();
            let report = match crate::running::check(&cgroup, &digests, mode, &exempt) {
                Ok(report) => report,
                Err(e) => {
                    let text = format!("scope {name}: the tasks already running in it were not checked: {}", chain(&e));
                    (self.notices)(Notice::Warning(text.clone()));
                    self.write(&json!({"record": "plan", "action": "running-check-failed", "time": now_rfc3339(),
                        "scope": name, "cgroup": cgroup, "error": text}))?;
                    continue;
                }
            };
            for (finding, outcome) in &report.findings {
                let mut record = serde_json::to_value(finding).expect("findings serialise");
                record["record"] = "event".into();
                record["time"] = now_rfc3339().into();
                record["scope"] = name.clone().into();
                record["scopeCgroupId"] = cgroup_id.into();
                record["cgroup"] = cgroup.display().to_string().into();
                record["mode"] = serde_json::to_value(mode).expect("modes serialise");
                record["verdict"] = match finding.action {
                    crate::running::Action::Kill => "denied",
                    crate::running::Action::Report => "audited",
                }
                .into();
                match outcome {
                    Some(Ok(())) => record["killed"] = true.into(),
                    Some(Err(why)) => {
                        record["killed"] = false.into();
                        record["error"] = why.clone().into();
                    }
                    None => {}
                }
                if let Some(container) = &container {
                    record["container"] = serde_json::to_value(container).expect("containers serialise");
                }
                self.write(&record)?;
                self.remember(Some(&name), record);
            }
            self.write(&json!({"record": "plan", "action": "running-checked", "time": now_rfc3339(), "scope": name,
                "tasks": report.tasks, "exempt": report.exempt, "findings": report.findings.len(), "rounds": report.rounds, "froze": report.froze}))?;
        }
        Ok(())
    }

    /// Keeps `record` among the recent ones of `scope`.
    fn remember(&mut self, scope: Option<&str>, record: serde_json::Value) {
        let Some(scope) = scope else { return };
        let kept = self.recent.entry(scope.to_string()).or_default();
        if kept.len() == RECENT_PER_SCOPE {
            kept.pop_front();
        }
        kept.push_back(record);
    }

    fn after_apply(&mut self, action: &str) -> Result<(), DaemonError> {
        let mut note = None;
        if let Err(e) = plan::record_versions(&self.plan, &self.trust) {
            let text =
                format!("the plan is in force but its versions were not recorded in the trust store: {}", chain(&e));
            (self.notices)(Notice::Warning(text.clone()));
            note = Some(text);
        }
        let scopes: Vec<_> = self
            .plan
            .scopes
            .iter()
            .map(|s| json!({"name": s.name, "cgroupId": s.cgroup_id, "mode": s.mode, "profile": s.profile, "digests": s.digests.len()}))
            .collect();
        let mut record = json!({"record": "plan", "action": action, "time": now_rfc3339(), "policy": self.policy.policy().path, "scopes": scopes});
        if let Some(note) = note {
            record["warning"] = note.into();
        }
        self.write(&record)
    }

    fn log_failure(&mut self, action: &str, error: &DaemonError, outcome: &str) -> Result<(), DaemonError> {
        let text = chain(error);
        (self.notices)(Notice::Failure { action: action.into(), error: text.clone(), outcome: outcome.into() });
        self.write(&json!({"record": "plan", "action": action, "time": now_rfc3339(), "policy": self.policy.policy().path, "error": text, "outcome": outcome}))
    }

    fn write(&mut self, record: &impl Serialize) -> Result<(), DaemonError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        self.out.write_all(&line).and_then(|()| self.out.flush()).map_err(DaemonError::Output)
    }
}

#[derive(Serialize)]
struct EventRecord<'a> {
    record: &'static str,
    /// When the daemon read it (the kernel programs carry no timestamp yet).
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// An error and its sources on one line.
pub use crate::verified::error_chain as chain;
