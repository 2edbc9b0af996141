//! Layer rules checked against a reference unpacker: for crafted layer sequences (whiteouts,
//! opaque directories, replacements, hardlinks across layers), the manifest imgsign signs for the
//! OCI image must equal the manifest of the tree `umoci unpack` makes of the same image. Where
//! they differ, a runtime would run files other than the ones the manifest lists.

mod support;

use support::*;
use testdata::oci::{write_layout, Layer};
use testdata::tar::TarWriter;

fn files(bundle: &std::path::Path) -> Vec<serde_json::Value> {
    statement(bundle)["predicate"]["files"].as_array().unwrap().clone()
}

fn paths(files: &[serde_json::Value]) -> Vec<String> {
    files.iter().map(|f| format!("{} {}", f["path"].as_str().unwrap(), f["type"].as_str().unwrap())).collect()
}

/// Signs the layers as an OCI image and umoci's unpack of it as a dir: tree; returns both file
/// lists (image, unpacked).
fn image_and_unpacked(layers: &[TarWriter]) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let tmp = tempdir();
    let layers: Vec<Layer> = layers.iter().map(|l| Layer::gzip(&l.finish())).collect();
    let written = write_layout(&tmp.path().join("img"), "t", &layers).unwrap();
    let [a, ..] = keys();
    let image_bundle = sign_ok(&written.reference(), &[a], &tmp.path().join("image.bundle"), &[]);
    let bundle_dir = tmp.path().join("unpacked");
    testdata::tools::run(
        "umoci",
        [
            "unpack".to_string(),
            "--image".into(),
            format!("{}:t", written.dir.display()),
            bundle_dir.display().to_string(),
        ],
    )
    .unwrap();
    let rootfs = format!("dir:{}", bundle_dir.join("rootfs").display());
    let dir_bundle = sign_ok(&rootfs, &[a], &tmp.path().join("dir.bundle"), &[]);
    (files(&image_bundle), files(&dir_bundle))
}

#[track_caller]
fn assert_same(layers: &[TarWriter]) -> Vec<String> {
    let (image, unpacked) = image_and_unpacked(layers);
    assert_eq!(paths(&image), paths(&unpacked), "paths differ between the image manifest and umoci's unpack");
    assert_eq!(image, unpacked);
    paths(&image)
}

fn layer() -> TarWriter {
    TarWriter::new()
}

#[test]
fn whiteout_of_a_nested_directory() {
    let mut l0 = layer();
    l0.dir("a", 0o755).dir("a/b", 0o755).file("a/b/c", 0o644, b"c").file("a/keep", 0o644, b"k");
    let mut l1 = layer();
    l1.whiteout("a/.wh.b");
    assert_eq!(assert_same(&[l0, l1]), ["/a dir", "/a/keep file"]);
}

#[test]
fn opaque_directory_keeps_only_its_own_layer() {
    let mut l0 = layer();
    l0.dir("a", 0o755).file("a/old", 0o644, b"old").dir("a/sub", 0o700).file("a/sub/deep", 0o644, b"d");
    let mut l1 = layer();
    l1.dir("a", 0o750).whiteout("a/.wh..wh..opq").file("a/new", 0o644, b"new");
    assert_eq!(assert_same(&[l0, l1]), ["/a dir", "/a/new file"]);
}

#[test]
fn directory_replaced_by_a_file_and_back() {
    let mut l0 = layer();
    l0.dir("x", 0o755).file("x/inner", 0o644, b"i").file("y", 0o644, b"y");
    let mut l1 = layer();
    l1.file("x", 0o600, b"now a file").dir("y", 0o711);
    let mut l2 = layer();
    l2.file("y/z", 0o644, b"z");
    assert_eq!(assert_same(&[l0, l1, l2]), ["/x file", "/y dir", "/y/z file"]);
}

fn relinked_layers() -> [TarWriter; 2] {
    let mut l0 = layer();
    l0.dir("bin", 0o755).file("bin/tool", 0o4755, b"v1").hardlink("bin/tool-link", "bin/tool");
    let mut l1 = layer();
    l1.file("bin/tool", 0o755, b"v2, replaced");
    [l0, l1]
}

fn orphaned_link_layers() -> [TarWriter; 2] {
    let mut l0 = layer();
    l0.dir("etc", 0o755).file("etc/a", 0o644, b"shared").hardlink("etc/b", "etc/a");
    let mut l1 = layer();
    l1.whiteout("etc/.wh.a");
    [l0, l1]
}

/// The content, mode and owner of `path` agree between the image and the unpacked tree.
#[track_caller]
fn same_content(image: &[serde_json::Value], unpacked: &[serde_json::Value], path: &str) {
    let i = image.iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("{path} not in the image manifest"));
    let u = unpacked.iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("{path} not in the unpacked tree"));
    for field in ["sha256", "size", "mode", "uid", "gid"] {
        assert_eq!(i[field], u[field], "{path}: {field}");
    }
}

#[test]
fn hardlink_keeps_its_content_when_its_target_is_replaced_later() {
    let (image, unpacked) = image_and_unpacked(&relinked_layers());
    same_content(&image, &unpacked, "/bin/tool-link");
    same_content(&image, &unpacked, "/bin/tool");
}

#[test]
fn hardlink_keeps_its_content_when_its_target_is_whited_out() {
    let (image, unpacked) = image_and_unpacked(&orphaned_link_layers());
    same_content(&image, &unpacked, "/etc/b");
    assert!(image.iter().all(|f| f["path"] != "/etc/a"));
}

#[test]

fn hardlink_whose_target_is_replaced_becomes_a_file() {
    assert_same(&relinked_layers());
}

#[test]

fn hardlink_whose_target_is_whited_out_becomes_a_file() {
    assert_same(&orphaned_link_layers());
}

#[test]
fn devices_fifos_owners_and_special_modes() {
    let image = assert_same(&[TarWriter::special_files()]);
    assert!(image.contains(&"/dev/null char".to_string()), "{image:?}");
    assert!(image.contains(&"/dev/pipe fifo".to_string()), "{image:?}");
}

#[test]
fn symlink_replaced_by_a_directory() {
    let mut l0 = layer();
    l0.dir("usr", 0o755).dir("usr/lib", 0o755).symlink("lib", "usr/lib");
    let mut l1 = layer();
    l1.dir("lib", 0o755).file("lib/libc.so", 0o755, b"elf");
    assert_eq!(assert_same(&[l0, l1]), ["/lib dir", "/lib/libc.so file", "/usr dir", "/usr/lib dir"]);
}

#[test]

fn whiteout_of_a_directory_the_same_layer_writes_into() {
    // OCI: whiteouts only hide lower layers; files of the whiteout's own layer stay, so /foo must
    // stay a directory. umoci's unpack keeps /foo and /foo/new.
    let mut l0 = layer();
    l0.dir("foo", 0o755).file("foo/old", 0o644, b"old");
    let mut l1 = layer();
    l1.file("foo/new", 0o644, b"new").whiteout(".wh.foo");
    assert_eq!(assert_same(&[l0, l1]), ["/foo dir", "/foo/new file"]);
}

#[test]

fn hardlink_listed_before_its_target_in_path_order() {
    // The tar names z-target first and links a-link to it; a dir: walk meets a-link first.
    let mut l0 = layer();
    l0.dir("etc", 0o755).file("etc/z-target", 0o644, b"shared").hardlink("etc/a-link", "etc/z-target");
    assert_same(&[l0]);
}

#[test]
fn whiteout_after_a_same_layer_file_of_that_name() {
    let mut l0 = layer();
    l0.file("foo", 0o644, b"lower");
    let mut l1 = layer();
    l1.file("foo", 0o644, b"same layer").whiteout(".wh.foo");
    assert_same(&[l0, l1]);
}

#[test]
fn long_names_and_link_targets_via_pax() {
    let dir = format!("opt/{}", "d".repeat(90));
    let file = format!("{dir}/{}", "f".repeat(120));
    let target = format!("/{file}");
    let mut l0 = layer();
    l0.dir("opt", 0o755)
        .dir(&dir, 0o755)
        .file(&file, 0o644, b"long")
        .symlink("opt/link", &target)
        .hardlink("opt/hard", &file);
    let image = assert_same(&[l0]);
    assert!(image.contains(&format!("/{file} file")), "{image:?}");
}
