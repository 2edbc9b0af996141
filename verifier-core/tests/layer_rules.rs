//! The OCI layer rules, and the applier's refusals, on hand-made tar streams. Every case runs
//! through both appliers: the hashing one and the unpacking one (which must also leave on disk
//! exactly the tree its manifest describes, and nothing when it fails).

use std::sync::Arc;
use verifier_core::image::apply::hash::HashApplier;
use verifier_core::image::apply::unpack::{UnpackApplier, UnpackOptions};
use verifier_core::image::inroot::InRoot;
use verifier_core::image::tar::{TarError, TarReader};
use verifier_core::image::tree::{FileTree, LayerError};
use verifier_core::manifest::{FileEntry, FileType};
use verifier_core::progress::NoProgress;
use verifier_core::source::{scan, ImageRef};

/// Builds ustar archives; `pax` adds a PAX header before the entry.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn entry(mut self, name: &str, typeflag: u8, data: &[u8], link: &str, mode: u32, pax: &[(&str, &str)]) -> Self {
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (k, v) in pax {
                let body = format!(" {k}={v}\n");
                let mut len = body.len() + 1;
                while format!("{len}{body}").len() != len {
                    len += 1;
                }
                records.extend_from_slice(format!("{len}{body}").as_bytes());
            }
            self = self.raw_entry("PaxHeader", b'x', &records, "", 0o644, records.len() as u64);
        }
        self.raw_entry(name, typeflag, data, link, mode, data.len() as u64)
    }

    fn raw_entry(mut self, name: &str, typeflag: u8, data: &[u8], link: &str, mode: u32, size: u64) -> Self {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(self, name: &str, data: &str) -> Self {
        self.entry(name, b'0', data.as_bytes(), "", 0o644, &[])
    }

    fn dir(self, name: &str) -> Self {
        self.entry(name, b'5', b"", "", 0o755, &[])
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

fn hash(layers: &[Vec<u8>]) -> Result<Vec<FileEntry>, LayerError> {
    let mut tree = FileTree::new();
    let mut applier = HashApplier::new();
    for (i, layer) in layers.iter().enumerate() {
        tree.apply_layer(i, &mut TarReader::new(layer.as_slice()), &mut applier)?;
    }
    tree.into_manifest()
}

/// Unpacks into `root` (created empty); the manifest of what was written.
fn unpack_into(root: &std::path::Path, layers: &[Vec<u8>]) -> Result<Vec<FileEntry>, LayerError> {
    std::fs::create_dir(root).unwrap();
    let options = UnpackOptions { create_devices: true, ..Default::default() };
    let mut applier = UnpackApplier::new(InRoot::open(root).unwrap(), options);
    let mut tree = FileTree::new();
    for (i, layer) in layers.iter().enumerate() {
        tree.apply_layer(i, &mut TarReader::new(layer.as_slice()), &mut applier)?;
    }
    applier.finish(&tree).unwrap();
    tree.into_manifest()
}

/// Both appliers: they must agree on the manifest or on the error, and the unpacked tree, read
/// back as a `dir:` image, must be the manifest.
fn apply(layers: &[Vec<u8>]) -> Result<Vec<FileEntry>, LayerError> {
    let hashed = hash(layers);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let unpacked = unpack_into(&root, layers);
    match (&hashed, &unpacked) {
        (Ok(h), Ok(u)) => {
            assert_eq!(h, u, "the appliers disagree on the manifest");
            let on_disk = scan(&ImageRef::Dir { path: root.clone() }, Arc::new(NoProgress)).unwrap();
            assert_eq!(&on_disk.files, u, "the unpacked tree is not what its manifest says");
        }
        (Err(h), Err(u)) => assert_eq!(h.to_string(), u.to_string(), "the appliers fail differently"),
        _ => panic!("one applier failed, the other did not: hash {hashed:?}, unpack {unpacked:?}"),
    }
    hashed
}

/// `security.capability` permitting CAP_NET_BIND_SERVICE (as text: the PAX value is raw bytes).
const CAPABILITY: &str = "\u{1}\0\0\u{2}\0\u{4}\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

fn paths(entries: &[FileEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn whiteouts_hide_lower_layers_only() {
    let lower =
        Tar::default().dir("etc").file("etc/a", "1").file("etc/b", "2").dir("etc/sub").file("etc/sub/c", "3").finish();
    let upper = Tar::default().file("etc/.wh.a", "").file("etc/.wh.sub", "").file("etc/new", "4").finish();
    let files = apply(&[lower, upper]).unwrap();
    assert_eq!(paths(&files), ["/etc", "/etc/b", "/etc/new"]);
}

#[test]
fn opaque_directory_hides_lower_children_but_keeps_its_own_layer() {
    let lower =
        Tar::default().dir("d").file("d/old", "1").dir("d/deep").file("d/deep/x", "2").file("keep", "k").finish();
    let upper = Tar::default().dir("d").file("d/fresh", "3").file("d/.wh..wh..opq", "").finish();
    let files = apply(&[lower, upper]).unwrap();
    assert_eq!(paths(&files), ["/d", "/d/fresh", "/keep"]);
}

#[test]
fn later_layers_override_and_hardlinks_carry_content() {
    let lower = Tar::default().file("bin/tool", "old").finish();
    let upper = Tar::default()
        .entry("bin/tool", b'0', b"new", "", 0o4755, &[])
        .entry("bin/alias", b'1', b"", "bin/tool", 0o644, &[])
        .finish();
    let files = apply(&[lower, upper]).unwrap();
    let tool = files.iter().find(|f| f.path == "/bin/tool").unwrap();
    let alias = files.iter().find(|f| f.path == "/bin/alias").unwrap();
    assert_eq!(tool.mode, 0o4755, "setuid bit is kept");
    // The first path of a hardlink group in byte order is the file, whatever the tar order.
    assert_eq!(alias.kind, FileType::File);
    assert_eq!(tool.kind, FileType::Hardlink);
    assert_eq!(alias.sha256, tool.sha256);
    assert_eq!(alias.mode, 0o4755, "a hardlink shares its target's inode metadata");
    assert_eq!(tool.link_target.as_deref(), Some("/bin/alias"));
    assert_eq!(files.iter().find(|f| f.path == "/bin").unwrap().kind, FileType::Dir, "implicit parent");
}

#[test]
fn capability_xattr_is_signed_other_xattrs_are_not() {
    let layer = Tar::default()
        .entry(
            "ping",
            b'0',
            b"x",
            "",
            0o755,
            // A well-formed VFS_CAP_REVISION_2 value: the kernel refuses to set a malformed one.
            &[("SCHILY.xattr.security.capability", CAPABILITY), ("SCHILY.xattr.user.note", "n")],
        )
        .finish();
    let files = apply(&[layer]).unwrap();
    assert_eq!(files[0].xattrs.keys().collect::<Vec<_>>(), ["security.capability"]);
}

#[test]
fn refuses_escaping_and_absolute_names() {
    for name in ["../x", "a/../../x", "/abs"] {
        let err = apply(&[Tar::default().file(name, "x").finish()]).unwrap_err();
        assert!(matches!(err, LayerError::DotDot { .. } | LayerError::AbsolutePath { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "error names the entry: {err}");
    }
}

#[test]
fn refuses_bare_whiteout_and_duplicates() {
    let err = apply(&[Tar::default().file("dir/.wh.", "").finish()]).unwrap_err();
    assert!(matches!(err, LayerError::BareWhiteout { .. }), "{err}");
    let err = apply(&[Tar::default().file("a", "1").file("./a", "2").finish()]).unwrap_err();
    assert!(matches!(err, LayerError::Duplicate { .. }), "{err}");
}

#[test]
fn refuses_entries_below_a_symlink() {
    let lower = Tar::default().entry("etc", b'2', b"", "/tmp", 0o777, &[]).finish();
    let upper = Tar::default().file("etc/passwd", "evil").finish();
    let err = apply(&[lower, upper]).unwrap_err();
    assert!(matches!(err, LayerError::ParentNotDirectory { .. }), "{err}");
}

#[test]
fn refuses_hardlink_to_missing_or_non_file() {
    let err = apply(&[Tar::default().entry("l", b'1', b"", "nowhere", 0o644, &[]).finish()]).unwrap_err();
    assert!(matches!(err, LayerError::BadHardlink { .. }), "{err}");
    let err = apply(&[Tar::default().dir("d").entry("l", b'1', b"", "d", 0o644, &[]).finish()]).unwrap_err();
    assert!(matches!(err, LayerError::BadHardlink { .. }), "{err}");
}

#[test]
fn refuses_pax_size_that_disagrees_with_ustar() {
    let layer = Tar::default().entry("f", b'0', b"abcd", "", 0o644, &[("size", "2")]).finish();
    let err = apply(&[layer]).unwrap_err();
    assert!(matches!(err, LayerError::Tar(TarError::SizeMismatch { .. })), "{err}");
}

#[test]
fn refuses_truncation_anywhere() {
    let whole = Tar::default().file("a", &"x".repeat(2000)).file("b", "y").finish();
    // Inside content, inside a header, and at a header boundary without the end marker.
    for cut in [700, 2560 + 100, 3072, 3584] {
        let err = apply(&[whole[..cut].to_vec()]).unwrap_err();
        assert!(
            matches!(err, LayerError::Tar(TarError::Truncated { .. } | TarError::MissingEnd { .. })),
            "cut {cut}: {err}"
        );
    }
    apply(&[whole]).unwrap();
}

#[test]
fn refuses_data_behind_header_only_entries_and_bad_checksums() {
    let layer = Tar::default().raw_entry("d", b'5', b"hidden", "", 0o755, 6).finish();
    assert!(matches!(apply(&[layer]).unwrap_err(), LayerError::Tar(TarError::DataOnHeaderOnly { .. })));
    let mut layer = Tar::default().file("a", "1").finish();
    layer[0] = b'b';
    assert!(matches!(apply(&[layer]).unwrap_err(), LayerError::Tar(TarError::BadHeader { .. })));
}

#[test]
fn same_layers_give_the_same_manifest_bytes() {
    let layer = Tar::default().file("z", "1").file("a", "2").dir("m").file("m/q", "3").finish();
    let a = serde_json::to_vec(&apply(std::slice::from_ref(&layer)).unwrap()).unwrap();
    let b = serde_json::to_vec(&apply(&[layer]).unwrap()).unwrap();
    assert_eq!(a, b);
    let files: Vec<FileEntry> = serde_json::from_slice(&a).unwrap();
    assert_eq!(paths(&files), ["/a", "/m", "/m/q", "/z"]);
}
