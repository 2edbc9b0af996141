//! How to reach a registry, for every command that takes an image reference: TLS certificates,
//! plain HTTP to loopback, auth files, time-out. The flags only matter for `docker://` images.

use std::path::PathBuf;
use std::time::Duration;
use verifier_core::source::{ImageRef, RegistryAccess};

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
    /// Connect and read time-out of each registry request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub registry_timeout: Duration,
}

impl RegistryArgs {
    pub fn access(&self) -> RegistryAccess {
        RegistryAccess {
            insecure: self.insecure,
            cert_dir: self.cert_dir.clone(),
            auth_files: self.authfile.iter().cloned().collect(),
            credentials: None,
            timeout: self.registry_timeout,
        }
    }

    /// `image` parsed, with the platform and this registry access applied.
    pub fn image(&self, image: &str, platform: &verifier_core::image::Platform) -> anyhow::Result<ImageRef> {
        Ok(image.parse::<ImageRef>()?.with_platform(platform.clone()).with_registry_access(self.access()))
    }
}
