//! What every command that checks a signed image is given, in one place: the image, the platform
//! chosen in an index, the bundles and the trust store (`verify`, `run`), and how they are read.

use keys::TrustStore;
use std::path::PathBuf;
use verifier_core::bundle::CheckedBundle;
use verifier_core::source::ImageRef;
use verifier_core::verify::read_bundles;

#[derive(clap::Args)]
pub struct SignedImageArgs {
    /// Image: oci:DIR[:TAG], docker-archive:FILE, dir:PATH or docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]
    /// (`run` needs layers: not dir:).
    pub image: String,
    /// Platform chosen when an OCI index lists several: OS/ARCH[/VARIANT].
    #[arg(long, default_value = "linux/amd64")]
    pub platform: verifier_core::image::Platform,
    /// Bundle file (repeat to pool signatures from several bundles of the same statement).
    /// Without one, the bundles attached to a docker:// image (OCI referrers) or listed in an
    /// oci: layout (as `imgsign copy` writes them) are discovered.
    #[arg(long = "bundle")]
    pub bundles: Vec<PathBuf>,
    /// Trust store directory (see `imgsign trust`).
    #[arg(long)]
    pub trust: PathBuf,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

impl SignedImageArgs {
    /// The image reference (with the platform), the trust store and the bundles, each read and
    /// checked; the first that cannot be is the error. With `--offline`, a registry image and its
    /// bundles come from the store at `store` (see `imgsign pull`).
    pub fn open(&self, store: &std::path::Path) -> anyhow::Result<(ImageRef, TrustStore, Vec<CheckedBundle>)> {
        let image = self.registry.image_or_stored(&self.image, &self.platform, store)?;
        let trust = TrustStore::open(&self.trust)?;
        let bundles = if self.bundles.is_empty() { discover(&image, &trust)? } else { read_bundles(&self.bundles)? };
        Ok((image, trust, bundles))
    }
}

/// The bundles attached to a registry image that the trust store accepts (one statement's);
/// if none does, one statement's bundles anyway, so that verify reports why they fail.
fn discover(image: &ImageRef, trust: &TrustStore) -> anyhow::Result<Vec<CheckedBundle>> {
    if !matches!(image, ImageRef::Registry { .. } | ImageRef::Oci { .. }) {
        anyhow::bail!(
            "give --bundle: bundles are discovered only for registry images (docker://...) and OCI layouts (oci:DIR:TAG)"
        );
    }
    let found = verifier_core::referrers::discover_bundles(image)?;
    for (digest, reason) in &found.rejected {
        eprintln!("imgsign: ignoring referrer {digest} of {image}: not a usable bundle: {reason}");
    }
    if found.bundles.is_empty() {
        anyhow::bail!(
            "no signed manifest is attached to {image} (manifest {}): give --bundle, push one with `imgsign sign --push`, or copy the image with its bundles (`imgsign copy`)",
            found.subject
        );
    }
    Ok(verifier_core::referrers::choose(&found.bundles, found.subject, trust).unwrap_or_else(|| {
        let first = found.bundles[0].payload().digest();
        found.bundles.iter().filter(|b| b.payload().digest() == first).cloned().collect()
    }))
}
