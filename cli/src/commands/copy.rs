//! `imgsign copy`: an image and the bundles attached to it between registries and OCI layouts
//! (registry to layout, layout to registry, registry to registry), for nodes fed without a
//! network (`verify`, `run` read `oci:DIR:TAG` and find the bundles in it). The registry flags
//! apply to both ends. Exit 0 copied, 2 anything refused or unreadable (a layout gets no
//! half-written blob and no tag for a failed copy).

use std::process::ExitCode;
use verifier_core::copy::copy;

#[derive(clap::Args)]
pub struct Args {
    /// Source: docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX] or oci:DIR[:TAG].
    pub src: String,
    /// Destination: oci:DIR:TAG (created if missing; the tag's old entry is replaced) or
    /// docker://HOST[:PORT]/REPO:TAG.
    pub dst: String,
    /// Platform chosen when the source is an index: OS/ARCH[/VARIANT].
    #[arg(long, default_value = "linux/amd64")]
    pub platform: verifier_core::image::Platform,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let src = args.registry.image(&args.src, &args.platform)?;
    let dst = args.registry.image(&args.dst, &args.platform)?;
    let copied = copy(&src, &dst)?;
    for (digest, reason) in &copied.skipped {
        eprintln!("imgsign: left behind referrer {digest} of {src}: {reason}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&copied)?);
    } else {
        println!(
            "copied {src} to {dst} (manifest {}; {} blobs written, {} already there; {} bundles)",
            copied.manifest_digest,
            copied.blobs_written,
            copied.blobs_present,
            copied.bundles.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
