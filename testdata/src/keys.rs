//! Test-only signing keys: fixed seeds (the same key ids every run) and a cheap KDF
//! ([`keys::Kdf::INSECURE_FOR_TESTS`]), so that a test suite can decrypt keys many times
//! quickly. Never use these keys for anything but tests.

use crate::FixtureError;
use sha2::{Digest as _, Sha256};
use std::path::Path;

pub use keys::KeyPairFiles;

/// The signing key named `name` (seed: SHA-256 of `"imgsign test key " + name`).
pub fn test_key(name: &str) -> keys::SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("imgsign test key {name}").as_bytes()).into();
    keys::SigningKey::from_seed(&seed)
}

/// Writes `PREFIX.key` (encrypted with `passphrase`, cheap KDF) and `PREFIX.pub` for the test
/// key `name`.
pub fn write_test_keypair(prefix: &Path, name: &str, passphrase: &[u8]) -> Result<KeyPairFiles, FixtureError> {
    keys::write_keypair(prefix, &test_key(name), passphrase, keys::Kdf::INSECURE_FOR_TESTS)
        .map_err(|e| FixtureError::Check(format!("writing test key pair {}: {e}", prefix.display())))
}
