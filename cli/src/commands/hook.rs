//! `imgsign hook create-runtime|poststop`: OCI hooks that give containers started by a stock
//! runtime (runc, crun) the gate and the enforcement scope of `imgsign runtime`. The state comes
//! on stdin, as the runtime writes it; the policy is the runtime's
//! (`/etc/imgsign/runtime.toml` or `$IMGSIGN_RUNTIME_CONFIG`). A podman/CRI-O `hooks.d` file:
//!
//! ```json
//! {"version": "1.0.0", "when": {"always": true}, "stages": ["createRuntime"],
//!  "hook": {"path": "/usr/local/bin/imgsign", "args": ["imgsign", "hook", "create-runtime"]}}
//! ```

use anyhow::Context as _;
use launch::oci::hook;
use launch::oci::scope::Attached;
use std::io::Read as _;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    stage: Stage,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Stage {
    /// Admit the container's root file system and make its cgroup an enforcement scope; a
    /// failure makes the runtime refuse the container.
    CreateRuntime,
    /// Remove the container's scope.
    Poststop,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).context("cannot read the OCI state from stdin")?;
    let state = hook::parse_state(&input)?;
    match args.stage {
        Stage::CreateRuntime => {
            let (admitted, attached) =
                hook::create_runtime(&state).with_context(|| format!("imgsign hook refused container {}", state.id))?;
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
            if let Err(e) = hook::poststop(&state) {
                eprintln!("imgsign hook: warning: {:#}", anyhow::Error::new(e));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
