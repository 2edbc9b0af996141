//! Signing: scan the image, build the statement, and for every key a Sigstore bundle holding a
//! DSSE envelope with that key's signature. One signature per bundle is what the Sigstore bundle
//! format allows (independent clients refuse more); verifiers pool the bundles of one statement.

use crate::bundle::Bundle;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::progress::Progress;
use crate::source::{scan, ImageIdentity, ImageRef, SourceError};
use crate::statement::Statement;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("reading image {image}")]
    Source {
        image: String,
        #[source]
        source: SourceError,
    },
    #[error("no signing key given")]
    NoKeys,
    #[error("the same key ({0}) is given twice")]
    DuplicateKey(String),
}

pub struct SignOptions {
    /// Image name for rollback protection; the source's default name when `None`.
    pub name: Option<String>,
    pub version: u64,
    pub expires_in: Duration,
    pub now: SystemTime,
}

pub struct Signed {
    /// One bundle per key, in the order of the keys, all over the same statement.
    pub bundles: Vec<Bundle>,
    pub statement: Statement,
    pub identity: ImageIdentity,
}

/// Signs the manifest of `image` with every key in `keys` (one bundle per key).
pub fn sign(
    image: &ImageRef,
    keys: &[&keys::SigningKey],
    options: &SignOptions,
    progress: Arc<dyn Progress>,
) -> Result<Signed, SignError> {
    check_keys(keys)?;
    prepare(image, options, progress)?.sign(keys)
}

/// A scanned image's statement, ready to be signed.
pub struct Prepared {
    pub statement: Statement,
    pub identity: ImageIdentity,
}

/// Scans `image` and builds its statement. Needs no key, so keys can be decrypted meanwhile.
pub fn prepare(image: &ImageRef, options: &SignOptions, progress: Arc<dyn Progress>) -> Result<Prepared, SignError> {
    let scanned = scan(image, progress).map_err(|source| SignError::Source { image: image.to_string(), source })?;
    let name = options.name.clone().unwrap_or_else(|| scanned.identity.default_name.clone());
    let statement =
        Statement::new(&scanned.identity, scanned.files, name, options.version, options.now + options.expires_in);
    Ok(Prepared { statement, identity: scanned.identity })
}

impl Prepared {
    /// One bundle per key over the same statement bytes.
    pub fn sign(self, keys: &[&keys::SigningKey]) -> Result<Signed, SignError> {
        check_keys(keys)?;
        let payload = self.statement.to_bytes();
        let bundles = keys
            .iter()
            .map(|key| {
                Bundle::new(
                    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &[*key]),
                    key.public_key().key_id().to_string(),
                )
            })
            .collect();
        Ok(Signed { bundles, statement: self.statement, identity: self.identity })
    }
}

/// At least one key, and no key twice.
fn check_keys(keys: &[&keys::SigningKey]) -> Result<(), SignError> {
    if keys.is_empty() {
        return Err(SignError::NoKeys);
    }
    let mut ids: Vec<String> = keys.iter().map(|k| k.public_key().key_id().to_string()).collect();
    ids.sort();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(pair) => Err(SignError::DuplicateKey(pair[0].clone())),
        None => Ok(()),
    }
}
