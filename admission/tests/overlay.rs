//! The listing of an overlay root from its layers (`admission::overlay`), on real overlay mounts
//! (root only: mounting needs it). The listing must always be the mount's: the same as the
//! path-by-path walk when the layers are what is mounted, and never the layers' when they are
//! not (a layer re-pointed after the mount, as podman's `l/` links can be).

use admission::walk::{self, How, Observed};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Scene {
    _dir: tempfile::TempDir,
    root: PathBuf,
    merged: PathBuf,
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
        let _ = Command::new("umount").arg(self.root.join("tmpfs")).stderr(std::process::Stdio::null()).status();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn whiteout(path: &Path) {
    use rustix::fs::{makedev, mknodat, FileType, Mode, CWD};
    mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), makedev(0, 0)).unwrap();
}

/// Three layers as a container engine stacks them: `bottom` (an image layer), `mid` (a later
/// image layer: a whiteout, an opaque directory, a replaced file) and `upper` (the
/// container's, with the file an engine makes for a bind mount).
fn layers(root: &Path) {
    let (bottom, mid, upper) = (root.join("bottom"), root.join("mid"), root.join("upper"));
    write(&bottom.join("bin/sh"), "#!shell\n");
    std::fs::set_permissions(bottom.join("bin/sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&bottom.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    write(&bottom.join("etc/gone"), "deleted in mid\n");
    write(&bottom.join("etc/motd"), "bottom's\n");
    write(&bottom.join("opaque/old"), "hidden by mid's opaque directory\n");
    write(&bottom.join("usr/lib/libc.so"), "code\n");
    std::fs::hard_link(bottom.join("usr/lib/libc.so"), bottom.join("usr/lib/libc.so.6")).unwrap();
    std::os::unix::fs::symlink("usr/lib", bottom.join("lib")).unwrap();
    std::fs::create_dir_all(bottom.join("var/empty")).unwrap();
    std::fs::create_dir_all(mid.join("etc")).unwrap();
    whiteout(&mid.join("etc/gone"));
    write(&mid.join("etc/motd"), "mid's\n");
    write(&mid.join("opaque/new"), "the only file under /opaque\n");
    rustix::fs::setxattr(mid.join("opaque"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    write(&upper.join("etc/hosts"), "");
    std::fs::create_dir_all(root.join("work")).unwrap();
}

impl Scene {
    /// The layers mounted at `merged`; `lower` names the lower layers as overlay's option does.
    fn mount(lower: impl Fn(&Path) -> String, options: &str) -> Scene {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = dir.path().to_path_buf();
        layers(&root);
        let merged = root.join("merged");
        std::fs::create_dir_all(&merged).unwrap();
        let scene = Scene { root, merged, _dir: dir };
        scene.mount_overlay(&lower(&scene.root), options);
        scene
    }

    fn mount_overlay(&self, lower: &str, options: &str) {
        let root = &self.root;
        let options = format!(
            "lowerdir={lower},upperdir={},workdir={}{options}",
            root.join("upper").display(),
            root.join("work").display()
        );
        let status =
            Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options]).arg(&self.merged).status();
        assert!(status.unwrap().success(), "mount -o {options}");
    }
}

fn default_lowers(root: &Path) -> String {
    format!("{}:{}", root.join("mid").display(), root.join("bottom").display())
}

/// What an admission compares: the entries, and every regular file's key.
fn summary(observed: &[Observed]) -> Vec<String> {
    observed.iter().map(|o| format!("{:?} {:?}", o.entry, o.key)).collect()
}

#[test]
fn the_listing_from_the_layers_is_the_mounts_listing() {
    if !is_root() {
        eprintln!("skipped: mounting an overlay needs root");
        return;
    }
    let scene = Scene::mount(default_lowers, "");
    let (observed, how) = walk::list(&scene.merged, None).unwrap();
    assert!(matches!(how, How::Layers(3)), "{how:?}");
    let walked = walk::walk(&scene.merged).unwrap();
    assert_eq!(summary(&observed), summary(&walked));
    let paths: Vec<&str> = observed.iter().map(|o| o.entry.path.as_str()).collect();
    // What overlay's rules hide and show, as the mount shows it.
    assert!(!paths.contains(&"/etc/gone") && !paths.contains(&"/opaque/old"), "{paths:?}");
    assert!(paths.contains(&"/opaque/new") && paths.contains(&"/etc/hosts"), "{paths:?}");
    let motd = observed.iter().find(|o| o.entry.path == "/etc/motd").unwrap();
    assert!(motd.host_path.starts_with(scene.root.join("mid")), "{:?}", motd.host_path);
}

/// A hardlink farm of `bottom` (same inodes, new directories) with one file replaced.
fn tampered_copy(bottom: &Path, evil: &Path) {
    for entry in walk::walk(bottom).unwrap() {
        let from = bottom.join(&entry.entry.path[1..]);
        let to = evil.join(&entry.entry.path[1..]);
        match entry.entry.kind {
            verifier_core::manifest::FileType::Dir => std::fs::create_dir_all(&to).unwrap(),
            verifier_core::manifest::FileType::Symlink => {
                std::os::unix::fs::symlink(entry.entry.link_target.unwrap(), &to).unwrap()
            }
            _ => std::fs::hard_link(&from, &to).unwrap(),
        }
    }
    std::fs::remove_file(evil.join("etc/passwd")).unwrap();
    write(&evil.join("etc/passwd"), "root::0:0::/root:/bin/sh\n");
}

/// The layers mounted with the bottom one named through a link to what `make` makes, the link
/// then pointed at the genuine bottom layer.
fn mounted_through_a_link(make: impl Fn(&Path) -> PathBuf) -> Scene {
    let scene = Scene::mount(
        |root| {
            let mounted = make(root);
            std::fs::create_dir_all(root.join("l")).unwrap();
            std::os::unix::fs::symlink(mounted, root.join("l/B")).unwrap();
            format!("{}:{}", root.join("mid").display(), root.join("l/B").display())
        },
        "",
    );
    let link = scene.root.join("l/B");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(scene.root.join("bottom"), &link).unwrap();
    scene
}

#[test]
fn a_layer_repointed_after_the_mount_is_not_believed() {
    if !is_root() {
        eprintln!("skipped: mounting an overlay needs root");
        return;
    }
    // The engine names its layers through links (podman's `l/`): the mount resolves them
    // once; whoever can write the store can point a link elsewhere for the mount and back.
    let scene = mounted_through_a_link(|root| {
        let evil = root.join("evil");
        tampered_copy(&root.join("bottom"), &evil);
        evil
    });

    let (observed, how) = walk::list(&scene.merged, None).unwrap();
    let How::Mount(reason) = &how else { panic!("the re-pointed layer was believed: {how:?}") };
    assert!(reason.to_string().contains("differs"), "{reason}");
    let walked = walk::walk(&scene.merged).unwrap();
    assert_eq!(summary(&observed), summary(&walked));
    let passwd = observed.iter().find(|o| o.entry.path == "/etc/passwd").unwrap();
    let evil = std::fs::metadata(scene.root.join("evil/etc/passwd")).unwrap();
    assert_eq!(passwd.key.unwrap().ino, std::os::unix::fs::MetadataExt::ino(&evil));
}

/// A copy of the bottom layer on a tmpfs mounted in the scene (its own inode numbers).
fn bottom_on_a_tmpfs(root: &Path) -> PathBuf {
    let tmpfs = root.join("tmpfs");
    std::fs::create_dir_all(&tmpfs).unwrap();
    assert!(Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&tmpfs).status().unwrap().success());
    assert!(Command::new("cp").arg("-a").arg(root.join("bottom")).arg(&tmpfs).status().unwrap().success());
    tmpfs.join("bottom")
}

#[test]
fn a_layer_on_another_file_system_is_not_listed_from_its_layers() {
    if !is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    // The bottom layer copied onto a tmpfs: inode numbers there are that file system's own.
    let scene =
        Scene::mount(|root| format!("{}:{}", root.join("mid").display(), bottom_on_a_tmpfs(root).display()), "");
    let (observed, how) = walk::list(&scene.merged, None).unwrap();
    assert!(matches!(&how, How::Mount(admission::overlay::Fallback::OtherFileSystem)), "{how:?}");
    assert_eq!(summary(&observed), summary(&walk::walk(&scene.merged).unwrap()));
}

#[test]
fn a_layer_mounted_from_another_file_system_and_repointed_is_caught_in_the_mount() {
    if !is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    // Mounted from a tmpfs through a link, the link then pointed back at the genuine layer:
    // every layer named now is on one file system, the mounted one is not. The mount itself
    // says so (a non-directory reports another device than the mount's), before the names are
    // compared (where another file system's inode numbers could have been made to collide).
    let scene = mounted_through_a_link(bottom_on_a_tmpfs);
    let (observed, how) = walk::list(&scene.merged, None).unwrap();
    assert!(matches!(&how, How::Mount(admission::overlay::Fallback::OtherFileSystem)), "{how:?}");
    assert_eq!(summary(&observed), summary(&walk::walk(&scene.merged).unwrap()));
}

#[test]
fn an_upper_layer_moved_after_the_mount_is_not_listed() {
    if !is_root() {
        eprintln!("skipped: mounting an overlay needs root");
        return;
    }
    // The upper directory renamed away and an empty one put at its path: its files (which,
    // copied up, the mount lists under their origin's inode number) would be missed.
    let scene = Scene::mount(default_lowers, "");
    let upper = scene.root.join("upper");
    std::fs::rename(&upper, scene.root.join("upper.moved")).unwrap();
    std::fs::create_dir(&upper).unwrap();
    let (observed, how) = walk::list(&scene.merged, None).unwrap();
    assert!(matches!(&how, How::Mount(admission::overlay::Fallback::OtherUpper)), "{how:?}");
    assert_eq!(summary(&observed), summary(&walk::walk(&scene.merged).unwrap()));
    assert!(observed.iter().any(|o| o.entry.path == "/etc/hosts"));
}

#[test]
fn a_metacopy_mount_is_walked_through_the_mount() {
    if !is_root() {
        eprintln!("skipped: mounting an overlay needs root");
        return;
    }
    // With metacopy a file's data can come from another layer than its metadata: an inode
    // number would no longer say what the content is.
    let scene = Scene::mount(default_lowers, ",metacopy=on");
    let (_, how) = walk::list(&scene.merged, None).unwrap();
    assert!(matches!(&how, How::Mount(admission::overlay::Fallback::Metacopy)), "{how:?}");
}

#[test]
fn a_directory_that_is_not_an_overlay_root_is_walked() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("etc/passwd"), "x\n");
    let (observed, how) = walk::list(dir.path(), None).unwrap();
    assert!(matches!(&how, How::Mount(admission::overlay::Fallback::NotOverlay)), "{how:?}");
    assert_eq!(observed.len(), 2);
    if is_root() {
        // A directory below an overlay's root is not its root either.
        let scene = Scene::mount(default_lowers, "");
        let (_, how) = walk::list(&scene.merged.join("etc"), None).unwrap();
        assert!(matches!(&how, How::Mount(admission::overlay::Fallback::NotOverlay)), "{how:?}");
    }
}
