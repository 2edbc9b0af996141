//! Layer streams: arbitrary bytes as a layer blob. Plain input goes straight through
//! `TarReader` + `FileTree::apply_layer` (applied twice, as two layers, so overrides and
//! whiteouts meet an existing tree) and `into_manifest`; input that starts with the gzip or zstd
//! magic goes through `LayerStream` (compression sniffing, decompression, digests) first.
//! Errors are fine; panics, overflows and hangs are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read};
use std::sync::Arc;
use verifier_core::layer::FileTree;
use verifier_core::progress::NoProgress;
use verifier_core::stream::LayerStream;
use verifier_core::tar::TarReader;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

fn apply<R: Read>(tree: &mut FileTree, layer: usize, reader: R) -> bool {
    let mut tar = TarReader::new(reader);
    let mut bytes = 0u64;
    let mut on_bytes = |n: u64| bytes += n;
    match tree.apply_layer(layer, &mut tar, &mut on_bytes) {
        Ok(stats) => {
            assert!(stats.content_bytes <= bytes, "stats count more bytes than were reported");
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
