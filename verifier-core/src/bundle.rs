//! Sigstore bundles v0.3 holding a DSSE envelope, verified with a public key (no certificate,
//! no transparency log): the form `@sigstore/verify` accepts with a public-key trust root.

use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Largest bundle read (a manifest of 100k files is around 20 MB of JSON).
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
    #[error("not a Sigstore bundle: {0}")]
    NotBundle(String),
    #[error("unsupported bundle media type {0:?} (expected {BUNDLE_MEDIA_TYPE:?})")]
    MediaType(String),
    #[error("bundle has no DSSE envelope (imgsign bundles sign an in-toto statement)")]
    NoEnvelope,
    #[error("bundle payload type is {0:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}")]
    PayloadType(String),
    #[error("bundle envelope has no signatures")]
    NoSignatures,
    #[error("bundle is {0} bytes, more than the {MAX_BUNDLE_BYTES} accepted")]
    TooLarge(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Envelope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    pub public_key: PublicKeyHint,
    #[serde(default)]
    pub tlog_entries: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyHint {
    pub hint: String,
}

impl Bundle {
    pub fn new(envelope: Envelope, key_hint: String) -> Self {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.into(),
            verification_material: VerificationMaterial {
                public_key: PublicKeyHint { hint: key_hint },
                tlog_entries: Vec::new(),
                timestamp_verification_data: None,
            },
            dsse_envelope: envelope,
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("bundle serialises");
        out.push(b'\n');
        out
    }

    /// Parses a bundle, naming the first thing that makes it unacceptable.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge(bytes.len()));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(BundleError::Json)?;
        let object =
            value.as_object().ok_or_else(|| BundleError::NotBundle("top level is not a JSON object".into()))?;
        let media_type = object
            .get("mediaType")
            .and_then(Value::as_str)
            .ok_or_else(|| BundleError::NotBundle("no mediaType".into()))?;
        if media_type != BUNDLE_MEDIA_TYPE && media_type != "application/vnd.dev.sigstore.bundle+json;version=0.3" {
            return Err(BundleError::MediaType(media_type.into()));
        }
        if !object.contains_key("dsseEnvelope") {
            return Err(BundleError::NoEnvelope);
        }
        if !object.get("verificationMaterial").and_then(|m| m.get("publicKey")).is_some_and(Value::is_object) {
            return Err(BundleError::NotBundle("verificationMaterial has no publicKey".into()));
        }
        let bundle: Bundle = serde_json::from_value(value).map_err(BundleError::Json)?;
        if bundle.dsse_envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(BundleError::PayloadType(bundle.dsse_envelope.payload_type));
        }
        if bundle.dsse_envelope.signatures.is_empty() {
            return Err(BundleError::NoSignatures);
        }
        Ok(bundle)
    }
}
