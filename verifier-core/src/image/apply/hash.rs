//! The hashing applier: file content is hashed (and its code mark taken from its first bytes)
//! and dropped, nothing is written anywhere. This is the hot path of sign and verify: one
//! reused buffer, no allocation per file. [`hash_content`] is also the unpacker's hashing.

use crate::code::CodeSniffer;
use crate::image::tar::TarReader;
use crate::image::tree::{Applier, ApplyError, Hashed, Meta};
use crate::manifest::FileType;
use sha2::{Digest as _, Sha256};
use std::io::Read;

const HASH_BUFFER: usize = 256 * 1024;

/// Hashes regular files; every other change of the tree is only recorded by the tree.
pub struct HashApplier {
    buffer: Vec<u8>,
}

impl Default for HashApplier {
    fn default() -> Self {
        Self { buffer: vec![0; HASH_BUFFER] }
    }
}

impl HashApplier {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Reads the current entry's content to its end through `buffer`, handing each chunk to `sink`;
/// the code mark is taken from the same chunks.
pub(crate) fn hash_content<R: Read>(
    tar: &mut TarReader<R>,
    buffer: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), ApplyError>,
) -> Result<Hashed, ApplyError> {
    let mut hasher = Sha256::new();
    let mut code = CodeSniffer::new();
    let mut size = 0u64;
    loop {
        let n = tar.read_content(buffer).map_err(ApplyError::Tar)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        code.update(&buffer[..n]);
        sink(&buffer[..n])?;
        size += n as u64;
    }
    Ok(Hashed { sha256: hasher.finalize().into(), size, code: code.finish() })
}

impl Applier for HashApplier {
    type Content = Hashed;

    fn file<R: Read>(&mut self, _path: &[u8], _meta: &Meta, tar: &mut TarReader<R>) -> Result<Hashed, ApplyError> {
        hash_content(tar, &mut self.buffer, |_| Ok(()))
    }

    fn directory(&mut self, _path: &[u8], _meta: &Meta) -> Result<(), ApplyError> {
        Ok(())
    }

    fn symlink(&mut self, _path: &[u8], _target: &[u8], _meta: &Meta) -> Result<(), ApplyError> {
        Ok(())
    }

    fn hardlink(&mut self, _path: &[u8], _target: &[u8]) -> Result<(), ApplyError> {
        Ok(())
    }

    fn special(&mut self, _: &[u8], _: FileType, _: Option<(u32, u32)>, _: &Meta) -> Result<(), ApplyError> {
        Ok(())
    }

    fn remove(&mut self, _path: &[u8], _kind: FileType) -> Result<(), ApplyError> {
        Ok(())
    }
}
