//! `imgsign copy`: an image and the bundles attached to it between registries and OCI layouts
//! (registry to layout, layout to registry, registry to registry), for nodes fed without a
//! network (`verify`, `run` read `oci:DIR:TAG` and find the bundles in it). The registry flags
//! apply to both ends. Exit 0 copied, 2 anything refused or unreadable (a layout gets no
//! half-written blob and no tag for a failed copy).

use std::process::ExitCode;
use verifier_core::copy::copy;
use verifier_core::source::ImageRef;

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

#[derive(clap::Args)]
pub struct PullArgs {
    /// docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]
    pub image: String,
    /// Platform chosen when the image is an index: OS/ARCH[/VARIANT].
    #[arg(long, default_value = "linux/amd64")]
    pub platform: verifier_core::image::Platform,
    /// Layers transferred at once.
    #[arg(long, default_value_t = store::pull::DEFAULT_JOBS)]
    pub jobs: usize,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: super::images::StoreArg,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

/// `imgsign pull`: a registry image's blobs and attached bundles into the store, not unpacked
/// (`store::pull`), for `verify --offline` and `run --offline`. Exit 0 pulled (or already
/// there), 2 anything refused or unreadable (nothing partial is left in the store).
pub fn pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let image = args.registry.image(&args.image, &args.platform)?;
    if !matches!(image, ImageRef::Registry { .. }) {
        anyhow::bail!("{image}: pull reads a registry image (docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX])");
    }
    let root = args.store.dir();
    // The store's directories (mode 0700) before its layout is made inside it.
    store::Store::open(&root)?;
    let pulled = store::pull::pull(&root, &image, args.jobs)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&pulled)?);
    } else if pulled.already_stored {
        println!("{image}: already in the store ({})", pulled.digest);
    } else {
        println!(
            "pulled {image} ({}; {} blobs, {} bytes fetched, {} already there; {} bundles)",
            pulled.digest, pulled.blobs_fetched, pulled.bytes_fetched, pulled.blobs_present, pulled.bundles
        );
    }
    Ok(ExitCode::SUCCESS)
}
