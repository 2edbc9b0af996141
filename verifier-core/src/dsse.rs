//! DSSE envelopes (Dead Simple Signing Envelope): the signature covers the pre-authentication
//! encoding of payload type and payload, never the JSON around them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    #[error("envelope payload is not valid base64")]
    Payload(#[source] base64::DecodeError),
    #[error("signature {index} is not valid base64")]
    Signature {
        index: usize,
        #[source]
        source: base64::DecodeError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub sig: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
}

/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` with every key (one signature each).
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&keys::SigningKey]) -> Self {
        let message = pae(payload_type, payload);
        let signatures = keys
            .iter()
            .map(|k| Signature { sig: B64.encode(k.sign(&message)), keyid: k.public_key().key_id().to_string() })
            .collect();
        Envelope { payload: B64.encode(payload), payload_type: payload_type.into(), signatures }
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        B64.decode(&self.payload).map_err(DsseError::Payload)
    }

    /// The bytes every signature must cover.
    pub fn signed_message(&self) -> Result<Vec<u8>, DsseError> {
        Ok(pae(&self.payload_type, &self.payload_bytes()?))
    }

    pub fn signature_bytes(&self, index: usize) -> Result<Vec<u8>, DsseError> {
        B64.decode(&self.signatures[index].sig).map_err(|source| DsseError::Signature { index, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
