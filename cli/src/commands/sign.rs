//! `imgsign sign`: scan an image, sign its per-file manifest, write a Sigstore bundle.

use crate::output;
use keys::{LockedKey, PassphraseSource, SigningKey};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;
use verifier_core::sign::{prepare, SignOptions};
use verifier_core::source::ImageRef;

#[derive(clap::Args)]
pub struct Args {
    /// Image: oci:DIR[:TAG], docker-archive:FILE, dir:PATH or docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX].
    pub image: String,
    /// Platform chosen when an OCI index lists several: OS/ARCH[/VARIANT].
    #[arg(long, default_value = "linux/amd64")]
    pub platform: verifier_core::image::Platform,
    /// Private key file (repeat for several signers).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Where to write the bundle, one per --key in the same order (replaced atomically).
    #[arg(long = "out", short, required = true)]
    pub outs: Vec<PathBuf>,
    /// Image name for rollback protection (default: derived from the source).
    #[arg(long)]
    pub name: Option<String>,
    /// Version of this signed manifest; verifiers refuse versions lower than one they accepted.
    #[arg(long, default_value_t = 1)]
    pub version: u64,
    /// How long the signature stays valid, e.g. 90d, 12h, 1y.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
    /// Read the key passphrase from this environment variable.
    #[arg(long)]
    pub passphrase_env: Option<String>,
    /// Read the key passphrase from this file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Attach the bundles to the docker:// image as OCI referrers (tag schema where the
    /// registry has no referrers API).
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let image: ImageRef = args.registry.image(&args.image, &args.platform)?;
    if args.push && !matches!(image, ImageRef::Registry { .. }) {
        anyhow::bail!("--push needs a registry image (docker://HOST/REPO:TAG), not {image}");
    }
    if args.outs.len() != args.keys.len() {
        anyhow::bail!(
            "give one --out per --key ({} keys, {} outputs): each signer's bundle holds one signature, as Sigstore bundles must",
            args.keys.len(),
            args.outs.len()
        );
    }
    let source = PassphraseSource::choose(args.passphrase_env.as_deref(), args.passphrase_file.as_deref())?;
    // Passphrases are read (and prompted for) here; the slow decryption runs on its own thread
    // while the image is scanned, since the scan does not need the keys.
    let locked = args.keys.iter().map(|path| LockedKey::read(path, &source)).collect::<Result<Vec<_>, _>>()?;
    let unlocking =
        std::thread::spawn(move || locked.iter().map(LockedKey::unlock).collect::<Result<Vec<SigningKey>, _>>());
    let options =
        SignOptions { name: args.name, version: args.version, expires_in: args.expires, now: SystemTime::now() };
    let prepared = prepare(&image, &options, output::progress());
    let keys = unlocking.join().map_err(|_| anyhow::anyhow!("key decryption thread panicked"))??;
    let key_refs: Vec<&SigningKey> = keys.iter().collect();
    let prepared = prepared?;
    let out_refs: Vec<&std::path::Path> = args.outs.iter().map(PathBuf::as_path).collect();
    let bundles = prepared.sign_to(&key_refs, &out_refs)?;
    let statement = &prepared.statement;
    let pushed = match (args.push, statement.subject_digests().next()) {
        (false, _) => Vec::new(),
        (true, Some(subject)) => verifier_core::referrers::push_bundles(&image, subject, &bundles)?,
        (true, None) => anyhow::bail!("{image} has no subject digest to attach bundles to"),
    };
    let pushed_text: Vec<String> = pushed.iter().map(|p| format!("{} ({:?})", p.digest, p.via)).collect();
    let outs: Vec<String> = args.outs.iter().map(|p| p.display().to_string()).collect();
    let subject = statement.subject_digests().next().map(|d| d.oci()).unwrap_or_default();
    let signers: Vec<String> = keys.iter().map(|k| k.public_key().key_id().to_string()).collect();
    if args.json {
        let summary = serde_json::json!({
            "bundles": outs,
            "image": image.to_string(),
            "name": statement.name,
            "version": statement.version,
            "expires": statement.expires,
            "subject": subject,
            "files": statement.files,
            "signers": signers,
            "pushed": pushed.iter().map(|p| serde_json::json!({"digest": p.digest, "via": format!("{:?}", p.via)})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "signed {} ({} files, subject {subject}) as {:?} version {} until {} by {}; bundles: {}",
            image,
            statement.files,
            statement.name,
            statement.version,
            statement.expires,
            signers.join(", "),
            outs.join(", ")
        );
        if !pushed.is_empty() {
            println!("pushed to {image} as referrers: {}", pushed_text.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
