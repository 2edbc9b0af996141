//! A real image made by real tools: an OCI layout built with `umoci` (three layers: a base, a
//! layer with a whiteout, an opaque-directory layer), the same image copied by `skopeo` to a
//! docker-archive and to an OCI layout with zstd layers, and the image unpacked by `umoci` as a
//! plain `dir:` tree.
//!
//! umoci 0.4 never writes `.wh..wh..opq`: removing a directory and recreating it in the bundle
//! gives one `.wh.NAME` per old child. The opaque layer is therefore generated here and appended
//! with `umoci raw add-layer`, so that umoci still writes the manifest, config and index.

use crate::tar::{Entry, TarWriter};
use crate::tools::{require_all, run};
use crate::{io_err, FixtureError};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The tag of the image in the OCI layout.
pub const TAG: &str = "imgsign-test";

/// Paths in the image and what they demonstrate.
pub mod paths {
    /// A static binary (busybox) from the first layer.
    pub const BUSYBOX: &str = "/bin/busybox";
    /// A symlink to it: `/bin/sh -> busybox`.
    pub const SYMLINK: &str = "/bin/sh";
    pub const SYMLINK_TARGET: &str = "busybox";
    /// A setuid-root file (mode 4755).
    pub const SETUID: &str = "/usr/bin/su-helper";
    /// A hardlink to [`HARDLINK_TARGET`].
    pub const HARDLINK: &str = "/etc/hostname.hard";
    pub const HARDLINK_TARGET: &str = "/etc/hostname";
    /// Deleted in layer 2: umoci writes a whiteout for it.
    pub const WHITED_OUT: &str = "/etc/gone";
    /// Added in layer 2.
    pub const LAYER2_FILE: &str = "/etc/motd";
    /// Made opaque in layer 3 (`opt/app/.wh..wh..opq`).
    pub const OPAQUE_DIR: &str = "/opt/app";
    /// Hidden by the opaque directory.
    pub const OPAQUE_HIDDEN: &[&str] = &["/opt/app/old.txt", "/opt/app/sub", "/opt/app/sub/deep.txt"];
    /// Written by layer 3 inside the opaque directory.
    pub const OPAQUE_NEW: &str = "/opt/app/new.txt";
    /// A sticky, world-writable directory (mode 1777).
    pub const STICKY_DIR: &str = "/tmp";
    /// A file plain in the rest of the image, to tamper with.
    pub const PLAIN_FILE: &str = "/etc/os-release";
    /// A file with a `security.capability` xattr (written by layer 3), see [`super::CAPABILITY`].
    pub const CAPABILITY_FILE: &str = "/usr/bin/bind-helper";
}

/// The `security.capability` value of [`paths::CAPABILITY_FILE`]: VFS_CAP_REVISION_2 with the
/// effective flag, permitting CAP_NET_BIND_SERVICE (bit 10).
pub const CAPABILITY: [u8; 20] = [0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The built image in its three forms.
#[derive(Debug, Clone)]
pub struct RealImage {
    /// Directory holding everything below.
    pub root: PathBuf,
    /// The OCI layout (tag [`TAG`]).
    pub oci_dir: PathBuf,
    /// `skopeo copy` of the image to a docker-archive.
    pub docker_archive: PathBuf,
    /// `skopeo copy` of the image to another OCI layout with zstd-compressed layers (tag [`TAG`]).
    pub oci_zstd_dir: PathBuf,
    /// The image unpacked by umoci (a bundle's `rootfs`).
    pub rootfs: PathBuf,
}

impl RealImage {
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{TAG}", self.oci_dir.display())
    }

    pub fn oci_zstd_ref(&self) -> String {
        format!("oci:{}:{TAG}", self.oci_zstd_dir.display())
    }

    pub fn docker_archive_ref(&self) -> String {
        format!("docker-archive:{}", self.docker_archive.display())
    }

    pub fn dir_ref(&self) -> String {
        format!("dir:{}", self.rootfs.display())
    }

    /// The OCI image manifest bytes, as umoci wrote them (found through `index.json`).
    pub fn oci_manifest_bytes(&self) -> Result<Vec<u8>, FixtureError> {
        let index_path = self.oci_dir.join("index.json");
        let index: serde_json::Value = serde_json::from_slice(
            &fs::read(&index_path).map_err(io_err(format!("reading {}", index_path.display())))?,
        )
        .map_err(|e| FixtureError::Check(format!("{}: {e}", index_path.display())))?;
        let digest = index["manifests"]
            .as_array()
            .and_then(|m| m.iter().find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == TAG))
            .and_then(|d| d["digest"].as_str())
            .ok_or_else(|| FixtureError::Check(format!("{} has no manifest tagged {TAG}", index_path.display())))?;
        let path = crate::oci::blob_path(&self.oci_dir, digest);
        fs::read(&path).map_err(io_err(format!("reading {}", path.display())))
    }

    /// Builds the image under `root`, which is emptied first.
    pub fn build(root: &Path) -> Result<RealImage, FixtureError> {
        require_all()?;
        if root.exists() {
            fs::remove_dir_all(root).map_err(io_err(format!("removing {}", root.display())))?;
        }
        fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
        let oci_dir = root.join("oci");
        let image = format!("{}:{TAG}", oci_dir.display());
        let bundle = root.join("build-bundle");
        let rootless = !is_root();
        let unpack = |dest: &Path| -> Result<(), FixtureError> {
            let mut args = vec!["unpack".to_string()];
            if rootless {
                args.push("--rootless".into());
            }
            args.extend(["--image".into(), image.clone(), dest.display().to_string()]);
            run("umoci", args).map(drop)
        };
        let repack = |comment: &str| {
            run(
                "umoci",
                [
                    "repack",
                    "--refresh-bundle",
                    "--history.comment",
                    comment,
                    "--image",
                    &image,
                    &bundle.display().to_string(),
                ],
            )
        };

        run("umoci", ["init", "--layout", &oci_dir.display().to_string()])?;
        run("umoci", ["new", "--image", &image])?;
        unpack(&bundle)?;
        let rootfs = bundle.join("rootfs");

        // Layer 1: the base.
        let busybox = crate::tools::require("busybox")?;
        mkdirs(&rootfs, &["bin", "etc", "usr/bin", "opt/app/sub", "tmp"])?;
        copy(&busybox, &at(&rootfs, paths::BUSYBOX), 0o755)?;
        symlink(paths::SYMLINK_TARGET, at(&rootfs, paths::SYMLINK)).map_err(io_err("creating the symlink"))?;
        write(&rootfs, paths::SETUID, b"#!/bin/sh\nexec /bin/busybox id\n", 0o4755)?;
        write(&rootfs, paths::HARDLINK_TARGET, b"imgsign-test\n", 0o644)?;
        fs::hard_link(at(&rootfs, paths::HARDLINK_TARGET), at(&rootfs, paths::HARDLINK))
            .map_err(io_err("creating the hardlink"))?;
        write(&rootfs, paths::WHITED_OUT, b"deleted in layer 2\n", 0o644)?;
        write(&rootfs, paths::PLAIN_FILE, b"NAME=imgsign-test\nID=imgsign\n", 0o644)?;
        write(&rootfs, "/opt/app/old.txt", b"hidden by the opaque directory\n", 0o644)?;
        write(&rootfs, "/opt/app/sub/deep.txt", b"hidden too\n", 0o644)?;
        chmod(&at(&rootfs, paths::STICKY_DIR), 0o1777)?;
        repack("layer 1: base")?;

        // Layer 2: a deletion (umoci writes `etc/.wh.gone`) and an addition.
        fs::remove_file(at(&rootfs, paths::WHITED_OUT)).map_err(io_err("removing the whiteout target"))?;
        write(&rootfs, paths::LAYER2_FILE, b"layer 2\n", 0o644)?;
        repack("layer 2: whiteout")?;

        // Layer 3: an opaque directory, generated (see the module comment).
        let layer3 = root.join("layer3-opaque.tar");
        let mut tar = TarWriter::new();
        tar.dir("opt/app", 0o755)
            .whiteout("opt/app/.wh..wh..opq")
            .add(Entry::file(rel(paths::OPAQUE_NEW), 0o644, b"written after the opaque marker\n"))
            .add(
                Entry::file(rel(paths::CAPABILITY_FILE), 0o755, b"#!/bin/sh\nexec /bin/busybox nc -l -p 80\n")
                    .with_pax("SCHILY.xattr.security.capability", CAPABILITY),
            );
        fs::write(&layer3, tar.finish()).map_err(io_err(format!("writing {}", layer3.display())))?;
        run(
            "umoci",
            [
                "raw",
                "add-layer",
                "--history.comment",
                "layer 3: opaque directory",
                "--image",
                &image,
                &layer3.display().to_string(),
            ],
        )?;
        fs::remove_file(&layer3).map_err(io_err("removing the layer 3 tar"))?;
        fs::remove_dir_all(&bundle).map_err(io_err("removing the build bundle"))?;
        run("umoci", ["gc", "--layout", &oci_dir.display().to_string()])?;

        // The same image as a plain tree.
        let unpacked = root.join("unpacked");
        unpack(&unpacked)?;
        let rootfs = unpacked.join("rootfs");

        // The same image as a docker-archive.
        let docker_archive = root.join("docker-archive.tar");
        run(
            "skopeo",
            [
                "--insecure-policy".to_string(),
                "copy".into(),
                "--quiet".into(),
                format!("oci:{image}"),
                format!("docker-archive:{}:imgsign-test:latest", docker_archive.display()),
            ],
        )?;

        // The same image with zstd layers.
        let oci_zstd_dir = root.join("oci-zstd");
        run(
            "skopeo",
            [
                "--insecure-policy".to_string(),
                "copy".into(),
                "--quiet".into(),
                "--dest-compress".into(),
                "--dest-compress-format".into(),
                "zstd".into(),
                format!("oci:{image}"),
                format!("oci:{}:{TAG}", oci_zstd_dir.display()),
            ],
        )?;

        let built = RealImage { root: root.to_path_buf(), oci_dir, docker_archive, oci_zstd_dir, rootfs };
        built.check()?;
        Ok(built)
    }

    /// Checks on the unpacked tree that the layers did what they were built to do.
    fn check(&self) -> Result<(), FixtureError> {
        let fail = |what: String| Err(FixtureError::Check(what));
        let root = &self.rootfs;
        if at(root, paths::WHITED_OUT).symlink_metadata().is_ok() {
            return fail(format!("{} survived its whiteout", paths::WHITED_OUT));
        }
        for hidden in paths::OPAQUE_HIDDEN {
            if at(root, hidden).symlink_metadata().is_ok() {
                return fail(format!("{hidden} survived the opaque directory"));
            }
        }
        if !at(root, paths::OPAQUE_NEW).is_file() {
            return fail(format!("{} is missing", paths::OPAQUE_NEW));
        }
        let setuid = fs::metadata(at(root, paths::SETUID)).map_err(io_err("setuid file"))?;
        if setuid.permissions().mode() & 0o7777 != 0o4755 {
            return fail(format!("{} has mode {:o}", paths::SETUID, setuid.permissions().mode()));
        }
        let a = fs::metadata(at(root, paths::HARDLINK)).map_err(io_err("hardlink"))?;
        let b = fs::metadata(at(root, paths::HARDLINK_TARGET)).map_err(io_err("hardlink target"))?;
        if a.ino() != b.ino() {
            return fail(format!("{} is not a hardlink of {}", paths::HARDLINK, paths::HARDLINK_TARGET));
        }
        Ok(())
    }
}

/// Copies a tree with `cp -a` (ownership, modes, hardlinks and symlinks kept).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), FixtureError> {
    let status =
        std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().map_err(io_err("running cp -a"))?;
    if !status.success() {
        return Err(FixtureError::Command {
            command: format!("cp -a {} {}", from.display(), to.display()),
            status: status.to_string(),
            stderr: String::new(),
        });
    }
    Ok(())
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `root` joined with an absolute image path.
fn at(root: &Path, image_path: &str) -> PathBuf {
    root.join(rel(image_path))
}

fn rel(image_path: &str) -> &str {
    image_path.trim_start_matches('/')
}

fn mkdirs(root: &Path, dirs: &[&str]) -> Result<(), FixtureError> {
    for dir in dirs {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(io_err(format!("creating {}", path.display())))?;
    }
    for dir in dirs {
        let mut path = root.join(dir);
        while path != root {
            chmod(&path, 0o755)?;
            path.pop();
        }
    }
    Ok(())
}

fn write(root: &Path, image_path: &str, data: &[u8], mode: u32) -> Result<(), FixtureError> {
    let path = at(root, image_path);
    fs::write(&path, data).map_err(io_err(format!("writing {}", path.display())))?;
    chmod(&path, mode)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), FixtureError> {
    fs::copy(from, to).map_err(io_err(format!("copying {} to {}", from.display(), to.display())))?;
    chmod(to, mode)
}

fn chmod(path: &Path, mode: u32) -> Result<(), FixtureError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(format!("chmod {}", path.display())))
}
