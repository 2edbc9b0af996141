//! Code marks end to end through verifier-core: every path that builds entries from content
//! (the hashing applier of sign and verify, the unpacker, the `dir:` source) marks ELF objects
//! and `#!` scripts alike, hardlinks included; a manifest signed with a wrong mark does not
//! verify; a v1 statement (no marks) of the same image still verifies.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use testdata::oci::{write_layout, Layer};
use testdata::tar::TarWriter;
use verifier_core::bundle::CheckedBundle;
use verifier_core::manifest::{CodeKind, Difference, FileEntry};
use verifier_core::progress::NoProgress;
use verifier_core::sign::Prepared;
use verifier_core::source::{scan, ImageRef};
use verifier_core::statement::{ManifestFormat, Statement, PREDICATE_TYPE, PREDICATE_TYPE_V1};
use verifier_core::verify::{verify, VerifyOptions, VerifyReport};

const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0 pretend object";

/// (path, mode, content, the mark it must get).
const FILES: &[(&str, u32, &[u8], Option<CodeKind>)] = &[
    ("bin/tool", 0o755, ELF, Some(CodeKind::Elf)),
    ("lib/libx.so", 0o644, ELF, Some(CodeKind::Elf)),
    ("bin/script", 0o755, b"#!/bin/sh\necho hi\n", Some(CodeKind::Script)),
    ("etc/shebang-only", 0o644, b"#!", Some(CodeKind::Script)),
    ("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n", None),
    ("etc/empty", 0o644, b"", None),
    ("etc/hash", 0o644, b"#", None),
    ("etc/one", 0o644, b"\x7f", None),
    ("etc/three", 0o755, b"\x7fEL", None),
    ("etc/comment", 0o644, b"# not a script\n", None),
];

fn image(dir: &Path) -> ImageRef {
    let mut layer = TarWriter::new();
    for (path, mode, content, _) in FILES {
        layer.file(path, *mode, content);
    }
    layer.hardlink("lib/libx-link.so", "lib/libx.so");
    write_layout(dir, "v1", &[Layer::gzip(&layer.finish())]).unwrap().reference().parse().unwrap()
}

fn marks(files: &[FileEntry]) -> BTreeMap<String, Option<CodeKind>> {
    files.iter().filter(|f| f.sha256.is_some()).map(|f| (f.path.clone(), f.code)).collect()
}

fn expected_marks() -> BTreeMap<String, Option<CodeKind>> {
    let mut out: BTreeMap<_, _> = FILES.iter().map(|(p, _, _, mark)| (format!("/{p}"), *mark)).collect();
    out.insert("/lib/libx-link.so".into(), Some(CodeKind::Elf));
    out
}

/// Signs `files` of `image` as they are given (a statement of predicate `predicate_type`).
fn sign_files(image: &ImageRef, files: Vec<FileEntry>, predicate_type: &str) -> Vec<CheckedBundle> {
    let scanned = scan(image, Arc::new(NoProgress)).unwrap();
    let at = SystemTime::now() + Duration::from_secs(86400);
    let mut statement = Statement::new(&scanned.identity, files, "code".into(), 1, at);
    statement.predicate_type = predicate_type.into();
    Prepared::new(statement, scanned.identity).unwrap().sign(&[&testdata::keys::test_key("a")]).unwrap()
}

fn verify_with(image: &ImageRef, bundles: &[CheckedBundle], dir: &Path) -> VerifyReport {
    let mut trust = keys::TrustStore::init(&dir.join(format!("trust-{}", rand_suffix())), 1).unwrap();
    trust.add_key(&testdata::keys::test_key("a").public_key()).unwrap();
    let options = VerifyOptions { now: SystemTime::now(), record_version: false };
    verify(image, bundles, &mut trust, &options, Arc::new(NoProgress)).unwrap()
}

fn rand_suffix() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn sign_marks_elf_objects_scripts_and_hardlinks_to_them_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(&dir.path().join("oci"));
    let scanned = scan(&image, Arc::new(NoProgress)).unwrap();
    assert_eq!(marks(&scanned.files), expected_marks());
    let statement = Statement::new(&scanned.identity, scanned.files, "code".into(), 1, SystemTime::now());
    assert_eq!(statement.predicate_type, PREDICATE_TYPE, "signing writes v2");
}

#[test]
fn the_unpacker_and_the_dir_source_mark_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(&dir.path().join("oci"));
    let scanned = scan(&image, Arc::new(NoProgress)).unwrap();
    let unpacked =
        verifier_core::image::unpack(&image, &dir.path().join("rootfs"), Default::default(), Arc::new(NoProgress))
            .unwrap();
    assert_eq!(unpacked.files, scanned.files, "the unpacker's manifest is the scan's, marks included");
    let tree: ImageRef = format!("dir:{}", unpacked.root.display()).parse().unwrap();
    let from_dir = scan(&tree, Arc::new(NoProgress)).unwrap();
    assert_eq!(marks(&from_dir.files), expected_marks(), "the dir: source hashes and marks the same bytes");
}

#[test]
fn a_manifest_that_calls_an_elf_file_not_code_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(&dir.path().join("oci"));
    let honest = scan(&image, Arc::new(NoProgress)).unwrap().files;
    assert!(verify_with(&image, &sign_files(&image, honest.clone(), PREDICATE_TYPE), dir.path()).verified);

    for (path, lie) in
        [("/lib/libx.so", None), ("/etc/passwd", Some(CodeKind::Elf)), ("/bin/tool", Some(CodeKind::Script))]
    {
        let mut files = honest.clone();
        files.iter_mut().find(|f| f.path == path).unwrap().code = lie;
        let report = verify_with(&image, &sign_files(&image, files, PREDICATE_TYPE), dir.path());
        assert!(!report.verified, "{path} signed as {lie:?} verified");
        let [Difference::Changed { path: changed, fields }] = &report.differences[..] else {
            panic!("{path}: {:?}", report.differences)
        };
        assert_eq!(changed, path);
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(fields[0].field, "code");
        assert_eq!(fields[0].expected, lie.map_or("-", CodeKind::as_str));
    }
}

#[test]
fn a_v1_statement_without_marks_still_verifies_and_one_with_marks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(&dir.path().join("oci"));
    let honest = scan(&image, Arc::new(NoProgress)).unwrap().files;
    let v1_files = ManifestFormat::V1.strip(&honest).into_owned();
    assert!(v1_files.iter().all(|f| f.code.is_none()));
    let report = verify_with(&image, &sign_files(&image, v1_files, PREDICATE_TYPE_V1), dir.path());
    assert!(report.verified, "{:?} {:?}", report.checks, report.differences);

    let report = verify_with(&image, &sign_files(&image, honest, PREDICATE_TYPE_V1), dir.path());
    assert!(!report.verified);
    let statement = report.checks.iter().find(|c| c.name == "statement").expect("a statement check failed");
    assert!(statement.detail.contains("code mark"), "{}", statement.detail);
}

#[test]
fn a_v1_statement_of_a_dir_tree_keeps_its_subject() {
    // A dir: tree is named by the digest of its file list: for v1, the list without marks.
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("bin/tool"), ELF).unwrap();
    std::fs::write(tree.join("data"), b"data\n").unwrap();
    let image: ImageRef = format!("dir:{}", tree.display()).parse().unwrap();
    let honest = scan(&image, Arc::new(NoProgress)).unwrap();
    let v1_files = ManifestFormat::V1.strip(&honest.files).into_owned();
    let at = SystemTime::now() + Duration::from_secs(86400);
    let mut statement = Statement::new(&honest.identity, v1_files, "tree".into(), 1, at);
    statement.predicate_type = PREDICATE_TYPE_V1.into();
    let bundles = Prepared::new(statement, honest.identity).unwrap().sign(&[&testdata::keys::test_key("a")]).unwrap();
    let report = verify_with(&image, &bundles, dir.path());
    assert!(report.verified, "{:?} {:?}", report.checks, report.differences);
}
