//! Layer streams: arbitrary bytes as a layer blob. Plain input goes straight through
//! `TarReader` + `FileTree::apply_layer` (applied twice, as two layers, so overrides and
//! whiteouts meet an existing tree) and `into_manifest`; input that starts with the gzip or zstd
//! magic goes through `LayerStream` (compression sniffing, decompression, digests) first.
//! Errors are fine; panics, overflows and hangs are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read};
use std::sync::Arc;
use verifier_core::image::apply::hash::HashApplier;
use verifier_core::image::stream::LayerStream;
use verifier_core::image::tar::TarReader;
use verifier_core::image::tree::{FileTree, Hashed};
use verifier_core::progress::NoProgress;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

fn apply<R: Read>(tree: &mut FileTree<Hashed>, layer: usize, reader: R) -> bool {
    let mut tar = TarReader::new(Counting { inner: reader, bytes: 0 });
    match tree.apply_layer(layer, &mut tar, &mut HashApplier::new()) {
        Ok(stats) => {
            assert!(stats.content_bytes <= tar.into_inner().bytes, "stats count more bytes than were read");
            true
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut tree = FileTree::new();
    if data.starts_with(GZIP_MAGIC) || data.starts_with(ZSTD_MAGIC) {
        let stream = LayerStream::spawn(Box::new(Cursor::new(data.to_vec())), Arc::new(NoProgress));
        let mut stream = stream;
        let ok = apply(&mut tree, 0, &mut stream);
        let _ = stream.finish();
        if ok {
            let _ = tree.into_manifest();
        }
        return;
    }
    if !apply(&mut tree, 0, data) {
        return;
    }
    if !apply(&mut tree, 1, data) {
        return;
    }
    let _ = tree.into_manifest();
});
