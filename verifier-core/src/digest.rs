//! SHA-256 digests as OCI writes them (`sha256:<hex>`), and a reader that hashes what passes
//! through it so a blob's digest can be checked in the same pass that consumes it.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("unsupported digest algorithm in {0:?} (only sha256 is accepted)")]
    Algorithm(String),
    #[error("malformed sha256 digest {0:?}")]
    Malformed(String),
}

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse_oci(s: &str) -> Result<Self, DigestError> {
        let hex_part = s.strip_prefix("sha256:").ok_or_else(|| DigestError::Algorithm(s.to_string()))?;
        Self::parse_hex(hex_part).map_err(|_| DigestError::Malformed(s.to_string()))
    }

    /// Parses 64 lowercase hex digits.
    pub fn parse_hex(s: &str) -> Result<Self, DigestError> {
        if s.len() != 64 || s.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::Malformed(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestError::Malformed(s.to_string()))?;
        Ok(Self(out))
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256:<hex>`.
    pub fn oci(&self) -> String {
        format!("sha256:{}", self.hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.oci())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    /// Reads the OCI form (`sha256:<hex>`), the one [`serde::Serialize`] writes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_oci(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for a digest written as bare lowercase hex (the in-toto `digest.sha256` form):
/// `#[serde(with = "crate::digest::bare_hex")]`.
pub mod bare_hex {
    use super::Sha256Digest;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(digest: &Sha256Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&digest.hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Sha256Digest, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Sha256Digest::parse_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional digest written as bare lowercase hex (the in-toto `digest.sha256` and
/// manifest `sha256` form): `#[serde(with = "crate::digest::bare_hex_opt")]`.
pub mod bare_hex_opt {
    use super::Sha256Digest;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(digest: &Option<Sha256Digest>, s: S) -> Result<S::Ok, S::Error> {
        match digest {
            Some(d) => s.serialize_str(&d.hex()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Sha256Digest>, D::Error> {
        match Option::<std::borrow::Cow<'de, str>>::deserialize(d)? {
            Some(text) => Sha256Digest::parse_hex(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The digest and length of what was read so far.
    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.hasher.finalize().into()), self.count)
    }

    pub fn bytes_read(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
