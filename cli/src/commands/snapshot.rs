//! `imgsign snapshot ID DEST`: forensics of a running or frozen container (its writable layer,
//! process list with exe digests, record, events) into a new directory; `launch::snapshot` does
//! the work.

use crate::output;
use launch::config::DEFAULT_STATE_ROOT;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Container id.
    pub id: String,
    /// A new directory (refused if it exists): upper.tar, processes.json, imgsign.json,
    /// events.json, snapshot.json.
    pub dest: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Directory of container state.
    #[arg(long, default_value = DEFAULT_STATE_ROOT)]
    pub state_root: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let summary = launch::snapshot::snapshot(&args.state_root, &args.id, &args.dest)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(output::EXIT_OK);
    }
    println!(
        "snapshot of {} ({}) in {}: {} process(es), {} upper entries, {} events ({})",
        summary.id,
        summary.status,
        summary.dest.display(),
        summary.processes,
        summary.upper_entries,
        summary.events,
        summary.events_note
    );
    if let Some(warning) = &summary.upper_warning {
        eprintln!("warning: the upper layer changed while read (freeze the container first): {warning}");
    }
    Ok(output::EXIT_OK)
}
