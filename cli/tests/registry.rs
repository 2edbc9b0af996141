//! Sign and verify images by registry reference against a real registry (Debian's
//! `docker-registry`, started by the test on loopback), the image pushed there by skopeo:
//! plain HTTP with `--insecure`, then TLS with a certificate the test makes and htpasswd basic
//! auth, credentials from an auth file; refusals name their reason and exit non-zero.
//!
//! Needs the Debian packages docker-registry, skopeo, apache2-utils, openssl, umoci.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::registry::TestRegistry;
use support::*;
use testdata::oci::{write_platform_index, Layer, PlatformImage};
use testdata::tar::TarWriter;

/// The binary with no credentials from the machine: HOME points at `home`, no
/// `REGISTRY_AUTH_FILE`, no `XDG_RUNTIME_DIR`.
fn imgsign_in(home: &Path) -> Command {
    let mut c = imgsign();
    c.env("HOME", home).env_remove("REGISTRY_AUTH_FILE").env_remove("XDG_RUNTIME_DIR");
    c
}

fn sign_ref(home: &Path, image: &str, out: &Path, extra: &[&str]) -> Run {
    let [a, ..] = keys();
    run(imgsign_in(home)
        .args(["sign", image, "--key"])
        .arg(&a.private)
        .arg("--out")
        .arg(out)
        .args(["--name", "registry-test", "--json"])
        .args(extra))
}

fn verify_ref(home: &Path, image: &str, bundle: &Path, trust: &Path, extra: &[&str]) -> Run {
    run(imgsign_in(home).args(["verify", image, "--bundle"]).arg(bundle).arg("--trust").arg(trust).args(extra))
}

fn trust(dir: &Path) -> PathBuf {
    let [a, ..] = keys();
    trust_store(&dir.join("trust"), &[a], 1)
}

#[test]
fn plain_http_registry_round_trip() {
    let image = image();
    let registry = TestRegistry::plain();
    registry.push(&image.oci_ref(), "test/image:v1");
    let tmp = tempdir();
    let home = tmp.path();
    let trust = trust(home);
    let by_tag = format!("{}:v1", registry.reference("test/image"));

    // Signed by tag, the subject is the manifest digest the registry (and skopeo) name.
    let bundle = home.join("registry.bundle");
    let signed = sign_ref(home, &by_tag, &bundle, &["--insecure"]);
    signed.code(0);
    let subject = signed.json()["subject"].as_str().unwrap().to_string();
    assert_eq!(subject, registry.inspect_digest("test/image:v1"));
    assert_eq!(signed.stderr, "", "no progress or warnings without a terminal");

    // Verified by tag and by digest; the bundle signed from the OCI layout verifies the pushed
    // image too (same manifest bytes, same per-file manifest).
    verify_ref(home, &by_tag, &bundle, &trust, &["--insecure", "--no-record"]).code(0).says("verified");
    let by_digest = format!("{}@{subject}", registry.reference("test/image"));
    verify_ref(home, &by_digest, &bundle, &trust, &["--insecure", "--no-record"]).code(0).says("verified");
    let from_layout =
        sign_ok(&image.oci_ref(), &[&keys()[0]], &home.join("layout.bundle"), &["--name", "registry-test"]);
    verify_ref(home, &by_tag, &from_layout, &trust, &["--insecure", "--no-record"]).code(0).says("verified");
    assert_eq!(statement(&from_layout)["predicate"]["files"], statement(&bundle)["predicate"]["files"]);

    // Without --insecure the client speaks TLS, which a plain HTTP registry cannot answer.
    let refused = verify_ref(home, &by_tag, &bundle, &trust, &["--no-record"]);
    refused.code(2).says(&registry.host);
    // A digest the repository does not hold.
    let absent = format!("{}@sha256:{}", registry.reference("test/image"), "0".repeat(64));
    verify_ref(home, &absent, &bundle, &trust, &["--insecure", "--no-record"]).code(2).says("not found");
    // An unknown tag.
    verify_ref(home, &format!("{}:nope", registry.reference("test/image")), &bundle, &trust, &["--insecure"])
        .code(2)
        .says("not found");

    // The registry still serves the image unchanged.
    assert_eq!(registry.inspect_digest("test/image:v1"), subject);
}

#[test]
fn insecure_is_for_loopback_only() {
    let tmp = tempdir();
    let out = tmp.path().join("b");
    let refused = sign_ref(tmp.path(), "docker://registry.example:5000/x:y", &out, &["--insecure"]);
    refused.code(2).says("loopback");
    assert!(!out.exists());
    sign_ref(tmp.path(), "docker://library/alpine", &out, &[]).code(2).says("registry host");
}

#[test]
fn tls_registry_with_basic_auth() {
    let image = image();
    let registry = TestRegistry::tls_with_auth();
    registry.push(&image.oci_ref(), "secure/image:v1");
    let tmp = tempdir();
    let home = tmp.path();
    let trust = trust(home);
    let certs = registry.cert_dir.clone().unwrap();
    let certs = certs.to_str().unwrap();
    let reference = format!("{}:v1", registry.reference("secure/image"));
    let bundle = home.join("b.bundle");

    // No credentials anywhere: 401, named, and nothing written.
    let refused = sign_ref(home, &reference, &bundle, &["--cert-dir", certs]);
    refused.code(2).says("refused access").says("401").says("no credentials for");
    assert!(!bundle.exists());

    // The CA is not trusted without --cert-dir.
    let auth = registry.auth_file(&home.join("auth.json"));
    let untrusted = sign_ref(home, &reference, &bundle, &["--authfile", auth.to_str().unwrap()]);
    untrusted.code(2);
    assert!(!bundle.exists());

    // Plain HTTP is not an option to get around TLS (the registry speaks TLS only).
    sign_ref(home, &reference, &bundle, &["--insecure", "--authfile", auth.to_str().unwrap()]).code(2);

    // With the auth file (given, then found through REGISTRY_AUTH_FILE) it signs and verifies.
    let signed = sign_ref(home, &reference, &bundle, &["--cert-dir", certs, "--authfile", auth.to_str().unwrap()]);
    signed.code(0);
    assert_eq!(signed.json()["subject"].as_str().unwrap(), registry.inspect_digest("secure/image:v1"));
    let verified = run(imgsign_in(home)
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["verify", &reference, "--cert-dir", certs, "--bundle"])
        .arg(&bundle)
        .arg("--trust")
        .arg(&trust));
    verified.code(0).says("verified");
    // Pushing needs write access: refused without credentials, done with them; then discovered.
    let key = &keys()[0].private;
    let push = |extra: &[&str]| {
        run(imgsign_in(home)
            .args(["sign", &reference, "--push", "--cert-dir", certs, "--key"])
            .arg(key)
            .arg("--out")
            .arg(home.join("pushed.bundle"))
            .args(extra))
    };
    push(&[]).code(2).says("refused access");
    let pushed = push(&["--authfile", auth.to_str().unwrap()]);
    pushed.code(0).says("pushed to");
    let discovered = run(imgsign_in(home)
        .args(["verify", &reference, "--cert-dir", certs, "--no-record", "--authfile"])
        .arg(&auth)
        .arg("--trust")
        .arg(&trust));
    discovered.code(0).says("verified");
    // Credentials from flags: the user, and the password from an environment variable.
    let by_flags = run(imgsign_in(home)
        .env("REGISTRY_TEST_PASSWORD", support::registry::PASSWORD)
        .args(["verify", &reference, "--cert-dir", certs, "--no-record", "--registry-user"])
        .arg(support::registry::USER)
        .args(["--registry-password-env", "REGISTRY_TEST_PASSWORD", "--trust"])
        .arg(&trust));
    by_flags.code(0).says("verified");
    let wrong = run(imgsign_in(home)
        .env("REGISTRY_TEST_PASSWORD", "not the password")
        .args(["verify", &reference, "--cert-dir", certs, "--no-record", "--registry-user"])
        .arg(support::registry::USER)
        .args(["--registry-password-env", "REGISTRY_TEST_PASSWORD", "--trust"])
        .arg(&trust));
    wrong.code(2).says("refused access").says("the credentials given");
    // The password never shows, neither on success nor on failure.
    for run in [&refused, &untrusted, &signed, &verified, &pushed, &discovered, &by_flags, &wrong] {
        assert!(!run.all().contains(support::registry::PASSWORD));
    }
}

/// A registry that lies: each fault is a clear error naming what was wrong, non-zero, and
/// nothing is written (a bundle or the trust store's rollback record).
#[test]
fn hostile_registry_faults() {
    use support::hostile_registry::{Fault, HostileRegistry};
    let image = image();
    let tmp = tempdir();
    let home = tmp.path();
    let trust = trust(home);
    let bundle = sign_ok(&image.oci_ref(), &[&keys()[0]], &home.join("layout.bundle"), &["--name", "registry-test"]);
    let cases: &[(Fault, i32, &[&str])] = &[
        (Fault::WrongLayerBytes, 1, &["image integrity", "digest mismatch"]),
        (Fault::WrongConfigBytes, 1, &["image integrity", "digest mismatch"]),
        (Fault::HugeManifest, 2, &["larger than the 4194304 byte limit"]),
        (Fault::HugeManifestUnannounced, 2, &["larger than the 4194304 byte limit"]),
        (Fault::TruncatedLayer, 1, &["image integrity", "size mismatch"]),
        (Fault::RedirectLoop, 2, &["redirect"]),
        (Fault::Unauthorized, 2, &["refused access", "401"]),
        (Fault::Stall, 2, &["timed out"]),
    ];
    for (fault, code, says) in cases {
        let registry = HostileRegistry::serve(&image.oci_dir, testdata::real::TAG, *fault);
        let reference = format!("{}:v1", registry.reference("hostile/image"));
        let verified = verify_ref(home, &reference, &bundle, &trust, &["--insecure", "--registry-timeout", "1s"]);
        verified.code(*code);
        for needle in *says {
            verified.says(needle);
        }
        let out = home.join("hostile").join("signed.bundle");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let signed = sign_ref(home, &reference, &out, &["--insecure", "--registry-timeout", "1s"]);
        assert_ne!(signed.code, Some(0), "{fault:?}: signed\n{}", signed.all());
        assert_nothing_written(&out);
    }
    // A transfer cut once is resumed with a Range request, and the image verifies.
    let flaky = HostileRegistry::serve(&image.oci_dir, testdata::real::TAG, Fault::DropOnceThenRange);
    let reference = format!("{}:v1", flaky.reference("hostile/image"));
    verify_ref(home, &reference, &bundle, &trust, &["--insecure", "--no-record"]).code(0).says("verified");

    // Nothing was accepted, so nothing was recorded against rollback.
    let verified = verify_ref(home, &image.oci_ref(), &bundle, &trust, &[]);
    verified.code(0).says("highest accepted so far: none");
}

/// A multi-platform index pushed with `skopeo copy --all`: linux/amd64 unless `--platform` says
/// otherwise, and the error lists the platforms there are.
#[test]
fn platform_is_chosen_in_a_registry_index() {
    let registry = TestRegistry::plain();
    let tmp = tempdir();
    let home = tmp.path();
    let layer = |arch: &str| {
        let mut w = TarWriter::new();
        w.dir("etc", 0o755).file("etc/arch", 0o644, arch.as_bytes());
        vec![Layer::gzip(&w.finish())]
    };
    let (amd64, arm64) = (layer("amd64"), layer("arm64"));
    let images = [
        PlatformImage { platform: "linux/amd64", layers: &amd64 },
        PlatformImage { platform: "linux/arm64/v8", layers: &arm64 },
    ];
    let written = write_platform_index(&home.join("multi"), "multi", &images).unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(written[0].reference())
        .arg(registry.reference("multi/image:v1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy --all: {}", String::from_utf8_lossy(&out.stderr));
    let reference = format!("{}:v1", registry.reference("multi/image"));
    let default = sign_ref(home, &reference, &home.join("amd64.bundle"), &["--insecure"]);
    assert_eq!(default.code(0).json()["subject"], written[0].manifest_digest.as_str());
    let arm = sign_ref(home, &reference, &home.join("arm64.bundle"), &["--insecure", "--platform", "linux/arm64"]);
    assert_eq!(arm.code(0).json()["subject"], written[1].manifest_digest.as_str());
    sign_ref(home, &reference, &home.join("s390x.bundle"), &["--insecure", "--platform", "linux/s390x"])
        .code(2)
        .says("no linux/s390x manifest")
        .says("linux/arm64/v8");
}

/// Bearer tokens from the registry's token service (the flow of Docker Hub, GHCR, Harbor), for
/// the basic credentials of the auth file; refused without them. Debian's registry has no token
/// service, so the registry here is the test's small server.
#[test]
fn bearer_token_from_the_token_service() {
    use support::hostile_registry::{Fault, HostileRegistry};
    let image = image();
    let tmp = tempdir();
    let home = tmp.path();
    let trust = trust(home);
    let bundle = sign_ok(&image.oci_ref(), &[&keys()[0]], &home.join("layout.bundle"), &["--name", "registry-test"]);
    let registry = HostileRegistry::serve(&image.oci_dir, testdata::real::TAG, Fault::BearerToken);
    let reference = format!("{}:v1", registry.reference("bearer/image"));
    verify_ref(home, &reference, &bundle, &trust, &["--insecure", "--no-record"]).code(2).says("refused access");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        support::registry::USER,
        support::registry::PASSWORD
    ));
    let auth_file = home.join("auth.json");
    std::fs::write(&auth_file, format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, registry.host)).unwrap();
    let verified = run(imgsign_in(home)
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .args(["verify", &reference, "--insecure", "--no-record", "--bundle"])
        .arg(&bundle)
        .arg("--trust")
        .arg(&trust));
    verified.code(0).says("verified");
}

/// `sign --push` attaches bundles as OCI 1.1 referrers; Debian's registry has no referrers API,
/// so they are listed by the `sha256-<hex>` tag schema index. Two signers pushing at the same
/// time both stay discoverable; verify without --bundle discovers them and keeps the statement
/// the trust store accepts; skopeo still reads the image unchanged and reads the index.
#[test]
fn push_and_discover_bundles_as_referrers() {
    let image = image();
    let registry = TestRegistry::plain();
    registry.push(&image.oci_ref(), "signed/image:v1");
    let before = registry.inspect_digest("signed/image:v1");
    let tmp = tempdir();
    let home = tmp.path();
    let reference = format!("{}:v1", registry.reference("signed/image"));
    let [a, b, c] = keys();

    // Nothing attached yet: a clear error, not an empty success.
    let trust_a = trust_store(&home.join("trust-a"), &[a], 1);
    verify_ref_discover(home, &reference, &trust_a).code(2).says("no signed manifest is attached");

    // Two signers at once, each with its own statement (own version).
    let signers: Vec<_> = [(a, "1"), (b, "2")]
        .into_iter()
        .map(|(key, version)| {
            let mut c = imgsign_in(home);
            c.args(["sign", &reference, "--insecure", "--push", "--json", "--name", "registry-test", "--key"])
                .arg(&key.private)
                .arg("--out")
                .arg(home.join(format!("{version}.bundle")))
                .args(["--version", version]);
            std::thread::spawn(move || run(&mut c))
        })
        .collect();
    for signer in signers {
        let signed = signer.join().unwrap();
        signed.code(0);
        assert_eq!(signed.json()["pushed"][0]["via"], "TagSchema");
    }
    assert_eq!(registry.inspect_digest("signed/image:v1"), before, "the image is unchanged");

    // The tag schema index lists both, as a generic client (skopeo) reads it.
    let tag = format!("sha256-{}", before.trim_start_matches("sha256:"));
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("{}:{tag}", registry.reference("signed/image")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{index}");
    assert!(listed.iter().all(|m| m["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"));

    // oci-client's own referrers listing (API, then its own tag schema fallback) finds both.
    assert_eq!(oci_client_referrers(&registry.host, "signed/image", &before).len(), 2);

    // Each trust store finds the statement it trusts among those attached.
    verify_ref_discover(home, &reference, &trust_a).code(0).says("version 1").says(&a.id);
    let trust_b = trust_store(&home.join("trust-b"), &[b], 1);
    verify_ref_discover(home, &reference, &trust_b).code(0).says("version 2").says(&b.id);
    // A trust store that trusts neither: verification fails (exit 1), naming the signatures.
    let trust_c = trust_store(&home.join("trust-c"), &[c], 1);
    verify_ref_discover(home, &reference, &trust_c).code(1).says("FAIL");

    // A third signer's push joins the other two.
    let again = run(imgsign_in(home)
        .args(["sign", &reference, "--insecure", "--push", "--name", "registry-test", "--key"])
        .arg(&c.private)
        .arg("--out")
        .arg(home.join("c.bundle")));
    again.code(0).says("pushed to");
    verify_ref_discover(home, &reference, &trust_c).code(0).says(&c.id);
    verify_ref_discover(home, &reference, &trust_a).code(0).says(&a.id);

    // A bundle is attached only to the manifest it signs: when the tag names another manifest
    // (it moved since signing), the push is refused and nothing is attached.
    {
        use verifier_core::digest::Sha256Digest;
        use verifier_core::referrers::{push_bundles, ReferrerError};
        use verifier_core::source::{ImageRef, RegistryAccess};
        let access = RegistryAccess { insecure: true, ..RegistryAccess::default() };
        let image = reference.parse::<ImageRef>().unwrap().with_registry_access(access);
        let bundle = verifier_core::bundle::CheckedBundle::read(&home.join("1.bundle")).unwrap();
        let other = Sha256Digest::of(b"another image manifest");
        let refused = push_bundles(&image, other, &[bundle]);
        assert!(matches!(refused, Err(ReferrerError::SubjectMoved { .. })), "{:?}", refused.err());
    }

    // --push needs a registry image.
    sign(&image.oci_ref(), &[a], &home.join("x.bundle"), &["--push"]).code(2).says("--push needs a registry image");
    assert!(!home.join("x.bundle").exists());
}

fn verify_ref_discover(home: &Path, image: &str, trust: &Path) -> Run {
    run(imgsign_in(home).args(["verify", image, "--insecure", "--no-record", "--trust"]).arg(trust))
}

/// A registry with the referrers API (the test's server: Debian's registry has none): the
/// bundle it lists is discovered and verifies; served with one byte changed, discovery fails
/// naming the digest mismatch, and nothing is accepted.
#[test]
fn referrers_api_listing_and_a_tampered_referrer() {
    use support::hostile_registry::{Fault, HostileRegistry};
    let image = image();
    let tmp = tempdir();
    let home = tmp.path();
    let trust = trust(home);
    let bundle = sign_ok(&image.oci_ref(), &[&keys()[0]], &home.join("layout.bundle"), &["--name", "registry-test"]);
    let bytes = std::fs::read(&bundle).unwrap();

    let registry = HostileRegistry::serve_with_referrer(&image.oci_dir, testdata::real::TAG, &bytes, Fault::Referrers);
    let reference = format!("{}:v1", registry.reference("listed/image"));
    verify_ref_discover(home, &reference, &trust).code(0).says("verified");

    let registry =
        HostileRegistry::serve_with_referrer(&image.oci_dir, testdata::real::TAG, &bytes, Fault::TamperedReferrer);
    let reference = format!("{}:v1", registry.reference("listed/image"));
    verify_ref_discover(home, &reference, &trust).code(2).says("discovering bundles of").says("digest mismatch");
    verify_ref(home, &image.oci_ref(), &bundle, &trust, &[]).code(0).says("highest accepted so far: none");
}

/// The store `imgsign run` uses, fed from the registry: the signed image is verified onto disk
/// from an empty store, a second ensure of the same digest unpacks nothing, and a registry that
/// serves a wrong layer leaves no image entry and no temporary behind. (Run as root, like the
/// store's own tests: the image holds root-owned and setuid files.)
#[test]
fn store_ensure_from_a_registry() {
    use keys::TrustStore;
    use std::sync::Arc;
    use store::{EnsureOptions, Store};
    use support::hostile_registry::{Fault, HostileRegistry};
    use verifier_core::bundle::CheckedBundle;
    use verifier_core::progress::NoProgress;
    use verifier_core::source::{ImageRef, RegistryAccess};

    let image = image();
    let registry = TestRegistry::plain();
    registry.push(&image.oci_ref(), "stored/image:v1");
    let tmp = tempdir();
    let home = tmp.path();
    let trust = TrustStore::open(&trust(home)).unwrap();
    let bundle = sign_ok(&image.oci_ref(), &[&keys()[0]], &home.join("layout.bundle"), &["--name", "registry-test"]);
    let bundles = vec![CheckedBundle::read(&bundle).unwrap()];
    let access = RegistryAccess { insecure: true, ..RegistryAccess::default() };
    let parse = |reference: String| reference.parse::<ImageRef>().unwrap().with_registry_access(access.clone());
    let store = Store::open(home.join("store")).unwrap();
    let ensure =
        |image: &ImageRef| store.ensure(image, &bundles, &trust, &EnsureOptions::default(), Arc::new(NoProgress));

    let first = ensure(&parse(format!("{}:v1", registry.reference("stored/image")))).expect("stored from the registry");
    assert!(first.stats.unpacked);
    assert!(first.rootfs.join("bin/busybox").is_file());
    let again = ensure(&parse(format!("{}:v1", registry.reference("stored/image")))).expect("stored again");
    assert!(!again.stats.unpacked, "a second ensure of the same digest unpacks nothing");
    assert_eq!(again.digest, first.digest);

    let hostile = HostileRegistry::serve(&image.oci_dir, testdata::real::TAG, Fault::WrongLayerBytes);
    let fresh = Store::open(home.join("fresh-store")).unwrap();
    let refused = fresh.ensure(
        &parse(format!("{}:v1", hostile.reference("stored/image"))),
        &bundles,
        &trust,
        &EnsureOptions::default(),
        Arc::new(NoProgress),
    );
    let err = refused.expect_err("a wrong layer is refused");
    assert!(format!("{:?}", err).contains("DigestMismatch"), "{err:?}");
    let left = |dir: &str| std::fs::read_dir(home.join("fresh-store").join(dir)).unwrap().count();
    assert_eq!((left("images"), left("objects/tmp")), (0, 0), "nothing left in the store");
}

/// The bundle referrers of `host/repo@subject` as oci-client lists them, plain HTTP.
fn oci_client_referrers(host: &str, repo: &str, subject: &str) -> Vec<String> {
    use oci_client::client::{ClientConfig, ClientProtocol};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ClientConfig { protocol: ClientProtocol::Http, ..Default::default() };
    let client = oci_client::Client::try_from(config).unwrap();
    let reference = oci_client::Reference::with_digest(host.to_string(), repo.to_string(), subject.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let index = runtime
        .block_on(client.pull_referrers(&reference, Some("application/vnd.dev.sigstore.bundle.v0.3+json")))
        .expect("oci-client lists the referrers");
    index.manifests.into_iter().map(|m| m.digest).collect()
}

/// `imgsign copy docker://... oci:DIR:TAG`: the image (same manifest digest) and its pushed
/// bundles into an OCI layout, which skopeo reads and which `verify` checks with the bundles it
/// finds in it (no network); a second copy writes nothing new; the layout copied on into another
/// registry (TLS, basic auth) verifies there by discovery; a registry serving a wrong layer
/// leaves the layout without the tag and without the damaged blob.
#[test]
fn copy_to_an_oci_layout_with_the_bundles() {
    use support::hostile_registry::{Fault, HostileRegistry};
    let image = image();
    let registry = TestRegistry::plain();
    registry.push(&image.oci_ref(), "copied/image:v1");
    let tmp = tempdir();
    let home = tmp.path();
    let reference = format!("{}:v1", registry.reference("copied/image"));
    let [a, ..] = keys();
    sign_ref(home, &reference, &home.join("pushed.bundle"), &["--insecure", "--push"]).code(0);
    let digest = registry.inspect_digest("copied/image:v1");

    let layout = home.join("disk/layout");
    let dst = format!("oci:{}:v1", layout.display());
    let copy =
        |extra: &[&str]| run(imgsign_in(home).args(["copy", &reference, &dst, "--insecure", "--json"]).args(extra));
    let first = copy(&[]);
    let summary = first.code(0).json();
    assert_eq!(summary["manifestDigest"], digest.as_str());
    assert_eq!(summary["bundles"].as_array().unwrap().len(), 1);
    assert!(summary["blobsWritten"].as_u64().unwrap() >= 2);
    let again = copy(&[]).code(0).json();
    assert_eq!(again["blobsWritten"], 0, "a second copy writes nothing: {again}");

    // A generic client reads the layout; the bundles are found in it without a registry.
    let out = Command::new("skopeo").args(["inspect", &dst]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["Digest"], digest.as_str());
    let trust = trust_store(&home.join("trust"), &[a], 1);
    // Registry to registry (both plain HTTP on loopback here), the bundle along.
    let mirror = TestRegistry::plain();
    let mirrored = format!("{}:v2", mirror.reference("mirror/image"));
    let across = run(imgsign_in(home).args(["copy", &reference, &mirrored, "--insecure", "--json"]));
    assert_eq!(across.code(0).json()["bundles"].as_array().unwrap().len(), 1);
    assert_eq!(mirror.inspect_digest("mirror/image:v2"), digest);
    verify_ref_discover(home, &mirrored, &trust).code(0).says("verified");
    drop((registry, mirror));
    run(imgsign_in(home).args(["verify", &dst, "--no-record", "--trust"]).arg(&trust)).code(0).says("verified");

    // And from the layout into another registry (TLS, basic auth), the bundle attached again:
    // verified there by discovery, same digest for skopeo.
    let node = TestRegistry::tls_with_auth();
    let certs = node.cert_dir.clone().unwrap();
    let auth = node.auth_file(&home.join("node-auth.json"));
    let fed = format!("{}:v1", node.reference("fed/image"));
    let pushed = run(imgsign_in(home)
        .args(["copy", &dst, &fed, "--json", "--cert-dir"])
        .arg(&certs)
        .arg("--authfile")
        .arg(&auth));
    let summary = pushed.code(0).json();
    assert_eq!(summary["manifestDigest"], digest.as_str());
    assert_eq!(summary["bundles"].as_array().unwrap().len(), 1);
    assert_eq!(node.inspect_digest("fed/image:v1"), digest);
    run(imgsign_in(home)
        .args(["verify", &fed, "--no-record", "--cert-dir"])
        .arg(&certs)
        .arg("--authfile")
        .arg(&auth)
        .arg("--trust")
        .arg(&trust))
    .code(0)
    .says("verified");
    // Pushing again uploads no blob.
    let again = run(imgsign_in(home)
        .args(["copy", &dst, &fed, "--json", "--cert-dir"])
        .arg(&certs)
        .arg("--authfile")
        .arg(&auth));
    assert_eq!(again.code(0).json()["blobsWritten"], 0);

    // A hostile source: a wrong layer is refused and the layout gets neither the tag nor the blob.
    let hostile = HostileRegistry::serve(&image.oci_dir, testdata::real::TAG, Fault::WrongLayerBytes);
    let fresh = home.join("disk/fresh");
    let refused = run(imgsign_in(home).args([
        "copy",
        &format!("{}:v1", hostile.reference("copied/image")),
        &format!("oci:{}:v1", fresh.display()),
        "--insecure",
    ]));
    refused.code(2).says("digest mismatch");
    assert!(!fresh.join("index.json").exists(), "no index written");
    let blobs: Vec<_> =
        std::fs::read_dir(fresh.join("blobs/sha256")).unwrap().map(|e| e.unwrap().file_name()).collect();
    for name in &blobs {
        let bytes = std::fs::read(fresh.join("blobs/sha256").join(name)).unwrap();
        assert_eq!(testdata::sha256_hex(&bytes), name.to_str().unwrap(), "a blob that is not its digest was left");
    }
    // Copies go between a registry and a layout.
    run(imgsign_in(home).args(["copy", &image.oci_ref(), &dst])).code(2).says("cannot copy");
}
