//! How to reach a registry: the TLS policy, where credentials come from, the time-out. Plain
//! data, so that an image reference can carry it without the network half of the crate.

use crate::auth::Credentials;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach a registry: TLS policy, credentials, time-outs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Plain HTTP; refused unless the host is loopback.
    pub insecure: bool,
    /// A directory of extra CA certificates (`*.crt`, PEM), as skopeo's `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// Auth files to search; empty means [`auth::default_auth_files`].
    pub auth_files: Vec<PathBuf>,
    /// Credentials given directly (they take precedence over the auth files).
    pub credentials: Option<Credentials>,
    /// Connect and read time-out of each request.
    pub timeout: Duration,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            insecure: false,
            cert_dir: None,
            auth_files: Vec::new(),
            credentials: None,
            timeout: Duration::from_secs(30),
        }
    }
}
