//! Hostile layers in SIGNED images (a compromised signer: the statement names the image's real
//! digest, so verification passes and the unpack itself must hold): each is refused, leaves no
//! image entry, and a sentinel directory next to the store stays exactly as it was. verifier-core
//! refuses these at the rules level; these tests show the store, with its object sink, adds no way
//! around that. (Run as root.)

mod support;

use std::fs;
use store::StoreError;
use support::*;
use testdata::tar::{Entry, TarWriter};

/// A good first layer.
fn base() -> TarWriter {
    let mut w = TarWriter::new();
    w.dir("bin", 0o755).file("bin/tool", 0o755, b"#!/bin/sh\necho tool\n").dir("etc", 0o755);
    w
}

/// Stores an image of `layers` signed (over the good base's manifest) by a trusted key; returns
/// the error text. Checks: refused, no image entry, sentinel untouched, nothing of the hostile
/// content in the store's objects.
#[track_caller]
fn refused(scene: &Scene, name: &str, layers: &[&TarWriter], says: &str) {
    let before = snapshot(&scene.outside());
    let image = scene.image(name, layers);
    let good = scene.image(&format!("{name}-good"), &[&base()]);
    let bundles = signed_claiming(&image, scanned(&good), "alice");
    let result = scene.ensure(&image, &bundles);
    assert_eq!(before, snapshot(&scene.outside()), "{name}: the store changed something outside its root");
    let err = match result {
        Ok(stored) => panic!("{name}: the hostile image was stored at {}", stored.rootfs.display()),
        Err(e) => e,
    };
    let text = chain(&err);
    assert!(matches!(err, StoreError::Unpack { .. }), "{name}: {text}");
    assert!(text.contains(says), "{name}: expected {says:?} in: {text}");
    assert!(scene.image_entries().is_empty(), "{name}: left {:?}", scene.image_entries());
    for object in scene.objects() {
        let bytes = fs::read(&object).unwrap();
        assert!(!bytes.starts_with(b"evil"), "{name}: hostile content kept as {}", object.display());
    }
}

#[test]
fn dotdot_and_absolute_names_are_refused() {
    let scene = Scene::new();
    let mut l = TarWriter::new();
    l.file("etc/ok", 0o644, b"ok\n").file("../outside/canary", 0o644, b"evil\n");
    refused(&scene, "dotdot", &[&base(), &l], "path contains '..'");
    let mut l = TarWriter::new();
    l.file("etc/ok", 0o644, b"ok\n").file(&format!("{}/canary", scene.outside_abs()), 0o644, b"evil\n");
    refused(&scene, "absolute", &[&base(), &l], "absolute path");
}

#[test]
fn a_file_through_a_symlink_to_the_root_is_refused() {
    let scene = Scene::new();
    let outside = scene.outside_abs();
    let through = format!("esc/{}/canary", outside.trim_start_matches('/'));
    // Same layer.
    let mut l = TarWriter::new();
    l.symlink("esc", "/").file(&through, 0o644, b"evil\n");
    refused(&scene, "symlink-root", &[&base(), &l], "is a symlink, not a directory");
    // Symlink in one layer, the file through it in the next.
    let mut l1 = TarWriter::new();
    l1.symlink("esc", "/");
    let mut l2 = TarWriter::new();
    l2.file(&through, 0o644, b"evil\n");
    refused(&scene, "symlink-root-2", &[&base(), &l1, &l2], "is a symlink, not a directory");
}

#[test]
fn a_hardlink_to_a_host_path_is_refused() {
    let scene = Scene::new();
    let mut l = TarWriter::new();
    l.hardlink("etc/passwd", &format!("{}/sub/passwd", scene.outside_abs()));
    refused(&scene, "hardlink-abs", &[&base(), &l], "hardlink target");
    let mut l = TarWriter::new();
    l.hardlink("etc/passwd", "../../../../../../outside/sub/passwd");
    refused(&scene, "hardlink-up", &[&base(), &l], "hardlink target");
}

#[test]
fn a_symlink_swapped_for_a_directory_between_two_entries_is_refused() {
    let scene = Scene::new();
    let outside = scene.outside_abs();
    // etc is a directory in the base; a later layer replaces it with a symlink out, and the next
    // writes through it.
    let mut l1 = TarWriter::new();
    l1.symlink("etc", &outside);
    let mut l2 = TarWriter::new();
    l2.file("etc/canary", 0o644, b"evil\n");
    refused(&scene, "swap", &[&base(), &l1, &l2], "is a symlink, not a directory");
    // Within one layer: the directory's entry, the symlink over it, a file below.
    let mut l = TarWriter::new();
    l.dir("d", 0o755).symlink("e", &outside).file("e/canary", 0o644, b"evil\n");
    refused(&scene, "swap-1", &[&base(), &l], "is a symlink, not a directory");
}

#[test]
fn a_whiteout_naming_a_path_outside_the_root_is_refused() {
    let scene = Scene::new();
    let mut l = TarWriter::new();
    l.whiteout("etc/../../outside/.wh.canary");
    refused(&scene, "whiteout-up", &[&base(), &l], "path contains '..'");
    let mut l = TarWriter::new();
    l.add(Entry::file(format!("{}/.wh.canary", scene.outside_abs()), 0o644, b""));
    refused(&scene, "whiteout-abs", &[&base(), &l], "absolute path");
    let mut l = TarWriter::new();
    l.whiteout("etc/.wh...");
    refused(&scene, "whiteout-dotdot-name", &[&base(), &l], "unsupported special whiteout");
}

#[test]
fn device_nodes_in_a_signed_image_are_not_created_by_default() {
    // Signed as they are (the statement lists them): stored, but only as metadata.
    let scene = Scene::new();
    let before = snapshot(&scene.outside());
    let mut l = TarWriter::new();
    l.dir("dev", 0o755)
        .add(Entry::block_device("dev/sda", 0o666, 8, 0))
        .add(Entry::char_device("dev/kmem", 0o666, 1, 2))
        .add(Entry::fifo("dev/pipe", 0o666));
    let image = scene.image("devices", &[&base(), &l]);
    let stored = scene.ensure(&image, &signed(&image, "alice")).unwrap();
    for node in ["dev/sda", "dev/kmem", "dev/pipe"] {
        assert!(fs::symlink_metadata(stored.rootfs.join(node)).is_err(), "{node} was created");
    }
    assert_eq!(before, snapshot(&scene.outside()));
}
