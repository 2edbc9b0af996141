//! `imgsign hook create-runtime|poststop`: OCI hooks that give containers started by a stock
//! runtime (runc, crun) the gate and the enforcement scope of `imgsign runtime`. The state comes
//! on stdin, as the runtime writes it; the policy is the runtime's
//! (`/etc/imgsign/runtime.toml` or `$IMGSIGN_RUNTIME_CONFIG`). A podman/CRI-O `hooks.d` file:
//!
//! ```json
//! {"version": "1.0.0", "when": {"always": true}, "stages": ["createRuntime"],
//!  "hook": {"path": "/usr/local/bin/imgsign-hook", "args": ["imgsign-hook", "create-runtime"]}}
//! ```
//!
//! `imgsign-hook STAGE` is `imgsign hook STAGE` in an executable of its own, which starts in a
//! fraction of the time: the one to name in `hooks.d`.

use anyhow::Context as _;
use enforce::timing::Phases;
use launch::oci::hook;
use launch::oci::scope::Attached;
use std::io::Read as _;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    stage: Stage,
}

/// Which hook this is; `imgsign-hook` takes the same names as `imgsign hook`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Admit the container's root file system and make its cgroup an enforcement scope; a
    /// failure makes the runtime refuse the container.
    CreateRuntime,
    /// Remove the container's scope.
    Poststop,
}

impl Stage {
    /// The stage named on a command line (`create-runtime`, `poststop`).
    pub fn from_arg(arg: &str) -> Option<Stage> {
        <Stage as clap::ValueEnum>::from_str(arg, false).ok()
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_stage(args.stage)
}

/// Runs one hook on the OCI state read from stdin.
pub fn run_stage(stage: Stage) -> anyhow::Result<ExitCode> {
    let mut phases = Phases::start();
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).context("cannot read the OCI state from stdin")?;
    let state = hook::parse_state(&input)?;
    phases.mark("state");
    match stage {
        Stage::CreateRuntime => {
            let created = hook::create_runtime(&state, &mut phases);
            report_timing("hook-timing", "create-runtime", &state.id, created.is_ok(), &phases);
            let (admitted, attached) =
                created.with_context(|| format!("imgsign hook refused container {}", state.id))?;
            let scope = match attached {
                Attached::Scoped(scope) => format!("scope {} at {}", scope.name, scope.cgroup.display()),
                Attached::Unenforced(reason) => format!("unenforced: {reason}"),
            };
            eprintln!(
                "imgsign hook: container {} admitted as {} ({}); {scope}",
                state.id, admitted.name, admitted.digest
            );
        }
        Stage::Poststop => {
            let removed = hook::poststop(&state);
            phases.mark("remove");
            report_timing("hook-timing", "poststop", &state.id, removed.is_ok(), &phases);
            if let Err(e) = removed {
                eprintln!("imgsign hook: warning: {:#}", anyhow::Error::new(e));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// With `IMGSIGN_TIMING` set, one JSON line of a hook's (or the runtime's gate process's)
/// phases (ms): appended to the file it names when it is an absolute path (a runtime shows a
/// hook's stderr only when it fails), else on stderr. A file that cannot be written is
/// ignored: timing never fails a hook.
pub(crate) fn report_timing(record: &str, stage: &str, id: &str, ok: bool, phases: &Phases) {
    let Some(target) = std::env::var_os("IMGSIGN_TIMING").filter(|v| !v.is_empty()) else { return };
    let mut record = serde_json::json!({"record": record, "stage": stage, "id": id, "ok": ok});
    if let (Some(record), serde_json::Value::Object(more)) = (record.as_object_mut(), phases.to_json()) {
        record.extend(more);
    }
    let line = format!("{record}\n");
    let target = std::path::PathBuf::from(target);
    if target.is_absolute() {
        use std::io::Write as _;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&target);
        let _ = file.and_then(|mut f| f.write_all(line.as_bytes()));
    } else {
        eprint!("imgsign hook: timing: {line}");
    }
}
