//! Layer blob streams: a reader thread hashes the raw blob (its descriptor digest), sniffs and
//! undoes the compression (gzip, zstd or none) and hands chunks to the consumer, which hashes the
//! uncompressed tar (the config's diff_id) as it receives them. Inflating is the slowest step, so
//! it gets a core to itself while the other core hashes (diff_id and per-file digests).

use crate::digest::{HashingReader, Sha256Digest};
use crate::progress::Progress;
use sha2::{Digest as _, Sha256};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// What the blob turned out to be, known once it was read to its end. The raw digest is known
/// even when decompression failed, so damage is reported as a digest mismatch first.
#[derive(Debug)]
pub struct BlobSummary {
    pub blob_digest: Sha256Digest,
    pub blob_size: u64,
    pub compression: Compression,
    /// The uncompressed tar's digest and size, or why it could not be decompressed.
    pub decoded: io::Result<(Sha256Digest, u64)>,
}

/// What the worker thread knows at the end.
struct WorkerSummary {
    blob_digest: Sha256Digest,
    blob_size: u64,
    compression: Compression,
    decoded: io::Result<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The consumer end: a `Read` of the uncompressed tar.
pub struct LayerStream {
    chunks: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    /// Hash of the uncompressed bytes received so far (the diff_id once complete).
    tar_hasher: Sha256,
    tar_size: u64,
    worker: Option<JoinHandle<io::Result<WorkerSummary>>>,
}

impl LayerStream {
    /// Starts reading `raw` on a worker thread.
    pub fn spawn(raw: Box<dyn Read + Send>, progress: Arc<dyn Progress>) -> Self {
        let (chunk_tx, chunks) = sync_channel(CHUNKS_IN_FLIGHT);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 2);
        let worker = std::thread::spawn(move || pump(raw, &chunk_tx, recycled, progress));
        Self {
            chunks,
            recycle,
            current: Vec::new(),
            pos: 0,
            done: false,
            tar_hasher: Sha256::new(),
            tar_size: 0,
            worker: Some(worker),
        }
    }

    /// Reads whatever the consumer left unread (it still counts towards the digests) and returns
    /// the blob's digests.
    pub fn finish(mut self) -> io::Result<BlobSummary> {
        // A decompression error was already handed to the reader; the summary carries it too.
        let _ = io::copy(&mut self, &mut io::sink());
        let worker = self.worker.take().expect("finish is called once");
        let summary = worker.join().map_err(|_| io::Error::other("layer reader thread panicked"))??;
        let diff_id = Sha256Digest(std::mem::take(&mut self.tar_hasher).finalize().into());
        Ok(BlobSummary {
            blob_digest: summary.blob_digest,
            blob_size: summary.blob_size,
            compression: summary.compression,
            decoded: summary.decoded.map(|()| (diff_id, self.tar_size)),
        })
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.tar_hasher.update(&chunk);
                    self.tar_size += chunk.len() as u64;
                    let old = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.try_send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true, // the worker finished and hung up
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct CountingProgress<R> {
    inner: R,
    progress: Arc<dyn Progress>,
}

impl<R: Read> Read for CountingProgress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

fn pump(
    raw: Box<dyn Read + Send>,
    out: &SyncSender<io::Result<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
    progress: Arc<dyn Progress>,
) -> io::Result<WorkerSummary> {
    let mut blob = BufReader::with_capacity(CHUNK, HashingReader::new(CountingProgress { inner: raw, progress }));
    let head = blob.fill_buf()?;
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let mut blob_ref = &mut blob;
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut blob_ref)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(&mut blob_ref)?),
        Compression::None => Box::new(&mut blob_ref),
    };
    let decoded = forward(decoder, out, &recycled);
    if let Err(e) = &decoded {
        let _ = out.send(Err(io::Error::new(e.kind(), e.to_string())));
    }
    // Bytes after the end of the compressed stream, or after a decompression error, still
    // belong to the blob and its digest.
    io::copy(&mut blob, &mut io::sink())?;
    let (blob_digest, blob_size) = blob.into_inner().finish();
    Ok(WorkerSummary { blob_digest, blob_size, compression, decoded })
}

/// Sends the uncompressed stream in chunks.
fn forward<R: Read>(mut tar: R, out: &SyncSender<io::Result<Vec<u8>>>, recycled: &Receiver<Vec<u8>>) -> io::Result<()> {
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match tar.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        if out.send(Ok(chunk)).is_err() {
            return Err(io::Error::other("layer consumer stopped early"));
        }
    }
    Ok(())
}
