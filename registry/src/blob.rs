//! A blob transfer as a blocking [`std::io::Read`]: each read drives the registry's runtime
//! until the next chunk arrives. The reader stops after a byte cap (one past the descriptor's
//! size), so a registry that sends more than it announced cannot make a reader take in more.
//! It does not judge the bytes: oci-client's own end-of-stream digest error is turned into a
//! plain end of stream, because the reader's caller hashes what it read and reports the
//! mismatch with both digests (a reader that does not hash must not use this type).

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::io::{self, Read};
use std::sync::Arc;

/// The bytes of one blob as they arrive; see the module doc for what is and is not checked.
pub struct BlobReader {
    runtime: Arc<tokio::runtime::Runtime>,
    stream: Option<BoxStream<'static, io::Result<Bytes>>>,
    pending: Bytes,
    remaining: u64,
}

impl BlobReader {
    pub(crate) fn new(
        runtime: Arc<tokio::runtime::Runtime>,
        stream: BoxStream<'static, io::Result<Bytes>>,
        cap: u64,
    ) -> Self {
        Self { runtime, stream: Some(stream), pending: Bytes::new(), remaining: cap }
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
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) if is_digest_verdict(&e) => {
                    self.stream = None;
                    return Ok(0);
                }
                Some(Err(e)) => return Err(e),
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
