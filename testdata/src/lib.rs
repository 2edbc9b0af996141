//! Test inputs for imgsign: builders of small real images (made with the real tools `umoci` and
//! `skopeo`, never committed) and generators of hostile ones (tar, PAX and gzip bytes written
//! here, wrapped in otherwise valid OCI layouts so that the error comes from the layer content).
//!
//! Everything is generated at test time into a directory the caller owns; nothing large is
//! stored in the repository.

pub mod hostile;
pub mod keys;
pub mod oci;
pub mod real;
pub mod tar;
pub mod tools;

use sha2::{Digest as _, Sha256};
use std::io::Write as _;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`, the way OCI descriptors name blobs.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Gzip-compresses `bytes` (deterministic: no file name, zero mtime).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("`{tool}` is not installed (or not on PATH): install the Debian package `{package}` to run these tests")]
    ToolMissing { tool: &'static str, package: &'static str },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fixture check failed: {0}")]
    Check(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FixtureError {
    let what = what.into();
    move |source| FixtureError::Io { what, source }
}
