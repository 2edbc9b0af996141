//! Signing: scan the image, build the statement, wrap it in a DSSE envelope signed by every key,
//! and put that in a Sigstore bundle.

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
    pub bundle: Bundle,
    pub statement: Statement,
    pub identity: ImageIdentity,
}

/// Signs the manifest of `image` with every key in `keys` (one DSSE signature per key).
pub fn sign(
    image: &ImageRef,
    keys: &[&keys::SigningKey],
    options: &SignOptions,
    progress: Arc<dyn Progress>,
) -> Result<Signed, SignError> {
    let first = keys.first().ok_or(SignError::NoKeys)?;
    let mut ids: Vec<String> = keys.iter().map(|k| k.public_key().key_id().to_string()).collect();
    ids.sort();
    if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(SignError::DuplicateKey(pair[0].clone()));
    }
    let scanned = scan(image, progress).map_err(|source| SignError::Source { image: image.to_string(), source })?;
    let name = options.name.clone().unwrap_or_else(|| scanned.identity.default_name.clone());
    let statement = Statement::new(&scanned.identity, scanned.files, name, options.version, options.now + options.expires_in);
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement.to_bytes(), keys);
    let bundle = Bundle::new(envelope, first.public_key().key_id().to_string());
    Ok(Signed { bundle, statement, identity: scanned.identity })
}
