//! A blob transfer as a blocking [`std::io::Read`]: each read drives the registry's runtime
//! until the next chunk arrives. The reader stops after a byte cap (one past the descriptor's
//! size), so a registry that sends more than it announced cannot make a reader take in more.
//! A transfer cut short by the network is resumed where it stopped (a `Range` request, at most
//! [`MAX_RESUMES`] times; a registry that answers with the whole blob again has the bytes already
//! received skipped). It does not judge the bytes: oci-client's own end-of-stream digest error is
//! turned into a plain end of stream, because the reader's caller hashes what it read and reports
//! the mismatch with both digests (a reader that does not hash must not use this type).

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use std::io::{self, Read};
use std::sync::Arc;

/// Resumptions of one transfer before its error is reported.
pub const MAX_RESUMES: u32 = 3;

/// How to ask for the rest of a blob.
pub(crate) struct Resume {
    pub client: oci_client::Client,
    pub reference: oci_client::Reference,
    pub digest: String,
}

/// The bytes of one blob as they arrive; see the module doc for what is and is not checked.
pub struct BlobReader {
    runtime: Arc<tokio::runtime::Runtime>,
    stream: Option<BoxStream<'static, io::Result<Bytes>>>,
    pending: Bytes,
    remaining: u64,
    resume: Resume,
    /// Bytes taken from the transfer(s) so far: where a resumption starts.
    received: u64,
    /// Bytes of a restarted whole transfer still to drop (already received before).
    skip: u64,
    resumes: u32,
}

impl BlobReader {
    pub(crate) fn new(
        runtime: Arc<tokio::runtime::Runtime>,
        stream: BoxStream<'static, io::Result<Bytes>>,
        cap: u64,
        resume: Resume,
    ) -> Self {
        Self {
            runtime,
            stream: Some(stream),
            pending: Bytes::new(),
            remaining: cap,
            resume,
            received: 0,
            skip: 0,
            resumes: 0,
        }
    }

    /// How many times the transfer was resumed.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Asks for the blob from `received` on; false if the registry would not answer.
    fn restart(&mut self) -> bool {
        let request = self.resume.client.pull_blob_stream_partial(
            &self.resume.reference,
            self.resume.digest.as_str(),
            self.received,
            None,
        );
        match self.runtime.block_on(request) {
            Ok(BlobResponse::Partial(rest)) => {
                self.stream = Some(rest.stream);
                true
            }
            Ok(BlobResponse::Full(whole)) => {
                self.stream = Some(whole.stream);
                self.skip = self.received;
                true
            }
            Err(_) => false,
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let Some(stream) = self.stream.as_mut() else { return Ok(0) };
            if self.remaining == 0 {
                self.stream = None;
                return Ok(0);
            }
            match self.runtime.block_on(stream.next()) {
                Some(Ok(mut chunk)) => {
                    let dropped = chunk.len().min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                    self.skip -= dropped as u64;
                    chunk = chunk.slice(dropped..);
                    self.received += chunk.len() as u64;
                    self.pending = chunk;
                }
                Some(Err(e)) if is_digest_verdict(&e) => {
                    self.stream = None;
                    return Ok(0);
                }
                Some(Err(e)) => {
                    self.stream = None;
                    if self.resumes >= MAX_RESUMES || !self.restart() {
                        return Err(e);
                    }
                    self.resumes += 1;
                }
                None => {
                    self.stream = None;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.pending.len()).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending = self.pending.slice(n..);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.pending = Bytes::new();
        }
        Ok(n)
    }
}

/// oci-client's verdict at the end of a stream whose digest differs from the descriptor's.
fn is_digest_verdict(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<oci_client::errors::DigestError>())
}
