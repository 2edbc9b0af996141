//! The in-toto Statement v1 that imgsign signs: its subject is the image (manifest digest for OCI
//! images, config digest for docker archives, manifest digest of the file list for `dir:` trees)
//! and its predicate is the per-file manifest with the name, version and expiry that trust
//! policy checks.

use crate::digest::Sha256Digest;
use crate::manifest::{is_canonical_order, FileEntry};
use crate::source::{ImageIdentity, LayerDigests, SourceKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::SystemTime;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://imgsign.dev/file-manifest/v1";

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("statement is not valid JSON of the expected shape")]
    Json(#[source] serde_json::Error),
    #[error("statement _type is {0:?}, expected {STATEMENT_TYPE:?}")]
    Type(String),
    #[error("predicateType is {0:?}, expected {PREDICATE_TYPE:?}")]
    PredicateType(String),
    #[error("statement has no subject with a valid sha256 digest")]
    Subject,
    #[error("expiry {0:?} is not an RFC 3339 UTC time")]
    Expiry(String),
    #[error("file list is not sorted by path bytes or has duplicate paths")]
    FileOrder,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: FileManifestPredicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileManifestPredicate {
    /// The image name that rollback protection is keyed on.
    pub name: String,
    /// Monotonic version of this image's signed manifest.
    pub version: u64,
    /// RFC 3339 UTC time after which the signature is no longer accepted.
    pub expires: String,
    pub source: SourceRecord,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceRecord {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerRecord {
    pub digest: String,
    pub diff_id: String,
}

impl From<&LayerDigests> for LayerRecord {
    fn from(l: &LayerDigests) -> Self {
        Self { digest: l.digest.clone(), diff_id: l.diff_id.clone() }
    }
}

/// The digest a `dir:` tree is named by: SHA-256 of its canonical file list.
pub fn file_list_digest(files: &[FileEntry]) -> Sha256Digest {
    Sha256Digest::of(&serde_json::to_vec(files).expect("file entries serialise"))
}

impl Statement {
    /// Builds the statement for a scanned image.
    pub fn new(
        identity: &ImageIdentity,
        files: Vec<FileEntry>,
        name: String,
        version: u64,
        expires: SystemTime,
    ) -> Self {
        let subject_digest =
            identity.manifest_digest.or(identity.config_digest).unwrap_or_else(|| file_list_digest(&files));
        let kind = match identity.kind {
            SourceKind::Oci => "oci",
            SourceKind::DockerArchive => "docker-archive",
            SourceKind::Dir => "dir",
        };
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![Subject {
                name: name.clone(),
                digest: BTreeMap::from([("sha256".into(), subject_digest.hex())]),
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: FileManifestPredicate {
                name,
                version,
                expires: humantime::format_rfc3339_seconds(expires).to_string(),
                source: SourceRecord {
                    kind: kind.into(),
                    manifest_digest: identity.manifest_digest.map(|d| d.oci()),
                    config_digest: identity.config_digest.map(|d| d.oci()),
                    layers: identity.layers.iter().map(LayerRecord::from).collect(),
                },
                files,
            },
        }
    }

    /// Canonical bytes: compact JSON, fields in declaration order, maps sorted.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("statement serialises")
    }

    /// Parses and checks the shape of a statement.
    pub fn parse(bytes: &[u8]) -> Result<Self, StatementError> {
        let statement: Statement = serde_json::from_slice(bytes).map_err(StatementError::Json)?;
        if statement.statement_type != STATEMENT_TYPE {
            return Err(StatementError::Type(statement.statement_type));
        }
        if statement.predicate_type != PREDICATE_TYPE {
            return Err(StatementError::PredicateType(statement.predicate_type));
        }
        statement.subject_digests().next().ok_or(StatementError::Subject)?;
        statement.expires_at()?;
        if !is_canonical_order(&statement.predicate.files) {
            return Err(StatementError::FileOrder);
        }
        Ok(statement)
    }

    /// Every sha256 subject digest that parses.
    pub fn subject_digests(&self) -> impl Iterator<Item = Sha256Digest> + '_ {
        self.subject.iter().filter_map(|s| s.digest.get("sha256")).filter_map(|h| Sha256Digest::parse_hex(h).ok())
    }

    pub fn expires_at(&self) -> Result<SystemTime, StatementError> {
        let text = &self.predicate.expires;
        if !text.ends_with('Z') {
            return Err(StatementError::Expiry(text.clone()));
        }
        humantime::parse_rfc3339(text).map_err(|_| StatementError::Expiry(text.clone()))
    }
}
