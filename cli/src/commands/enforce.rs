//! `imgsign enforce`: the node daemon. Parses arguments, reads the policy once, calls
//! `enforce::node` and prints what comes back. The daemon checks the kernel, verifies every
//! bundle of the policy and applies the plan, then streams decision events as JSON lines; SIGHUP
//! reloads the policy (a failed reload keeps the old plan in force), SIGTERM/SIGINT stop the
//! daemon and leave the programs pinned and enforcing. `--check` verifies and prints the plan
//! without a kernel; `--status` and `--detach` read or unpin what is pinned under the policy's
//! `pin_dir`. Exit 0 ok, 1 a bundle or image did not verify, 2 bad usage, unreadable input or a
//! kernel that cannot enforce.

use crate::output;
use enforce::daemon::{chain, Notice};
use enforce::node::{self, Node, NodeError, NodeStatus};
use enforce::plan::Plan;
use enforce::source::PolicySource;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<EnforceCommand>,
    /// Policy file (TOML: trust store, event output, control socket, scopes; see
    /// enforce/README.md).
    #[arg(long, required = true)]
    pub policy: Option<PathBuf>,
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

#[derive(clap::Subcommand)]
pub enum EnforceCommand {
    /// Add, remove or list scopes of the running daemon (its control socket).
    Scope(super::scope::ScopeArgs),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(EnforceCommand::Scope(scope)) = args.command {
        return super::scope::run(scope);
    }
    let policy = args.policy.expect("clap requires --policy without a subcommand");
    let source = PolicySource::open(&policy)?;
    if args.check {
        let plan = match node::check(&source, SystemTime::now()) {
            Ok(plan) => plan,
            Err(e) => return failed(e),
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print_plan(&plan, &source);
        }
        return Ok(output::EXIT_OK);
    }
    if args.status {
        return match node::status(source.policy()) {
            Ok(status) if args.json => {
                println!("{}", serde_json::to_string_pretty(&status.status)?);
                Ok(output::EXIT_OK)
            }
            Ok(status) => {
                print_status(&status);
                Ok(output::EXIT_OK)
            }
            Err(e) => failed(e),
        };
    }
    if args.detach {
        let pin_dir = source.policy().pin_dir.clone();
        return match node::detach(source.policy()) {
            Ok(true) => {
                println!(
                    "unpinned the enforcer under {}: enforcement ends once no process holds it (stop a running daemon too; the kernel may take a moment)",
                    pin_dir.display()
                );
                Ok(output::EXIT_OK)
            }
            Ok(false) => {
                println!("nothing was pinned under {}", pin_dir.display());
                Ok(output::EXIT_OK)
            }
            Err(e) => failed(e),
        };
    }

    let notices = Box::new(|notice: Notice| eprintln!("imgsign enforce: {notice}"));
    let mut node = match Node::start(source, Box::new(std::io::stdout()), notices) {
        Ok(node) => node,
        Err(e) => return failed(e),
    };
    // IMGSIGN_TIMING: each control request's phases go to the event output (`timing` records).
    node.daemon_mut().set_timing(std::env::var_os("IMGSIGN_TIMING").is_some_and(|v| !v.is_empty()));
    node.run()?;
    eprintln!(
        "imgsign enforce: stopped; the programs stay pinned under {} and keep enforcing (imgsign enforce --detach ends it)",
        node.pin_dir().display()
    );
    Ok(output::EXIT_OK)
}

/// The exit code and message of each failure: 1 when something did not verify; 2 with what to
/// change when the kernel cannot enforce; 2 for everything else.
fn failed(e: NodeError) -> anyhow::Result<ExitCode> {
    match e {
        e if e.is_verification_failure() => {
            output::print_error(&anyhow::Error::new(e));
            Ok(output::exit_failed())
        }
        NodeError::Unsupported { missing } => {
            eprintln!("imgsign: error: this kernel cannot run the BPF-LSM enforcer:");
            for missing in &missing {
                eprintln!("  - {missing}");
            }
            Ok(output::exit_usage_or_input())
        }
        NodeError::Kernel(e) => {
            eprintln!("imgsign: error: {}", chain(&e));
            Ok(output::exit_usage_or_input())
        }
        other => Err(other.into()),
    }
}

/// `--status` for humans: the scopes in force, named after the policy's scopes where their
/// cgroups match.
fn print_status(found: &NodeStatus) {
    let status = &found.status;
    if !status.pinned {
        println!("not enforcing: nothing is pinned under {}", status.pin_dir.display());
        return;
    }
    println!(
        "enforcing from {}: {} scope(s), {} event(s) dropped",
        status.pin_dir.display(),
        status.scopes.len(),
        status.dropped_events
    );
    if let Some(programs) = &status.programs {
        println!("  programs: {programs}");
    }
    for scope in &status.scopes {
        let name = found.name_of(scope.cgroup_id).unwrap_or("(not in this policy)");
        println!(
            "  scope {name}: cgroup id {}, mode {}, profile {}, {} digest(s){}",
            scope.cgroup_id,
            scope.mode,
            scope.profile,
            scope.digests,
            super::scope::counters_text(scope.counters.as_ref())
        );
    }
}

/// `--check` for humans: the plan, verified; nothing loaded.
fn print_plan(plan: &Plan, source: &PolicySource) {
    println!("policy {} (trust store {})", plan.policy.display(), source.policy().trust.display());
    for scope in &plan.scopes {
        println!(
            "scope {}: cgroup {} (id {}), mode {}, profile {}, {} allowed digest(s)",
            scope.name,
            scope.cgroup.display(),
            scope.cgroup_id,
            scope.mode,
            scope.profile,
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
