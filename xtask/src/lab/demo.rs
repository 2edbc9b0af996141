//! `cargo xtask lab demo`: the kernel-enforcement part of the README's demo.
//!
//! Builds the release `imgsign`, puts it (with its shared libraries) and
//! `demo.sh` into the lab's initramfs, boots one kernel and runs the script
//! as the only test, so the lab's PASS/FAIL rules and console capture apply:
//! a failed expectation in the script, a panic or a hang fails the command.
//! The script's own output (the narrative) is printed on the host afterwards.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::initramfs::{self, Script};
use super::{kernels, report, vm, DemoKernel};

/// The in-VM test name of the demo script.
const DEMO_TEST: &str = "demo_enforce";
const DEMO_SCRIPT: &str = include_str!("demo.sh");

pub fn run(kernel: DemoKernel, timeout: u64) -> Result<bool> {
    let started = Instant::now();
    let cache = super::cache_dir()?;
    // Its own directory, so a concurrent `cargo xtask lab` keeps its trees.
    let work = super::work_dir().join("demo");
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let spec = match kernel {
        DemoKernel::V6_1 => &kernels::DEBIAN_12,
        DemoKernel::V6_12 => &kernels::DEBIAN_13,
    };
    let kernel = kernels::fetch(spec, &cache, false)?;
    let prepared = Instant::now();

    let imgsign = build_imgsign()?;
    let plan = initramfs::Plan {
        suites: Vec::new(),
        inject_failure: false,
        inject_panic: false,
        inject_hang: false,
        binaries: vec![imgsign],
        scripts: vec![Script { name: DEMO_TEST.to_string(), text: DEMO_SCRIPT.to_string() }],
    };
    let image = initramfs::build(&kernel, &plan, &work)?;
    let boot = vm::Boot {
        kernel: kernel.clone(),
        initramfs: image,
        expected: plan.test_names(),
        timeout: Duration::from_secs(timeout),
        console_log: work.join(format!("console-demo-{}.log", spec.label)),
        verbose: false,
        rootfs: None,
    };
    let built = Instant::now();
    let outcome = vm::run(&boot)?;

    print_narrative(&boot.console_log)?;
    let timing = report::Timing {
        fetch: prepared - started,
        build: built - prepared,
        boots: built.elapsed(),
        total: started.elapsed(),
        concurrent: false,
    };
    Ok(report::print(&[outcome], &timing, false))
}

/// `cargo build --release -p imgsign`; returns the executable.
fn build_imgsign() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("lab demo: building imgsign (release)");
    let out = Command::new(cargo)
        .current_dir(super::workspace_root())
        .args(["build", "--release", "--package", "imgsign", "--message-format=json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build")?;
    if !out.status.success() {
        bail!("building imgsign failed ({})", out.status);
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_bin = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin"));
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "imgsign" && is_bin {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo build did not report the imgsign executable")
}

/// Prints the demo script's output (its lines in the console, de-indented);
/// other console lines in between (kernel messages) are marked as such.
fn print_narrative(console_log: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(console_log).with_context(|| format!("read {}", console_log.display()))?;
    let bold = std::io::stdout().is_terminal();
    let start = format!("LAB-TEST-START {DEMO_TEST} ");
    let end = format!("LAB-TEST {DEMO_TEST} ");
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with(&start) {
            inside = true;
            println!("---- demo output (inside the VM) ----");
            continue;
        }
        if !inside {
            continue;
        }
        if line.starts_with(&end) {
            println!("---- end of demo output ----");
            return Ok(());
        }
        match line.strip_prefix("    ") {
            Some(l) if bold && l.starts_with("==> ") => println!("\x1b[1m{l}\x1b[0m"),
            Some(l) => println!("{l}"),
            None => println!("[console] {line}"),
        }
    }
    if inside {
        println!("---- demo output ends here: the VM never finished it ----");
    }
    Ok(())
}
