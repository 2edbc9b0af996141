//! Hostile input: damaged or malicious layers wrapped in otherwise valid OCI layouts, files that
//! are not bundles, and bundles that must not verify (revoked key, one key counted twice,
//! expired, replayed, tampered). Each case checks the exit code, an error naming what is at
//! fault, and for `sign` that no bundle (nor any temporary file) is left behind.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use support::*;
use testdata::hostile::{self, HostileImage, HostileLayer};

/// Writes the case in its own temp dir; returns (tmp, image).
fn hostile_image(case: HostileLayer) -> (tempfile::TempDir, HostileImage) {
    let tmp = tempdir();
    let image = case.write(&tmp.path().join(case.name())).unwrap();
    (tmp, image)
}

/// `imgsign sign` refuses the image with exit 2, names the layer and entry, writes nothing.
fn sign_refuses(case: HostileLayer) -> String {
    let (tmp, image) = hostile_image(case);
    let [a, ..] = keys();
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.json");
    let run = sign(&image.reference(), &[a], &out, &[]);
    run.code(2).says(&format!("layer 1 ({})", image.layer_digest));
    if let Some(culprit) = case.culprit() {
        run.says(&format!("{culprit:?}"));
    }
    assert_nothing_written(&out);
    run.stderr.clone()
}

/// `imgsign verify` with a valid, trusted bundle (of a good image) reaches the hostile layer and
/// fails with `code`, naming the layer.
fn verify_refuses(case: HostileLayer, code: i32) -> String {
    let (tmp, image) = hostile_image(case);
    let [a, ..] = keys();
    let good = hostile::write_good_image(&tmp.path().join("good")).unwrap();
    let bundle = sign_ok(&good.reference(), &[a], &tmp.path().join("good.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let run = verify(&image.reference(), &[&bundle], &trust, &["--no-record"]);
    run.code(code).says(&format!("layer 1 ({})", image.layer_digest));
    if let Some(culprit) = case.culprit() {
        run.says(&format!("{culprit:?}"));
    }
    run.all()
}

#[test]
fn digest_mismatch_sign() {
    let err = sign_refuses(HostileLayer::DigestMismatch);
    assert!(err.contains("digest mismatch"), "{err}");
}

#[test]
fn digest_mismatch_verify_fails_verification() {
    let out = verify_refuses(HostileLayer::DigestMismatch, 1);
    assert!(out.contains("digest mismatch"), "{out}");
}

#[test]
fn truncated_gzip_sign() {
    sign_refuses(HostileLayer::TruncatedGzip);
}

#[test]
fn truncated_gzip_verify() {
    verify_refuses(HostileLayer::TruncatedGzip, 2);
}

#[test]
fn truncated_tar_sign() {
    let err = sign_refuses(HostileLayer::TruncatedTar);
    assert!(err.contains("truncated tar"), "{err}");
}

#[test]
fn truncated_tar_verify() {
    verify_refuses(HostileLayer::TruncatedTar, 2);
}

#[test]
fn dotdot_entry_sign() {
    let err = sign_refuses(HostileLayer::DotDot);
    assert!(err.contains(".."), "{err}");
}

#[test]
fn dotdot_entry_verify() {
    verify_refuses(HostileLayer::DotDot, 2);
}

#[test]
fn absolute_entry_sign() {
    let err = sign_refuses(HostileLayer::AbsolutePath);
    assert!(err.contains("absolute path"), "{err}");
}

#[test]
fn absolute_entry_verify() {
    verify_refuses(HostileLayer::AbsolutePath, 2);
}

#[test]
fn pax_size_mismatch_sign() {
    let err = sign_refuses(HostileLayer::PaxSizeMismatch);
    assert!(err.contains("PAX size 10 disagrees with ustar size 5"), "{err}");
}

#[test]
fn pax_size_mismatch_verify() {
    verify_refuses(HostileLayer::PaxSizeMismatch, 2);
}

#[test]
fn bare_whiteout_sign() {
    let err = sign_refuses(HostileLayer::BareWhiteout);
    assert!(err.contains("bare whiteout"), "{err}");
}

#[test]
fn bare_whiteout_verify() {
    verify_refuses(HostileLayer::BareWhiteout, 2);
}

#[test]
fn duplicate_entry_sign() {
    let err = sign_refuses(HostileLayer::DuplicateEntry);
    assert!(err.contains("duplicate entry"), "{err}");
}

#[test]
fn duplicate_entry_verify() {
    verify_refuses(HostileLayer::DuplicateEntry, 2);
}

#[test]
fn lone_zero_block_sign() {
    let err = sign_refuses(HostileLayer::LoneZeroBlock);
    assert!(err.contains("lone zero block"), "{err}");
}

#[test]
fn lone_zero_block_verify() {
    verify_refuses(HostileLayer::LoneZeroBlock, 2);
}

#[test]
fn global_pax_size_sign() {
    let err = sign_refuses(HostileLayer::GlobalPaxSize);
    assert!(err.contains("global header sets \"size\""), "{err}");
}

#[test]
fn global_pax_size_verify() {
    verify_refuses(HostileLayer::GlobalPaxSize, 2);
}

#[test]
fn every_hostile_layer_case_is_tested() {
    // A new case in testdata must get its pair of tests above.
    assert_eq!(HostileLayer::ALL.len(), 10);
}

/// A good image, a bundle of it signed by `signers`, and a trust store of `trusted`.
struct Signed {
    tmp: tempfile::TempDir,
    image: String,
    bundle: PathBuf,
    trust: PathBuf,
}

fn signed(signers: &[&Key], trusted: &[&Key], threshold: usize, extra: &[&str]) -> Signed {
    let tmp = tempdir();
    let good = hostile::write_good_image(&tmp.path().join("good")).unwrap();
    let bundle = sign_ok(&good.reference(), signers, &tmp.path().join("good.bundle"), extra);
    let trust = trust_store(&tmp.path().join("trust"), trusted, threshold);
    Signed { image: good.reference(), bundle, trust, tmp }
}

#[test]
fn files_that_are_not_bundles_are_unreadable_input() {
    let [a, ..] = keys();
    let s = signed(&[a], &[a], 1, &[]);
    let manifest = image().oci_manifest_bytes().unwrap();
    for (name, bytes) in hostile::not_bundles(&manifest) {
        let path = s.tmp.path().join(name);
        fs::write(&path, bytes).unwrap();
        verify(&s.image, &[&path], &s.trust, &[]).code(2).says(&format!("bundle {}", path.display()));
    }
    // The in-toto statement alone (a manifest JSON, not a bundle) is refused too.
    let statement = s.tmp.path().join("statement.json");
    fs::write(&statement, serde_json::to_vec(&statement_of(&s.bundle)).unwrap()).unwrap();
    verify(&s.image, &[&statement], &s.trust, &[]).code(2).says("not a Sigstore bundle");
    // A missing bundle file.
    verify(&s.image, &[&s.tmp.path().join("absent.json")], &s.trust, &[]).code(2).says("absent.json");
}

fn statement_of(bundle: &Path) -> serde_json::Value {
    statement(bundle)
}

#[test]
fn bundle_signed_by_a_revoked_key_fails() {
    let [a, b, _] = keys();
    let s = signed(&[a], &[a, b], 1, &[]);
    run(imgsign().args(["trust", "revoke"]).arg(&s.trust).arg(&a.id)).code(0);
    verify(&s.image, &[&s.bundle], &s.trust, &[]).code(1).says(&format!("signature by revoked key {} ignored", a.id));
}

#[test]
fn one_key_signing_twice_does_not_meet_a_threshold_of_two() {
    let [a, b, _] = keys();
    let s = signed(&[a], &[a, b], 2, &[]);
    let doubled = s.tmp.path().join("doubled.bundle");
    fs::write(&doubled, hostile::duplicate_first_signature(&fs::read(&s.bundle).unwrap()).unwrap()).unwrap();
    assert_eq!(
        testdata::hostile::statement(&fs::read(&doubled).unwrap()).unwrap(),
        statement(&s.bundle),
        "same statement"
    );
    verify(&s.image, &[&doubled], &s.trust, &[])
        .code(1)
        .says("1 distinct trusted key(s) signed; threshold is 2")
        .says(&format!("repeated signature by key {} counted once", a.id));
    // The same bundle given twice does not count twice either.
    verify(&s.image, &[&s.bundle, &s.bundle], &s.trust, &[]).code(1).says("threshold is 2");
}

#[test]
fn signing_with_the_same_key_twice_is_refused() {
    let [a, b, _] = keys();
    let tmp = tempdir();
    let good = hostile::write_good_image(&tmp.path().join("good")).unwrap();
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let (out, out2) = (out_dir.join("bundle.json"), out_dir.join("bundle2.json"));
    let mut c = imgsign();
    c.arg("sign").arg(good.reference()).arg("--key").arg(&a.private).arg("--key").arg(&a.private);
    c.arg("--out").arg(&out).arg("--out").arg(&out2);
    run(&mut c).code(2).says(&a.id);
    assert_nothing_written(&out);
    assert_nothing_written(&out2);
    // Several keys need one output each.
    sign(&good.reference(), &[a, b], &out, &[]).code(2).says("one --out per --key");
    assert_nothing_written(&out);
}

#[test]
fn wrong_passphrase_writes_nothing() {
    let [a, ..] = keys();
    let tmp = tempdir();
    let good = hostile::write_good_image(&tmp.path().join("good")).unwrap();
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.json");
    let r = run(imgsign()
        .env("IMGSIGN_PASSPHRASE", "wrong")
        .arg("sign")
        .arg(good.reference())
        .arg("--key")
        .arg(&a.private)
        .arg("--out")
        .arg(&out));
    r.code(2).says(&a.private.display().to_string());
    assert_nothing_written(&out);
}

#[test]
fn expired_bundle_fails() {
    let [a, ..] = keys();
    let s = signed(&[a], &[a], 1, &["--expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    verify(&s.image, &[&s.bundle], &s.trust, &[]).code(1).says("expired at");
}

#[test]
fn replayed_older_version_fails() {
    let [a, ..] = keys();
    let s = signed(&[a], &[a], 1, &["--name", "replay-test", "--version", "2"]);
    let v1 = sign_ok(&s.image, &[a], &s.tmp.path().join("v1.bundle"), &["--name", "replay-test", "--version", "1"]);
    verify(&s.image, &[&s.bundle], &s.trust, &[]).code(0);
    verify(&s.image, &[&v1], &s.trust, &[])
        .code(1)
        .says("version 1 is older than version 2 already accepted for \"replay-test\"");
    // The same version again is fine, and the refusal did not lower what is remembered.
    verify(&s.image, &[&s.bundle], &s.trust, &[]).code(0);
    let shown = run(imgsign().args(["trust", "show", "--json"]).arg(&s.trust)).code(0).json();
    assert_eq!(shown["versions"]["replay-test"], 2, "{shown}");
}

#[test]
fn tampered_payload_or_signature_fails() {
    let [a, ..] = keys();
    let s = signed(&[a], &[a], 1, &[]);
    let original: serde_json::Value = serde_json::from_slice(&fs::read(&s.bundle).unwrap()).unwrap();
    for field in ["/dsseEnvelope/payload", "/dsseEnvelope/signatures/0/sig"] {
        let mut bundle = original.clone();
        let text = bundle.pointer(field).unwrap().as_str().unwrap().to_string();
        // Change one base64 character in the middle: still valid base64, different bytes.
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        *bundle.pointer_mut(field).unwrap() = serde_json::Value::String(chars.into_iter().collect());
        let path = s.tmp.path().join("tampered.bundle");
        fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
        verify(&s.image, &[&path], &s.trust, &[]).code(1).says("matches no trusted key");
    }
}

/// Finds `needle` in `file` and flips one bit of it, in place.
fn flip_inside(file: &Path, needle: &[u8]) {
    let mut bytes = fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {}", file.display()));
    bytes[at + needle.len() / 2] ^= 0x01;
    fs::write(file, bytes).unwrap();
}

#[test]
fn tampered_layer_of_the_real_oci_image_fails() {
    let real = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&real.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let copy = tmp.path().join("oci");
    testdata::real::copy_tree(&real.oci_dir, &copy).unwrap();
    // The biggest blob is the gzip layer holding busybox; flip a bit in the middle of it.
    let (largest, _) = fs::read_dir(copy.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .max_by_key(|(_, len)| *len)
        .unwrap();
    let mut bytes = fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&largest, bytes).unwrap();
    let digest = format!("sha256:{}", largest.file_name().unwrap().to_str().unwrap());
    let reference = format!("oci:{}:{}", copy.display(), testdata::real::TAG);
    verify(&reference, &[&bundle], &trust, &[]).code(1).says("digest mismatch").says(&digest);
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.json");
    sign(&reference, &[a], &out, &[]).code(2).says(&digest);
    assert_nothing_written(&out);
}

#[test]
fn tampered_layer_of_the_docker_archive_fails() {
    let real = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&real.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let archive = tmp.path().join("archive.tar");
    fs::copy(&real.docker_archive, &archive).unwrap();
    // Layers are stored uncompressed in a docker-archive: change a byte of the setuid script.
    flip_inside(&archive, b"exec /bin/busybox id");
    let reference = format!("docker-archive:{}", archive.display());
    verify(&reference, &[&bundle], &trust, &[]).code(1).says("diff_id");
}

#[test]
fn unreadable_images_are_bad_input() {
    let [a, ..] = keys();
    let s = signed(&[a], &[a], 1, &[]);
    let absent = s.tmp.path().join("absent");
    let out_dir = s.tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.json");
    for reference in [
        format!("oci:{}", absent.display()),
        format!("docker-archive:{}", absent.display()),
        format!("dir:{}", absent.display()),
        format!("registry:{}", absent.display()),
    ] {
        verify(&reference, &[&s.bundle], &s.trust, &[]).code(2).says(if reference.starts_with("registry:") {
            "bad image reference"
        } else {
            "absent"
        });
        sign(&reference, &[a], &out, &[]).code(2);
        assert_nothing_written(&out);
    }
    // An OCI layout without the tag asked for.
    let good = s.image.rsplit_once(':').unwrap().0.to_string();
    verify(&format!("{good}:no-such-tag"), &[&s.bundle], &s.trust, &[]).code(2).says("no image tagged \"no-such-tag\"");
}

#[test]
fn failed_sign_leaves_an_existing_bundle_untouched() {
    let [a, ..] = keys();
    let (tmp, hostile) = hostile_image(HostileLayer::DuplicateEntry);
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.json");
    fs::write(&out, b"previous bundle\n").unwrap();
    sign(&hostile.reference(), &[a], &out, &[]).code(2);
    assert_eq!(fs::read(&out).unwrap(), b"previous bundle\n");
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 1, "temporary files left in {}", out_dir.display());
}

#[test]
fn tampered_config_of_the_docker_archive_fails() {
    let real = image();
    let [a, ..] = keys();
    let tmp = tempdir();
    let bundle = sign_ok(&real.oci_ref(), &[a], &tmp.path().join("oci.bundle"), &[]);
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let archive = tmp.path().join("archive.tar");
    fs::copy(&real.docker_archive, &archive).unwrap();
    // The config is named by its digest (`<hex>.json`); change one byte of it.
    flip_inside(&archive, b"\"architecture\":\"amd64\"");
    let reference = format!("docker-archive:{}", archive.display());
    verify(&reference, &[&bundle], &trust, &[]).code(1).says("digest mismatch").says(".json");
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.json");
    sign(&reference, &[a], &out, &[]).code(2).says("digest mismatch");
    assert_nothing_written(&out);
}

/// An image whose layer 1 holds a file named with a Latin-1 byte; returns (tmp, layout).
fn latin1_image() -> (tempfile::TempDir, testdata::oci::Written) {
    let tmp = tempdir();
    let mut tar = testdata::tar::TarWriter::new();
    tar.dir("etc", 0o755).add(testdata::tar::Entry::file(b"etc/caf\xe9".as_slice(), 0o644, b"latin-1"));
    let layers = [hostile::base_layer(), testdata::oci::Layer::tar(tar.finish())];
    let layout = testdata::oci::write_layout(&tmp.path().join("latin1"), "t", &layers).unwrap();
    (tmp, layout)
}

#[test]
fn non_utf8_file_name_is_refused_by_name() {
    let [a, ..] = keys();
    let (tmp, layout) = latin1_image();
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("bundle.json");
    sign(&layout.reference(), &[a], &out, &[]).code(2).says("etc/caf").says("UTF-8");
    assert_nothing_written(&out);
}

#[test]
fn non_utf8_file_name_error_names_its_layer() {
    let [a, ..] = keys();
    let (tmp, layout) = latin1_image();
    let out = tmp.path().join("bundle.json");
    sign(&layout.reference(), &[a], &out, &[]).code(2).says(&format!("layer 1 ({})", layout.layer_digests[1]));
}

#[test]
fn sign_onto_a_directory_fails_and_leaves_no_temporary_file() {
    // The bundle is written to a temporary file first; renaming it over a directory fails and
    // the temporary file must go.
    let [a, ..] = keys();
    let tmp = tempdir();
    let good = hostile::write_good_image(&tmp.path().join("good")).unwrap();
    let out_dir = tmp.path().join("out");
    fs::create_dir_all(out_dir.join("bundle.json")).unwrap();
    sign(&good.reference(), &[a], &out_dir.join("bundle.json"), &[]).code(2).says("bundle.json");
    let left: Vec<_> = fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["bundle.json"], "temporary files left behind");
    assert!(out_dir.join("bundle.json").is_dir());
}
