//! `imgsign runtime`: the OCI runtime command line (runc's commands and global flags, parsed
//! with youki's `liboci-cli`), for podman (`--runtime`), containerd (`ctr run --runc-binary`,
//! a runtime's `BinaryName`) and Kubernetes RuntimeClasses. The same program runs when the
//! binary is invoked as `imgsign-runtime` (a symlink), since engines want a runtime binary.
//! Each command is one call into `launch::oci`; this file parses, prints and logs.
//! Exit codes: 0, or 1 on any error (as runc); `run` and `exec` return the process's code.

mod log;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use launch::oci::{self, CreateOptions, ExecOptions, Runtime};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};
use log::Log;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// The name under which the binary acts as the runtime itself.
pub const RUNTIME_NAME: &str = "imgsign-runtime";

#[derive(clap::Args)]
#[command(version)]
pub struct Args {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(flatten)]
    extra: ExtraGlobals,
    #[command(subcommand)]
    command: RuntimeCommand,
}

/// Global flags runc takes that liboci-cli does not; accepted so an engine that passes them
/// is not refused, with no effect here.
#[derive(clap::Args)]
struct ExtraGlobals {
    /// Log level (`debug` is `--debug`; others are accepted).
    #[arg(long)]
    log_level: Option<String>,
    /// runc's rootless mode switch (accepted; imgsign runtime runs as root).
    #[arg(long)]
    rootless: Option<String>,
    /// runc's path to criu (checkpointing is not supported).
    #[arg(long)]
    criu: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RuntimeCommand {
    #[command(flatten)]
    Standard(Box<StandardCmd>),
    #[command(flatten)]
    Common(Box<CommonCmd>),
}

/// The gate's process: the container's id and bundle directory.
#[derive(clap::Args)]
pub struct GateWorkerArgs {
    id: String,
    bundle: PathBuf,
}

/// Prints the gate's verdict on stdout (JSON) for the `create` that started this process.
pub fn gate_worker(args: GateWorkerArgs) -> anyhow::Result<ExitCode> {
    let mut phases = enforce::timing::Phases::start();
    let verdict = oci::gate::serve(&args.id, &args.bundle, &mut |p| phases.mark(p));
    println!("{}", serde_json::to_string(&verdict)?);
    let admitted = matches!(verdict, oci::gate::Verdict::Admitted { .. });
    crate::commands::hook::report_timing("gate-timing", "gate", &args.id, admitted, &phases);
    Ok(ExitCode::SUCCESS)
}

/// The binary invoked as `imgsign-runtime`: the whole argv is the runtime's.
#[derive(Parser)]
#[command(name = RUNTIME_NAME, version, about = "imgsign's OCI runtime (runc's command line)")]
struct AsRuntime {
    #[command(flatten)]
    args: Args,
}

/// Entry point when argv[0] is [`RUNTIME_NAME`].
pub fn main_as_runtime(argv: Vec<OsString>) -> ExitCode {
    run(AsRuntime::parse_from(argv).args)
}

pub fn run(args: Args) -> ExitCode {
    let debug = args.global.debug || args.extra.log_level.as_deref() == Some("debug");
    let mut log = Log::open(args.global.log.as_deref(), args.global.log_format.as_deref(), debug);
    let rt = Runtime {
        root: args.global.root.clone().unwrap_or_else(|| PathBuf::from(oci::DEFAULT_ROOT)),
        systemd_cgroup: args.global.systemd_cgroup,
    };
    match dispatch(&rt, args.command, &mut log) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            log.error(&log::chain(&err));
            ExitCode::from(1)
        }
    }
}

fn dispatch(rt: &Runtime, command: RuntimeCommand, log: &mut Log) -> anyhow::Result<u8> {
    match command {
        RuntimeCommand::Standard(cmd) => match *cmd {
            StandardCmd::Create(a) => {
                let opts = CreateOptions {
                    id: a.container_id,
                    bundle: a.bundle,
                    pid_file: a.pid_file,
                    console_socket: a.console_socket,
                    no_pivot: a.no_pivot,
                    preserve_fds: a.preserve_fds,
                };
                let created = oci::create(rt, &opts)?;
                report(log, &opts.id, &created);
            }
            StandardCmd::Start(a) => oci::start(rt, &a.container_id)?,
            StandardCmd::State(a) => println!("{}", serde_json::to_string_pretty(&oci::state(rt, &a.container_id)?)?),
            StandardCmd::Kill(a) => oci::kill(rt, &a.container_id, &a.signal, a.all)?,
            StandardCmd::Delete(a) => {
                for warning in oci::delete(rt, &a.container_id, a.force)? {
                    log.warn(&warning);
                }
            }
        },
        RuntimeCommand::Common(cmd) => match *cmd {
            CommonCmd::Run(a) => {
                let opts = CreateOptions {
                    id: a.container_id,
                    bundle: a.bundle,
                    pid_file: a.pid_file,
                    console_socket: a.console_socket,
                    no_pivot: a.no_pivot,
                    preserve_fds: a.preserve_fds,
                };
                let code = oci::run(rt, &opts, a.detach, |created| report(log, &opts.id, created))?;
                return Ok(exit_byte(code));
            }
            CommonCmd::Exec(a) => {
                let opts = ExecOptions {
                    id: a.container_id,
                    process: a.process,
                    command: a.command,
                    detach: a.detach,
                    pid_file: a.pid_file,
                    console_socket: a.console_socket,
                    cwd: a.cwd,
                    env: a.env,
                    user: a.user,
                    additional_gids: a.additional_gids,
                    caps: a.cap,
                    no_new_privs: a.no_new_privs,
                    preserve_fds: a.preserve_fds,
                    ignore_paused: a.ignore_paused,
                    sub_cgroup: a.cgroup,
                };
                if opts.process.is_none() && opts.command.is_empty() {
                    bail!("exec needs a command or --process FILE");
                }
                return Ok(exit_byte(oci::exec(rt, &opts)?));
            }
            CommonCmd::Ps(a) => ps(rt, &a.container_id, &a.format, &a.ps_options)?,
            CommonCmd::Pause(a) => oci::pause(rt, &a.container_id)?,
            CommonCmd::Resume(a) => oci::resume(rt, &a.container_id)?,
            CommonCmd::Features(_) => println!("{}", serde_json::to_string_pretty(&oci::info::features())?),
            CommonCmd::Spec(a) => spec(a.bundle, a.rootless)?,
            CommonCmd::Checkpointt(_) => bail!("checkpoint is not supported by imgsign runtime"),
            CommonCmd::Events(_) => bail!("events is not supported by imgsign runtime"),
            CommonCmd::List(_) => bail!("list is not supported by imgsign runtime"),
            CommonCmd::Update(_) => bail!("update is not supported by imgsign runtime"),
        },
    }
    Ok(0)
}

/// Logs what create did: the match (debug) and, when unenforced, the warning.
fn report(log: &mut Log, id: &str, created: &oci::Created) {
    let r = &created.record;
    log.debug(&format!(
        "admitted container {id}: rootfs {} matches {} ({}), {}; listed {}; gate {} ms, libcontainer \
         create {} ms{}",
        r.rootfs.display(),
        r.image,
        r.digest,
        if r.remembered {
            "the listing admitted last time (verdict cache)".to_string()
        } else {
            format!("{} files hashed, {} from the cache", r.hashed, r.cached)
        },
        match &r.walked_because {
            Some(reason) => format!("through the mount ({reason})"),
            None => format!("from {} overlay layers", r.layers),
        },
        created.gate_time.as_millis(),
        created.create_time.as_millis(),
        if created.gate_beside { " (the gate decided beside it)" } else { "" },
    ));
    for warning in &created.warnings {
        log.warn(warning);
    }
}

/// A process exit code as the process's own exit status (codes above 255 cannot occur).
fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}

/// `ps`: `--format json` prints the pids (as runc); `table` prints `ps`'s lines of them.
fn ps(rt: &Runtime, id: &str, format: &str, options: &[String]) -> anyhow::Result<()> {
    let pids = oci::info::pids(rt, id)?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let options = if options.is_empty() { vec!["-ef".to_string()] } else { options.to_vec() };
            let out = std::process::Command::new("ps").args(&options).output().context("cannot run ps")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let column = header.split_whitespace().position(|c| c == "PID").context("ps printed no PID column")?;
            println!("{header}");
            for line in lines {
                let pid = line.split_whitespace().nth(column).and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{line}");
                }
            }
        }
        other => bail!("unknown ps format {other:?} (json or table)"),
    }
    Ok(())
}

/// `spec`: writes a default config.json into the bundle directory (the current one by
/// default), whole or not at all; an existing one is not replaced.
fn spec(bundle: Option<PathBuf>, rootless: bool) -> anyhow::Result<()> {
    let path = bundle.unwrap_or_default().join("config.json");
    let json = serde_json::to_vec_pretty(&oci::info::default_spec(rootless))?;
    keys::write_new_file(&path, &json, 0o644)
        .with_context(|| format!("cannot create {} (an existing one is not replaced)", path.display()))
}
