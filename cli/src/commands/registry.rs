//! How to reach a registry, for every command that takes an image reference: TLS certificates,
//! plain HTTP to loopback, auth files or a user with a password from the environment, time-out.
//! The flags only matter for `docker://` images. `--offline` reads registry images from the
//! local store only (`imgsign pull` puts them there): nothing touches the network.

use std::path::PathBuf;
use std::time::Duration;
use verifier_core::source::{ImageRef, RegistryAccess, RegistryCredentials as Credentials};

#[derive(clap::Args, Clone)]
pub struct RegistryArgs {
    /// Plain HTTP to a registry on loopback (localhost, 127.0.0.0/8, [::1]); refused for any other host.
    #[arg(long)]
    pub insecure: bool,
    /// Directory of extra CA certificates (*.crt, PEM) trusted for the registry's TLS.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Registry auth file (default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Registry user name (with --registry-password-env; takes precedence over the auth files).
    #[arg(long, requires = "registry_password_env")]
    pub registry_user: Option<String>,
    /// Environment variable holding the registry password of --registry-user (never a flag value:
    /// command lines are visible to other users).
    #[arg(long, requires = "registry_user")]
    pub registry_password_env: Option<String>,
    /// Connect and read time-out of each registry request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub registry_timeout: Duration,
    /// Nothing from the network: a docker:// image is read from the local store (see `imgsign
    /// pull`), and is an error if it is not there; commands that must reach a registry refuse.
    #[arg(long)]
    pub offline: bool,
}

impl RegistryArgs {
    pub fn access(&self) -> anyhow::Result<RegistryAccess> {
        let credentials = match (&self.registry_user, &self.registry_password_env) {
            (Some(user), Some(var)) => {
                let password = std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("--registry-password-env {var}: the variable is not set (or not UTF-8)")
                })?;
                Some(Credentials::new(user.clone(), password))
            }
            _ => None,
        };
        Ok(RegistryAccess {
            insecure: self.insecure,
            cert_dir: self.cert_dir.clone(),
            auth_files: self.authfile.iter().cloned().collect(),
            credentials,
            timeout: self.registry_timeout,
        })
    }

    /// `image` parsed, with the platform and this registry access applied; a registry image is
    /// refused with `--offline` (the caller would reach the registry).
    pub fn image(&self, image: &str, platform: &verifier_core::image::Platform) -> anyhow::Result<ImageRef> {
        let image = image.parse::<ImageRef>()?.with_platform(platform.clone());
        Ok(match image {
            ImageRef::Registry { .. } if self.offline => anyhow::bail!(
                "--offline: {image} is in a registry and this command would reach it: drop --offline, or give an OCI layout (oci:DIR[:TAG])"
            ),
            ImageRef::Registry { .. } => image.with_registry_access(self.access()?),
            other => other,
        })
    }

    /// [`Self::image`], except that with `--offline` a registry image is the one the store at
    /// `store` holds under that reference (an error naming it when it was never pulled).
    pub fn image_or_stored(
        &self,
        image: &str,
        platform: &verifier_core::image::Platform,
        store: &std::path::Path,
    ) -> anyhow::Result<ImageRef> {
        if !self.offline {
            return self.image(image, platform);
        }
        let image = image.parse::<ImageRef>()?.with_platform(platform.clone());
        Ok(store::blobs::offline(store, &image)?)
    }
}
