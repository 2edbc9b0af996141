//! The store end to end on real OCI layouts: a signed image is stored and its rootfs is what the
//! manifest says; a second ensure writes nothing and reads no layer; a second image writes only
//! its new content and shares inodes; refusals (unsigned, untrusted, revoked, expired, rolled
//! back, tampered) leave no image entry; gc frees what no image links. (Run as root.)

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;
use store::StoreError;
use support::*;
use testdata::tar::{Entry, TarWriter};
use verifier_core::manifest::FileType;
use verifier_core::verify::VerifyError;

const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";
const LIB: &[u8] = b"\x7fELF shared library, pretend\n";
const OLD: &[u8] = b"first version, replaced by the second layer\n";
const NEW: &[u8] = b"second version\n";
const GONE: &[u8] = b"whited out by the second layer\n";
const APP_B: &[u8] = b"only in image B\n";
/// vfs_cap_data v2 granting CAP_NET_BIND_SERVICE.
const CAP: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn base() -> TarWriter {
    let mut w = TarWriter::new();
    w.dir("bin", 0o755)
        .file("bin/tool", 0o755, TOOL)
        .file("bin/tool-copy", 0o755, TOOL)
        .hardlink("bin/tool-link", "bin/tool")
        .add(Entry::file("bin/su", 0o4755, TOOL))
        .add(Entry::file("bin/ping", 0o755, TOOL).with_pax("SCHILY.xattr.security.capability", CAP))
        .symlink("bin/alias", "tool")
        .dir("lib", 0o755)
        .file("lib/libc.so", 0o644, LIB)
        .add(Entry::file("lib/owned", 0o640, LIB).with_owner(1000, 1001))
        .file("lib/gone", 0o644, GONE)
        .file("lib/changed", 0o644, OLD);
    w
}

fn top_a() -> TarWriter {
    let mut w = TarWriter::new();
    w.dir("lib", 0o755).whiteout("lib/.wh.gone").file("lib/changed", 0o644, NEW).dir("etc", 0o700);
    w
}

#[test]
fn a_signed_image_is_stored_and_its_rootfs_is_the_signed_manifest() {
    let scene = Scene::new();
    let image = scene.image("a", &[&base(), &top_a()]);
    let stored = scene.ensure(&image, &signed(&image, "alice")).expect("stored");
    assert!(stored.stats.unpacked);

    // Every signed entry is on disk as signed.
    let files = scanned(&image);
    assert_eq!(stored.record.files, files.len());
    for entry in &files {
        let path = stored.rootfs.join(entry.path.trim_start_matches('/'));
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", entry.path));
        assert_eq!(meta.mode() & 0o7777, entry.mode, "{}", entry.path);
        assert_eq!((u64::from(meta.uid()), u64::from(meta.gid())), (entry.uid, entry.gid), "{}", entry.path);
        match entry.kind {
            FileType::File | FileType::Hardlink => {
                assert_eq!(Some(testdata::sha256_hex(&fs::read(&path).unwrap())), entry.sha256.map(|d| d.hex()));
                assert!(meta.nlink() >= 2, "{}: not linked to an object", entry.path);
            }
            FileType::Symlink => {
                assert_eq!(fs::read_link(&path).unwrap().to_str(), entry.link_target.as_deref());
            }
            FileType::Dir => assert!(meta.is_dir()),
            _ => {}
        }
    }
    assert!(!stored.rootfs.join("lib/gone").exists());
    let cap = rustix::fs::lgetxattr(stored.rootfs.join("bin/ping"), "security.capability", &mut [0u8; 64]).unwrap();
    assert_eq!(cap, CAP.len());

    // Content kept once per (content, metadata): TOOL as 0755, as 4755, with a capability; LIB
    // as root 0644 and as 1000:1001 0640; OLD and NEW. Identical files share one inode.
    let ino = |p: &str| fs::metadata(stored.rootfs.join(p)).unwrap().ino();
    assert_eq!(ino("bin/tool"), ino("bin/tool-copy"));
    assert_eq!(ino("bin/tool"), ino("bin/tool-link"));
    assert_ne!(ino("bin/tool"), ino("bin/su"));
    assert_ne!(ino("bin/tool"), ino("bin/ping"));
    assert_ne!(ino("lib/libc.so"), ino("lib/owned"));
    // GONE is written (layer 0) and whited out later, OLD replaced: their objects stay for gc.
    let objects = scene.objects();
    assert_eq!(objects.len(), 8, "{objects:?}");
    let distinct = 3 * TOOL.len() + 2 * LIB.len() + OLD.len() + NEW.len() + GONE.len();
    let stats = stored.stats.content;
    assert_eq!(stats.bytes_written as usize, distinct, "{stats:?}");
    assert_eq!(stats.bytes_reused as usize, TOOL.len(), "{stats:?}"); // bin/tool-copy
    assert_eq!(stored.record.name, "app");
    assert_eq!(stored.record.signers.len(), 1);
    assert_eq!(stored.record.digest, verifier_core::source::open(&image).unwrap().identity().manifest_digest.unwrap());
    println!("first image: {stats:?}");
}

#[test]
fn a_second_ensure_writes_nothing_and_reads_no_layer() {
    let scene = Scene::new();
    let image = scene.image("a", &[&base(), &top_a()]);
    let bundles = signed(&image, "alice");
    let untrusted = signed(&image, "mallory");
    let first = scene.ensure(&image, &bundles).unwrap();
    let before = snapshot(scene.store.root());
    // Without its layer blobs the image could not be unpacked or hashed again.
    let layout = scene.tmp.path().join("images/a");
    let manifest: serde_json::Value = {
        let digest = first.record.manifest_digest.unwrap();
        serde_json::from_slice(&fs::read(testdata::oci::blob_path(&layout, &digest.oci())).unwrap()).unwrap()
    };
    for layer in manifest["layers"].as_array().unwrap() {
        fs::remove_file(testdata::oci::blob_path(&layout, layer["digest"].as_str().unwrap())).unwrap();
    }
    let second = scene.ensure(&image, &bundles).expect("second ensure");
    assert!(!second.stats.unpacked);
    assert_eq!(second.stats.content, store::objects::ContentStats::default());
    assert_eq!(second.rootfs, first.rootfs);
    assert_eq!(second.record, first.record);
    assert_eq!(before, snapshot(scene.store.root()), "the second ensure changed the store");
    // Still verified each time: an untrusted signer is refused even for a stored image.
    let err = scene.ensure(&image, &untrusted).unwrap_err();
    assert!(matches!(&err, StoreError::Verify(e) if matches!(**e, VerifyError::Signatures(_))), "{}", chain(&err));
}

#[test]
fn a_second_image_writes_only_its_new_content_and_shares_inodes() {
    let scene = Scene::new();
    let a = scene.image("a", &[&base(), &top_a()]);
    let mut top_b = TarWriter::new();
    top_b.dir("app", 0o755).file("app/main", 0o755, APP_B).file("app/tool", 0o755, TOOL);
    let b = scene.image("b", &[&base(), &top_b]);
    let first = scene.ensure(&a, &signed(&a, "alice")).unwrap();
    let second = scene.ensure(&b, &signed(&b, "alice")).unwrap();
    let stats = second.stats.content;
    println!("first image: {:?}\nsecond image: {stats:?}", first.stats.content);
    // New: APP_B only. Image B keeps lib/gone and OLD at lib/changed (its top does not touch
    // them): both objects exist from image A.
    assert_eq!(stats.bytes_written as usize, APP_B.len(), "{stats:?}");
    assert_eq!(stats.objects_written, 1);
    let shared_bytes = 5 * TOOL.len() + 2 * LIB.len() + GONE.len() + OLD.len();
    assert_eq!(stats.bytes_reused as usize, shared_bytes, "{stats:?}");
    assert_eq!(stats.bytes_discarded, 0);
    let ino = |root: &std::path::Path, p: &str| fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(ino(&first.rootfs, "bin/su"), ino(&second.rootfs, "bin/su"));
    assert_eq!(ino(&first.rootfs, "bin/tool"), ino(&second.rootfs, "app/tool"));
    assert_eq!(fs::read(second.rootfs.join("lib/changed")).unwrap(), OLD);
}

#[test]
fn megabytes_shared_by_two_images_are_written_once() {
    // Two images on the same 4 MiB base layer, each with 1 MiB of its own.
    let scene = Scene::new();
    let mut base = TarWriter::new();
    base.dir("usr/lib", 0o755).file("usr/lib/a.so", 0o755, testdata::hostile::pseudo_random(3 << 20, 1)).file(
        "usr/lib/b.so",
        0o644,
        testdata::hostile::pseudo_random(1 << 20, 2),
    );
    let top = |seed| {
        let mut w = TarWriter::new();
        w.dir("app", 0o755).file("app/main", 0o755, testdata::hostile::pseudo_random(1 << 20, seed));
        w
    };
    let (top1, top2) = (top(3), top(4));
    let one = scene.image("one", &[&base, &top1]);
    let two = scene.image("two", &[&base, &top2]);
    let (bundles_one, bundles_two) = (signed(&one, "alice"), signed(&two, "alice"));
    let start = std::time::Instant::now();
    let first = scene.ensure(&one, &bundles_one).unwrap().stats.content;
    let cold = start.elapsed();
    let start = std::time::Instant::now();
    let second = scene.ensure(&two, &bundles_two).unwrap().stats.content;
    let shared = start.elapsed();
    let start = std::time::Instant::now();
    let again = scene.ensure(&two, &bundles_two).unwrap();
    let warm = start.elapsed();
    println!("first image {first:?} in {cold:?}\nsecond image {second:?} in {shared:?}\nagain (warm) in {warm:?}");
    assert_eq!((first.bytes_written, first.bytes_reused), (5 << 20, 0));
    assert_eq!((second.bytes_written, second.bytes_reused), (1 << 20, 4 << 20));
    assert!(!again.stats.unpacked);
}

#[test]
fn a_lower_layer_version_replaced_later_is_not_mistaken_for_tampering() {
    // Image A stores NEW at lib/changed; image C has OLD there in layer 0 and NEW in layer 1:
    // layer 0's bytes are hashed against the NEW object, do not match, and are replaced.
    let scene = Scene::new();
    let a = scene.image("a", &[&base(), &top_a()]);
    scene.ensure(&a, &signed(&a, "alice")).unwrap();
    let mut top = TarWriter::new();
    top.dir("lib", 0o755).file("lib/changed", 0o644, NEW).file("lib/extra", 0o644, b"c\n");
    let c = scene.image("c", &[&base(), &top]);
    let stored = scene.ensure(&c, &signed(&c, "alice")).expect("stored");
    assert_eq!(fs::read(stored.rootfs.join("lib/changed")).unwrap(), NEW);
}

#[test]
fn a_hardlink_to_a_lower_layer_version_that_was_only_hashed_gets_its_bytes() {
    // Image A stores NEW at lib/changed. Image D has OLD there in layer 0; layer 1 hardlinks
    // lib/keep to it (keeping OLD) and only then replaces lib/changed with NEW. Layer 0's OLD was
    // only hashed against the NEW object: the store must still give lib/keep the OLD bytes.
    let scene = Scene::new();
    let a = scene.image("a", &[&base(), &top_a()]);
    scene.ensure(&a, &signed(&a, "alice")).unwrap();
    let mut top = TarWriter::new();
    top.dir("lib", 0o755).hardlink("lib/keep", "lib/changed").file("lib/changed", 0o644, NEW);
    let d = scene.image("d", &[&base(), &top]);
    let stored = scene.ensure(&d, &signed(&d, "alice")).expect("stored");
    assert_eq!(fs::read(stored.rootfs.join("lib/keep")).unwrap(), OLD);
    assert_eq!(fs::read(stored.rootfs.join("lib/changed")).unwrap(), NEW);
}

#[test]
fn unsigned_untrusted_revoked_expired_and_rolled_back_images_are_refused_before_anything_is_written() {
    let mut scene = Scene::new();
    let image = scene.image("a", &[&base(), &top_a()]);
    let empty = snapshot(scene.store.root());
    let check = |scene: &Scene, bundles: Vec<_>, says: &str| {
        let err = scene.ensure(&image, &bundles).unwrap_err();
        assert!(matches!(err, StoreError::Verify(_)), "{}", chain(&err));
        assert!(chain(&err).contains(says), "expected {says:?} in {}", chain(&err));
        assert_eq!(empty, snapshot(scene.store.root()), "a refused image wrote to the store");
    };
    check(&scene, vec![], "no bundle given");
    check(&scene, signed(&image, "mallory"), "0 distinct trusted key(s) signed; threshold is 1");
    let past = SystemTime::now() - 2 * MONTH;
    check(&scene, signed_as(&image, "alice", 1, past, MONTH), "expiry check failed: expired at");
    scene.trust.record_version("app", 5).unwrap();
    check(&scene, signed_as(&image, "alice", 4, SystemTime::now(), MONTH), "older than version 5");
    scene.trust.revoke(&testdata::keys::test_key("alice").public_key().key_id()).unwrap();
    check(&scene, signed_as(&image, "alice", 6, SystemTime::now(), MONTH), "revoked key");
}

#[test]
fn an_image_repacked_after_signing_is_refused_before_anything_is_written_naming_the_path() {
    let scene = Scene::new();
    let image = scene.image("a", &[&base(), &top_a()]);
    let bundles = signed(&image, "alice");
    // One byte of lib/changed changed in layer 1, the image repacked with consistent digests.
    let mut top = TarWriter::new();
    top.dir("lib", 0o755).whiteout("lib/.wh.gone").file("lib/changed", 0o644, b"second versioN\n").dir("etc", 0o700);
    let tampered = scene.image("a-tampered", &[&base(), &top]);
    let empty = snapshot(scene.store.root());
    let err = scene.ensure(&tampered, &bundles).unwrap_err();
    let text = chain(&err);
    assert!(matches!(&err, StoreError::Mismatch { path, .. } if path == "/lib/changed"), "{text}");
    assert!(text.contains("not the signed subject"), "{text}");
    assert_eq!(empty, snapshot(scene.store.root()), "a refused image wrote to the store");
}

#[test]
fn a_layer_blob_changed_after_signing_is_refused_naming_the_path_and_leaves_no_entry() {
    let scene = Scene::new();
    let image = scene.image_tar("a", &[&base(), &top_a()]);
    let bundles = signed(&image, "alice");
    // One byte of lib/changed changed in the (uncompressed) layer blob on disk.
    let layout = scene.tmp.path().join("images/a");
    let blobs = layout.join("blobs/sha256");
    let mut done = false;
    for blob in fs::read_dir(&blobs).unwrap() {
        let path = blob.unwrap().path();
        let mut bytes = fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(NEW.len()).position(|w| w == NEW) {
            bytes[at] = b'S';
            fs::write(&path, bytes).unwrap();
            done = true;
        }
    }
    assert!(done);
    let outside = snapshot(&scene.outside());
    let err = scene.ensure(&image, &bundles).unwrap_err();
    let text = chain(&err);
    assert!(matches!(&err, StoreError::Mismatch { path, .. } if path == "/lib/changed"), "{text}");
    assert!(text.contains("sha256"), "{text}");
    assert!(scene.image_entries().is_empty(), "{:?}", scene.image_entries());
    assert_eq!(outside, snapshot(&scene.outside()));
    // The objects the failed unpack wrote are left for gc; nothing links them.
    let gc = scene.store.gc().unwrap();
    assert!(gc.objects_removed > 0 && gc.objects_kept == 0, "{gc:?}");
}

#[test]
fn a_statement_that_differs_from_the_image_only_in_a_directory_fails_the_final_comparison() {
    let scene = Scene::new();
    let image = scene.image("a", &[&base(), &top_a()]);
    let mut files = scanned(&image);
    let etc = files.iter_mut().find(|f| f.path == "/etc").unwrap();
    etc.mode = 0o755; // the image has 0700
    let err = scene.ensure(&image, &signed_claiming(&image, files, "alice")).unwrap_err();
    let text = chain(&err);
    assert!(matches!(&err, StoreError::Mismatch { path, .. } if path == "/etc"), "{text}");
    assert!(text.contains("mode: 0755 -> 0700"), "{text}");
    assert!(scene.image_entries().is_empty(), "{:?}", scene.image_entries());
}

#[test]
fn a_last_layer_file_that_differs_from_the_statement_stops_the_unpack_when_written() {
    let scene = Scene::new();
    let image = scene.image("a", &[&base(), &top_a()]);
    let mut files = scanned(&image);
    let changed = files.iter_mut().find(|f| f.path == "/lib/changed").unwrap();
    changed.mode = 0o4755;
    let err = scene.ensure(&image, &signed_claiming(&image, files, "alice")).unwrap_err();
    let text = chain(&err);
    assert!(matches!(&err, StoreError::Mismatch { path, .. } if path == "/lib/changed"), "{text}");
    // Refused by the write check (as written), not by the final comparison.
    assert!(text.contains("refused by the write check"), "{text}");
    assert!(scene.image_entries().is_empty(), "{:?}", scene.image_entries());
}

#[test]
fn a_statement_calling_an_elf_library_not_code_is_refused_when_written_and_v1_is_stored() {
    let scene = Scene::new();
    let image = scene.image("code", &[&base()]);
    let mut files = scanned(&image);
    let lib = files.iter_mut().find(|f| f.path == "/lib/libc.so").unwrap();
    assert_eq!(lib.code, Some(verifier_core::manifest::CodeKind::Elf));
    lib.code = None;
    let err = scene.ensure(&image, &signed_claiming(&image, files, "alice")).unwrap_err();
    let text = chain(&err);
    assert!(matches!(&err, StoreError::Mismatch { path, .. } if path == "/lib/libc.so"), "{text}");
    assert!(text.contains("code: - -> elf") && text.contains("refused by the write check"), "{text}");
    assert!(scene.image_entries().is_empty(), "{:?}", scene.image_entries());

    // A v1 statement signed no marks: the ones the unpacker computes are not held against it.
    let stored = scene.ensure(&image, &signed_v1(&image, "alice")).unwrap();
    assert!(stored.rootfs.join("lib/libc.so").is_file());
}

#[test]
fn rmi_and_gc_free_what_only_the_removed_image_used() {
    let scene = Scene::new();
    let a = scene.image("a", &[&base(), &top_a()]);
    let mut top_b = TarWriter::new();
    top_b.dir("app", 0o755).file("app/main", 0o755, APP_B);
    let b = scene.image("b", &[&base(), &top_b]);
    let stored_a = scene.ensure(&a, &signed(&a, "alice")).unwrap();
    let stored_b = scene.ensure(&b, &signed(&b, "alice")).unwrap();
    assert_eq!(scene.store.list().unwrap().len(), 2);

    // Only NEW is image A's alone (GONE and OLD are image B's too).
    let removed = scene.store.remove(&stored_a.digest.hex()[..12]).unwrap();
    assert_eq!(removed.digest, stored_a.digest);
    assert!(!stored_a.rootfs.exists());
    let gc = scene.store.gc().unwrap();
    assert_eq!((gc.objects_removed, gc.bytes_freed), (1, NEW.len() as u64), "{gc:?}");
    assert_eq!(fs::read(stored_b.rootfs.join("bin/tool")).unwrap(), TOOL);
    assert_eq!(fs::read(stored_b.rootfs.join("lib/changed")).unwrap(), OLD);
    assert_eq!(scene.store.gc().unwrap().objects_removed, 0);

    // By reference; then nothing is left.
    scene.store.remove(&b.to_string()).unwrap();
    let gc = scene.store.gc().unwrap();
    assert_eq!(gc.objects_kept, 0, "{gc:?}");
    assert!(scene.objects().is_empty());
    assert!(matches!(scene.store.remove(&b.to_string()), Err(StoreError::NotFound(_))));
}

#[test]
fn gc_removes_stale_temporaries_and_mutations_refuse_while_locked() {
    let scene = Scene::new();
    fs::create_dir_all(scene.store.root().join("images/.tmp-crashed/rootfs/bin")).unwrap();
    let gc = scene.store.gc().unwrap();
    assert_eq!(gc.temporaries_removed, 1);
    assert!(scene.image_entries().is_empty());

    let held = store::lock::lock(&scene.store.root().join("lock"), store::lock::LockMode::Wait).unwrap().unwrap();
    // flock locks belong to the open file description: another open (as another process makes)
    // is refused.
    assert!(matches!(scene.store.gc(), Err(StoreError::Locked { .. })));
    assert!(matches!(scene.store.remove("abcd"), Err(StoreError::Locked { .. })));
    drop(held);
    assert!(matches!(scene.store.remove("abcd"), Err(StoreError::NotFound(_))));
}

#[test]
fn two_concurrent_ensures_of_one_image_unpack_it_once() {
    let scene = Scene::new();
    let image = scene.image("a", &[&base(), &top_a()]);
    let bundles = signed(&image, "alice");
    let results: Vec<store::StoredImage> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| scene.ensure(&image, &bundles).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.stats.unpacked).count(), 1);
    assert_eq!(results[0].rootfs, results[1].rootfs);
    assert_eq!(scene.image_entries().len(), 1);
}

#[test]
fn device_nodes_are_metadata_unless_asked_for() {
    let scene = Scene::new();
    let mut w = TarWriter::new();
    w.dir("dev", 0o755)
        .add(Entry::block_device("dev/sda", 0o660, 8, 0))
        .add(Entry::char_device("dev/mem", 0o640, 1, 1));
    let image = scene.image("dev", &[&w]);
    let bundles = signed(&image, "alice");
    let stored = scene.ensure(&image, &bundles).unwrap();
    assert!(fs::symlink_metadata(stored.rootfs.join("dev/sda")).is_err(), "a device node was created");
    assert!(scene.store.files(&stored.digest).unwrap().iter().any(|f| f.path == "/dev/sda"));
    scene.store.remove(&stored.digest.oci()).unwrap();

    let options = store::EnsureOptions { create_devices: true, ..Default::default() };
    let stored = scene
        .store
        .ensure(&image, &bundles, &scene.trust, &options, std::sync::Arc::new(verifier_core::progress::NoProgress))
        .unwrap();
    let meta = fs::symlink_metadata(stored.rootfs.join("dev/sda")).unwrap();
    assert_eq!(meta.rdev(), rustix::fs::makedev(8, 0));
}
