//! `imgsign enforce`: the node daemon. Checks the kernel, verifies every bundle of the policy and
//! applies the plan, then streams decision events as JSON lines; SIGHUP reloads the policy (a
//! failed reload keeps the old plan in force), SIGTERM/SIGINT stop the daemon and leave the
//! programs pinned and enforcing. `--check` verifies and prints the plan without a kernel;
//! `--status` and `--detach` read or unpin what is pinned under the policy's `pin_dir`. Exit 0 ok,
//! 1 a bundle or image did not verify, 2 bad usage, unreadable input or a kernel that cannot
//! enforce.

use crate::output;
use anyhow::Context as _;
use enforce::bpf::{self, BpfKernel};
use enforce::capability;
use enforce::daemon::{chain, Daemon};
use enforce::kernel::KernelError;
use enforce::plan::{self, Plan};
use enforce::policy::{self, EventSink};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(clap::Args)]
pub struct Args {
    /// Policy file (TOML: trust store, event output, scopes; see enforce/README.md).
    #[arg(long)]
    pub policy: PathBuf,
    /// Verify every bundle and print the plan; load nothing into the kernel.
    #[arg(long, conflicts_with_all = ["status", "detach"])]
    pub check: bool,
    /// Show what is pinned in the kernel under the policy's pin_dir.
    #[arg(long, conflicts_with = "detach")]
    pub status: bool,
    /// Unload the pinned programs and maps: enforcement stops.
    #[arg(long)]
    pub detach: bool,
    /// Print the plan or status as JSON (events are always JSON lines).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = policy::load(&args.policy)?;
    if args.check {
        return check(&policy, args.json);
    }
    if let Some(code) = kernel_missing(&policy.pin_dir) {
        return Ok(code);
    }
    if args.status {
        return match bpf::status(&policy.pin_dir) {
            Ok(status) if args.json => {
                println!("{}", serde_json::to_string_pretty(&status)?);
                Ok(output::EXIT_OK)
            }
            Ok(status) => {
                print_status(&status, &policy);
                Ok(output::EXIT_OK)
            }
            Err(e) => Ok(kernel_failed(&e)),
        };
    }
    if args.detach {
        return match bpf::detach(&policy.pin_dir) {
            Ok(true) => {
                println!(
                    "unpinned the enforcer under {}: enforcement ends once no process holds it (stop a running daemon too; the kernel may take a moment)",
                    policy.pin_dir.display()
                );
                Ok(output::EXIT_OK)
            }
            Ok(false) => {
                println!("nothing was pinned under {}", policy.pin_dir.display());
                Ok(output::EXIT_OK)
            }
            Err(e) => Ok(kernel_failed(&e)),
        };
    }

    let kernel = match BpfKernel::open(&policy.pin_dir) {
        Ok(kernel) => kernel,
        Err(e) => return Ok(kernel_failed(&e)),
    };
    let out: Box<dyn Write + Send> = match &policy.events {
        EventSink::Stdout => Box::new(std::io::stdout()),
        EventSink::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the event file {}", path.display()))?,
        ),
    };
    let reload = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing the SIGHUP handler")?;
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the SIGTERM/SIGINT handlers")?;
    }
    let mut daemon = match Daemon::start(&args.policy, kernel, out, SystemTime::now()) {
        Ok(daemon) => daemon,
        Err(enforce::daemon::DaemonError::Plan(e)) if e.is_verification_failure() => {
            output::print_error(&anyhow::Error::new(e));
            return Ok(output::exit_failed());
        }
        Err(e) => return Err(e.into()),
    };
    daemon.run(&reload, &stop)?;
    eprintln!(
        "imgsign enforce: stopped; the programs stay pinned under {} and keep enforcing (imgsign enforce --detach ends it)",
        policy.pin_dir.display()
    );
    Ok(output::EXIT_OK)
}

/// `--status` for humans: the scopes in force, named after the policy's scopes where their
/// cgroups match.
fn print_status(status: &bpf::Status, policy: &policy::Policy) {
    if !status.pinned {
        println!("not enforcing: nothing is pinned under {}", status.pin_dir.display());
        return;
    }
    let names: Vec<(u64, &str)> = policy
        .scopes
        .iter()
        .filter_map(|s| enforce::cgroup::cgroup_id(&s.cgroup).ok().map(|id| (id, s.name.as_str())))
        .collect();
    println!(
        "enforcing from {}: {} scope(s), {} event(s) dropped",
        status.pin_dir.display(),
        status.scopes.len(),
        status.dropped_events
    );
    for scope in &status.scopes {
        let name = names.iter().find(|(id, _)| *id == scope.cgroup_id).map_or("(not in this policy)", |(_, n)| n);
        println!("  scope {name}: cgroup id {}, mode {}, {} digest(s)", scope.cgroup_id, scope.mode, scope.digests);
    }
}

/// `--check`: the plan, verified, printed; nothing loaded.
fn check(policy: &policy::Policy, json: bool) -> anyhow::Result<ExitCode> {
    let plan = match plan::build(policy, SystemTime::now()) {
        Ok(plan) => plan,
        Err(e) if e.is_verification_failure() => {
            output::print_error(&anyhow::Error::new(e));
            return Ok(output::exit_failed());
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print_plan(&plan, policy);
    }
    Ok(output::EXIT_OK)
}

fn print_plan(plan: &Plan, policy: &policy::Policy) {
    println!("policy {} (trust store {})", plan.policy.display(), policy.trust.display());
    for scope in &plan.scopes {
        println!(
            "scope {}: cgroup {} (id {}), mode {}, {} allowed digest(s)",
            scope.name,
            scope.cgroup.display(),
            scope.cgroup_id,
            scope.mode,
            scope.digests.len()
        );
        for m in &scope.manifests {
            let bundles: Vec<String> = m.bundles.iter().map(|b| b.display().to_string()).collect();
            println!(
                "  {:?} version {} ({} files), expires {}, signed by {}; bundle {}",
                m.name,
                m.version,
                m.files,
                m.expires,
                m.signers.join(", "),
                bundles.join(" + ")
            );
            if let Some(image) = &m.image {
                println!("  image {image}: every file matches");
            }
        }
    }
    println!("plan OK: {} scope(s) verified; nothing was loaded into the kernel (--check)", plan.scopes.len());
}

/// Exit 2 with what to change when this kernel cannot run the enforcer.
fn kernel_missing(pin_dir: &std::path::Path) -> Option<ExitCode> {
    let found = capability::check(pin_dir);
    if found.ok() {
        return None;
    }
    eprintln!("imgsign: error: this kernel cannot run the BPF-LSM enforcer:");
    for missing in &found.missing {
        eprintln!("  - {missing}");
    }
    Some(output::exit_usage_or_input())
}

fn kernel_failed(e: &KernelError) -> ExitCode {
    eprintln!("imgsign: error: {}", chain(e));
    output::exit_usage_or_input()
}
