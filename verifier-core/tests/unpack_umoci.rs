//! Differential: the unpacking applier writes, on disk, the tree `umoci unpack` writes for the
//! same image: same paths, types, content, modes (setuid/setgid/sticky), owners, symlink
//! targets, hardlink groups, `security.capability` xattrs and device numbers. Run on the real
//! umoci/skopeo image (OCI gzip, OCI zstd, docker-archive) and on crafted layer sequences
//! (whiteouts, opaque directories, replacements, hardlinks across layers, devices). Needs root
//! (owners, device nodes) and umoci/skopeo, as the rest of the image tests.

use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use testdata::oci::{write_layout, Layer};
use testdata::real::RealImage;
use testdata::tar::{Entry, TarWriter};
use verifier_core::image::{unpack, ImageRef, UnpackOptions};
use verifier_core::progress::NoProgress;

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unpack-umoci-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn real() -> &'static RealImage {
    static IMAGE: OnceLock<RealImage> = OnceLock::new();
    IMAGE
        .get_or_init(|| RealImage::build(&scratch().join("real")).unwrap_or_else(|e| panic!("building the image: {e}")))
}

/// One path of a tree on disk, in the terms the comparison cares about.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    sha256: Option<String>,
    symlink: Option<PathBuf>,
    rdev: Option<(u32, u32)>,
    capability: Option<Vec<u8>>,
}

/// Every path below `root` (not `root` itself), and the hardlink groups (paths sharing an inode).
fn tree(root: &Path) -> (BTreeMap<PathBuf, Node>, BTreeSet<Vec<PathBuf>>) {
    fn walk(root: &Path, dir: &Path, nodes: &mut BTreeMap<PathBuf, Node>, inodes: &mut HashMap<u64, Vec<PathBuf>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "other"
            };
            let mut buf = vec![0u8; 1024];
            let capability = rustix::fs::lgetxattr(path.as_os_str().as_bytes(), "security.capability", &mut buf)
                .ok()
                .map(|n| buf[..n].to_vec());
            let node = Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                sha256: ft.is_file().then(|| hex::encode(Sha256::digest(fs::read(&path).unwrap()))),
                symlink: ft.is_symlink().then(|| fs::read_link(&path).unwrap()),
                rdev: (ft.is_char_device() || ft.is_block_device())
                    .then(|| (rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev()))),
                capability,
            };
            if ft.is_file() {
                inodes.entry(meta.ino()).or_default().push(rel.clone());
            }
            nodes.insert(rel, node);
            if ft.is_dir() {
                walk(root, &path, nodes, inodes);
            }
        }
    }
    let mut nodes = BTreeMap::new();
    let mut inodes = HashMap::new();
    walk(root, root, &mut nodes, &mut inodes);
    let groups = inodes
        .into_values()
        .filter(|paths| paths.len() > 1)
        .map(|mut paths| {
            paths.sort();
            paths
        })
        .collect();
    (nodes, groups)
}

#[track_caller]
fn assert_same_tree(ours: &Path, umoci: &Path) {
    let (ours_nodes, ours_groups) = tree(ours);
    let (umoci_nodes, umoci_groups) = tree(umoci);
    let paths = |n: &BTreeMap<PathBuf, Node>| n.keys().cloned().collect::<Vec<_>>();
    assert_eq!(paths(&ours_nodes), paths(&umoci_nodes), "paths differ from umoci's unpack");
    for (path, node) in &ours_nodes {
        assert_eq!(Some(node), umoci_nodes.get(path), "{}", path.display());
    }
    assert_eq!(ours_groups, umoci_groups, "hardlink groups differ");
}

/// Unpacks `reference` with imgsign into a fresh directory and returns it.
fn imgsign_unpack(reference: &str, dest: &Path) -> verifier_core::image::UnpackedImage {
    let image: ImageRef = reference.parse().unwrap();
    let options = UnpackOptions { create_devices: true, ..Default::default() };
    unpack(&image, dest, options, Arc::new(NoProgress))
        .unwrap_or_else(|e| panic!("{}", verifier_core::verify::error_chain(&e)))
}

#[test]
fn real_image_in_every_form_unpacks_to_umocis_tree() {
    let real = real();
    let manifest = verifier_core::source::scan(&real.oci_ref().parse().unwrap(), Arc::new(NoProgress)).unwrap();
    for (name, reference) in
        [("oci", real.oci_ref()), ("zstd", real.oci_zstd_ref()), ("docker-archive", real.docker_archive_ref())]
    {
        let dest = scratch().join(format!("real-{name}"));
        let unpacked = imgsign_unpack(&reference, &dest);
        assert_same_tree(&dest, &real.rootfs);
        assert_eq!(unpacked.files, manifest.files, "{name}: the unpacker's manifest is not the one sign computes");
    }
    // The paths that show each rule are there (or gone) as they should be.
    let (nodes, groups) = tree(&scratch().join("real-oci"));
    let at = |p: &str| nodes.get(Path::new(p.trim_start_matches('/')));
    use testdata::real::paths;
    assert_eq!(at(paths::SETUID).unwrap().mode, 0o4755);
    assert_eq!(at(paths::STICKY_DIR).unwrap().mode, 0o1777);
    assert_eq!(at(paths::CAPABILITY_FILE).unwrap().capability.as_deref(), Some(testdata::real::CAPABILITY.as_slice()));
    assert!(at(paths::WHITED_OUT).is_none() && paths::OPAQUE_HIDDEN.iter().all(|p| at(p).is_none()));
    let hard: Vec<PathBuf> =
        [paths::HARDLINK, paths::HARDLINK_TARGET].iter().map(|p| PathBuf::from(p.trim_start_matches('/'))).collect();
    assert!(groups.iter().any(|g| hard.iter().all(|p| g.contains(p))), "{groups:?}");
}

/// Writes `layers` as an OCI image, unpacks it with umoci and with imgsign, compares the trees.
#[track_caller]
fn same_as_umoci(name: &str, layers: &[TarWriter]) {
    let dir = scratch().join(name);
    let layers: Vec<Layer> = layers.iter().map(|l| Layer::gzip(&l.finish())).collect();
    let written = write_layout(&dir.join("image"), "t", &layers).unwrap();
    let bundle = dir.join("umoci");
    testdata::tools::run(
        "umoci",
        ["unpack".to_string(), "--image".into(), format!("{}:t", written.dir.display()), bundle.display().to_string()],
    )
    .unwrap();
    imgsign_unpack(&written.reference(), &dir.join("imgsign"));
    assert_same_tree(&dir.join("imgsign"), &bundle.join("rootfs"));
}

fn layer() -> TarWriter {
    TarWriter::new()
}

#[test]
fn whiteouts_opaque_directories_and_replacements() {
    let mut l0 = layer();
    l0.dir("a", 0o755).dir("a/b", 0o755).file("a/b/c", 0o644, b"c").file("a/keep", 0o644, b"k");
    l0.dir("o", 0o755).file("o/old", 0o644, b"old").dir("o/sub", 0o700).file("o/sub/deep", 0o644, b"d");
    l0.dir("x", 0o755).file("x/inner", 0o644, b"i").file("y", 0o644, b"y");
    l0.dir("usr", 0o755).dir("usr/lib", 0o755).symlink("lib", "usr/lib");
    l0.dir("foo", 0o755).file("foo/old", 0o644, b"old").file("bar", 0o644, b"lower");
    let mut l1 = layer();
    l1.whiteout("a/.wh.b");
    l1.dir("o", 0o750).whiteout("o/.wh..wh..opq").file("o/new", 0o644, b"new");
    l1.file("x", 0o600, b"now a file").dir("y", 0o711);
    l1.dir("lib", 0o755).file("lib/libc.so", 0o755, b"elf");
    l1.file("foo/new", 0o644, b"new").whiteout(".wh.foo");
    l1.file("bar", 0o644, b"same layer").whiteout(".wh.bar");
    let mut l2 = layer();
    l2.file("y/z", 0o644, b"z");
    same_as_umoci("rules", &[l0, l1, l2]);
}

#[test]
fn hardlinks_across_layers() {
    let mut l0 = layer();
    l0.dir("bin", 0o755).file("bin/tool", 0o4755, b"v1").hardlink("bin/tool-link", "bin/tool");
    l0.dir("etc", 0o755).file("etc/a", 0o644, b"shared").hardlink("etc/b", "etc/a");
    l0.file("etc/z-target", 0o644, b"z").hardlink("etc/a-link", "etc/z-target");
    let mut l1 = layer();
    l1.file("bin/tool", 0o755, b"v2, replaced").whiteout("etc/.wh.a");
    same_as_umoci("hardlinks", &[l0, l1]);
}

#[test]
fn devices_fifos_owners_special_modes_and_capabilities() {
    let mut l0 = TarWriter::special_files();
    l0.add(Entry::dir("srv/owned", 0o3750).with_owner(1000, 1000))
        .add(
            Entry::file("srv/ping", 0o4755, b"cap")
                .with_owner(0, 0)
                .with_pax("SCHILY.xattr.security.capability", testdata::real::CAPABILITY),
        )
        .symlink("srv/link", "../dev/null");
    same_as_umoci("devices", &[l0]);
}

#[test]
fn long_names_and_link_targets() {
    let dir = format!("opt/{}", "d".repeat(90));
    let file = format!("{dir}/{}", "f".repeat(120));
    let mut l0 = layer();
    l0.dir("opt", 0o755).dir(&dir, 0o755).file(&file, 0o644, b"long").symlink("opt/link", &format!("/{file}"));
    l0.hardlink("opt/hard", &file);
    same_as_umoci("long-names", &[l0]);
}

#[test]
fn opaque_directory_keeps_a_lower_subdirectory_its_own_layer_wrote_into() {
    // The layer writes d/sub/new below a directory of the lower layer, then makes d opaque:
    // d/sub stays (it holds this layer's file), d/sub/old goes.
    let mut l0 = layer();
    l0.dir("d", 0o755).dir("d/sub", 0o750).file("d/sub/old", 0o644, b"old").file("d/gone", 0o644, b"g");
    let mut l1 = layer();
    l1.file("d/sub/new", 0o644, b"new").whiteout("d/.wh..wh..opq");
    same_as_umoci("opaque-kept-subdir", &[l0, l1]);
}
