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
    let bundle = tmp.path().join("oci.bundle");
    let signed = sign(&image.oci_ref(), &[a], &bundle, &[]);
    signed.code(0).says(&a.id);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let verified = verify(&image.oci_ref(), &[&bundle], &trust, &[]);
    verified.code(0).says("verified");
    // stderr is not a terminal here: no progress output.
    assert_eq!(signed.stderr, "");
    assert_eq!(verified.stderr, "");

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
    let capability = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(testdata::real::CAPABILITY)
    };
    assert_eq!(entry(&files, paths::CAPABILITY_FILE).unwrap()["xattrs"]["security.capability"], capability.as_str());

    // Bound to this image's manifest digest, with the layers recorded.
    let statement = statement(&bundle);
    let manifest = image.oci_manifest_bytes().unwrap();
    assert_eq!(statement["subject"][0]["digest"]["sha256"], testdata::sha256_hex(&manifest));
    assert_eq!(statement["predicate"]["source"]["layers"].as_array().unwrap().len(), 3);
}

#[test]
fn docker_archive_copy_verifies_with_the_oci_bundle() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&image.docker_archive_ref(), &[&bundle], &trust, &[]).code(0).says("verified");
}

#[test]
fn docker_archive_manifest_is_identical_to_the_oci_manifest() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let oci = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let docker = sign_ok(&image.docker_archive_ref(), &[a], &tmp.path().join("docker.bundle"), &[]);
    let (oci_files, docker_files) = (files(&oci), files(&docker));
    assert!(oci_files.as_array().unwrap().len() > 10);
    assert_eq!(oci_files, docker_files, "the docker-archive copy has a different per-file manifest");
    // Same bytes, not only the same JSON values.
    assert_eq!(serde_json::to_vec(&oci_files).unwrap(), serde_json::to_vec(&docker_files).unwrap());
    // And the docker-archive bundle verifies the docker-archive.
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&image.docker_archive_ref(), &[&docker], &trust, &[]).code(0);
}

#[test]
fn zstd_copy_has_the_same_manifest_and_verifies_with_the_oci_bundle() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let oci = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let zstd = sign_ok(&image.oci_zstd_ref(), &[a], &tmp.path().join("zstd.bundle"), &[]);
    assert_eq!(files(&oci), files(&zstd));
    // Other blobs (zstd instead of gzip), the same uncompressed layers.
    let layers = |bundle: &Path, field: &str| -> Vec<serde_json::Value> {
        statement(bundle)["predicate"]["source"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l[field].clone())
            .collect()
    };
    assert_eq!(layers(&oci, "diffId"), layers(&zstd, "diffId"));
    assert_ne!(layers(&oci, "digest"), layers(&zstd, "digest"));
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&image.oci_zstd_ref(), &[&oci], &trust, &[]).code(0).says("verified");
}

#[test]
fn dir_round_trip() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&image.dir_ref(), &[a], &tmp.path().join("dir.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&image.dir_ref(), &[&bundle], &trust, &[]).code(0).says("verified");
    let files = files(&bundle);
    assert_eq!(entry(&files, paths::SETUID).unwrap()["mode"], "4755");
    assert_eq!(entry(&files, paths::HARDLINK).unwrap()["type"], "hardlink");
    assert_eq!(entry(&files, paths::SYMLINK).unwrap()["linkTarget"], paths::SYMLINK_TARGET);
}

#[test]
fn unpacked_tree_has_the_same_manifest_as_the_image() {
    // umoci's unpack of the image, signed as a dir: tree, lists exactly what the layers give.
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let oci = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let dir = sign_ok(&image.dir_ref(), &[a], &tmp.path().join("dir.bundle"), &[]);
    assert_eq!(files(&oci), files(&dir));
}

/// A private copy of the unpacked tree, signed with key a; returns (tmp, tree, bundle, trust).
fn signed_tree_copy() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let tree = tmp.path().join("rootfs");
    testdata::real::copy_tree(&image.rootfs, &tree).unwrap();
    let reference = format!("dir:{}", tree.display());
    let bundle = sign_ok(&reference, &[a], &tmp.path().join("tree.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&reference, &[&bundle], &trust, &["--no-record"]).code(0);
    (tmp, tree, bundle, trust)
}

fn dir_ref(tree: &Path) -> String {
    format!("dir:{}", tree.display())
}

#[test]
fn one_changed_byte_is_reported_as_changed() {
    let (_tmp, tree, bundle, trust) = signed_tree_copy();
    let file = tree.join(&paths::PLAIN_FILE[1..]);
    let mut bytes = fs::read(&file).unwrap();
    bytes[0] ^= 0x20;
    fs::write(&file, &bytes).unwrap();
    verify(&dir_ref(&tree), &[&bundle], &trust, &[])
        .code(1)
        .says(&format!("changed  {}", paths::PLAIN_FILE))
        .says("sha256: ")
        .says("FAILED");
}

#[test]
fn added_file_is_reported_as_extra() {
    let (_tmp, tree, bundle, trust) = signed_tree_copy();
    fs::write(tree.join("bin/dropped"), b"#!/bin/sh\necho payload\n").unwrap();
    verify(&dir_ref(&tree), &[&bundle], &trust, &[]).code(1).says("extra    /bin/dropped");
}

#[test]
fn removed_file_is_reported_as_missing() {
    let (_tmp, tree, bundle, trust) = signed_tree_copy();
    fs::remove_file(tree.join(&paths::LAYER2_FILE[1..])).unwrap();
    verify(&dir_ref(&tree), &[&bundle], &trust, &[]).code(1).says(&format!("missing  {}", paths::LAYER2_FILE));
}

#[test]
fn dropped_setuid_bit_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, tree, bundle, trust) = signed_tree_copy();
    let file = tree.join(&paths::SETUID[1..]);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    verify(&dir_ref(&tree), &[&bundle], &trust, &[])
        .code(1)
        .says(&format!("changed  {}", paths::SETUID))
        .says("mode: 4755 -> 0755");
}

#[test]
fn json_report_lists_every_difference() {
    let (_tmp, tree, bundle, trust) = signed_tree_copy();
    let changed = tree.join(&paths::BUSYBOX[1..]);
    let mut bytes = fs::read(&changed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&changed, &bytes).unwrap();
    fs::write(tree.join("etc/extra.conf"), b"x").unwrap();
    fs::remove_file(tree.join(&paths::OPAQUE_NEW[1..])).unwrap();
    let run = verify(&dir_ref(&tree), &[&bundle], &trust, &["--json"]);
    run.code(1);
    let report = run.json();
    assert_eq!(report["verified"], false);
    let differences = report["differences"].as_array().expect("differences array");
    let find = |path: &str| {
        differences.iter().find(|d| d["path"] == path).unwrap_or_else(|| panic!("{path} not in {differences:?}"))
    };
    assert_eq!(find(paths::BUSYBOX)["kind"], "changed");
    assert!(find(paths::BUSYBOX)["fields"].as_array().unwrap().iter().any(|f| f["field"] == "sha256"));
    assert_eq!(find("/etc/extra.conf")["kind"], "extra");
    assert_eq!(find(paths::OPAQUE_NEW)["kind"], "missing");
    assert_eq!(differences.len(), 3, "{differences:?}");
    let files_check = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "files").expect("files check");
    assert_eq!(files_check["ok"], false);
}

#[test]
fn json_report_of_a_verified_image() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let report = verify(&image.oci_ref(), &[&bundle], &trust, &["--json"]).code(0).json();
    assert_eq!(report["verified"], true);
    assert_eq!(report["differences"].as_array().unwrap().len(), 0);
    assert_eq!(report["signers"], serde_json::json!([a.id]));
}

/// The statement without its expiry, which depends on the time of signing.
fn timeless_statement(bundle: &Path) -> Vec<u8> {
    let mut statement = statement(bundle);
    statement["predicate"].as_object_mut().unwrap().remove("expires");
    serde_json::to_vec(&statement).unwrap()
}

#[test]
fn same_image_gives_the_same_manifest_bytes() {
    let image = image();
    let [a, b, _] = keys();
    let tmp = tempdir();
    let first = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("1.bundle"), &[]);
    let second = sign_ok(&image.oci_ref(), &[b], &tmp.path().join("2.bundle"), &[]);
    assert_eq!(timeless_statement(&first), timeless_statement(&second));

    // An independent second build of the same content with umoci (other mtimes, other layer
    // digests) gives the same per-file manifest.
    let rebuilt = testdata::real::RealImage::build(&tmp.path().join("rebuilt")).unwrap();
    let third = sign_ok(&rebuilt.oci_ref(), &[a], &tmp.path().join("3.bundle"), &[]);
    assert_eq!(serde_json::to_vec(&files(&first)).unwrap(), serde_json::to_vec(&files(&third)).unwrap());
}

#[test]
fn two_keys_meet_a_threshold_of_two() {
    let image = image();
    let [a, b, _] = keys();
    let tmp = tempdir();
    // One invocation, one statement, one bundle per signer (a Sigstore bundle holds one signature).
    let (bundle_a, bundle_b) = (tmp.path().join("a.bundle"), tmp.path().join("b.bundle"));
    let mut c = imgsign();
    c.arg("sign").arg(image.oci_ref()).arg("--key").arg(&a.private).arg("--key").arg(&b.private);
    c.arg("--out").arg(&bundle_a).arg("--out").arg(&bundle_b);
    run(&mut c).code(0);
    let trust = trust_store(&tmp.path().join("trust"), &[a, b], 2);
    verify(&image.oci_ref(), &[&bundle_a], &trust, &[])
        .code(1)
        .says("1 distinct trusted key(s) signed; threshold is 2");
    let report = verify(&image.oci_ref(), &[&bundle_a, &bundle_b], &trust, &["--json"]).code(0).json();
    let mut signers: Vec<String> =
        report["signers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    signers.sort();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(signers, expected);
}

#[test]
fn one_key_does_not_meet_a_threshold_of_two() {
    let image = image();
    let [a, b, _] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("a.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a, b], 2);
    verify(&image.oci_ref(), &[&bundle], &trust, &[]).code(1).says("1 distinct trusted key(s) signed; threshold is 2");
}

#[test]
fn untrusted_key_is_refused() {
    let image = image();
    let [a, _, c] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&image.oci_ref(), &[c], &tmp.path().join("c.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&image.oci_ref(), &[&bundle], &trust, &[]).code(1).says("matches no trusted key");
}

#[test]
fn bundle_of_another_image_is_refused() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let other = testdata::hostile::write_good_image(&tmp.path().join("other")).unwrap();
    let bundle = sign_ok(&other.reference(), &[a], &tmp.path().join("other.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&image.oci_ref(), &[&bundle], &trust, &[]).code(1).says("is not this image");
}

#[test]
fn bad_usage_exits_2() {
    let image = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&image.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    // No --trust.
    run(imgsign().arg("verify").arg(image.oci_ref()).arg("--bundle").arg(&bundle)).code(2);
    // No --bundle.
    run(imgsign().arg("verify").arg(image.oci_ref()).arg("--trust").arg(tmp.path())).code(2);
    // Unknown flag, unknown command.
    run(imgsign().arg("verify").arg("--frobnicate")).code(2);
    run(imgsign().arg("frobnicate")).code(2);
    // A trust store directory that is not one.
    verify(&image.oci_ref(), &[&bundle], &tmp.path().join("no-store"), &[]).code(2);
    // An unparsable expiry.
    let out = tmp.path().join("out").join("b.json");
    fs::create_dir(out.parent().unwrap()).unwrap();
    sign(&image.oci_ref(), &[a], &out, &["--expires", "soon"]).code(2);
    assert_nothing_written(&out);
}
