//! `imgsign-hook create-runtime|poststop`: the OCI hooks of `imgsign hook`, in an executable of
//! their own. An engine starts a hook per container on its start's critical path; this one
//! links only what the hooks use (no clap command tree, no registry or runtime code), so it
//! maps and relocates far fewer pages at start-up.

use imgsign_cli::commands::hook::{self, Stage};
use imgsign_cli::output;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stage = match args.as_slice() {
        [one] => Stage::from_arg(one),
        _ => None,
    };
    let Some(stage) = stage else {
        eprintln!("usage: imgsign-hook create-runtime|poststop (the OCI state on stdin)");
        return output::exit_usage_or_input();
    };
    match hook::run_stage(stage) {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            output::exit_usage_or_input()
        }
    }
}
