//! `imgsign verify`: check bundle signatures against a trust store, then the image against the
//! signed manifest. Exit 0 verified, 1 verification failed, 2 bad usage or unreadable input.

use crate::output;
use std::process::ExitCode;
use std::time::SystemTime;
use verifier_core::manifest::Difference;
use verifier_core::verify::{verify, VerifyOptions, VerifyReport};

/// Differences listed in human output before "... and N more".
const MAX_LISTED: usize = 50;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub signed: super::signed::SignedImageArgs,
    /// Do not record the accepted version in the trust store.
    #[arg(long)]
    pub no_record: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The store --offline reads registry images from.
    #[command(flatten)]
    pub store: super::images::StoreArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (image, mut trust, bundles) = args.signed.open(&args.store.dir())?;
    let options = VerifyOptions { now: SystemTime::now(), record_version: !args.no_record };
    let report = verify(&image, &bundles, &mut trust, &options, output::progress())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(if report.verified { ExitCode::SUCCESS } else { output::exit_failed() })
}

fn print_human(report: &VerifyReport) {
    for check in &report.checks {
        println!("{} {:<16} {}", if check.ok { "ok  " } else { "FAIL" }, check.name, check.detail);
    }
    for difference in report.differences.iter().take(MAX_LISTED) {
        match difference {
            Difference::Missing { path } => println!("  missing  {path}"),
            Difference::Extra { path } => println!("  extra    {path}"),
            Difference::Changed { path, fields } => {
                let what: Vec<String> =
                    fields.iter().map(|f| format!("{}: {} -> {}", f.field, f.expected, f.actual)).collect();
                println!("  changed  {path} ({})", what.join(", "));
            }
        }
    }
    if report.differences.len() > MAX_LISTED {
        println!("  ... and {} more", report.differences.len() - MAX_LISTED);
    }
    if report.verified {
        println!(
            "verified {} ({:?} version {}, {} files, signed by {})",
            report.image,
            report.name.as_deref().unwrap_or(""),
            report.version.unwrap_or(0),
            report.files_in_image,
            report.signers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
    } else {
        println!("verification FAILED for {}", report.image);
    }
}
