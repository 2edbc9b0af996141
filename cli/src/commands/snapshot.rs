//! `imgsign snapshot ID DEST`: forensics of a running or frozen container (its writable layer,
//! process list with exe digests, record, recent enforcement events) into a new directory;
//! `launch::snapshot` does the work. The events come from the enforcement daemon, asked over
//! its control socket for the records of the container's scope (`imgsign run --enforce`).

use crate::output;
use enforce::control::{self, Request, DEFAULT_SOCKET};
use launch::config::DEFAULT_STATE_ROOT;
use launch::snapshot::Events;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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
    /// The enforcement daemon's control socket (asked for the container's events).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let events = events_of(&args.state_root, &args.id, &args.control_socket);
    let summary = launch::snapshot::snapshot(&args.state_root, &args.id, &args.dest, &events)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(output::EXIT_OK);
    }
    let note = summary.events_note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    println!(
        "snapshot of {} ({}) in {}: {} process(es), {} upper entries, {} events{note}",
        summary.id,
        summary.status,
        summary.dest.display(),
        summary.processes,
        summary.upper_entries,
        summary.events,
    );
    if let Some(warning) = &summary.upper_warning {
        eprintln!("warning: the upper layer changed while read (freeze the container first): {warning}");
    }
    Ok(output::EXIT_OK)
}

/// The recent records of the container's scope, or why there are none. A snapshot is still
/// worth taking without them: the reason goes into its summary.
fn events_of(state_root: &Path, id: &str, socket: &Path) -> Events {
    let scope = match launch::state::find(state_root, id) {
        Ok(Some(record)) => record.scope,
        // The snapshot itself reports a missing or unreadable container.
        Ok(None) | Err(_) => None,
    };
    let Some(scope) = scope else {
        return Events::Unavailable("the container was not run with --enforce: it has no scope".into());
    };
    match control::call(socket, &Request::Events { name: scope.clone() }, Duration::from_secs(10)) {
        Ok(reply) if reply.ok => Events::Recorded(reply.events),
        Ok(reply) => Events::Unavailable(format!(
            "the enforcement daemon has no events of scope {scope}: {}",
            reply.error.unwrap_or_default()
        )),
        Err(e) => Events::Unavailable(format!("{:#}", anyhow::Error::new(e))),
    }
}
