//! Hostile inputs. Layers: each case is one bad layer on top of a good one, wrapped in an OCI
//! layout whose index, manifest, config and blob digests are all correct, so a reader must find
//! the fault in the layer itself and name it. Bundles: edits of a real bundle's JSON, and files
//! that are not bundles at all.

use crate::oci::{write_layout, Layer, Written};
use crate::tar::{Entry, TarWriter};
use crate::{io_err, FixtureError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use std::path::Path;

/// A hostile layer case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostileLayer {
    /// The layer blob's bytes do not hash to the digest its descriptor (and file name) give.
    DigestMismatch,
    /// A gzip layer cut in the middle of the compressed stream.
    TruncatedGzip,
    /// An uncompressed layer cut in the middle of an entry's content.
    TruncatedTar,
    /// An entry named `../x`.
    DotDot,
    /// An entry named `/abs`.
    AbsolutePath,
    /// A PAX `size` record that disagrees with the ustar header's size.
    PaxSizeMismatch,
    /// A bare whiteout `.wh.` naming nothing.
    BareWhiteout,
    /// Two entries for one path within one layer.
    DuplicateEntry,
    /// An entry hidden behind a single zero block: Go's archive/tar refuses the layer, GNU tar
    /// with `--ignore-zeros` unpacks the entry, a lax reader stops before it.
    LoneZeroBlock,
    /// A global PAX header setting `size`: POSIX readers take the next (empty) file to hold the
    /// 1024 bytes that follow, Go's archive/tar (containerd, Docker) ignores global headers and
    /// unpacks the entry hidden in them.
    GlobalPaxSize,
}

impl HostileLayer {
    pub const ALL: [HostileLayer; 10] = [
        HostileLayer::DigestMismatch,
        HostileLayer::TruncatedGzip,
        HostileLayer::TruncatedTar,
        HostileLayer::DotDot,
        HostileLayer::AbsolutePath,
        HostileLayer::PaxSizeMismatch,
        HostileLayer::BareWhiteout,
        HostileLayer::DuplicateEntry,
        HostileLayer::LoneZeroBlock,
        HostileLayer::GlobalPaxSize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HostileLayer::DigestMismatch => "digest-mismatch",
            HostileLayer::TruncatedGzip => "truncated-gzip",
            HostileLayer::TruncatedTar => "truncated-tar",
            HostileLayer::DotDot => "dotdot",
            HostileLayer::AbsolutePath => "absolute-path",
            HostileLayer::PaxSizeMismatch => "pax-size-mismatch",
            HostileLayer::BareWhiteout => "bare-whiteout",
            HostileLayer::DuplicateEntry => "duplicate-entry",
            HostileLayer::LoneZeroBlock => "lone-zero-block",
            HostileLayer::GlobalPaxSize => "global-pax-size",
        }
    }

    /// The entry at fault, as an error message should quote it (`None` when the fault is the
    /// blob as a whole).
    pub fn culprit(self) -> Option<&'static str> {
        match self {
            HostileLayer::DigestMismatch
            | HostileLayer::TruncatedGzip
            | HostileLayer::TruncatedTar
            | HostileLayer::LoneZeroBlock
            | HostileLayer::GlobalPaxSize => None,
            HostileLayer::DotDot => Some("../x"),
            HostileLayer::AbsolutePath => Some("/abs"),
            HostileLayer::PaxSizeMismatch => Some("etc/pax-size"),
            HostileLayer::BareWhiteout => Some("etc/.wh."),
            HostileLayer::DuplicateEntry => Some("etc/dup"),
        }
    }

    /// The bad layer's uncompressed tar (before any truncation).
    fn tar(self) -> Vec<u8> {
        let mut w = TarWriter::new();
        w.dir("etc", 0o755);
        match self {
            HostileLayer::DigestMismatch => {
                w.file("etc/signed.conf", 0o644, b"setting = original\n");
            }
            HostileLayer::TruncatedGzip | HostileLayer::TruncatedTar => {
                // Enough content that the cut falls inside this entry's data.
                w.file("etc/big.bin", 0o644, pseudo_random(256 * 1024, 7));
            }
            HostileLayer::DotDot => {
                w.file("etc/ok", 0o644, b"ok\n");
                w.file("../x", 0o644, b"escaped\n");
            }
            HostileLayer::AbsolutePath => {
                w.file("etc/ok", 0o644, b"ok\n");
                w.file("/abs", 0o644, b"absolute\n");
            }
            HostileLayer::PaxSizeMismatch => {
                // One reader takes the PAX size (10), another the ustar size (5): they would see
                // different files. The data written matches neither reading in full.
                w.add(Entry::file("etc/pax-size", 0o644, b"12345").with_pax("size", b"10"));
                w.file("etc/after", 0o644, b"67890\n");
            }
            HostileLayer::BareWhiteout => {
                w.whiteout("etc/.wh.");
            }
            HostileLayer::DuplicateEntry => {
                w.file("etc/dup", 0o644, b"first\n");
                w.file("etc/dup", 0o4755, b"second\n");
            }
            HostileLayer::LoneZeroBlock => {
                w.file("etc/visible", 0o644, b"visible\n");
                let mut bytes = w.bytes_without_end().to_vec();
                bytes.extend_from_slice(&[0u8; 512]);
                let mut hidden = TarWriter::new();
                hidden.file("etc/hidden", 0o4755, b"#!/bin/sh\necho unsigned\n");
                bytes.extend_from_slice(&hidden.finish());
                return bytes;
            }
            HostileLayer::GlobalPaxSize => {
                let mut hidden = TarWriter::new();
                hidden.file("etc/hidden", 0o4755, b"#!/bin/sh\necho unsigned\n");
                let hidden = hidden.bytes_without_end().to_vec();
                w.global_pax(&[("size", hidden.len().to_string().as_bytes())]);
                w.add(Entry { ustar_size: Some(0), ..Entry::file("etc/empty", 0o644, b"") });
                w.raw(&hidden);
            }
        }
        w.finish()
    }

    /// Writes the case as an OCI layout at `dir` (tag `hostile`): layer 0 is a good base layer,
    /// layer 1 the hostile one.
    pub fn write(self, dir: &Path) -> Result<HostileImage, FixtureError> {
        let written = write_layout(dir, "hostile", &[base_layer(), self.layer()])?;
        let layer_digest = written.layer_digests[1].clone();
        if self == HostileLayer::DigestMismatch {
            // Same size, one byte of file content changed: the tar still parses, only the digest
            // can tell.
            let path = written.blob_path(&layer_digest);
            let mut bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
            let at =
                find(&bytes, b"original").ok_or_else(|| FixtureError::Check("content not found in layer".into()))?;
            bytes[at] = b'O';
            std::fs::write(&path, &bytes).map_err(io_err(format!("writing {}", path.display())))?;
        }
        Ok(HostileImage { case: self, written, layer_digest })
    }

    /// The hostile layer as stored (compressed, truncated, ...), with the diff_id the config
    /// gives it; for [`HostileLayer::DigestMismatch`] the blob before it is damaged. Also a seed
    /// for the layer-reader fuzz target.
    pub fn layer(self) -> Layer {
        let tar = self.tar();
        match self {
            HostileLayer::TruncatedGzip => {
                let full = crate::gzip(&tar);
                Layer::raw(crate::oci::LAYER_TAR_GZIP, full[..full.len() / 2].to_vec(), crate::oci_digest(&tar))
            }
            HostileLayer::TruncatedTar => {
                let cut = tar[..512 * 3 + 100 * 1024].to_vec();
                Layer::tar(cut)
            }
            HostileLayer::DotDot | HostileLayer::AbsolutePath => Layer::gzip(&tar),
            _ => Layer::tar(tar),
        }
    }
}

/// A hostile case written to disk.
#[derive(Debug, Clone)]
pub struct HostileImage {
    pub case: HostileLayer,
    pub written: Written,
    /// Digest of the hostile layer (layer 1), as its descriptor names it.
    pub layer_digest: String,
}

impl HostileImage {
    pub fn reference(&self) -> String {
        self.written.reference()
    }
}

/// A small valid base layer: a directory, a file, a symlink.
pub fn base_layer() -> Layer {
    let mut w = TarWriter::new();
    w.dir("bin", 0o755).file("bin/tool", 0o755, b"#!/bin/sh\necho tool\n").symlink("bin/alias", "tool");
    Layer::gzip(&w.finish())
}

/// Writes a small valid image (the base layer only) at `dir`, tag `good`.
pub fn write_good_image(dir: &Path) -> Result<Written, FixtureError> {
    write_layout(dir, "good", &[base_layer()])
}

/// Deterministic bytes that gzip cannot shrink much (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Files that are not Sigstore bundles, by name: things a user could pass by mistake.
pub fn not_bundles(oci_manifest_json: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("oci-image-manifest.json", oci_manifest_json.to_vec()),
        ("empty.json", Vec::new()),
        ("array.json", b"[1, 2, 3]\n".to_vec()),
        ("text.json", b"this is not JSON\n".to_vec()),
        (
            "wrong-media-type.json",
            br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.1+json","verificationMaterial":{"publicKey":{"hint":"x"}},"dsseEnvelope":{"payload":"","payloadType":"application/vnd.in-toto+json","signatures":[]}}"#.to_vec(),
        ),
    ]
}

/// A bundle's JSON with its first DSSE signature repeated (same key, same bytes).
pub fn duplicate_first_signature(bundle: &[u8]) -> Result<Vec<u8>, FixtureError> {
    let mut value: Value = parse(bundle)?;
    let signatures = value
        .pointer_mut("/dsseEnvelope/signatures")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| FixtureError::Check("bundle has no dsseEnvelope.signatures".into()))?;
    let first = signatures.first().cloned().ok_or_else(|| FixtureError::Check("bundle has no signature".into()))?;
    signatures.push(first);
    Ok(serde_json::to_vec_pretty(&value).expect("json"))
}

/// The in-toto statement inside a bundle (the DSSE payload, base64-decoded and parsed).
pub fn statement(bundle: &[u8]) -> Result<Value, FixtureError> {
    let value: Value = parse(bundle)?;
    let payload = value
        .pointer("/dsseEnvelope/payload")
        .and_then(Value::as_str)
        .ok_or_else(|| FixtureError::Check("bundle has no dsseEnvelope.payload".into()))?;
    let bytes = B64.decode(payload).map_err(|e| FixtureError::Check(format!("payload is not base64: {e}")))?;
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Result<Value, FixtureError> {
    serde_json::from_slice(bytes).map_err(|e| FixtureError::Check(format!("not JSON: {e}")))
}
