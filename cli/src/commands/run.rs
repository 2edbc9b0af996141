//! `imgsign run`: verify the bundles (signatures, expiry, rollback) before anything is
//! unpacked, unpack the image into the local store checking every file against the signed
//! manifest (`store::Store::ensure`; an image already stored is neither unpacked nor hashed
//! again, and bundle files the store verified for it before are not verified again, only
//! rechecked against the trust store and the clock: `store::verified`), then launch it in a hardened container (`launch`) over the stored tree and return
//! its exit code. Without a command after `--`, the image config's Entrypoint + Cmd run (a
//! command replaces Cmd), with its Env (then `--env`), WorkingDir and User (`store::process`).
//! `imgsign ps` lists containers.
//!
//! With `IMGSIGN_TIMING` set, one line on stderr says where the time went (open, ensure,
//! prepare, start, wait, cleanup, in ms): what `bench/README.md` profiles the warm run with.
//!
//! Exit codes: the container's own (128 + N if a signal N ended it); 1 the image was refused
//! (verification failed); 2 bad usage or unreadable input; 125 the container could not be
//! launched.

use super::enforced::NotEnforced;
use crate::output;
use anyhow::Context as _;
use keys::TrustStore;
use launch::config::{
    parse_capability, parse_size, random_id, DEFAULT_MEMORY, DEFAULT_PIDS_LIMIT, DEFAULT_STATE_ROOT,
    DEFAULT_USERNS_BASE, USERNS_SIZE,
};
use launch::{Capability, Container, IdRange, LaunchConfig, Net, ProcessUser, Secret, Volume};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;
use store::{EnsureOptions, StoreError};
use verifier_core::bundle::CheckedBundle;
use verifier_core::source::ImageRef;
use verifier_core::verify::{accept, error_chain, VerifyError};

/// Exit code when the container could not be launched.
const EXIT_LAUNCH: u8 = 125;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub signed: super::signed::SignedImageArgs,
    /// Print a JSON summary on stdout after the container ends: id, image, exitCode, and what the
    /// store did (digest, unpacked, remembered: the bundles' verification was remembered, content:
    /// objects and bytes written and reused; ensureMs).
    #[arg(long)]
    pub json: bool,
    /// Container id (default: 12 random hex digits).
    #[arg(long)]
    pub name: Option<String>,
    /// Hostname (default: the container id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// No writable layer: the verified tree is the root, read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Network: none (a new namespace, loopback only) or host.
    #[arg(long, default_value = "none")]
    pub net: Net,
    /// Seccomp: `default` (an allowlist, see the README) or `unconfined` (no filter).
    #[arg(long, value_enum, default_value = "default")]
    pub seccomp: SeccompArg,
    /// First host uid/gid of the user namespace (container 0..65536 -> BASE..BASE+65536).
    #[arg(long, default_value_t = DEFAULT_USERNS_BASE)]
    pub userns_base: u32,
    /// Loosening: no user namespace (root in the container is root on the host).
    #[arg(long)]
    pub no_userns: bool,
    /// Loosening: add a capability to the minimal set (repeatable; NAME or CAP_NAME).
    #[arg(long = "cap-add", value_parser = parse_capability)]
    pub cap_add: Vec<Capability>,
    /// Most tasks the container may have.
    #[arg(long, default_value_t = DEFAULT_PIDS_LIMIT)]
    pub pids_limit: i64,
    /// Memory limit (512m, 2g, bytes); default 1g.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<i64>,
    /// NAME=SRC: the file SRC read-only at /run/secrets/NAME, on a tmpfs (repeatable).
    #[arg(long = "secret")]
    pub secrets: Vec<Secret>,
    /// HOST:CONTAINER[:ro]: bind a host directory (repeatable).
    #[arg(long = "volume", short = 'v')]
    pub volumes: Vec<Volume>,
    /// KEY=VALUE added to the environment (repeatable).
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the image's WorkingDir, else /).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// USER[:GROUP] (ids, or names from the image's /etc/passwd and /etc/group) the command runs
    /// as (default: the image's User, else 0:0).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[command(flatten)]
    pub enforcement: super::enforced::EnforceArgs,
    /// Do not record the accepted version in the trust store.
    #[arg(long)]
    pub no_record: bool,
    /// Directory of container state.
    #[arg(long, default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
    #[command(flatten)]
    pub store: super::images::StoreArg,
    /// The command and its arguments, replacing the image's Cmd (its Entrypoint stays).
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SeccompArg {
    Default,
    Unconfined,
}

/// A refusal (exit 1) or a launch failure (exit 125), printed with its reason.
enum Outcome {
    Exited(i32),
    Refused(String),
    LaunchFailed(anyhow::Error),
    /// An unreadable bundle file, no command to run, or a user, group or working directory that
    /// cannot be (exit 2).
    BadInput(anyhow::Error),
}

/// The bundles of a run: files (read by the store, which remembers what their verification
/// proved) or discovered ones (already read).
enum Bundles {
    Files(Vec<PathBuf>),
    Discovered(Vec<CheckedBundle>),
}

/// The image, the trust store and the bundles; bundle files are only named here.
fn open_signed(
    signed: &super::signed::SignedImageArgs,
    store: &std::path::Path,
) -> anyhow::Result<(ImageRef, TrustStore, Bundles)> {
    if signed.bundles.is_empty() {
        let (image, trust, bundles) = signed.open(store)?;
        return Ok((image, trust, Bundles::Discovered(bundles)));
    }
    let image = signed.registry.image_or_stored(&signed.image, &signed.platform, store)?;
    let trust = TrustStore::open(&signed.trust)?;
    Ok((image, trust, Bundles::Files(signed.bundles.clone())))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let id = args.name.clone().unwrap_or_else(random_id);
    launch::config::check_id(&id)?;
    let mut timing = Timing::from_env();
    let (image, mut trust, bundles) = open_signed(&args.signed, &args.store.dir())?;
    timing.mark("open");
    let json = args.json;
    let mut ensured = None;
    let outcome = verify_and_launch(&args, &id, &image, &mut trust, &bundles, &mut ensured, &mut timing);
    timing.report();
    let (code, exit) = match outcome {
        Ok(Outcome::Exited(code)) => (Some(code), ExitCode::from(code.clamp(0, 255) as u8)),
        Ok(Outcome::Refused(reason)) => {
            eprintln!("imgsign: refused {image}: {reason}");
            (None, output::exit_failed())
        }
        Ok(Outcome::BadInput(err)) => {
            output::print_error(&err.context(format!("cannot run {image}")));
            (None, output::exit_usage_or_input())
        }
        Ok(Outcome::LaunchFailed(err)) | Err(err) => {
            output::print_error(&err.context(format!("cannot launch {image}")));
            (None, ExitCode::from(EXIT_LAUNCH))
        }
    };
    if json {
        let mut summary = serde_json::json!({ "id": id, "image": image.to_string(), "exitCode": code });
        if let Some(e) = ensured {
            summary["ensure"] = e;
        }
        println!("{summary}");
    }
    Ok(exit)
}

fn verify_and_launch(
    args: &Args,
    id: &str,
    image: &ImageRef,
    trust: &mut TrustStore,
    bundles: &Bundles,
    ensured: &mut Option<serde_json::Value>,
    timing: &mut Timing,
) -> anyhow::Result<Outcome> {
    let store = args.store.open().context("cannot open the image store")?;
    let started = std::time::Instant::now();
    // Signatures, expiry and rollback are checked before anything is unpacked; an image that
    // cannot be read whole, or differs from the signed manifest, is refused: nothing of it runs.
    let options = EnsureOptions { now: SystemTime::now(), create_devices: false };
    let ensured_image = match bundles {
        Bundles::Files(files) => store.ensure_files(image, files, trust, &options, output::progress()),
        Bundles::Discovered(bundles) => store.ensure(image, bundles, trust, &options, output::progress()),
    };
    let stored = match ensured_image {
        Ok(stored) => stored,
        Err(StoreError::Verify(e)) if matches!(*e, VerifyError::Bundle { .. }) => {
            return Ok(Outcome::BadInput(anyhow::Error::new(*e)))
        }
        Err(e @ (StoreError::Io { .. } | StoreError::Record { .. } | StoreError::Locked { .. })) => {
            return Ok(Outcome::LaunchFailed(e.into()))
        }
        Err(e) => return Ok(Outcome::Refused(error_chain(&e))),
    };
    timing.mark("ensure");
    *ensured = Some(serde_json::json!({
        "digest": stored.digest.oci(),
        "unpacked": stored.stats.unpacked,
        "remembered": stored.stats.remembered,
        "content": stored.stats.content,
        "ensureMs": started.elapsed().as_secs_f64() * 1000.0,
    }));
    if !args.no_record {
        accept(trust, [&stored.accepted]).context("cannot record the accepted version")?;
    }
    let digest = format!("sha256:{}", stored.digest.hex());

    // The image config came from the source whose identity `ensure` checked against the signed
    // subject (see `store::process` for what that binding covers).
    let overrides = store::process::Overrides {
        command: args.command.clone(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
    };
    let accounts = if store::process::needs_accounts(stored.config.as_ref(), &overrides) {
        match store::process::Accounts::read(&stored.rootfs) {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::BadInput(e.into())),
        }
    } else {
        store::process::Accounts::default()
    };
    let process = match store::process::resolve(stored.config.as_ref(), &overrides, &accounts) {
        Ok(p) => p,
        Err(e) => return Ok(Outcome::BadInput(e.into())),
    };

    let mut config = LaunchConfig::new(id, &stored.rootfs, process.args);
    config.state_root = args.state_root.clone();
    config.hostname = args.hostname.clone();
    config.read_only = args.read_only;
    config.net = args.net;
    config.seccomp_unconfined = matches!(args.seccomp, SeccompArg::Unconfined);
    config.userns = (!args.no_userns).then_some(IdRange { base: args.userns_base, size: USERNS_SIZE });
    config.cap_add = args.cap_add.clone();
    config.pids_limit = args.pids_limit;
    config.memory = args.memory.unwrap_or(DEFAULT_MEMORY);
    config.secrets = args.secrets.clone();
    config.volumes = args.volumes.clone();
    config.env = process.env;
    config.cwd = process.cwd;
    config.user = ProcessUser { uid: process.uid, gid: process.gid, additional_gids: process.additional_gids };
    config.image = image.to_string();
    config.digest = digest;
    config.scope = args.enforcement.enforce.is_some().then(|| id.to_string());
    let mut container = match Container::prepare(config) {
        Ok(c) => c,
        Err(e) => return Ok(Outcome::LaunchFailed(e.into())),
    };
    timing.mark("prepare");
    // With --enforce the kernel holds the image's digests for the container's cgroup before
    // the container starts; removed again (on every path) when `scope` drops.
    // The daemon reads bundle files: discovered bundles (a registry's referrers) are written
    // into the container's directory for it.
    let bundle_files = match bundles {
        Bundles::Discovered(bundles) if args.enforcement.enforce.is_some() => {
            match super::enforced::write_bundles(bundles, &container.layout().dir) {
                Ok(files) => files,
                Err(e) => return Ok(Outcome::LaunchFailed(e)),
            }
        }
        Bundles::Discovered(_) => Vec::new(),
        Bundles::Files(files) => files.clone(),
    };
    let named = enforce::control::ContainerInfo {
        id: id.to_string(),
        image: container.config().image.clone(),
        digest: container.config().digest.clone(),
        name: None,
        pod: None,
        init_pid: None,
    };
    let _scope = match args.enforcement.register(named, &bundle_files) {
        Ok(scope) => scope,
        Err(NotEnforced::Refused(reason)) => return Ok(Outcome::Refused(reason)),
        Err(NotEnforced::Failed(e)) => return Ok(Outcome::LaunchFailed(e)),
    };
    // `Container::run(true)`, step by step for the timing line.
    launch::container::block_forwarded_signals();
    let code = (|| {
        container.start()?;
        timing.mark("start");
        let code = container.wait_forwarding()?;
        timing.mark("wait");
        container.cleanup()?;
        timing.mark("cleanup");
        Ok::<_, launch::LaunchError>(code)
    })();
    match code {
        Ok(code) => Ok(Outcome::Exited(code)),
        Err(e) => Ok(Outcome::LaunchFailed(e.into())),
    }
}

/// Phase durations of one run, printed on stderr when `IMGSIGN_TIMING` is set.
struct Timing {
    last: Option<std::time::Instant>,
    start: std::time::Instant,
    phases: Vec<(&'static str, f64)>,
}

impl Timing {
    fn from_env() -> Self {
        let now = std::time::Instant::now();
        let on = std::env::var_os("IMGSIGN_TIMING").is_some_and(|v| !v.is_empty());
        Timing { last: on.then_some(now), start: now, phases: Vec::new() }
    }

    fn mark(&mut self, phase: &'static str) {
        if let Some(last) = self.last {
            let now = std::time::Instant::now();
            self.phases.push((phase, (now - last).as_secs_f64() * 1000.0));
            self.last = Some(now);
        }
    }

    fn report(&self) {
        if self.last.is_some() {
            let phases: Vec<String> = self.phases.iter().map(|(name, ms)| format!("{name} {ms:.2}")).collect();
            let total = self.start.elapsed().as_secs_f64() * 1000.0;
            eprintln!("imgsign: timing (ms): {}, total {total:.2}", phases.join(", "));
        }
    }
}

#[derive(clap::Args)]
pub struct PsArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also list stopped containers (by default: created, running and frozen ones).
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Directory of container state.
    #[arg(long, default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

pub fn ps(args: PsArgs) -> anyhow::Result<ExitCode> {
    let records: Vec<_> =
        launch::state::list(&args.state_root)?.into_iter().filter(|r| args.all || r.status != "stopped").collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(output::EXIT_OK);
    }
    println!("{:<14} {:<8} {:<9} {:<40} {:<73} {:<14} CGROUP", "ID", "PID", "STATUS", "IMAGE", "DIGEST", "SCOPE");
    for r in records {
        let pid = r.pid.map_or("-".to_string(), |p| p.to_string());
        let scope = r.scope.as_deref().unwrap_or("-");
        println!("{:<14} {:<8} {:<9} {:<40} {:<73} {:<14} {}", r.id, pid, r.status, r.image, r.digest, scope, r.cgroup);
    }
    Ok(output::EXIT_OK)
}

fn parse_signal(s: &str) -> Result<launch::Signal, String> {
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<launch::Signal>().map_err(|_| format!("unknown signal {s:?}"))
}

#[derive(clap::Args)]
pub struct KillArgs {
    /// Container id.
    pub id: String,
    /// Signal sent to every task of the container.
    #[arg(long, short = 's', default_value = "KILL", value_parser = parse_signal)]
    pub signal: launch::Signal,
    /// Directory of container state.
    #[arg(long, default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

/// `imgsign kill ID`: signal every task of a container (the `imgsign run` that launched it then
/// cleans up and exits).
pub fn kill(args: KillArgs) -> anyhow::Result<ExitCode> {
    launch::control::kill(&args.state_root, &args.id, args.signal)?;
    Ok(output::EXIT_OK)
}

#[derive(clap::Args)]
pub struct FreezeArgs {
    /// Container id.
    pub id: String,
    /// Directory of container state.
    #[arg(long, default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

/// `imgsign freeze ID`: stop every task of a container (cgroup freezer).
pub fn freeze(args: FreezeArgs) -> anyhow::Result<ExitCode> {
    launch::control::freeze(&args.state_root, &args.id)?;
    Ok(output::EXIT_OK)
}

/// `imgsign thaw ID`: resume a frozen container.
pub fn thaw(args: FreezeArgs) -> anyhow::Result<ExitCode> {
    launch::control::thaw(&args.state_root, &args.id)?;
    Ok(output::EXIT_OK)
}
