//! The lab's own tests: it must fail, loudly and in time, when an in-VM test
//! fails, when the kernel panics and when the VM hangs. Each case runs the
//! lab command as a child process and checks its exit status and output.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::KernelChoice;

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    /// Every one of these must appear in the child's output.
    expect: &'static [&'static str],
    /// The child must finish within this.
    limit: Duration,
}

const CASES: &[Case] = &[
    Case {
        name: "injected failing test fails the lab",
        // Only the smoke tests beside the injected one: the whole suite takes three minutes
        // under emulation on a loaded machine, which proves nothing more here.
        args: &["--inject-failure", "--filter", "vm_smoke"],
        expect: &["FAIL     lab_injected_failure", "PASS     vm_smoke_denies_exec_by_digest", "LAB FAIL"],
        limit: Duration::from_secs(240),
    },
    Case {
        name: "kernel panic fails the lab",
        args: &["--inject-panic", "--timeout", "120"],
        expect: &["BOOT FAILED: kernel panicked", "NOT RUN  vm_smoke_denies_exec_by_digest", "LAB FAIL"],
        limit: Duration::from_secs(180),
    },
    Case {
        name: "hung VM fails the lab at the time limit",
        args: &["--inject-hang", "--timeout", "20"],
        expect: &["BOOT FAILED: no LAB-RESULT within the 20 s limit", "LAB FAIL"],
        limit: Duration::from_secs(80),
    },
];

/// Runs every case against `kernel`; `Ok(false)` if any check failed.
pub fn run(kernel: KernelChoice) -> Result<bool> {
    let exe = std::env::current_exe().context("locate xtask")?;
    let kernel = match kernel {
        KernelChoice::V6_1 => "6.1",
        KernelChoice::V6_12 => "6.12",
        KernelChoice::All => "all",
    };
    let mut ok = true;
    let mut passed = 0;
    for (i, case) in CASES.iter().enumerate() {
        let started = Instant::now();
        let work = super::work_dir().join(format!("selftest-{i}"));
        let out = Command::new(&exe)
            .args(["lab", "--kernel", kernel])
            .args(case.args)
            .env("IMGSIGN_LAB_WORK", &work)
            .output()
            .with_context(|| format!("run {}", exe.display()))?;
        let took = started.elapsed();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let mut problems = Vec::new();
        if out.status.success() {
            problems.push("the lab exited 0".to_string());
        }
        for want in case.expect {
            if !text.contains(want) {
                problems.push(format!("output lacks {want:?}"));
            }
        }
        if took > case.limit {
            problems.push(format!("took {:.0} s, limit {} s", took.as_secs_f64(), case.limit.as_secs()));
        }
        if problems.is_empty() {
            passed += 1;
            println!("LAB-SELFTEST {} PASS ({:.1} s)", case.name, took.as_secs_f64());
        } else {
            ok = false;
            println!("LAB-SELFTEST {} FAIL: {}", case.name, problems.join("; "));
            println!("---- output of lab {} ----\n{text}----", case.args.join(" "));
        }
    }
    println!("LAB-SELFTEST {}", if ok { "PASS" } else { "FAIL" });
    println!("selftest: {passed} passed, {} failed", CASES.len() - passed);
    Ok(ok)
}
