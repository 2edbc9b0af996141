//! `imgsign images`, `rmi` and `gc` on a store filled through the library (`imgsign run` fills it
//! the same way): listing (human and JSON, `--store` and `$IMGSIGN_STORE`), removal by digest
//! prefix and by reference, an unknown image, and gc freeing the removed image's objects.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};
use support::{imgsign, run, tempdir};
use testdata::oci::{write_layout, Layer};
use testdata::tar::TarWriter;
use verifier_core::progress::NoProgress;
use verifier_core::sign::{sign, SignOptions};
use verifier_core::source::ImageRef;

fn store_image(
    dir: &std::path::Path,
    store: &store::Store,
    trust: &keys::TrustStore,
    name: &str,
    content: &[u8],
) -> store::StoredImage {
    let mut layer = TarWriter::new();
    layer.dir("bin", 0o755).file("bin/tool", 0o755, b"shared\n").file("bin/own", 0o755, content);
    let image: ImageRef =
        write_layout(&dir.join(name), "t", &[Layer::gzip(&layer.finish())]).unwrap().reference().parse().unwrap();
    let key = testdata::keys::test_key("alice");
    let options = SignOptions {
        name: Some(name.into()),
        version: 1,
        expires_in: Duration::from_secs(86400),
        now: SystemTime::now(),
    };
    let bundles = sign(&image, &[&key], &options, Arc::new(NoProgress)).unwrap().bundles;
    store.ensure(&image, &bundles, trust, &store::EnsureOptions::default(), Arc::new(NoProgress)).unwrap()
}

#[test]
fn images_rmi_and_gc() {
    let tmp = tempdir();
    let root = tmp.path().join("store");
    let store = store::Store::open(&root).unwrap();
    let mut trust = keys::TrustStore::init(&tmp.path().join("trust"), 1).unwrap();
    trust.add_key(&testdata::keys::test_key("alice").public_key()).unwrap();
    let one = store_image(tmp.path(), &store, &trust, "one", b"one\n");
    let two = store_image(tmp.path(), &store, &trust, "two", b"two!\n");

    let listed = run(imgsign().args(["images", "--json", "--store"]).arg(&root)).code(0).json();
    let digests: Vec<&str> =
        listed.as_array().unwrap().iter().map(|i| i["record"]["digest"].as_str().unwrap()).collect();
    let mut expected = vec![one.digest.to_string(), two.digest.to_string()];
    expected.sort();
    assert_eq!(digests, expected);
    run(imgsign().arg("images").env("IMGSIGN_STORE", &root)).code(0).says(&one.record.reference).says("two");

    // By digest prefix, then by reference; an unknown image exits 1 and names it.
    let prefix = &one.digest.hex()[..10];
    run(imgsign().args(["rmi", prefix, "--store"]).arg(&root)).code(0).says(&format!("removed {}", one.digest));
    run(imgsign().args(["rmi", "--json", &two.record.reference, "--store"]).arg(&root)).code(0);
    run(imgsign().args(["rmi", "deadbeef", "--store"]).arg(&root)).code(1).says("no stored image matches \"deadbeef\"");

    let gc = run(imgsign().args(["gc", "--json", "--store"]).arg(&root)).code(0).json();
    assert_eq!(gc["objectsRemoved"], 3, "{gc}");
    assert_eq!(gc["bytesFreed"], (b"shared\n".len() + b"one\n".len() + b"two!\n".len()) as u64, "{gc}");
    run(imgsign().args(["images", "--store"]).arg(&root)).code(0);
    run(imgsign().args(["gc", "--store"]).arg(&root)).code(0).says("removed 0 object(s)");
}
