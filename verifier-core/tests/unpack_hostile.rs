//! The unpacker writes nothing outside its root. Hostile images try to leave it through symlinks,
//! hardlinks, a symlink swapped in for a directory and whiteouts; each is refused by the layer
//! rules (the tests name the refusal), the destination is removed, and a canary directory outside
//! is left exactly as it was. The in-root writer itself is then shown holding on its own, with
//! escaping symlinks planted inside the root, as if the rules had let something through.
//! (Run as root: the unpacker sets owners.)

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use testdata::hostile::HostileLayer;
use testdata::oci::{write_layout, Layer};
use testdata::tar::TarWriter;
use verifier_core::image::inroot::{InRoot, Owner, SpecialKind};
use verifier_core::image::{unpack, ImageRef, UnpackOptions};
use verifier_core::progress::NoProgress;
use verifier_core::source::scan;

/// A scratch directory with an `outside` canary tree next to where images are unpacked.
struct Scene {
    tmp: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("canary"), b"canary\n").unwrap();
        fs::write(outside.join("sub/passwd"), b"root:x:0:0\n").unwrap();
        Scene { tmp }
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    fn dest(&self) -> PathBuf {
        self.tmp.path().join("dest")
    }

    /// Every path below `outside` with its type, mode, owner, size, link count and content.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let content = if meta.is_file() { fs::read(&path).unwrap() } else { Vec::new() };
                let desc = format!(
                    "{:o} {}:{} {} nlink {} {:?}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.len(),
                    meta.nlink(),
                    content
                );
                out.insert(path.clone(), desc);
                if meta.is_dir() {
                    walk(&path, out);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.outside(), &mut out);
        out
    }

    fn image(&self, layers: &[&TarWriter]) -> String {
        let layers: Vec<Layer> = layers.iter().map(|l| Layer::tar(l.finish())).collect();
        write_layout(&self.tmp.path().join("image"), "t", &layers).unwrap().reference()
    }

    /// Unpacks `layers`; the error text if it failed. Checks nothing was left at the destination
    /// on failure and nothing changed outside either way.
    fn unpack(&self, layers: &[&TarWriter]) -> Result<(), String> {
        let before = self.snapshot();
        let reference: ImageRef = self.image(layers).parse().unwrap();
        let options = UnpackOptions { create_devices: true, ..Default::default() };
        let result = unpack(&reference, &self.dest(), options, Arc::new(NoProgress));
        assert_eq!(before, self.snapshot(), "the unpacker changed something outside its root");
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                assert!(!self.dest().exists(), "a failed unpack left {}", self.dest().display());
                Err(verifier_core::verify::error_chain(&e))
            }
        }
    }

    /// The absolute path of the canary directory.
    fn outside_abs(&self) -> String {
        self.outside().display().to_string()
    }
}

#[track_caller]
fn refused(result: Result<(), String>, says: &str) {
    match result {
        Ok(()) => panic!("the hostile image was unpacked"),
        Err(e) => assert!(e.contains(says), "expected {says:?} in: {e}"),
    }
}

#[test]
fn every_hostile_layer_is_refused_with_the_error_sign_gives() {
    for case in HostileLayer::ALL {
        let scene = Scene::new();
        let image = case.write(&scene.tmp.path().join(case.name())).unwrap();
        let reference: ImageRef = image.reference().parse().unwrap();
        let scanned = scan(&reference, Arc::new(NoProgress)).err().unwrap_or_else(|| panic!("{}: signed", case.name()));
        let unpacked = unpack(&reference, &scene.dest(), UnpackOptions::default(), Arc::new(NoProgress))
            .err()
            .unwrap_or_else(|| panic!("{}: unpacked", case.name()));
        assert_eq!(scanned.to_string(), unpacked.to_string(), "{}", case.name());
        assert!(!scene.dest().exists(), "{}: a failed unpack left its destination", case.name());
    }
}

#[test]
fn file_through_a_symlink_to_the_root_or_up_is_refused() {
    let scene = Scene::new();
    let outside = scene.outside_abs();
    for target in ["/".to_string(), "../../../../../../../..".to_string(), outside.clone()] {
        // In the same layer.
        let mut l0 = TarWriter::new();
        l0.symlink("esc", &target).file(&format!("esc/{}/evil", outside.trim_start_matches('/')), 0o644, b"x");
        refused(scene.unpack(&[&l0]), "is a symlink, not a directory");
        // In a later layer, and straight at the canary's directory.
        let mut l0 = TarWriter::new();
        l0.symlink("esc", &outside);
        let mut l1 = TarWriter::new();
        l1.file("esc/canary", 0o644, b"overwritten");
        refused(scene.unpack(&[&l0, &l1]), "is a symlink, not a directory");
    }
}

#[test]
fn hardlink_to_a_host_path_is_refused() {
    let scene = Scene::new();
    let canary = format!("{}/canary", scene.outside_abs());
    for target in [canary.clone(), format!("../../../../../../../..{canary}"), "../outside/canary".to_string()] {
        let mut l0 = TarWriter::new();
        l0.hardlink("stolen", &target);
        refused(scene.unpack(&[&l0]), "is not a regular file present in the image");
    }
    // Through a symlink that leads out.
    let mut l0 = TarWriter::new();
    l0.symlink("esc", "/").hardlink("stolen", &format!("esc{canary}"));
    refused(scene.unpack(&[&l0]), "is not a regular file present in the image");
}

#[test]
fn symlink_swapped_for_a_directory_between_two_entries_is_refused() {
    let scene = Scene::new();
    let outside = scene.outside_abs();
    let mut l0 = TarWriter::new();
    l0.dir("d", 0o755).file("d/a", 0o644, b"a");
    // The directory becomes a symlink out, then an entry is written below it: same layer...
    let mut l1 = TarWriter::new();
    l1.symlink("d", &outside).file("d/canary", 0o644, b"overwritten");
    refused(scene.unpack(&[&l0, &l1]), "is a symlink, not a directory");
    // ...and the next layer.
    let mut l1 = TarWriter::new();
    l1.symlink("d", &outside);
    let mut l2 = TarWriter::new();
    l2.file("d/canary", 0o644, b"overwritten");
    refused(scene.unpack(&[&l0, &l1, &l2]), "is a symlink, not a directory");
}

#[test]
fn whiteouts_naming_paths_outside_the_root_remove_nothing_there() {
    let scene = Scene::new();
    let mut l0 = TarWriter::new();
    l0.file("keep", 0o644, b"k");
    let mut l1 = TarWriter::new();
    l1.whiteout("../outside/.wh.canary");
    refused(scene.unpack(&[&l0, &l1]), "path contains '..'");
    let mut l1 = TarWriter::new();
    l1.whiteout(".wh...");
    refused(scene.unpack(&[&l0, &l1]), "unsupported special whiteout");
    // Whiteouts and an opaque marker below a symlink out: nothing in the image is there, so
    // nothing is removed (the snapshot check in `unpack` sees the canary untouched).
    let mut l0 = TarWriter::new();
    l0.symlink("link", &scene.outside_abs());
    let mut l1 = TarWriter::new();
    l1.whiteout("link/.wh.canary").whiteout("link/sub/.wh.passwd").whiteout("link/.wh..wh..opq");
    scene.unpack(&[&l0, &l1]).unwrap();
    assert!(scene.dest().join("link").is_symlink());
}

#[test]
fn the_in_root_writer_stays_inside_despite_escaping_symlinks() {
    let scene = Scene::new();
    let root = scene.dest();
    fs::create_dir(&root).unwrap();
    fs::write(root.join("inside"), b"inside\n").unwrap();
    // Planted as if the rules had let them through.
    std::os::unix::fs::symlink(scene.outside(), root.join("abs")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("rel")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root", root.join("magic")).unwrap();
    // Plain path calls would go out through them.
    assert!(fs::metadata(root.join("abs/canary")).is_ok() && fs::metadata(root.join("rel/canary")).is_ok());
    let before = scene.snapshot();
    let w = InRoot::open(&root).unwrap();
    let owner = Owner { uid: 0, gid: 0 };
    let outside = scene.outside_abs();
    let via =
        ["abs".to_string(), "rel".to_string(), format!("magic{outside}"), format!("abs/../../../../../../..{outside}")];
    for dir in &via {
        let p = |name: &str| format!("{dir}/{name}");
        // Each either fails or lands inside the root; none may touch `outside`.
        let _ = w.create_file(p("evil").as_bytes());
        let _ = w.create_file(p("canary").as_bytes());
        let _ = w.mkdir(p("newdir").as_bytes());
        let _ = w.symlink(p("newlink").as_bytes(), b"/");
        let _ = w.hardlink(p("newhard").as_bytes(), b"inside");
        let _ = w.mknod(p("fifo").as_bytes(), SpecialKind::Fifo, (0, 0), 0o644, owner);
        let _ = w.chown_nofollow(p("canary").as_bytes(), Owner { uid: 4242, gid: 4242 });
        let _ = w.remove(p("canary").as_bytes(), false);
        let _ = w.remove(p("sub/passwd").as_bytes(), false);
        let _ = w.remove(p("sub").as_bytes(), true);
        if let Ok(fd) = w.open_dir(dir.as_bytes()) {
            let _ = verifier_core::image::inroot::set_metadata(
                &fd,
                Owner { uid: 4242, gid: 4242 },
                0o777,
                &BTreeMap::new(),
            );
        }
        // A host file linked into the root would be readable (and writable) from inside.
        if w.hardlink(b"stolen", p("canary").as_bytes()).is_ok() {
            let ino = fs::metadata(root.join("stolen")).unwrap().ino();
            assert_ne!(
                ino,
                fs::metadata(scene.outside().join("canary")).unwrap().ino(),
                "linked a host file in via {dir}"
            );
            fs::remove_file(root.join("stolen")).unwrap();
        }
    }
    // Final components are never followed: the symlinks themselves are in the way.
    assert!(w.create_file(b"abs").is_err());
    assert!(w.open_dir(b"abs").is_err());
    assert_eq!(before, scene.snapshot(), "the in-root writer changed something outside its root");
    assert_eq!(fs::read_link(root.join("abs")).unwrap(), scene.outside());
}

#[test]
fn a_refusing_write_check_aborts_the_unpack_and_removes_what_was_written() {
    let scene = Scene::new();
    let mut l0 = TarWriter::new();
    l0.dir("bin", 0o755).file("bin/ok", 0o755, b"signed").file("bin/zz-unsigned", 0o4755, b"not signed");
    let reference: ImageRef = scene.image(&[&l0]).parse().unwrap();
    let signed = testdata::sha256_hex(b"signed");
    let mut seen = Vec::new();
    let check = |w: &verifier_core::image::Written<'_>| {
        seen.push(String::from_utf8_lossy(w.path).into_owned());
        match w.content {
            Some(c) if hex::encode(c.sha256) != signed => Err("content not in the signed manifest".to_string()),
            _ => Ok(()),
        }
    };
    let options = UnpackOptions { check: Some(Box::new(check)), ..Default::default() };
    let err = unpack(&reference, &scene.dest(), options, Arc::new(NoProgress)).unwrap_err();
    let text = verifier_core::verify::error_chain(&err);
    assert!(text.contains("bin/zz-unsigned") && text.contains("content not in the signed manifest"), "{text}");
    assert!(!scene.dest().exists(), "a refused unpack left its destination");
    assert_eq!(seen, ["bin", "bin/ok", "bin/zz-unsigned"], "every node is checked as it is written");
}

#[test]
fn unpack_needs_a_new_destination_and_a_layered_image() {
    let scene = Scene::new();
    let mut l0 = TarWriter::new();
    l0.file("a", 0o644, b"a");
    let reference: ImageRef = scene.image(&[&l0]).parse().unwrap();
    fs::create_dir(scene.dest()).unwrap();
    fs::write(scene.dest().join("mine"), b"not the unpacker's").unwrap();
    let err = unpack(&reference, &scene.dest(), UnpackOptions::default(), Arc::new(NoProgress)).unwrap_err();
    assert!(err.to_string().contains("cannot unpack into"), "{err}");
    assert_eq!(
        fs::read(scene.dest().join("mine")).unwrap(),
        b"not the unpacker's",
        "an existing directory is left alone"
    );
    let dir = ImageRef::Dir { path: scene.outside() };
    let err = unpack(&dir, &scene.tmp.path().join("d2"), UnpackOptions::default(), Arc::new(NoProgress)).unwrap_err();
    assert!(err.to_string().contains("not made of layers"), "{err}");
}

#[test]
fn devices_and_fifos_are_only_metadata_unless_asked_for() {
    let scene = Scene::new();
    let mut l0 = TarWriter::new();
    l0.dir("dev", 0o755)
        .add(testdata::tar::Entry::char_device("dev/mem", 0o666, 1, 1))
        .add(testdata::tar::Entry::fifo("dev/pipe", 0o600));
    let reference: ImageRef = scene.image(&[&l0]).parse().unwrap();
    let unpacked = unpack(&reference, &scene.dest(), UnpackOptions::default(), Arc::new(NoProgress)).unwrap();
    let kinds: Vec<_> = unpacked.files.iter().map(|f| (f.path.as_str(), f.kind)).collect();
    use verifier_core::manifest::FileType;
    assert_eq!(kinds, [("/dev", FileType::Dir), ("/dev/mem", FileType::Char), ("/dev/pipe", FileType::Fifo)]);
    assert_eq!(fs::read_dir(scene.dest().join("dev")).unwrap().count(), 0, "device nodes were created");
}
