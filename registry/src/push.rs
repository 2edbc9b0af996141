//! Uploads: blobs (from memory, or streamed from a reader in chunks) and manifests, each
//! skipped when the repository already has it. The registry checks a blob's digest when its
//! upload completes; a manifest is pushed as the exact bytes given (its digest is theirs).

use crate::client::{Registry, RegistryError};
use crate::reference::{Digest, Target};
use futures_util::stream;
use oci_client::errors::OciDistributionError;
use oci_client::RegistryOperation;
use reqwest::header::HeaderValue;
use std::io::Read;

/// Bytes read from a reader per chunk of a streamed upload.
const CHUNK: usize = 4 << 20;

impl Registry {
    /// Asks for push access to this repository (a bearer token with `pull,push` scope where the
    /// registry has a token service).
    pub fn enable_push(&mut self) -> Result<(), RegistryError> {
        self.authenticate(RegistryOperation::Push)
    }

    /// True if the repository has the blob.
    pub fn has_blob(&self, digest: Digest) -> Result<bool, RegistryError> {
        let reference = self.reference().to_oci();
        self.runtime()
            .block_on(self.client().blob_exists(&reference, &digest.to_string()))
            .map_err(|e| self.request_error(format!("looking for blob {digest}"), e))
    }

    /// Uploads `bytes` unless the repository has them; returns their digest.
    pub fn push_blob(&self, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        if self.has_blob(digest)? {
            return Ok(digest);
        }
        let reference = self.reference().to_oci();
        self.runtime()
            .block_on(self.client().push_blob(&reference, bytes.to_vec(), &digest.to_string()))
            .map_err(|e| self.request_error(format!("pushing blob {digest}"), e))?;
        Ok(digest)
    }

    /// Streams `size` bytes from `reader` as the blob `digest` unless the repository has it (the
    /// registry refuses the upload if the bytes do not hash to `digest`). True if uploaded.
    pub fn push_blob_from(
        &self,
        digest: Digest,
        size: u64,
        reader: impl Read + Send + 'static,
    ) -> Result<bool, RegistryError> {
        if self.has_blob(digest)? {
            return Ok(false);
        }
        let chunks = stream::unfold(Some(reader.take(size)), |reader| async move {
            let mut reader = reader?;
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Some((Err(OciDistributionError::IoError(e)), None)),
                }
            }
            if filled == 0 {
                return None;
            }
            chunk.truncate(filled);
            Some((Ok(bytes::Bytes::from(chunk)), Some(reader)))
        });
        let reference = self.reference().to_oci();
        self.runtime()
            .block_on(self.client().push_blob_stream(&reference, chunks, &digest.to_string(), Some(size)))
            .map_err(|e| self.request_error(format!("pushing blob {digest}"), e))?;
        Ok(true)
    }

    /// Pushes `bytes` as a manifest of `media_type` under `target` (a tag, or its own digest).
    pub fn push_manifest(&self, target: &Target, bytes: Vec<u8>, media_type: &str) -> Result<(), RegistryError> {
        let reference = match target {
            Target::Tag(tag) => self
                .reference()
                .with_tag(tag)
                .map_err(|e| RegistryError::Invalid { what: format!("tag {tag}"), reason: e.to_string() })?,
            Target::Digest(d) => self.reference().with_digest(*d),
        };
        let what = format!("pushing manifest {reference}");
        let content_type = HeaderValue::from_str(media_type)
            .map_err(|_| RegistryError::Invalid { what: what.clone(), reason: format!("media type {media_type:?}") })?;
        self.runtime()
            .block_on(self.client().push_manifest_raw(&reference.to_oci(), bytes, content_type))
            .map_err(|e| self.request_error(what, e))?;
        Ok(())
    }
}
