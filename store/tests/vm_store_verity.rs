//! fs-verity on stored objects, in the kernel lab: its scratch disk is ext4 made with the
//! `verity` feature and both lab kernels have `CONFIG_FS_VERITY` (this machine's kernel has not,
//! so the host tests only see a store without it).
//!
//! Run by `cargo xtask lab`; ignored on the host.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use support::*;
use testdata::tar::TarWriter;

const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";
const LIB: &[u8] = b"\x7fELF shared library, pretend\n";
const EXTRA: &[u8] = b"only in the second image\n";

fn layer() -> TarWriter {
    let mut w = TarWriter::new();
    w.dir("bin", 0o755).file("bin/tool", 0o755, TOOL).file("bin/tool-copy", 0o755, TOOL);
    w.dir("lib", 0o755).file("lib/libc.so", 0o644, LIB);
    w
}

/// `verity.json` of a stored image: object key -> hex digest.
fn recorded(stored: &store::StoredImage) -> BTreeMap<String, String> {
    let path = stored.rootfs.parent().unwrap().join(store::VERITY_FILE);
    serde_json::from_slice(&fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
#[ignore = "needs a file system with fs-verity: run by `cargo xtask lab`"]
fn vm_store_objects_are_sealed_with_fs_verity_and_their_digests_recorded() {
    let scene = Scene::new();
    let image = scene.image("a", &[&layer()]);
    let stored = scene.ensure(&image, &signed(&image, "alice")).expect("stored");
    // Two distinct objects (TOOL twice shares one), each sealed once.
    assert_eq!(stored.stats.content.verity_objects, 2, "{:?}", stored.stats.content);
    let digests = recorded(&stored);
    assert_eq!(digests.len(), 2, "{digests:?}");
    for object in scene.objects() {
        let key = object.file_name().unwrap().to_string_lossy().to_string();
        let measured = store::verity::measure(&object).unwrap().expect("verity enabled on the object");
        assert_eq!(digests.get(&key), Some(&hex::encode(measured)), "{key}");
    }

    // Sealed means read-only for root too: no write, no truncate, through the rootfs link or
    // the object; the content stays the signed one.
    let tool = stored.rootfs.join("bin/tool");
    let write = fs::OpenOptions::new().write(true).open(&tool);
    assert!(write.is_err(), "an fs-verity file opened for writing");
    assert_eq!(write.unwrap_err().raw_os_error(), Some(libc_eperm()));
    let append = fs::OpenOptions::new().append(true).open(&tool).and_then(|mut f| f.write_all(b"x"));
    assert!(append.is_err());
    assert_eq!(fs::read(&tool).unwrap(), TOOL);

    // A second image reusing the objects records them too (measured, not sealed again) plus
    // its own.
    let mut second = layer();
    second.file("lib/extra", 0o644, EXTRA);
    let image_b = scene.image("b", &[&second]);
    let stored_b = scene.ensure(&image_b, &signed(&image_b, "alice")).expect("stored");
    let digests_b = recorded(&stored_b);
    assert_eq!(digests_b.len(), 3, "{digests_b:?}");
    for (key, digest) in &digests {
        assert_eq!(digests_b.get(key), Some(digest), "{key}");
    }
}

/// EPERM: what opening an fs-verity file for writing gives.
fn libc_eperm() -> i32 {
    1
}
