//! `--platform` on `imgsign sign` and `imgsign verify`: which manifest of a multi-platform OCI
//! index is signed and verified (linux/amd64 unless told), and an error listing the platforms
//! there are when none matches.

mod support;

use support::*;
use testdata::oci::{write_platform_index, Layer, PlatformImage, Written};
use testdata::tar::TarWriter;

fn arch_layer(arch: &str) -> Vec<Layer> {
    let mut w = TarWriter::new();
    w.dir("etc", 0o755).file("etc/arch", 0o644, arch.as_bytes());
    vec![Layer::gzip(&w.finish())]
}

/// An index of linux/amd64 and linux/arm64/v8 images, each with `/etc/arch` naming its own.
fn multi_platform(dir: &std::path::Path) -> (String, Vec<Written>) {
    let (amd64, arm64) = (arch_layer("amd64"), arch_layer("arm64"));
    let images = [
        PlatformImage { platform: "linux/amd64", layers: &amd64 },
        PlatformImage { platform: "linux/arm64/v8", layers: &arm64 },
    ];
    let written = write_platform_index(dir, "multi", &images).unwrap();
    (written[0].reference(), written)
}

fn subject(bundle: &std::path::Path) -> String {
    format!("sha256:{}", statement(bundle)["subject"][0]["digest"]["sha256"].as_str().unwrap())
}

fn arch_digest(bundle: &std::path::Path) -> String {
    let files = statement(bundle)["predicate"]["files"].clone();
    let arch = files.as_array().unwrap().iter().find(|f| f["path"] == "/etc/arch").unwrap().clone();
    arch["sha256"].as_str().unwrap().to_string()
}

#[test]
fn platform_chooses_the_manifest_of_an_index() {
    let tmp = tempdir();
    let (reference, written) = multi_platform(&tmp.path().join("img"));
    let [a, ..] = keys();
    let default = sign_ok(&reference, &[a], &tmp.path().join("default.bundle"), &[]);
    assert_eq!(subject(&default), written[0].manifest_digest, "linux/amd64 is the default");
    assert_eq!(arch_digest(&default), testdata::sha256_hex(b"amd64"));
    for platform in ["linux/arm64", "linux/arm64/v8"] {
        let arm = sign_ok(&reference, &[a], &tmp.path().join("arm.bundle"), &["--platform", platform]);
        assert_eq!(subject(&arm), written[1].manifest_digest, "{platform}");
        assert_eq!(arch_digest(&arm), testdata::sha256_hex(b"arm64"));
    }
    let arm = tmp.path().join("arm.bundle");
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    verify(&reference, &[&arm], &trust, &["--no-record", "--platform", "linux/arm64"]).code(0).says("verified");
    // The arm64 bundle does not verify the amd64 image.
    verify(&reference, &[&arm], &trust, &["--no-record"]).code(1);
}

#[test]
fn unknown_platform_lists_those_there_are() {
    let tmp = tempdir();
    let (reference, _) = multi_platform(&tmp.path().join("img"));
    let [a, ..] = keys();
    let out = tmp.path().join("out.bundle");
    sign(&reference, &[a], &out, &["--platform", "linux/s390x"])
        .code(2)
        .says("no linux/s390x manifest")
        .says("available: linux/amd64, linux/arm64/v8");
    sign(&reference, &[a], &out, &["--platform", "linux/arm64/v7"]).code(2).says("no linux/arm64/v7 manifest");
    assert!(!out.exists());
    let trust = trust_store(&tmp.path().join("trust"), &[a], 1);
    let good = sign_ok(&reference, &[a], &tmp.path().join("good.bundle"), &[]);
    verify(&reference, &[&good], &trust, &["--platform", "windows/amd64"]).code(2).says("no windows/amd64 manifest");
}

#[test]
fn malformed_platform_is_refused_by_the_parser() {
    let tmp = tempdir();
    let [a, ..] = keys();
    let good = testdata::hostile::write_good_image(&tmp.path().join("good")).unwrap();
    for bad in ["linux", "Linux/amd64", "linux/amd64/v8/x", "linux//amd64"] {
        sign(&good.reference(), &[a], &tmp.path().join("b"), &["--platform", bad]).code(2).says("bad platform");
    }
}
