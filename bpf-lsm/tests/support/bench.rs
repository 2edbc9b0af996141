//! Timing helpers shared by the in-VM benchmarks: samples, their median and 10th percentile,
//! and ratios between configurations measured in the same boot.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{run_true, CGROUP_ROOT};

/// Median and 10th percentile of a sample. The 10th percentile is reported too because the
/// lab's vCPUs are emulated threads of a shared host: preemption of the emulator only ever adds
/// time, so the low end of the sample is the steadier view of the kernel's own cost.
#[derive(Clone, Copy)]
pub struct Stat {
    pub median: Duration,
    pub p10: Duration,
}

pub fn stat(mut times: Vec<Duration>) -> Stat {
    times.sort();
    Stat { median: times[times.len() / 2], p10: times[times.len() / 10] }
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ms (p10 {:.2} ms)", self.median.as_secs_f64() * 1e3, self.p10.as_secs_f64() * 1e3)
    }
}

/// "A.AAx (p10 B.BBx)": the ratios of `a` to `b`.
pub fn ratios(a: Stat, b: Stat) -> String {
    format!(
        "{:.2}x (p10 {:.2}x)",
        a.median.as_secs_f64() / b.median.as_secs_f64(),
        a.p10.as_secs_f64() / b.p10.as_secs_f64()
    )
}

/// Wall time of `work`.
pub fn timed(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

/// Wall time of each of `runs` fork+execs of `path true` from this process
/// (every exec must succeed), with `before` run ahead of each, untimed.
pub fn exec_times(path: &Path, runs: u32, mut before: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|i| {
            before();
            timed(|| match run_true(path, None) {
                Ok(status) if status.success() => {}
                other => panic!("exec {i} of {} failed: {other:?}", path.display()),
            })
        })
        .collect()
}

/// Moves this process back to the root cgroup (so test cgroups can go).
pub fn leave_cgroups() {
    std::fs::write(Path::new(CGROUP_ROOT).join("cgroup.procs"), b"0").expect("leave the cgroup");
}
