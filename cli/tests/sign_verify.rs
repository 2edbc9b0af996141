//! Round trips on an image built by real tools (umoci, skopeo): sign and verify the OCI layout,
//! its docker-archive copy and the unpacked `dir:` tree; tampering with the tree is reported path
//! by path; several keys and thresholds; the same image always gives the same manifest bytes.

mod support;

use std::fs;
use std::path::Path;
use support::*;
use testdata::real::paths;

fn files(bundle: &Path) -> serde_json::Value {
    statement(bundle)["predicate"]["files"].clone()
}

fn entry<'a>(files: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    files.as_array().unwrap().iter().find(|f| f["path"] == path)
}

#[test]
fn oci_round_trip_and_layer_rules() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&image.oci_ref(), &[&bundle], &trust, &[]).code(0).says("verified");

    // The signed manifest is the tree a runtime would see.
    let files = files(&bundle);
    assert!(entry(&files, paths::WHITED_OUT).is_none(), "whiteout ignored");
    for hidden in paths::OPAQUE_HIDDEN {
        assert!(entry(&files, hidden).is_none(), "{hidden} survived the opaque directory");
    }
    assert_eq!(entry(&files, paths::OPAQUE_NEW).unwrap()["type"], "file");
    assert_eq!(entry(&files, paths::OPAQUE_DIR).unwrap()["type"], "dir");
    assert_eq!(entry(&files, paths::LAYER2_FILE).unwrap()["type"], "file");
    let setuid = entry(&files, paths::SETUID).unwrap();
    assert_eq!(setuid["mode"], "4755");
    assert_eq!(setuid["uid"], 0);
    let link = entry(&files, paths::SYMLINK).unwrap();
    assert_eq!(link["type"], "symlink");
    assert_eq!(link["linkTarget"], paths::SYMLINK_TARGET);
    let hard = entry(&files, paths::HARDLINK).unwrap();
    assert_eq!(hard["type"], "hardlink");
    assert_eq!(hard["linkTarget"], paths::HARDLINK_TARGET);
    assert_eq!(hard["sha256"], entry(&files, paths::HARDLINK_TARGET).unwrap()["sha256"]);
    let busybox = entry(&files, paths::BUSYBOX).unwrap();
    let on_disk = fs::read(image.rootfs.join(&paths::BUSYBOX[1..])).unwrap();
    assert_eq!(busybox["sha256"], testdata::sha256_hex(&on_disk));
    assert_eq!(busybox["size"], on_disk.len());
    assert_eq!(entry(&files, paths::STICKY_DIR).unwrap()["mode"], "1777");

    // Bound to this image's manifest digest, with the layers recorded.
    let statement = statement(&bundle);
    let manifest = image.oci_manifest_bytes().unwrap();
    assert_eq!(statement["subject"][0]["digest"]["sha256"], testdata::sha256_hex(&manifest));
    assert_eq!(statement["predicate"]["source"]["layers"].as_array().unwrap().len(), 3);
}
