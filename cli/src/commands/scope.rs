//! `imgsign enforce scope add|rm|ls`: the client of the enforcement daemon's control socket
//! (`enforce::control`). A scope added here is verified by the daemon like a policy scope, and
//! the command returns once the kernel has it. Exit 0 done; 1 the daemon refused (the reason is
//! printed); 2 bad usage or no daemon to ask.

use crate::output;
use enforce::control::{self, AddScope, Reply, Request, DEFAULT_SOCKET};
use enforce::{Mode, Profile, Violation};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long to wait for the daemon (verifying a large manifest takes a while).
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(clap::Args)]
pub struct ScopeArgs {
    /// The daemon's control socket (the policy's `control`).
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the daemon's reply as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ScopeCommand,
}

#[derive(clap::Subcommand)]
pub enum ScopeCommand {
    /// Make a cgroup a scope enforcing the digests of these bundles (verified by the daemon).
    Add {
        /// The scope's name (events and lists name it).
        name: String,
        /// The cgroup v2 directory whose tasks the scope holds.
        #[arg(long)]
        cgroup: PathBuf,
        /// A signed manifest of what may run (repeatable). Without one, --image must be a
        /// docker:// reference: the daemon discovers the bundles attached to it.
        #[arg(long = "bundle", required_unless_present = "image")]
        bundles: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "enforce")]
        mode: ModeArg,
        /// strict: also no anonymous executable memory, no io_uring.
        #[arg(long, value_enum, default_value = "default")]
        profile: ProfileArg,
        /// Judge code from FUSE, NFS, 9p, CIFS and ceph by digest instead of refusing it.
        #[arg(long)]
        remote_fs: bool,
        /// Freeze or kill the cgroup when the kernel reports a violation in it.
        #[arg(long, value_enum)]
        on_violation: Option<ViolationArg>,
        /// Also compare this image's files with the manifest; or, without --bundle, the
        /// docker://HOST/REPO[:TAG|@sha256:HEX] whose attached bundles the daemon discovers.
        #[arg(long)]
        image: Option<String>,
    },
    /// Remove a scope added through the control socket.
    Rm { name: String },
    /// List the scopes in force.
    Ls,
    /// The scope's recent event and response records (the daemon keeps the last 256), as JSON lines.
    Events { name: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Audit,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ProfileArg {
    Default,
    Strict,
}

/// What the daemon does to a scope's cgroup on a violation.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ViolationArg {
    /// Stop every task (cgroup.freeze): `imgsign snapshot`, then `imgsign kill` or `thaw`.
    Freeze,
    /// End every task (cgroup.kill).
    Kill,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Enforce => Mode::Enforce,
            ModeArg::Audit => Mode::Audit,
        }
    }
}

impl From<ProfileArg> for Profile {
    fn from(profile: ProfileArg) -> Profile {
        match profile {
            ProfileArg::Default => Profile::Default,
            ProfileArg::Strict => Profile::Strict,
        }
    }
}

impl From<ViolationArg> for Violation {
    fn from(action: ViolationArg) -> Violation {
        match action {
            ViolationArg::Freeze => Violation::Freeze,
            ViolationArg::Kill => Violation::Kill,
        }
    }
}

pub fn run(args: ScopeArgs) -> anyhow::Result<ExitCode> {
    let request = match args.command {
        ScopeCommand::Add { name, cgroup, bundles, mode, profile, remote_fs, on_violation, image } => {
            // The daemon reads the files: absolute paths, resolved here.
            let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
            Request::Add(AddScope {
                name,
                cgroup: absolute(cgroup),
                mode: mode.into(),
                profile: profile.into(),
                remote_fs,
                on_violation: on_violation.map(Violation::from),
                container: None,
                bundles: bundles.into_iter().map(absolute).collect(),
                image,
            })
        }
        ScopeCommand::Rm { name } => Request::Remove { name },
        ScopeCommand::Ls => Request::List,
        ScopeCommand::Events { name } => Request::Events { name },
    };
    let reply = control::call(&args.socket, &request, TIMEOUT)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print_reply(&reply);
    }
    Ok(if reply.ok { output::EXIT_OK } else { output::exit_failed() })
}

fn print_reply(reply: &Reply) {
    if let Some(error) = &reply.error {
        eprintln!("imgsign: refused: {error}");
        return;
    }
    for record in &reply.events {
        println!("{record}");
    }
    for s in &reply.scopes {
        println!(
            "scope {} ({}): cgroup {} (id {}), mode {}, profile {}, {} digest(s){}",
            s.name,
            s.origin,
            s.cgroup.display(),
            s.cgroup_id,
            s.mode,
            s.profile,
            s.digests,
            counters_text(s.counters.as_ref())
        );
    }
    if let Some(helpers) = &reply.runtime_helpers {
        for h in &helpers.in_force {
            println!(
                "runtime helper {}: sha256:{} (allowed in every verified scope)",
                h.path.display(),
                h.sha256.hex()
            );
        }
        for i in &helpers.ignored {
            println!("runtime helper {}: ignored: {}", i.path.display(), i.reason);
        }
    }
}

/// A scope's kernel counters for a status line (empty when the kernel keeps none).
pub fn counters_text(counters: Option<&enforce::kernel::ScopeCounters>) -> String {
    match counters {
        Some(c) => format!(
            "; {} allowed, {} denied, {} audited; {} event(s), {} dropped",
            c.allowed, c.denied, c.audited, c.events, c.dropped
        ),
        None => String::new(),
    }
}
