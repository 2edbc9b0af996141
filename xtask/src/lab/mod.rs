//! The kernel lab: boots Debian's cloud kernels (6.1 and 6.12) under QEMU
//! with an initramfs that runs the workspace's in-VM tests, and reports every
//! test by name on the host.
//!
//! Flow: [`kernels`] fetches and caches the kernel packages, [`testbins`]
//! builds the test binaries and lists their `vm_*` tests, [`initramfs`] packs
//! busybox, the binaries, their libraries, the kernel's modules and an
//! `/init` script, [`vm`] boots and reads the console, [`report`] prints the
//! outcome; [`rootfs`] builds and caches the Debian tree the container-engine tests need. Anything short of every planned test passing and the final
//! `LAB-RESULT PASS` marker fails the command. [`selftest`] checks that.
//! [`demo`] runs the README's kernel-enforcement demo (the release `imgsign`
//! and a shell script) in the same way.

mod demo;
mod initramfs;
mod kernels;
mod report;
mod rootfs;
mod selftest;
mod testbins;
mod vm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

pub use kernels::KernelSpec;

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: Option<LabCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum LabCommand {
    /// Check the lab itself: an injected failing test, a kernel panic and a
    /// hang must each fail the lab command, within the time limit.
    Selftest {
        /// Kernel to use for the checks.
        #[arg(long, value_enum, default_value = "6.1")]
        kernel: KernelChoice,
    },
    /// The kernel-enforcement demo: the release `imgsign` signs a tree,
    /// enforces it on a cgroup, and an unlisted binary is refused, inside the VM.
    Demo {
        /// Kernel to boot (one).
        #[arg(long, value_enum, default_value = "6.12")]
        kernel: DemoKernel,
        /// Wall-time limit for the boot, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoKernel {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Which kernel(s) to boot.
    #[arg(long, value_enum, default_value = "all")]
    pub kernel: KernelChoice,
    /// Add a deliberately failing in-VM test (`lab_injected_failure`).
    #[arg(long)]
    pub inject_failure: bool,
    /// Make /init crash the kernel (sysrq `c`) before the tests run.
    #[arg(long)]
    pub inject_panic: bool,
    /// Make /init hang before the tests run (checks the time limit).
    #[arg(long)]
    pub inject_hang: bool,
    /// Wall-time limit per boot, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// Boot the kernels one after the other instead of concurrently.
    #[arg(long)]
    pub sequential: bool,
    /// Re-resolve the newest kernel packages even if some are cached.
    #[arg(long)]
    pub refresh: bool,
    /// Only run in-VM tests whose name contains this string.
    #[arg(long)]
    pub filter: Option<String>,
    /// Stream every console line as it arrives.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print a JSON summary on stdout (human output goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelChoice {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

impl KernelChoice {
    fn specs(self) -> Vec<&'static KernelSpec> {
        match self {
            KernelChoice::V6_1 => vec![&kernels::DEBIAN_12],
            KernelChoice::V6_12 => vec![&kernels::DEBIAN_13],
            KernelChoice::All => vec![&kernels::DEBIAN_12, &kernels::DEBIAN_13],
        }
    }
}

/// Runs the `lab` command; `Ok(false)` means some check failed.
pub fn main(args: LabArgs) -> Result<bool> {
    match args.command {
        Some(LabCommand::Selftest { kernel }) => selftest::run(kernel),
        Some(LabCommand::Demo { kernel, timeout }) => demo::run(kernel, timeout),
        None => run(&args.run),
    }
}

/// Where the lab keeps downloads: `$IMGSIGN_LAB_CACHE` or `~/.cache/imgsign-lab`.
fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("IMGSIGN_LAB_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither IMGSIGN_LAB_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/imgsign-lab"))
}

/// The workspace root (xtask's parent directory).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").to_path_buf()
}

/// Where per-run artifacts (initramfs, console logs) go:
/// `$IMGSIGN_LAB_WORK` or `target/lab`.
fn work_dir() -> PathBuf {
    std::env::var_os("IMGSIGN_LAB_WORK").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target/lab"))
}

fn run(args: &RunArgs) -> Result<bool> {
    let started = Instant::now();
    let cache = cache_dir()?;
    let work = work_dir();
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;

    let specs = args.kernel.specs();
    let mut kernels = Vec::new();
    for spec in &specs {
        kernels.push(kernels::fetch(spec, &cache, args.refresh)?);
    }
    let prepared = Instant::now();

    let (suites, programs) = testbins::build(&workspace_root(), args.filter.as_deref())?;
    let rootfs = if rootfs::needed(&suites) { Some(rootfs::ensure(&cache)?) } else { None };
    let plan = initramfs::Plan {
        suites,
        inject_failure: args.inject_failure,
        inject_panic: args.inject_panic,
        inject_hang: args.inject_hang,
        binaries: programs,
        scripts: Vec::new(),
    };
    let mut boots = Vec::new();
    for kernel in &kernels {
        let image = initramfs::build(kernel, &plan, &work)?;
        boots.push(vm::Boot {
            kernel: kernel.clone(),
            initramfs: image,
            expected: plan.test_names(),
            timeout: Duration::from_secs(args.timeout),
            console_log: work.join(format!("console-{}.log", kernel.spec.label)),
            verbose: args.verbose,
            rootfs: rootfs.clone(),
        });
    }
    let built = Instant::now();

    let outcomes = if args.sequential || boots.len() < 2 {
        boots.iter().map(vm::run).collect::<Result<Vec<_>>>()?
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = boots.iter().map(|b| scope.spawn(move || vm::run(b))).collect();
            handles.into_iter().map(|h| h.join().expect("boot thread panicked")).collect::<Result<Vec<_>>>()
        })?
    };
    let timing = report::Timing {
        fetch: prepared - started,
        build: built - prepared,
        boots: built.elapsed(),
        total: started.elapsed(),
        concurrent: !(args.sequential || boots.len() < 2),
    };
    Ok(report::print(&outcomes, &timing, args.json))
}
