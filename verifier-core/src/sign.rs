//! Signing: scan the image, write its statement to a temporary file entry by entry, and for every
//! key a Sigstore bundle holding a DSSE envelope with that key's signature. One signature per
//! bundle is what the Sigstore bundle format allows (independent clients refuse more); verifiers
//! pool the bundles of one statement. Nothing here holds the statement's bytes in memory: the
//! signature is computed over the file (read twice, as Ed25519 needs) and each bundle encodes it
//! in chunks, so peak memory is the scanned file list.

use crate::bundle::{BundleError, BundleSignature, CheckedBundle};
use crate::dsse::{pae_header, IN_TOTO_PAYLOAD_TYPE};
use crate::payload::{Payload, PayloadError};
use crate::progress::Progress;
use crate::source::{scan, ImageIdentity, ImageRef, SourceError};
use crate::statement::{Statement, StatementHeader};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("reading image {image}")]
    Source {
        image: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("no signing key given")]
    NoKeys,
    #[error("the same key ({0}) is given twice")]
    DuplicateKey(String),
    /// The statement could not be written to (or read back from) its temporary file.
    #[error("writing the statement")]
    Payload(#[source] PayloadError),
    #[error("give one output per key ({keys} keys, {outs} outputs)")]
    Outputs { keys: usize, outs: usize },
    /// A bundle could not be written (the error names the file).
    #[error("writing the bundles")]
    Write(#[source] BundleError),
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
    pub bundles: Vec<CheckedBundle>,
    /// What was signed, without its file list.
    pub statement: StatementHeader,
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
    let prepared = prepare(image, options, progress)?;
    let bundles = prepared.sign(keys)?;
    Ok(Signed { bundles, statement: prepared.statement, identity: prepared.identity })
}

/// A scanned image's statement, written to a temporary file and ready to be signed.
pub struct Prepared {
    payload: Arc<Payload>,
    /// The statement without its file list.
    pub statement: StatementHeader,
    pub identity: ImageIdentity,
}

/// Scans `image` and writes its statement. Needs no key, so keys can be decrypted meanwhile.
pub fn prepare(image: &ImageRef, options: &SignOptions, progress: Arc<dyn Progress>) -> Result<Prepared, SignError> {
    let scanned = scan(image, progress)
        .map_err(|source| SignError::Source { image: image.to_string(), source: Box::new(source) })?;
    let name = options.name.clone().unwrap_or_else(|| scanned.identity.default_name.clone());
    let statement =
        Statement::new(&scanned.identity, scanned.files, name, options.version, options.now + options.expires_in);
    Prepared::new(statement, scanned.identity)
}

impl Prepared {
    /// Writes `statement` (consumed: its file list is freed once written).
    pub fn new(statement: Statement, identity: ImageIdentity) -> Result<Self, SignError> {
        let mut writer = Payload::writer().map_err(SignError::Payload)?;
        statement.write_to(&mut writer).map_err(|e| SignError::Payload(PayloadError::Io(e)))?;
        let payload = writer.finish().map_err(SignError::Payload)?;
        let format = statement.format();
        let predicate = statement.predicate;
        let header = StatementHeader {
            subject: statement.subject,
            format,
            expires_at: humantime::parse_rfc3339(&predicate.expires).expect("formatted by Statement::new"),
            name: predicate.name,
            version: predicate.version,
            expires: predicate.expires,
            source: predicate.source,
            files: predicate.files.len(),
        };
        Ok(Prepared { payload: Arc::new(payload), statement: header, identity })
    }

    /// One bundle per key over the same statement bytes.
    pub fn sign(&self, keys: &[&keys::SigningKey]) -> Result<Vec<CheckedBundle>, SignError> {
        check_keys(keys)?;
        let header = pae_header(IN_TOTO_PAYLOAD_TYPE, self.payload.len());
        keys.iter()
            .map(|key| {
                let sig = key
                    .sign_streaming(|sink| {
                        sink(&header);
                        self.payload.for_each_chunk(|chunk| sink(chunk))
                    })
                    .map_err(|e| SignError::Payload(PayloadError::Io(e)))?;
                let keyid = key.public_key().key_id().to_string();
                let signature = BundleSignature { sig: sig.to_vec(), keyid: keyid.clone() };
                Ok(CheckedBundle::new(self.payload.clone(), keyid, vec![signature]))
            })
            .collect()
    }

    /// Signs with every key and writes each bundle to its path (same order), each replaced
    /// atomically. Returns the bundles.
    pub fn sign_to(&self, keys: &[&keys::SigningKey], outs: &[&Path]) -> Result<Vec<CheckedBundle>, SignError> {
        if outs.len() != keys.len() {
            return Err(SignError::Outputs { keys: keys.len(), outs: outs.len() });
        }
        let bundles = self.sign(keys)?;
        for (bundle, out) in bundles.iter().zip(outs) {
            bundle.write_file(out).map_err(SignError::Write)?;
        }
        Ok(bundles)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;
    use crate::dsse::pae;
    use crate::manifest::{FileEntry, FileType};
    use crate::source::{LayerDigests, SourceKind};
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use serde::Serialize;

    /// The bundle as the in-memory signer wrote it before statements were streamed.
    fn old_bundle_json(statement: &Statement, key: &keys::SigningKey) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Bundle {
            media_type: String,
            verification_material: Material,
            dsse_envelope: Envelope,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Material {
            public_key: Hint,
            tlog_entries: Vec<serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Hint {
            hint: String,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope {
            payload: String,
            payload_type: String,
            signatures: Vec<Sig>,
        }
        #[derive(Serialize)]
        struct Sig {
            sig: String,
            keyid: String,
        }
        let payload = statement.to_bytes();
        let id = key.public_key().key_id().to_string();
        let bundle = Bundle {
            media_type: crate::bundle::BUNDLE_MEDIA_TYPE.into(),
            verification_material: Material { public_key: Hint { hint: id.clone() }, tlog_entries: vec![] },
            dsse_envelope: Envelope {
                payload: B64.encode(&payload),
                payload_type: IN_TOTO_PAYLOAD_TYPE.into(),
                signatures: vec![Sig { sig: B64.encode(key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload))), keyid: id }],
            },
        };
        let mut out = serde_json::to_vec_pretty(&bundle).unwrap();
        out.push(b'\n');
        out
    }

    fn statement(files: usize) -> (Statement, ImageIdentity) {
        let identity = ImageIdentity {
            kind: SourceKind::Oci,
            default_name: "golden".into(),
            manifest_digest: Some(Sha256Digest::of(b"manifest")),
            config_digest: Some(Sha256Digest::of(b"config")),
            layers: vec![LayerDigests { digest: Sha256Digest::of(b"blob"), diff_id: Sha256Digest::of(b"tar") }],
        };
        let entries = (0..files)
            .map(|i| FileEntry {
                path: format!("/d{:03}/f{:05}", i / 1000, i),
                kind: if i % 7 == 0 { FileType::Symlink } else { FileType::File },
                mode: if i % 5 == 0 { 0o4755 } else { 0o644 },
                uid: 0,
                gid: (i % 3) as u64,
                size: (i % 7 != 0).then_some(i as u64),
                sha256: (i % 7 != 0).then(|| Sha256Digest::of(&i.to_le_bytes())),
                code: (i % 7 == 1).then_some(crate::code::CodeKind::Elf),
                link_target: (i % 7 == 0).then(|| "../x".to_string()),
                dev_major: None,
                dev_minor: None,
                xattrs: if i == 3 {
                    [("security.capability".to_string(), "AQIDBA==".to_string())].into()
                } else {
                    Default::default()
                },
            })
            .collect();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        (Statement::new(&identity, entries, "golden".into(), 7, at), identity)
    }

    #[test]
    fn streamed_bundle_is_byte_identical_to_the_in_memory_one() {
        let key = keys::SigningKey::from_seed(&[7; 32]);
        // Large enough for several base64 and read chunks.
        for files in [0, 1, 5_000] {
            let (statement, identity) = statement(files);
            let old = old_bundle_json(&statement, &key);
            let prepared = Prepared::new(statement, identity).unwrap();
            let new = prepared.sign(&[&key]).unwrap().remove(0).to_json();
            assert!(old == new, "bundles of {files} files differ");
            // And it reads back to the same statement.
            let read = CheckedBundle::parse(&new).unwrap();
            assert_eq!(Statement::parse(&read.payload().to_vec().unwrap()).unwrap(), self::statement(files).0);
        }
    }
}
