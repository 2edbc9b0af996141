//! `ImageSource::config`: the image config of OCI layouts and docker archives, read only after its
//! digest was checked, and `InRoot::read_file`, which reads an image's files (its `/etc/passwd`)
//! without leaving the image's root.

use std::fs;
use std::os::unix::fs::symlink;
use testdata::oci::{write_layout_with_config, Layer};
use testdata::real::RealImage;
use testdata::tar::TarWriter;
use verifier_core::image::inroot::InRoot;
use verifier_core::source::{self, ImageRef, SourceError};

fn layer() -> Layer {
    let mut tar = TarWriter::new();
    tar.dir("etc", 0o755);
    tar.file("etc/motd", 0o644, "hi\n");
    Layer::gzip(&tar.finish())
}

#[test]
fn an_oci_layout_gives_its_config_and_a_changed_config_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let process = serde_json::json!({
        "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "1000:1000",
    });
    let written = write_layout_with_config(&tmp.path().join("oci"), "v1", &[layer()], process).unwrap();
    let image: ImageRef = written.reference().parse().unwrap();
    let opened = source::open(&image).unwrap();
    let config = opened.config().expect("an OCI image has a config").config().clone().unwrap();
    assert_eq!(config.entrypoint().as_deref(), Some(&["/bin/app".to_string()][..]));
    assert_eq!(config.cmd().as_deref(), Some(&["--serve".to_string()][..]));
    assert_eq!(config.env().as_deref(), Some(&["A=1".to_string()][..]));
    assert_eq!(config.working_dir().as_deref(), Some("/srv"));
    assert_eq!(config.user().as_deref(), Some("1000:1000"));

    // One byte of the config blob changed (same size): refused before it is parsed.
    let path = written.blob_path(&written.config_digest);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.windows(7).position(|w| w == b"--serve").unwrap();
    bytes[at + 2] = b'S';
    fs::write(&path, bytes).unwrap();
    let err = source::open(&image).err().expect("a changed config must be refused");
    assert!(matches!(err, SourceError::DigestMismatch { .. }), "{err}");
}

#[test]
fn a_docker_archive_gives_its_config_and_a_dir_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    let real = RealImage::build(&tmp.path().join("real")).unwrap();
    let oci = source::open(&real.oci_ref().parse().unwrap()).unwrap();
    let archive = source::open(&real.docker_archive_ref().parse().unwrap()).unwrap();
    let (a, b) = (oci.config().expect("oci config"), archive.config().expect("archive config"));
    // skopeo copies the config as it is: the same bytes, so the same digest and content.
    assert_eq!(oci.identity().config_digest, archive.identity().config_digest);
    assert_eq!(a.rootfs().diff_ids(), b.rootfs().diff_ids());
    let dir = source::open(&real.dir_ref().parse().unwrap()).unwrap();
    assert!(dir.config().is_none());
}

#[test]
fn read_file_stays_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("real")).unwrap();
    fs::write(root.join("real/passwd"), "app:x:1000:1000::/:/bin/sh\n").unwrap();
    fs::write(tmp.path().join("outside"), "host secret\n").unwrap();
    let in_root = InRoot::open(&root).unwrap();

    symlink("/real/passwd", root.join("etc/passwd")).unwrap();
    assert_eq!(in_root.read_file(b"etc/passwd", 1 << 20).unwrap().unwrap(), b"app:x:1000:1000::/:/bin/sh\n");
    // Absolute and `..` symlinks that would leave the root resolve inside it (to nothing here).
    symlink(tmp.path().join("outside"), root.join("etc/group")).unwrap();
    assert!(in_root.read_file(b"etc/group", 1 << 20).unwrap().is_none());
    symlink("../../outside", root.join("etc/shadow")).unwrap();
    assert!(in_root.read_file(b"etc/shadow", 1 << 20).unwrap().is_none());
    assert!(in_root.read_file(b"etc/none", 1 << 20).unwrap().is_none());
    // A directory is not a file; a file above the cap is refused.
    assert!(in_root.read_file(b"etc", 1 << 20).is_err());
    assert!(in_root.read_file(b"real/passwd", 4).is_err());
}
