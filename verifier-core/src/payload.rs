//! The signed payload (the in-toto statement's bytes) kept in an anonymous temporary file rather
//! than in memory: a statement of 200,000 files is about 40 MB, its base64 in a bundle more.
//! Signing writes the statement here once and reads it back as often as it needs (twice for
//! Ed25519, once per bundle to encode); verifying decodes the bundle's base64 into one and reads
//! it back for the signature check and the statement parse. The base64 codecs work in chunks
//! and are exactly as strict as decoding the whole string at once with the standard alphabet.

use crate::digest::Sha256Digest;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt as _;

/// Base64 characters decoded at a time (a multiple of 4).
const DECODE_BLOCK: usize = 64 << 10;
/// Payload bytes encoded at a time (a multiple of 3).
const ENCODE_BLOCK: usize = 48 << 10;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("cannot use a temporary file for the payload")]
    Io(#[source] io::Error),
    #[error("payload is not valid base64")]
    Base64(#[source] base64::DecodeError),
}

/// A payload held in an anonymous temporary file (gone when dropped), with its length and
/// SHA-256 (what bundles of one statement are pooled by).
#[derive(Debug)]
pub struct Payload {
    file: File,
    len: u64,
    digest: Sha256Digest,
}

impl Payload {
    /// Starts writing a payload.
    pub fn writer() -> Result<PayloadWriter, PayloadError> {
        let file = tempfile::tempfile().map_err(PayloadError::Io)?;
        let inner = HashingFile { file, hasher: Sha256::new(), len: 0 };
        Ok(PayloadWriter { out: BufWriter::with_capacity(64 << 10, inner) })
    }

    /// A payload holding `bytes` (small payloads, tests).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PayloadError> {
        let mut w = Self::writer()?;
        w.write_all(bytes).map_err(PayloadError::Io)?;
        w.finish()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// SHA-256 of the payload bytes.
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }

    /// Reads the payload from its start (independent of any other reader).
    pub fn reader(&self) -> PayloadReader<'_> {
        PayloadReader { file: &self.file, pos: 0, end: self.len }
    }

    /// Feeds the whole payload to `sink` in chunks.
    pub fn for_each_chunk(&self, mut sink: impl FnMut(&[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        let mut reader = self.reader();
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            sink(&buf[..n]);
        }
    }

    /// Writes the payload as standard base64 (with padding), in chunks.
    pub fn write_base64(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut buf = vec![0u8; ENCODE_BLOCK];
        let mut text = String::with_capacity(ENCODE_BLOCK / 3 * 4 + 4);
        let mut reader = self.reader();
        loop {
            // Fill the block completely so only the last one can need padding.
            let mut filled = 0;
            while filled < buf.len() {
                let n = reader.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(());
            }
            text.clear();
            B64.encode_string(&buf[..filled], &mut text);
            out.write_all(text.as_bytes())?;
            if filled < buf.len() {
                return Ok(());
            }
        }
    }

    /// The whole payload in memory (tests, fuzzing, small statements).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.reader().read_to_end(&mut out)?;
        Ok(out)
    }
}

/// Writes a [`Payload`] (buffered: serde writes many small pieces), hashing as it goes.
pub struct PayloadWriter {
    out: BufWriter<HashingFile>,
}

/// The file behind the buffer, hashing whole buffers as they are written.
struct HashingFile {
    file: File,
    hasher: Sha256,
    len: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Write for PayloadWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl PayloadWriter {
    pub fn finish(self) -> Result<Payload, PayloadError> {
        let inner = self.out.into_inner().map_err(|e| PayloadError::Io(e.into_error()))?;
        Ok(Payload { file: inner.file, len: inner.len, digest: Sha256Digest(inner.hasher.finalize().into()) })
    }
}

/// Positional reads of a [`Payload`] (no shared file cursor).
pub struct PayloadReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PayloadReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Decodes standard base64 fed in arbitrary pieces into a [`Payload`]. Exactly as strict as
/// `STANDARD.decode` of the whole text: padding only at the very end, canonical trailing bits.
pub struct Base64Decoder {
    pending: Vec<u8>,
    out: PayloadWriter,
    decoded: Vec<u8>,
}

impl Base64Decoder {
    pub fn new() -> Result<Self, PayloadError> {
        Ok(Base64Decoder {
            pending: Vec::with_capacity(DECODE_BLOCK + 4),
            out: Payload::writer()?,
            decoded: Vec::with_capacity(DECODE_BLOCK / 4 * 3),
        })
    }

    /// Adds base64 text; decodes whole blocks as they fill, keeping the last characters back
    /// (only the final block may carry padding).
    pub fn push(&mut self, mut text: &[u8]) -> Result<(), PayloadError> {
        while !text.is_empty() {
            let room = DECODE_BLOCK + 4 - self.pending.len();
            let take = room.min(text.len());
            self.pending.extend_from_slice(&text[..take]);
            text = &text[take..];
            if self.pending.len() == DECODE_BLOCK + 4 {
                self.decode_block(DECODE_BLOCK)?;
            }
        }
        Ok(())
    }

    fn decode_block(&mut self, n: usize) -> Result<(), PayloadError> {
        let block = &self.pending[..n];
        if block.contains(&b'=') {
            // Padding followed by more text: what a whole-string decode refuses.
            let at = block.iter().position(|&b| b == b'=').expect("contains");
            return Err(PayloadError::Base64(base64::DecodeError::InvalidByte(at, b'=')));
        }
        self.decoded.clear();
        B64.decode_vec(block, &mut self.decoded).map_err(PayloadError::Base64)?;
        self.out.write_all(&self.decoded).map_err(PayloadError::Io)?;
        self.pending.drain(..n);
        Ok(())
    }

    /// Decodes what is left (the final block, padding allowed) and returns the payload.
    pub fn finish(mut self) -> Result<Payload, PayloadError> {
        self.decoded.clear();
        B64.decode_vec(&self.pending, &mut self.decoded).map_err(PayloadError::Base64)?;
        self.out.write_all(&self.decoded).map_err(PayloadError::Io)?;
        self.out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(text: &[u8], piece: usize) -> Result<Vec<u8>, PayloadError> {
        let mut d = Base64Decoder::new()?;
        for chunk in text.chunks(piece.max(1)) {
            d.push(chunk)?;
        }
        Ok(d.finish()?.to_vec().unwrap())
    }

    #[test]
    fn encodes_and_decodes_like_the_whole_string_codec() {
        for len in [0usize, 1, 2, 3, 4, ENCODE_BLOCK - 1, ENCODE_BLOCK, ENCODE_BLOCK + 1, 3 * ENCODE_BLOCK + 2] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let payload = Payload::from_bytes(&bytes).unwrap();
            assert_eq!(payload.digest(), Sha256Digest::of(&bytes));
            let mut text = Vec::new();
            payload.write_base64(&mut text).unwrap();
            assert_eq!(text, B64.encode(&bytes).into_bytes(), "length {len}");
            for piece in [1, 5, 4096, DECODE_BLOCK + 3] {
                assert_eq!(decode_in_pieces(&text, piece).unwrap(), bytes, "length {len}, piece {piece}");
            }
        }
    }

    #[test]
    fn refuses_what_a_whole_string_decode_refuses() {
        let long = "QUJD".repeat(DECODE_BLOCK / 4);
        let cases = [
            "QQ".to_string(),                  // missing padding
            "QR==".to_string(),                // non-canonical trailing bits
            "QQ==QUJD".to_string(),            // padding in the middle
            format!("{}QQ=={}", long, "QUJD"), // padding in the middle of a later block
            format!("QQ=={long}"),             // padding at the start of the first block
            // Padding closing a block exactly, more text after it: each block alone is valid.
            format!("{}QQ==QUJD", "QUJD".repeat((DECODE_BLOCK - 4) / 4)),
            "QU JD".to_string(), // not in the alphabet
            "QUJD=".to_string(),
        ];
        for case in cases {
            assert!(B64.decode(&case).is_err(), "{case:.20}");
            for piece in [1, 3, DECODE_BLOCK] {
                assert!(decode_in_pieces(case.as_bytes(), piece).is_err(), "{case:.20} in pieces of {piece}");
            }
        }
    }
}
