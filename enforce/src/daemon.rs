//! The node daemon's loop, independent of any real kernel: build and apply the plan, stream
//! events as JSON lines, and on a reload request build the new plan completely before applying
//! it. A policy that fails to load or verify leaves the old plan in force, and the failure is
//! logged (a JSON record in the output, a line on stderr). Once a plan is applied its versions
//! are recorded in the trust store, so an older manifest cannot come back with a later reload.
//!
//! Signals are the caller's business: the loop polls two flags (reload, stop) that a signal
//! handler sets.

use crate::kernel::{Event, Kernel, KernelError};
use crate::plan::{self, Plan, PlanError};
use crate::policy::{self, PolicyError};
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// How deep below a scope's cgroup a task's cgroup is looked for, to name it in events.
const CGROUP_SEARCH_DEPTH: usize = 8;

/// How long one wait for events lasts before the flags are looked at again.
pub const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("applying the plan to the kernel")]
    Kernel(#[source] KernelError),
    #[error("writing to the event output")]
    Output(#[source] std::io::Error),
}

/// The running daemon: the policy it reads, the kernel it drives, the plan in force.
pub struct Daemon<K: Kernel> {
    policy_path: PathBuf,
    trust: PathBuf,
    kernel: K,
    plan: Plan,
    out: Box<dyn Write + Send>,
    /// Cgroup directories found for cgroup ids seen in events.
    cgroup_paths: std::collections::HashMap<u64, Option<PathBuf>>,
}

impl<K: Kernel> Daemon<K> {
    /// Loads the policy, builds the plan as of `now` and applies it. Any failure here is fatal:
    /// there is no earlier plan to keep.
    pub fn start(
        policy_path: &Path,
        mut kernel: K,
        out: Box<dyn Write + Send>,
        now: SystemTime,
    ) -> Result<Self, DaemonError> {
        let policy = policy::load(policy_path)?;
        let plan = plan::build(&policy, now)?;
        kernel.apply(&plan).map_err(DaemonError::Kernel)?;
        let mut daemon = Daemon {
            policy_path: policy.path,
            trust: policy.trust,
            kernel,
            plan,
            out,
            cgroup_paths: Default::default(),
        };
        daemon.after_apply("started")?;
        Ok(daemon)
    }

    /// The plan in force.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// Re-reads the policy and, when it builds, applies the new plan. On failure the old plan
    /// stays in force (re-applied if the kernel refused the new one half way) and the error is
    /// logged; it is returned too, for callers that want it.
    pub fn reload(&mut self, now: SystemTime) -> Result<(), DaemonError> {
        let built = policy::load(&self.policy_path).map_err(DaemonError::from).and_then(|p| {
            let plan = plan::build(&p, now)?;
            Ok((p, plan))
        });
        let (policy, plan) = match built {
            Ok(ok) => ok,
            Err(e) => {
                self.log_failure("reload-failed", &e, "the old plan stays in force")?;
                return Err(e);
            }
        };
        if let Err(e) = self.kernel.apply(&plan) {
            let e = DaemonError::Kernel(e);
            let restored = self.kernel.apply(&self.plan);
            let kept = match &restored {
                Ok(()) => "the old plan was re-applied and stays in force".to_string(),
                Err(again) => format!("re-applying the old plan failed too: {}", chain(again)),
            };
            self.log_failure("apply-failed", &e, &kept)?;
            return Err(e);
        }
        self.plan = plan;
        self.trust = policy.trust;
        self.after_apply("reloaded")
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
            self.write(&EventRecord { record: "event", time: now_rfc3339(), event: &event })?;
        }
        Ok(n)
    }

    /// Runs until `stop` is set: streams events, reloads when `reload` was set (and clears it).
    pub fn run(&mut self, reload: &AtomicBool, stop: &AtomicBool) -> Result<(), DaemonError> {
        while !stop.load(Ordering::SeqCst) {
            if reload.swap(false, Ordering::SeqCst) {
                // Logged by reload; the old plan stays in force.
                let _ = self.reload(SystemTime::now());
            }
            self.pump_events(POLL)?;
        }
        Ok(())
    }

    fn after_apply(&mut self, action: &str) -> Result<(), DaemonError> {
        let mut note = None;
        if let Err(e) = plan::record_versions(&self.plan, &self.trust) {
            let text =
                format!("the plan is in force but its versions were not recorded in the trust store: {}", chain(&e));
            eprintln!("imgsign enforce: warning: {text}");
            note = Some(text);
        }
        let scopes: Vec<_> = self
            .plan
            .scopes
            .iter()
            .map(|s| json!({"name": s.name, "cgroupId": s.cgroup_id, "mode": s.mode, "digests": s.digests.len()}))
            .collect();
        let mut record = json!({"record": "plan", "action": action, "time": now_rfc3339(), "policy": self.policy_path, "scopes": scopes});
        if let Some(note) = note {
            record["warning"] = note.into();
        }
        self.write(&record)
    }

    fn log_failure(&mut self, action: &str, error: &DaemonError, outcome: &str) -> Result<(), DaemonError> {
        let text = chain(error);
        eprintln!("imgsign enforce: {action}: {text}; {outcome}");
        self.write(&json!({"record": "plan", "action": action, "time": now_rfc3339(), "policy": self.policy_path, "error": text, "outcome": outcome}))
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
pub use verifier_core::verify::error_chain as chain;
