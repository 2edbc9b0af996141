//! Prints the lab's outcome: every test by name per kernel, the lab's own
//! overhead, and on failure the console tail. Optionally a JSON summary.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::vm::{Outcome, Verdict};

/// Host-side phases of one lab run.
#[derive(Debug)]
pub struct Timing {
    pub fetch: Duration,
    pub build: Duration,
    pub boots: Duration,
    pub total: Duration,
    pub concurrent: bool,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    pass: bool,
    total_secs: f64,
    boots_secs: f64,
    concurrent: bool,
    kernels: Vec<JsonKernel<'a>>,
}

#[derive(Serialize)]
struct JsonKernel<'a> {
    kernel: &'a str,
    package: &'a str,
    pass: bool,
    failure: Option<&'a str>,
    wall_secs: f64,
    overhead_secs: Option<f64>,
    boot_secs: Option<f64>,
    shutdown_secs: Option<f64>,
    console_log: String,
    tests: Vec<JsonTest<'a>>,
}

#[derive(Serialize)]
struct JsonTest<'a> {
    name: &'a str,
    verdict: &'static str,
    reason: Option<&'a str>,
    secs: Option<f64>,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// Prints the report (human text to stdout, or to stderr with a JSON summary
/// on stdout) and returns whether the whole lab passed.
pub fn print(outcomes: &[Outcome], timing: &Timing, json: bool) -> bool {
    let pass = !outcomes.is_empty() && outcomes.iter().all(Outcome::passed);
    let mut text = String::new();
    for o in outcomes {
        let verdict = if o.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(text, "lab {} ({}): {verdict}", o.label, o.package);
        for t in &o.tests {
            let took = t.duration.map(|d| format!(" ({:.2} s)", d.as_secs_f64())).unwrap_or_default();
            match &t.verdict {
                Verdict::Pass => writeln!(text, "  PASS     {}{took}", t.name),
                Verdict::Fail(why) => writeln!(text, "  FAIL     {}{took}: {why}", t.name),
                Verdict::NotRun => writeln!(text, "  NOT RUN  {}", t.name),
            }
            .ok();
        }
        if let Some(failure) = &o.failure {
            let _ = writeln!(text, "  BOOT FAILED: {failure}");
        } else if o.result_marker != Some(true) {
            let _ = writeln!(text, "  VM reported LAB-RESULT FAIL");
        }
        let _ = writeln!(
            text,
            "  wall {:.1} s; lab overhead {} (boot to first test {}, last test to exit {})",
            o.wall.as_secs_f64(),
            fmt_opt(o.overhead()),
            fmt_opt(o.boot),
            fmt_opt(o.shutdown)
        );
        let _ = writeln!(text, "  console log: {}", o.console_log.display());
        if !o.passed() {
            let _ = writeln!(text, "  console tail:");
            for line in &o.console_tail {
                let _ = writeln!(text, "  | {line}");
            }
        }
    }
    let _ = writeln!(
        text,
        "lab: fetch {:.1} s, build {:.1} s, boots {:.1} s ({}), total {:.1} s",
        timing.fetch.as_secs_f64(),
        timing.build.as_secs_f64(),
        timing.boots.as_secs_f64(),
        if timing.concurrent { "concurrent" } else { "sequential" },
        timing.total.as_secs_f64()
    );
    let overheads: Vec<String> = outcomes.iter().map(|o| format!("{} {}", o.label, fmt_opt(o.overhead()))).collect();
    let _ = writeln!(text, "lab overhead (boot + shutdown, excluding tests): {}", overheads.join(", "));
    let _ = writeln!(text, "LAB {}", if pass { "PASS" } else { "FAIL" });
    let all = outcomes.iter().flat_map(|o| &o.tests);
    let passed = all.clone().filter(|t| t.verdict == Verdict::Pass).count();
    let failed = all.count() - passed + outcomes.iter().filter(|o| o.failure.is_some()).count();
    let _ = writeln!(text, "lab: {passed} passed, {failed} failed");

    if json {
        eprint!("{text}");
        let report = JsonReport {
            pass,
            total_secs: secs(timing.total),
            boots_secs: secs(timing.boots),
            concurrent: timing.concurrent,
            kernels: outcomes.iter().map(json_kernel).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&report).expect("serializable"));
    } else {
        print!("{text}");
    }
    pass
}

fn json_kernel(o: &Outcome) -> JsonKernel<'_> {
    JsonKernel {
        kernel: o.label,
        package: &o.package,
        pass: o.passed(),
        failure: o.failure.as_deref(),
        wall_secs: secs(o.wall),
        overhead_secs: o.overhead().map(secs),
        boot_secs: o.boot.map(secs),
        shutdown_secs: o.shutdown.map(secs),
        console_log: o.console_log.display().to_string(),
        tests: o
            .tests
            .iter()
            .map(|t| {
                let (verdict, reason) = match &t.verdict {
                    Verdict::Pass => ("pass", None),
                    Verdict::Fail(why) => ("fail", Some(why.as_str())),
                    Verdict::NotRun => ("not-run", None),
                };
                JsonTest { name: &t.name, verdict, reason, secs: t.duration.map(secs) }
            })
            .collect(),
    }
}

fn fmt_opt(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} s", d.as_secs_f64())).unwrap_or_else(|| "n/a".into())
}
