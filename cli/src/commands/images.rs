//! `imgsign images`, `imgsign rmi`, `imgsign gc`: the local image store (the `store` crate) as
//! `imgsign run` fills it. The store is `--store DIR`, else `$IMGSIGN_STORE`, else
//! `/var/lib/imgsign`. Exit 0 done; 1 when an image given to `rmi` was not removed; 2 bad usage
//! or an unreadable store (including a store locked by another process).

use crate::output;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use store::{Store, StoreError};

/// The store directory flag shared by the store commands.
#[derive(clap::Args)]
pub struct StoreArg {
    /// Image store directory (default: $IMGSIGN_STORE, else /var/lib/imgsign).
    #[arg(long = "store", value_name = "DIR")]
    pub store: Option<PathBuf>,
}

impl StoreArg {
    /// The directory the flag, the environment or the default names.
    pub fn dir(&self) -> PathBuf {
        self.store
            .clone()
            .or_else(|| std::env::var_os("IMGSIGN_STORE").filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(store::DEFAULT_ROOT))
    }

    pub fn open(&self) -> Result<Store, StoreError> {
        Store::open(self.dir())
    }
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Print the list as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct RmiArgs {
    /// Stored images: a digest (sha256:HEX or a unique hex prefix) or the reference it was
    /// stored from.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Print what was freed as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn images(args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let list = args.store.open()?.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(output::EXIT_OK);
    }
    println!(
        "{:<19} {:<8} {:>7} {:>7} {:>10}  {:<20}  REFERENCE",
        "DIGEST", "NAME", "VERSION", "FILES", "SIZE", "STORED"
    );
    for image in &list {
        let r = &image.record;
        let size = r.content.bytes_written + r.content.bytes_reused;
        println!(
            "{:<19} {:<8} {:>7} {:>7} {:>10}  {:<20}  {}",
            &r.digest.to_string()[..19],
            r.name,
            r.version,
            r.files,
            human_bytes(size),
            r.stored_at,
            r.reference
        );
    }
    Ok(output::EXIT_OK)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RmiOutcome {
    image: String,
    removed: Option<store::RemovedImage>,
    error: Option<String>,
}

pub fn rmi(args: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut outcomes = Vec::new();
    for image in &args.images {
        let outcome = match store.remove(image) {
            Ok(removed) => RmiOutcome { image: image.clone(), removed: Some(removed), error: None },
            // The lock and the file system are not the image's fault: stop.
            Err(e @ (StoreError::Locked { .. } | StoreError::Io { .. })) => return Err(e.into()),
            Err(e) => {
                RmiOutcome { image: image.clone(), removed: None, error: Some(verifier_core::verify::error_chain(&e)) }
            }
        };
        outcomes.push(outcome);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        for o in &outcomes {
            match (&o.removed, &o.error) {
                (Some(r), _) => println!("removed {} ({})", r.digest, r.reference),
                (None, Some(e)) => eprintln!("imgsign: rmi {}: {e}", o.image),
                (None, None) => {}
            }
        }
        if outcomes.iter().any(|o| o.removed.is_some()) {
            println!("objects no image uses any more are freed by `imgsign gc`");
        }
    }
    Ok(if outcomes.iter().all(|o| o.removed.is_some()) { output::EXIT_OK } else { output::exit_failed() })
}

pub fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let stats = args.store.open()?.gc()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!(
            "removed {} object(s), {} freed; {} object(s) in use; {} stale temporar{} removed",
            stats.objects_removed,
            human_bytes(stats.bytes_freed),
            stats.objects_kept,
            stats.temporaries_removed,
            if stats.temporaries_removed == 1 { "y" } else { "ies" }
        );
    }
    Ok(output::EXIT_OK)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
